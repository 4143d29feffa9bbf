r"""The one training entry point.

  python -m experiments.train --config=configs/adding.py --workdir=/tmp/adding \
      [--config.model.cell=gru --config.train.num_steps=500 ...]
  python -m experiments.train --list                                # configs, tasks, cells, blocks
  python -m experiments.train --config=configs/adding.py --dry_run  # the resolved config, parameter count

`--config=FILE:smoke` is a run of seconds. The run ends with its final eval metric beside the
task's trivial baseline; rerun the same command on a finished workdir to print it again (nothing
is trained), or with a larger --config.train.num_steps to train on. Ctrl-C saves a checkpoint
at the current step (a second Ctrl-C stops at once) and SIGTERM does the same: rerun the same
command to resume. A bad config, a missing config file or an unusable workdir prints one line
to stderr and exits with status 1; Ctrl-C exits with status 130. `python -m experiments.evaluate
--workdir=DIR` scores a trained run's checkpoint.

Multi-host: add --coordinator_address=HOST:PORT --num_processes=N --process_id=I to every
process.
"""

import os
import signal
import sys

_STAGE = ["before training started (nothing to save)"]


def _interrupted(signum, frame):  # Ctrl-C outside the training loop (which has its own handler)
    print(f"received SIGINT: stopped {_STAGE[0]}", file=sys.stderr, flush=True)
    os._exit(130)


if __name__ == "__main__":  # before the heavy imports: a Ctrl-C while jax loads is one line too
    signal.signal(signal.SIGINT, _interrupted)

import re  # noqa: E402

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from gatedrnn.lab.results import HEADLINES  # noqa: E402
from gatedrnn.train import ConfigError, NonFiniteLossError, TrainingInterrupted, distributed, train_and_evaluate  # noqa: E402
from gatedrnn.train.evaluate import choices_text, dry_run_text, final_line  # noqa: E402
from gatedrnn.train.provenance import finished_step  # noqa: E402

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a configs/<task>.py file (FILE:smoke for a run of "
                                "seconds); --list shows them.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl, run.json, TensorBoard files and "
                    "plots (created if missing); the same workdir resumes the run.")
flags.DEFINE_bool("list", False, "Print the config files (with what each trains), tasks, cells and blocks, "
                  "then exit; needs no --config or --workdir.")
flags.DEFINE_bool("dry_run", False, "Print the resolved config (as the run would write config.json) and the "
                  "model's parameter count, then exit: nothing is trained or written; needs no --workdir.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-process runs.")
flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-process run.")
flags.DEFINE_integer("process_id", None, "Index of this process in a multi-process run.")


def _fail(message: str):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def _config_path(argv) -> str | None:
    """The file part of --config (before ":arg"), as given on the command line."""
    for i, a in enumerate(argv):
        if a.startswith("--config="):
            return a.split("=", 1)[1].partition(":")[0]
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1].partition(":")[0]
    return None


def parse_flags(argv):
    """absl's parser, with every flag or config mistake as one line on stderr and exit status 1."""
    path = _config_path(argv)
    if path is not None and not os.path.isfile(path):
        problem = "is a directory" if os.path.isdir(path) else "does not exist"
        _fail(f"--config={path}: the file {os.path.abspath(path)} {problem}; "
              "python -m experiments.train --list shows the config files")
    try:
        return FLAGS(argv)
    except SystemExit:  # absl's --help/--helpfull print the usage and exit with status 1; asking is no error
        if any(a.lstrip("-").split("=")[0] in ("help", "helpshort", "helpfull", "helpxml", "h", "?") for a in argv[1:]):
            sys.exit(0)
        raise
    except flags.Error as e:  # a bad value, or an exception inside the config file
        lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
        print("error: " + " ".join(lines[:1] + lines[1:][-1:]), file=sys.stderr)
    except (AttributeError, KeyError) as e:  # ml_collections: an override of a field that does not exist
        text = str(e)
        bad = re.search(r"'(\w+)\\?'", text)
        hint = re.search(r'Did you mean "(\w+)"', text)
        name = bad.group(1) if bad else text
        flag = next((a.split("=")[0] for a in argv if a.startswith("--config.") and f".{name}." in a.split("=")[0] + "."),
                    name)
        print(f"error: {flag} names no config field" + (f"; did you mean {hint.group(1)!r}?" if hint else ""),
              file=sys.stderr)
    sys.exit(1)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    if FLAGS.list:
        print(choices_text(CONFIGS_DIR))
        return
    if FLAGS.config is None:
        _fail("--config is required, e.g. --config=configs/adding.py (--list shows the config files)")
    config_file = config_flags.get_config_filename(FLAGS["config"])
    try:
        if FLAGS.dry_run:
            print(dry_run_text(FLAGS.config))
            return
        if not FLAGS.workdir:
            _fail("--workdir is required: the directory for the run's checkpoints and metrics, e.g. "
                  "--workdir=/tmp/adding (--dry_run needs none)")
        distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
        train_and_evaluate(FLAGS.config, FLAGS.workdir, config_file=config_file, exit_at_once_on_second_interrupt=True)
    except (ConfigError, NonFiniteLossError) as e:  # WorkdirError is a ConfigError
        _fail(str(e))
    except TrainingInterrupted as e:
        print(e, file=sys.stderr, flush=True)
        sys.exit(130)
    _STAGE[0] = "after the run finished (its files are complete)"
    finished = finished_step(FLAGS.workdir)  # None after SIGTERM: the rerun that finishes prints the line
    if jax.process_index() == 0 and finished is not None and finished >= FLAGS.config.train.num_steps:
        line = final_line(FLAGS.workdir, HEADLINES.get(FLAGS.config.task))
        if line:
            print(line, flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
