"""The one training entry point.

  python -m experiments.train --config=configs/adding.py --workdir=/tmp/adding \
      [--config.model.cell=gru --config.train.num_steps=500 ...]

Multi-host: add --coordinator_address=HOST:PORT --num_processes=N --process_id=I to every
process. A bad config prints one line to stderr and exits with status 1.
"""

import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from gatedrnn.train import ConfigError, NonFiniteLossError, distributed, train_and_evaluate
from gatedrnn.train.runs import record_config_file

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a configs/<task>.py file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl, TensorBoard files and plots.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-process runs.")
flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-process run.")
flags.DEFINE_integer("process_id", None, "Index of this process in a multi-process run.")
flags.mark_flags_as_required(["config", "workdir"])


def parse_flags(argv):
    """absl's parser, with every flag or config mistake as one line on stderr and exit status 1."""
    try:
        return FLAGS(argv)
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
    try:
        distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
        train_and_evaluate(FLAGS.config, FLAGS.workdir)
        record_config_file(FLAGS.workdir, config_flags.get_config_filename(FLAGS["config"]))  # for results tables
    except (ConfigError, NonFiniteLossError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
