"""The one training entry point.

  python -m experiments.train --config=configs/adding.py --workdir=/tmp/adding \
      [--config.model.cell=gru --config.train.num_steps=500 ...]

Multi-host: add --coordinator_address=HOST:PORT --num_processes=N --process_id=I to every
process. A bad config prints one line to stderr and exits with status 1.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from gatedrnn.train import ConfigError, NonFiniteLossError, distributed, train_and_evaluate

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a configs/<task>.py file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl, TensorBoard files and plots.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-process runs.")
flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-process run.")
flags.DEFINE_integer("process_id", None, "Index of this process in a multi-process run.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    try:
        distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
        train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except (ConfigError, NonFiniteLossError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
