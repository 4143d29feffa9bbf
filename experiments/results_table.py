"""The old name of `python -m experiments.results --runs=...` (kept for scripts that call it):
the runs table of given workdirs, by the same library call, `gatedrnn.lab.suite.results`.

  python -m experiments.results_table --runs=/tmp/res/adding200_lstm,/tmp/res/adding200_rnn --out=/tmp/results.md
  python -m experiments.results_table --manifests=/tmp/studies/cells/manifest.txt   # markdown to stdout

As before, --out is the markdown file (stdout without it) and --csv an optional CSV file. The
tracked docs/results.md is only rewritten with --write.
"""

import shlex
import sys

from absl import app, flags

from gatedrnn.lab.suite import results
from gatedrnn.validation import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_list("runs", [], "Run workdirs.")
flags.DEFINE_list("manifests", [], "Files listing run workdirs, one per line.")
flags.DEFINE_string("configs", "configs", "Directory of the config files, for the commands.")
flags.DEFINE_string("workdir_for_command", "/tmp/{name}", "The --workdir shown in each command; {name} = the run's directory name.")
flags.DEFINE_string("out", None, "Markdown output file (stdout if unset).")
flags.DEFINE_string("csv", None, "Optional CSV output file.")
flags.DEFINE_string("title", "Results", "Heading of the markdown file.")
flags.DEFINE_bool("write", False, "Needed to rewrite the tracked docs/results.md (--out, default docs/results.md).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.runs and not FLAGS.manifests:
        raise app.UsageError("give --runs and/or --manifests")
    try:
        text = results(runs=FLAGS.runs, manifests=FLAGS.manifests, markdown=FLAGS.out or "-", csv=FLAGS.csv,
                       write=FLAGS.write, table=FLAGS.out if FLAGS.write else None, title=FLAGS.title, configs_dir=FLAGS.configs,
                       workdir_for_command=FLAGS.workdir_for_command,
                       generated_by=f"python -m experiments.results_table {shlex.join(sys.argv[1:])}")
    except ConfigError as e:  # one line, not the usage text
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    if FLAGS.out is None:
        print(text)


if __name__ == "__main__":
    app.run(main)
