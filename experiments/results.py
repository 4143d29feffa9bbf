"""The results system: train the results suite, or tabulate given runs; tables go to --out.

  python -m experiments.results --out=runs/suite --jobs=2                   # train the suite (~1 CPU hour)
  python -m experiments.results --out=runs/suite --only=parity_lstm         # one entry
  python -m experiments.results --out=runs/suite --table_only --write       # rewrite docs/results_suite.md
  python -m experiments.results --runs=/tmp/res/adding200_lstm,/tmp/res/adding200_gru --out=/tmp/table

Suite mode (no --runs/--manifests) trains each entry of `gatedrnn.lab.results.SUITE` once per
seed into <out>/<entry>/seed<k> (finished runs are skipped) and writes <out>/results.md and
results.csv: each entry's headline metric (mean ± sd over seeds), the trivial baseline, the
published figure, and the commands that reproduce each run (`git checkout <revision>` where the
run recorded one, then its `experiments.train` command). Runs mode tabulates the workdirs of
--runs and of the --manifests files (one a line) into <out>/results.md and results.csv
(--out default runs/results).

The tracked tables are only rewritten with --write: docs/results_suite.md (suite mode; with
--only, only the rerun rows change) and the README block between `<!-- results-suite:begin -->`
and `<!-- results-suite:end -->` with --readme=README.md, or docs/results.md (runs mode);
--table names another file to rewrite. The library call is `gatedrnn.lab.suite.results`.
"""

import shlex
import sys

from absl import app, flags

from gatedrnn.lab.suite import results
from gatedrnn.validation import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Output directory: the suite's runs and <out>/results.md, results.csv "
                    "(default runs/suite; runs/results with --runs/--manifests).")
flags.DEFINE_list("only", [], "Suite entries to train and tabulate (default: all).")
flags.DEFINE_integer("jobs", 2, "Training runs at once.")
flags.DEFINE_bool("table_only", False, "Do not train; tabulate the suite's finished runs in --out.")
flags.DEFINE_list("runs", [], "Tabulate these run workdirs instead of the suite.")
flags.DEFINE_list("manifests", [], "Tabulate the run workdirs these files list, one a line.")
flags.DEFINE_bool("write", False, "Also rewrite the tracked table (docs/results_suite.md, or docs/results.md "
                  "with --runs/--manifests; with --only, only those rows change).")
flags.DEFINE_string("table", None, "With --write: the file to rewrite instead of the tracked table.")
flags.DEFINE_string("readme", None, "With --write: also the results-suite block of this file (e.g. README.md).")
flags.DEFINE_string("title", "Results", "Heading of the runs table.")
flags.DEFINE_string("configs", "configs", "Directory of the config files, for the commands.")
flags.DEFINE_string("workdir_for_command", "/tmp/{name}",
                    "The --workdir shown in each runs-table command; {name} = the run's directory name.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        results(out=FLAGS.out, only=FLAGS.only, runs=FLAGS.runs, manifests=FLAGS.manifests, jobs=FLAGS.jobs,
                table_only=FLAGS.table_only, write=FLAGS.write, table=FLAGS.table, readme=FLAGS.readme,
                title=FLAGS.title, configs_dir=FLAGS.configs, workdir_for_command=FLAGS.workdir_for_command,
                generated_by=f"python -m experiments.results {shlex.join(sys.argv[1:])}")
    except ConfigError as e:  # one line, not the usage text
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
