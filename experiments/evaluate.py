"""Scores a trained run: the eval metrics of one of its checkpoints on the held-out data.

  python -m experiments.evaluate --workdir=/tmp/adding [--checkpoint=best|newest|STEP] [--out=FILE]

The metrics are those the training loop logs at an eval (the fixed `eval.num_batches` held-out
batches), printed one per line, then the task's headline metric beside its trivial baseline;
they are written as JSON to --out (default <workdir>/eval_<step>.json). The default checkpoint
is the best by eval loss when the run keeps one (checkpoint.keep_best > 0), else the newest.
A workdir without a run or a checkpoint, or a --checkpoint naming none, prints one line to stderr
and exits with status 1.
"""

import os
import signal
import sys


def _interrupted(signum, frame):  # the JSON is written whole (a rename), so nothing is torn
    print("received SIGINT: stopped (nothing written)", file=sys.stderr, flush=True)
    os._exit(130)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, _interrupted)

from absl import app, flags, logging  # noqa: E402

from gatedrnn.lab.results import HEADLINES  # noqa: E402
from gatedrnn.train import ConfigError  # noqa: E402
from gatedrnn.train.evaluate import evaluate_checkpoint  # noqa: E402
from gatedrnn.train.runs import read_config  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The workdir of a training run (python -m experiments.train --workdir=...).")
flags.DEFINE_string("checkpoint", "auto", "best (lowest eval loss), newest, or a step on disk; auto (the "
                    "default): best when the run keeps a best checkpoint (checkpoint.keep_best > 0), else newest.")
flags.DEFINE_string("out", None, "Where to write the metrics as JSON; default <workdir>/eval_<step>.json.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if not FLAGS.workdir:
        print("error: --workdir is required: the workdir of a training run", file=sys.stderr)
        sys.exit(1)
    try:
        task = read_config(FLAGS.workdir).task
        lines, _ = evaluate_checkpoint(FLAGS.workdir, FLAGS.checkpoint, FLAGS.out, HEADLINES.get(task))
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except OSError as e:  # --out not writable
        print(f"error: cannot write --out={FLAGS.out}: {e.strerror} ({e.filename})", file=sys.stderr)
        sys.exit(1)
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
