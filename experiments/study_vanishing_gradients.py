"""Vanishing gradients: || d loss / d x_t || against the time lag, for the tanh RNN, LSTM and GRU,
at initialization and after training on the adding problem.

  python -m experiments.study_vanishing_gradients --out=/tmp/studies/vanishing \
      --config.data.seq_len=200 --config.train.num_steps=4000

Trains one run per cell with `train_and_evaluate` into --out/<cell> (a finished run is
reused: the loop resumes it to a no-op; --runs points at existing workdirs instead), then
measures the gradient norms on one held-out batch with the initial and the trained params.
Writes --out/vanishing_gradients.png (log scale), .csv (every lag) and .md (selected lags).
--quick: a seconds-long run (tiny model, T=20, 30 steps) for tests.
"""

import os

import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from gatedrnn.lab import studies

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
    config = FLAGS.config
    if FLAGS.quick:
        config = studies.with_overrides(studies.shrink_for_quick_run(config), {"data.seq_len": 20})
    cells = FLAGS.cells
    configs = {cell: studies.with_overrides(config, {"model.cell": cell}) for cell in cells}
    if FLAGS.runs:
        workdirs = {}
        for cell in cells:
            workdirs[cell] = FLAGS.runs.format(cell=cell)
            studies.train_runs({os.path.basename(workdirs[cell]): configs[cell]}, os.path.dirname(workdirs[cell]))
    else:
        workdirs = studies.train_runs(configs, os.path.join(FLAGS.out, "runs"))

    curves = {}
    for cell in cells:
        for label, workdir in (("init", None), ("trained", workdirs[cell])):
            exp, params = studies.load_params(configs[cell], workdir)
            batch = exp.task.eval_batch(config.train.seed, 0, FLAGS.batch_size)
            loss_fn = studies.model_loss_fn(exp, params, jnp.asarray(batch["targets"]))
            curves[f"{cell} ({label})"] = studies.input_gradient_norms(loss_fn, jnp.asarray(batch["inputs"]))

    os.makedirs(FLAGS.out, exist_ok=True)
    time = config.data.seq_len
    lags = studies.time_lags(time)
    header = ["lag"] + list(curves)
    studies.write_csv(os.path.join(FLAGS.out, "vanishing_gradients.csv"), header,
                      [[int(lag)] + [float(c[t]) for c in curves.values()] for t, lag in enumerate(lags)])
    shown = sorted({0, 1, 5, 10, 25, 50, 100, 150, time // 2, time - 1} & set(range(time)))
    rows = [[lag] + [float(c[time - 1 - lag]) for c in curves.values()] for lag in shown]
    table = studies.markdown_table(header, rows)
    with open(os.path.join(FLAGS.out, "vanishing_gradients.md"), "w") as f:
        f.write(f"mean || d loss / d x_t || on {FLAGS.batch_size} held-out examples, adding problem T={time}\n\n")
        f.write(table)
    studies.plot_gradient_norms(curves, os.path.join(FLAGS.out, "vanishing_gradients.png"),
                                title=f"adding problem, T={time}")
    print(table)
    ratio = {k: float(c[0] / c[-1]) if c[-1] > 0 else np.inf for k, c in curves.items()}
    print("norm at the largest lag / norm at lag 0: " + ", ".join(f"{k}: {v:.3g}" for k, v in ratio.items()))
    print(f"wrote {FLAGS.out}/vanishing_gradients.png, .csv, .md")


if __name__ == "__main__":
    app.run(main)
