"""Vanishing gradients: || d loss / d x_t || against the time lag, for the tanh RNN, LSTM and GRU,
at initialization and after training on the adding problem.

  python -m experiments.study_vanishing_gradients --out=/tmp/studies/vanishing \
      --config.data.seq_len=200 --config.train.num_steps=4000

Trains one run per cell with `train_and_evaluate` into --out/runs/<cell> (a finished run is
reused: the loop resumes it to a no-op; --runs points at existing workdirs instead), then
measures the gradient norms on one held-out batch with the initial and the trained params.
Writes --out/vanishing_gradients.png (log scale), .csv (every lag) and .md (selected lags).
--quick: a seconds-long run (tiny model, T=20, 30 steps) for tests. The study is
`gatedrnn.lab.vanishing_gradients`.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from gatedrnn.lab.vanishing_gradients import vanishing_gradients_study

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/adding.py", "The task config (the adding problem).")
flags.DEFINE_string("out", "/tmp/studies/vanishing", "Output directory (runs, plot, tables).")
flags.DEFINE_list("cells", ["rnn", "lstm", "gru"], "Cells to compare.")
flags.DEFINE_string("runs", None, "Existing workdirs as a pattern with {cell}, e.g. /tmp/res/adding200_{cell}; "
                    "they are resumed to the config's num_steps (a no-op when finished).")
flags.DEFINE_integer("batch_size", 256, "Held-out examples the norms are averaged over.")
flags.DEFINE_bool("quick", False, "A seconds-long version for tests.")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it reads and writes at INFO
    print(vanishing_gradients_study(FLAGS.config, FLAGS.cells, FLAGS.out, runs=FLAGS.runs,
                                    batch_size=FLAGS.batch_size, quick=FLAGS.quick))


if __name__ == "__main__":
    app.run(main)
