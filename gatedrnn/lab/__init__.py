"""The lab: studies, results tables and the benchmark harness, i.e. what the scripts in `experiments/` run.

One module per job:

  gradients.py           input-gradient norms (`input_gradient_norms`, `model_loss_fn`)
  gates.py               gate activations of an LSTM / GRU over a sequence
  runs.py                the studies' training runs (`with_overrides`, `train_runs`); a finished run is
                         read with `gatedrnn.train.runs.load_run`
  vanishing_gradients.py, lstm_ablation.py, cell_comparison.py   the three studies (experiments/study_*.py)
  plots.py               their figures; tables.py: the one markdown / CSV table writer
  results.py             run summaries, the results table and the results suite's rows and commands
  suite.py               the results system: the suite trained, given runs tabulated (experiments/results.py)
  benchmark/             the speed harness of experiments/benchmark.py (contestants, timing, tables)
  runtime.py             allocator settings for timing runs
  studies.py             the names the notebooks import, re-exported from the above
"""
