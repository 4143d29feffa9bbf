"""Cell comparison: every cell of `gatedrnn.CELLS` on the adding problem at increasing T.

  python -m experiments.study_cells --out=/tmp/studies/cells --seq_lens=50,100,200

One `train_and_evaluate` run per (cell, T) into --out/<cell>_T<T>, with the adding problem's
config and any --config.* overrides (same steps and learning rate for every cell). Writes
--out/cells.md and cells.csv: the final eval MSE per cell and T, against the baseline 0.167,
and the first eval step below 0.05 (0.3 x baseline). --quick: a seconds-long version for tests.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from gatedrnn import CELLS
from gatedrnn.lab import studies
from gatedrnn.lab.results import summarize_run
from gatedrnn.train.metrics import read_metrics

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/adding.py", "The task config (the adding problem).")
flags.DEFINE_string("out", "/tmp/studies/cells", "Output directory (runs, tables).")
flags.DEFINE_list("cells", list(CELLS), "Cells to compare.")
flags.DEFINE_list("seq_lens", ["50", "100", "200"], "Sequence lengths T.")
flags.DEFINE_float("solved_below", 0.05, "An eval MSE that counts as solved (first step reported).")
flags.DEFINE_bool("quick", False, "A seconds-long version for tests (2 cells, T=10).")


def first_step_below(workdir: str, threshold: float):
    for r in read_metrics(os.path.join(workdir, "metrics.jsonl")):
        if r.get("eval_loss", float("inf")) < threshold:
            return r["step"]
    return "-"


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    config, cells, lens = FLAGS.config, FLAGS.cells, [int(t) for t in FLAGS.seq_lens]
    if FLAGS.quick:
        config, cells, lens = studies.shrink_for_quick_run(config, 10), cells[:2], [10]
    runs = {f"{cell}_T{t}": studies.with_overrides(config, {"model.cell": cell, "data.seq_len": t})
            for t in lens for cell in cells}
    workdirs = studies.train_runs(runs, FLAGS.out)

    header = ["cell"] + [f"T={t} MSE" for t in lens] + [f"T={t} step < {FLAGS.solved_below:g}" for t in lens] + ["time (s)"]
    rows = []
    for cell in cells:
        summaries = [summarize_run(workdirs[f"{cell}_T{t}"]) for t in lens]
        rows.append([cell] + [s["eval_loss"] for s in summaries]
                    + [first_step_below(workdirs[f"{cell}_T{t}"], FLAGS.solved_below) for t in lens]
                    + [round(sum(s["train_time_s"] for s in summaries))])
    table = studies.write_table(FLAGS.out, "cells", f"adding problem, {config.train.num_steps} steps, hidden "
                                f"{config.model.hidden_size}, lr {config.train.learning_rate}; final eval MSE "
                                "(baseline 0.167)", header, rows)
    print(table)
    print(f"wrote {FLAGS.out}/cells.md, .csv")


if __name__ == "__main__":
    app.run(main)
