"""The results table, built from training runs' metrics (never typed by hand).

  python -m experiments.results_table --runs=/tmp/res/adding200_lstm,/tmp/res/adding200_gru,/tmp/res/adding200_rnn \
      --out=docs/results.md

--runs: workdirs of `experiments.train` runs (config.json + metrics.jsonl); --manifests: files
listing workdirs one per line (the studies write --out/manifest.txt). Each row gives the run
(its directory name), task, T, cell, the eval loss reached (last and best), the trivial baseline measured on the same eval
batches, a published figure where one exists (with its source), the training time and the
exact `experiments.train` command that reproduces the run (every field that differs from the
config file it was trained from, which experiments.train records in the workdir), listed below
the table. Writes markdown to --out (stdout without it) and --csv if given. The table is
`gatedrnn.lab.results.write_results_table`.
"""

import shlex
import sys

from absl import app, flags

from gatedrnn.lab.results import read_manifests, write_results_table

FLAGS = flags.FLAGS
flags.DEFINE_list("runs", [], "Run workdirs.")
flags.DEFINE_list("manifests", [], "Files listing run workdirs, one per line.")
flags.DEFINE_string("configs", "configs", "Directory of the config files, for the commands.")
flags.DEFINE_string("workdir_for_command", "/tmp/{name}", "The --workdir shown in each command; {name} = the run's directory name.")
flags.DEFINE_string("out", None, "Markdown output file (stdout if unset).")
flags.DEFINE_string("csv", None, "Optional CSV output file.")
flags.DEFINE_string("title", "Results", "Heading of the markdown file.")


def main(argv):
    del argv
    workdirs = list(FLAGS.runs) + read_manifests(FLAGS.manifests)
    if not workdirs:
        raise app.UsageError("give --runs and/or --manifests")
    print(write_results_table(workdirs, title=FLAGS.title, out=FLAGS.out, csv=FLAGS.csv,
                              generated_by=f"python -m experiments.results_table {shlex.join(sys.argv[1:])}",
                              workdir_for_command=FLAGS.workdir_for_command, configs_dir=FLAGS.configs))


if __name__ == "__main__":
    app.run(main)
