"""Cell comparison: every cell of `gatedrnn.CELLS` on the adding problem at increasing T.

  python -m experiments.study_cells --out=/tmp/studies/cells --seq_lens=50,100,200

One `train_and_evaluate` run per (cell, T) into --out/<cell>_T<T>, with the adding problem's
config and any --config.* overrides (same steps and learning rate for every cell). Writes
--out/cells.md and cells.csv: the final eval MSE per cell and T, against the baseline 0.167,
and the first eval step below 0.05 (0.3 x baseline). --quick: a seconds-long version for tests.
The study is `gatedrnn.lab.cell_comparison`.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from gatedrnn import CELLS
from gatedrnn.lab.cell_comparison import cell_comparison_study

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/adding.py", "The task config (the adding problem).")
flags.DEFINE_string("out", "/tmp/studies/cells", "Output directory (runs, tables).")
flags.DEFINE_list("cells", list(CELLS), "Cells to compare.")
flags.DEFINE_list("seq_lens", ["50", "100", "200"], "Sequence lengths T.")
flags.DEFINE_float("solved_below", 0.05, "An eval MSE that counts as solved (first step reported).")
flags.DEFINE_bool("quick", False, "A seconds-long version for tests (2 cells, T=10).")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    print(cell_comparison_study(FLAGS.config, FLAGS.cells, [int(t) for t in FLAGS.seq_lens], FLAGS.out,
                                solved_below=FLAGS.solved_below, quick=FLAGS.quick))


if __name__ == "__main__":
    app.run(main)
