"""A training run as the code above the training system sees it: its config, task and trained model.

  run = load_run("/tmp/adding")                   # the config in /tmp/adding/config.json, newest checkpoint
  best = load_run("/tmp/adding", checkpoint="best")  # or a step: checkpoint=1000
  run.evaluate()                                  # {"eval_loss": ..., ...}: the loop's eval at run.step
  outputs = run.predict(run.eval_batch(0))        # the model's outputs on held-out batch 0
  model = run.model()                             # the task's model in eval mode, with run.params
  start = load_run(config=config)                 # a config's params at initialization (step 0)

A workdir of `train_and_evaluate` holds config.json (the resolved config), checkpoints/,
metrics.jsonl and run.json (where it came from: `read_provenance`; see
gatedrnn.train.provenance); config_file.txt holds the `--config` it was started with (e.g.
`configs/mnist_pixel.py` or `configs/adding.py:smoke`), which `read_config_file` returns.
This module is the one door to those files for the lab (studies, results tables): it builds on
the loop's public functions (`make_experiment`, `init_state`, `abstract_state`) and the checkpointer.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from gatedrnn.tasks.registry import Task
from gatedrnn.train import distributed, provenance
from gatedrnn.train.checkpoint import CHECKPOINT_DIR, Checkpointer, checkpoint_steps
from gatedrnn.train.config import ConfigError
from gatedrnn.train.loop import (Experiment, abstract_state, eval_batches, evaluate, init_state, make_eval_fn,
                                 make_experiment)
from gatedrnn.train.metrics import read_metrics

CONFIG_JSON = "config.json"  # written by train_and_evaluate
CONFIG_FILE = provenance.CONFIG_FILE  # written by train_and_evaluate when given a config_file (record_config_file)


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

    @functools.cached_property
    def _evaluation(self):
        mesh = distributed.make_mesh()
        repl, data = distributed.replicated(mesh), distributed.batch_sharded(mesh)
        return make_eval_fn(self.experiment, repl, data), eval_batches(self.experiment, data), repl

    def evaluate(self) -> dict[str, float]:
        """{"eval_loss": ..., "eval_<metric>": ...} on the fixed held-out set (`eval.num_batches`
        batches of `eval.batch_size`): the numbers the training loop logs for this step's eval."""
        fn, batches, repl = self._evaluation
        return evaluate(fn, distributed.replicate(self.params, repl), batches)

    def eval_batch(self, index: int = 0, batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Held-out batch `index` as the loop's eval sees it (`batch_size` default `eval.batch_size`):
        {"inputs": [b, t, d] (token ids [b, t]), "targets" or "labels", maybe "seq_lengths" [b], ...}."""
        c = self.config
        return self.task.eval_batch(c.train.seed, index, batch_size or c.eval.batch_size)

    def predict(self, batch: Mapping[str, Any] | Any, seq_lengths: Any = None) -> Any:
        """The model's outputs (eval mode) on `batch`: a dict as `eval_batch` gives it (through the
        task's `apply`, which a seq2seq task needs for its targets), or an inputs array
        [b, t, d] (token ids [b, t] for a token task) with optional `seq_lengths` [b]. The outputs
        are what the task's loss takes, e.g. [b, output_size] for the adding problem."""
        if isinstance(batch, Mapping):
            batch = dict(batch)
        else:
            batch = {"inputs": batch} if seq_lengths is None else {"inputs": batch, "seq_lengths": seq_lengths}
        return self.task.apply(self.model(), {k: jnp.asarray(v) for k, v in batch.items()}, False)


def read_config(workdir: str) -> ml_collections.ConfigDict:
    """The resolved config a run was trained with (its config.json); FileNotFoundError names the file."""
    path = os.path.join(workdir, CONFIG_JSON)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: {workdir} is not a training run's workdir")
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def read_provenance(workdir: str) -> dict[str, Any]:
    """{"config_file": ..., "git_revision": ..., "git_dirty": ...} of the run in `workdir`: the
    --config it was started with (e.g. "configs/adding.py:smoke"), the commit of the code that ran
    it and whether tracked files differed from that commit, each None when unknown (a run from
    before run.json keeps its config_file.txt). With several starts, those of the latest one; the
    whole history is run.json's "starts"."""
    record = provenance.read_run_json(workdir)
    return {"config_file": provenance.recorded_config_file(workdir),
            "git_revision": record.get("git_revision"), "git_dirty": record.get("git_dirty")}


def record_config_file(workdir: str, config_file: str) -> None:
    """Notes in the workdir which config file (as given to --config) trained it; process 0 only.
    (`train_and_evaluate(..., config_file=...)` does this itself when a run starts.)"""
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
            f.write(config_file + "\n")


read_config_file = provenance.read_config_file  # config_file.txt alone


CHECKPOINT_CHOICES = ("newest", "best")


def best_step(workdir: str) -> int | None:
    """The step of the checkpoint in `workdir` with the lowest eval loss, or None when none recorded one.

    Each checkpoint keeps the eval metrics it was saved with; checkpoints from before that fall
    back to metrics.jsonl's eval_loss at their step (where an eval ran there).
    """
    directory = os.path.join(workdir, CHECKPOINT_DIR)
    if not os.path.isdir(directory):
        return None
    logged = {r["step"]: r["eval_loss"] for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))
              if isinstance(r.get("eval_loss"), (int, float)) and np.isfinite(r["eval_loss"])}
    ckpt = Checkpointer(directory, keep=1_000_000, keep_best=0)
    try:
        losses = {}
        for step in ckpt.all_steps():
            loss = ckpt.saved_metrics(step).get("eval_loss", logged.get(step))
            if loss is not None and np.isfinite(loss):
                losses[step] = loss
    finally:
        ckpt.close()
    return min(losses, key=lambda s: (losses[s], -s)) if losses else None


def load_run(workdir: str | None = None, *, config: ml_collections.ConfigDict | None = None,
             checkpoint: str | int = "newest") -> Run:
    """The run in `workdir` with a checkpoint's params, or (workdir None) `config`'s initial params.

    `checkpoint`: "newest" (the default), "best" (the lowest eval loss, `best_step`) or a step on
    disk. `config` defaults to the workdir's config.json. FileNotFoundError when the workdir has no
    config or no checkpoint; ConfigError (one line) for a checkpoint value that names none on
    disk, or a checkpoint written by another config.
    """
    if config is None:
        if workdir is None:
            raise ValueError("load_run needs a workdir or a config")
        config = read_config(workdir)
    if isinstance(checkpoint, str) and checkpoint.isdigit():
        checkpoint = int(checkpoint)
    if not (checkpoint in CHECKPOINT_CHOICES or (isinstance(checkpoint, int) and not isinstance(checkpoint, bool))):
        raise ConfigError(f"checkpoint={checkpoint!r} is not valid; choose 'newest', 'best' or a step")
    exp = make_experiment(config)
    if workdir is None:
        return Run(exp, init_state(exp).params, 0, None)
    directory = os.path.join(workdir, CHECKPOINT_DIR)
    if not os.path.isdir(directory):  # checked first: the checkpointer would create it
        raise FileNotFoundError(f"no checkpoint in {directory}: train the run first")
    step = best_step(workdir) if checkpoint == "best" else checkpoint
    if checkpoint == "best" and step is None:
        raise ConfigError(f"no checkpoint in {directory} recorded an eval loss; use checkpoint='newest'")
    if step != "newest" and step not in checkpoint_steps(directory):  # before any checkpointer starts
        steps = ", ".join(map(str, checkpoint_steps(directory))) or "none"
        raise ConfigError(f"checkpoint={checkpoint!r} names no checkpoint in {directory} (the steps there: {steps})")
    abstract = abstract_state(exp, distributed.replicated(distributed.make_mesh()))
    ckpt = Checkpointer(directory, keep=1_000_000, keep_best=0)  # only reads: its policies never delete here
    try:
        if step == "newest":
            step, state = ckpt.restore_newest(abstract.as_dict(), report=lambda message: None)
        else:
            state = ckpt.restore(step, abstract.as_dict())
    finally:
        ckpt.close()
    if state is None:
        raise FileNotFoundError(f"no checkpoint in {directory}: train the run first")
    return Run(exp, state["params"], int(step), os.path.abspath(workdir))
