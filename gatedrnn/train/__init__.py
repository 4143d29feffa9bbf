"""The training system: one config -> one run, resumable, observable, data parallel.

  python -m experiments.train --config=configs/adding.py --workdir=/tmp/adding

Modules: `config` (defaults, validation, resume compatibility), `model` (the
`SequenceModel` a task trains), `optim` (optax optimizers and schedules), `checkpoint` (orbax), `metrics`
(metrics.jsonl, TensorBoard, plots), `distributed` (mesh, sharding, jax.distributed) and
`loop` (`train_and_evaluate`), `runs` (`load_run`: a trained run's config, params, model, eval
and predictions; `read_provenance`), `provenance` (run.json: config file, git revision, finished)
and `evaluate` (what `experiments.evaluate` and the end of `experiments.train` print).
"""

from gatedrnn.tasks import TASKS, make_task  # re-exported: gatedrnn.train.TASKS is public
from gatedrnn.train import distributed
from gatedrnn.train.config import ConfigError, default_config
from gatedrnn.train.loop import NonFiniteLossError, TrainingInterrupted, TrainState, WorkdirError, train_and_evaluate
from gatedrnn.train.runs import Run, load_run, read_provenance

__all__ = [
    "ConfigError", "NonFiniteLossError", "Run", "TASKS", "TrainState", "TrainingInterrupted", "WorkdirError",
    "default_config", "distributed", "load_run", "make_task", "read_provenance", "train_and_evaluate",
]
