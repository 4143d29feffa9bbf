"""The results suite: trains every entry of `gatedrnn.lab.results.SUITE` and writes the results table.

  python -m experiments.reproduce_results --out=runs/suite --jobs=2           # everything (~1 CPU hour)
  python -m experiments.reproduce_results --out=runs/suite --only=parity_lstm  # one row
  python -m experiments.reproduce_results --out=runs/suite --table_only --readme=README.md

Each entry is one configs/*.py file with overrides, trained once per seed by the command the
table lists (`python -m experiments.train ... --workdir=<out>/<entry>/seed<k>`), as a
subprocess with its log in that workdir's train.log. Finished runs are kept (rerunning
resumes or skips them). The table (markdown, --table) gives per entry: the task's headline
metric (mean ± sd and range over seeds), the trivial baseline on the same data, the published
figure where one applies, steps, CPU seconds and wall seconds per run. With --readme, the
table replaces the block between `<!-- results-suite:begin -->` and `<!-- results-suite:end -->`.
With --only, the other entries' rows already in --table (and in the README block) are kept, so
rerunning one entry updates its row. The suite is `gatedrnn.lab.suite.reproduce`.
"""

from absl import app, flags

from gatedrnn.lab.suite import reproduce
from gatedrnn.validation import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "runs/suite", "Directory of the runs: <out>/<entry>/seed<k>.")
flags.DEFINE_list("only", [], "Entries to run and tabulate (default: all); the table keeps the others' rows.")
flags.DEFINE_integer("jobs", 2, "Training runs at once.")
flags.DEFINE_bool("table_only", False, "Do not train; tabulate the finished runs.")
flags.DEFINE_string("table", "docs/results_suite.md", "Markdown output.")
flags.DEFINE_string("readme", None, "Also put the table into this file between the results-suite markers.")


def main(argv):
    del argv
    try:
        reproduce(FLAGS.out, FLAGS.only, jobs=FLAGS.jobs, table_only=FLAGS.table_only, table=FLAGS.table,
                  readme=FLAGS.readme)
    except ConfigError as e:
        raise app.UsageError(str(e)) from None


if __name__ == "__main__":
    app.run(main)
