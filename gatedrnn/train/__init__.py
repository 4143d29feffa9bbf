"""The training system: one config -> one run, resumable, observable, data parallel.

  python -m experiments.train --config=configs/adding.py --workdir=/tmp/adding

Modules: `config` (defaults, validation, resume compatibility), `model` (the
`SequenceModel` a task trains), `optim` (optax optimizers and schedules), `checkpoint` (orbax), `metrics`
(metrics.jsonl, TensorBoard, plots), `distributed` (mesh, sharding, jax.distributed) and
`loop` (`train_and_evaluate`).
"""

from gatedrnn.tasks import TASKS, make_task  # re-exported: gatedrnn.train.TASKS is public
from gatedrnn.train import distributed
from gatedrnn.train.config import ConfigError, default_config
from gatedrnn.train.loop import NonFiniteLossError, TrainState, train_and_evaluate

__all__ = [
    "ConfigError", "NonFiniteLossError", "TASKS", "TrainState", "default_config", "distributed", "make_task",
    "train_and_evaluate",
]
