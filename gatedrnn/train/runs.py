"""A training run as the code above the training system sees it: its config, task and trained model.

  run = load_run("/tmp/adding")                   # the config in /tmp/adding/config.json, newest checkpoint
  model = run.model()                             # the task's model in eval mode, with run.params
  batch = run.task.eval_batch(run.config.train.seed, 0, 256)
  start = load_run(config=config)                 # a config's params at initialization (step 0)

A workdir of `train_and_evaluate` holds config.json (the resolved config), checkpoints/ and
metrics.jsonl; `experiments.train` adds config_file.txt, the `--config` it was started with
(e.g. `configs/mnist_pixel.py` or `configs/adding.py:smoke`), which `read_config_file` returns.
This module is the one door to those files for the lab (studies, results tables): it builds on
the loop's public functions (`make_experiment`, `init_state`, `abstract_state`) and the checkpointer.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
from flax import nnx

from gatedrnn.tasks.registry import Task
from gatedrnn.train import distributed
from gatedrnn.train.checkpoint import CHECKPOINT_DIR, Checkpointer
from gatedrnn.train.loop import Experiment, abstract_state, init_state, make_experiment

CONFIG_JSON = "config.json"  # written by train_and_evaluate
CONFIG_FILE = "config_file.txt"  # written by experiments.train (record_config_file)


@dataclasses.dataclass(frozen=True)
class Run:
    """A run's experiment (its config and task), and params from its newest checkpoint (or its initialization)."""

    experiment: Experiment = dataclasses.field(repr=False)
    params: Any  # pure dict of arrays: the model's nnx.Param state
    step: int  # the checkpoint's step; 0 for the initial params
    workdir: str | None

    @property
    def config(self) -> ml_collections.ConfigDict:
        return self.experiment.config

    @property
    def task(self) -> Task:
        return self.experiment.task

    def model(self, params: Any = None, rng: jax.Array | None = None) -> nnx.Module:
        """The run's model in eval mode with `params` (default: the run's own); `rng` seeds the
        dropout streams (unused in eval mode). Same call as `Experiment.model`."""
        model = self.experiment.model(self.params if params is None else params,
                                      jax.random.key(0) if rng is None else rng)
        model.eval()
        return model


def read_config(workdir: str) -> ml_collections.ConfigDict:
    """The resolved config a run was trained with (its config.json); FileNotFoundError names the file."""
    path = os.path.join(workdir, CONFIG_JSON)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: {workdir} is not a training run's workdir")
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def record_config_file(workdir: str, config_file: str) -> None:
    """Notes in the workdir which config file (as given to --config) trained it; process 0 only."""
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
            f.write(config_file + "\n")


def read_config_file(workdir: str) -> str | None:
    """The --config a run was started with (`record_config_file`), or None if none was recorded."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return f.read().strip() or None


def load_run(workdir: str | None = None, *, config: ml_collections.ConfigDict | None = None) -> Run:
    """The run in `workdir` with its newest checkpoint's params, or (workdir None) `config`'s initial params.

    `config` defaults to the workdir's config.json. FileNotFoundError when the workdir has no
    config or no checkpoint; ConfigError when the checkpoint was written by another config.
    """
    if config is None:
        if workdir is None:
            raise ValueError("load_run needs a workdir or a config")
        config = read_config(workdir)
    exp = make_experiment(config)
    if workdir is None:
        return Run(exp, init_state(exp).params, 0, None)
    directory = os.path.join(workdir, CHECKPOINT_DIR)
    if not os.path.isdir(directory):  # checked first: the checkpointer would create it
        raise FileNotFoundError(f"no checkpoint in {directory}: train the run first")
    abstract = abstract_state(exp, distributed.replicated(distributed.make_mesh()))
    ckpt = Checkpointer(directory, keep=1, keep_best=0)
    try:
        step, state = ckpt.restore_newest(abstract.as_dict(), report=lambda message: None)
    finally:
        ckpt.close()
    if state is None:
        raise FileNotFoundError(f"no checkpoint in {directory}: train the run first")
    return Run(exp, state["params"], int(step), os.path.abspath(workdir))
