"""Tasks: data on the fly plus the loss, in a registry a config names by `task`.

A task is a frozen dataclass with
  input_size, output_size, readout, vocab_size   (what the model needs)
  train_batch(seed, step, batch_size) -> dict of NumPy arrays   (deterministic in (seed, step))
  eval_batch(seed, index, batch_size) -> dict of NumPy arrays   (a fixed held-out set)
  metrics(outputs, batch) -> (loss, sums)        (see `gatedrnn.losses`)
Batches are generated from (seed, step) alone, so a resumed run sees exactly the data an
uninterrupted run would, whatever the number of processes or devices.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gatedrnn import losses
from gatedrnn.tasks.anomaly import AnomalyDetectionTask
from gatedrnn.tasks.digits import SequentialDigitsTask
from gatedrnn.tasks.forecast import CO2ForecastTask
from gatedrnn.tasks.g2p import G2PTask
from gatedrnn.tasks.music import ChoralesTask
from gatedrnn.tasks.synthetic import CopyMemoryTask, ParityTask
from gatedrnn.tasks.text import CharLMTask
from gatedrnn.tasks.textclass import TextClassificationTask
from gatedrnn.tasks.uea import UEAClassificationTask
from gatedrnn.validation import check_positive

Batch = dict[str, np.ndarray]

_TRAIN_STREAM, _EVAL_STREAM = 0, 1


def batch_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """An independent NumPy generator per (seed, stream, index): train step or eval batch."""
    return np.random.default_rng([seed, stream, index])


@dataclasses.dataclass(frozen=True)
class AddingTask:
    """The adding problem (Hochreiter & Schmidhuber 1997), in the form of Le et al. 2015.

    Input [b, T, 2]: channel 0 holds values drawn from U[0, 1]; channel 1 is a marker that is
    0 except at exactly two steps, one drawn uniformly from the first half of the sequence and
    one from the second half. Target [b, 1]: the sum of the two marked values. Predicting the
    mean, 1, has MSE Var(U1 + U2) = 2/12 = 0.1667: the baseline to beat.
    """

    seq_len: int

    input_size = 2
    output_size = 1
    readout = "last"
    vocab_size = None
    baseline = 1.0 / 6.0

    def __post_init__(self):
        check_positive("data.seq_len", self.seq_len)
        if self.seq_len < 2:
            raise ValueError(f"data.seq_len must be at least 2 for the adding problem, got {self.seq_len}")

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "AddingTask":
        return cls(seq_len=config.data.seq_len)

    def _batch(self, rng: np.random.Generator, batch_size: int) -> Batch:
        t = self.seq_len
        values = rng.uniform(0.0, 1.0, (batch_size, t)).astype(np.float32)
        first = rng.integers(0, t // 2, batch_size)
        second = rng.integers(t // 2, t, batch_size)
        rows = np.arange(batch_size)
        marker = np.zeros((batch_size, t), np.float32)
        marker[rows, first] = 1.0
        marker[rows, second] = 1.0
        target = (values[rows, first] + values[rows, second])[:, None]
        return {"inputs": np.stack([values, marker], axis=-1), "targets": target.astype(np.float32)}

    def train_batch(self, seed: int, step: int, batch_size: int) -> Batch:
        return self._batch(batch_rng(seed, _TRAIN_STREAM, step), batch_size)

    def eval_batch(self, seed: int, index: int, batch_size: int) -> Batch:
        return self._batch(batch_rng(seed, _EVAL_STREAM, index), batch_size)

    def metrics(self, outputs: jax.Array, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, losses.Sums]:
        loss, sums = losses.regression_metrics(outputs, batch["targets"])
        _, baseline = losses.regression_metrics(jnp.ones_like(outputs), batch["targets"])
        sums["baseline_mse"] = baseline["mse"]  # always predicting 1, on the same batch
        return loss, sums


Task = Any  # any object with the interface in the module docstring

TASKS: dict[str, Callable[[ml_collections.ConfigDict], Task]] = {
    "adding": AddingTask.from_config,
    "copy_memory": CopyMemoryTask.from_config,  # the other tasks live in tasks_*.py
    "parity": ParityTask.from_config,
    "sequential_mnist": SequentialDigitsTask.from_config,
    "uea_classification": UEAClassificationTask.from_config,
    "char_lm": CharLMTask.from_config,
    "co2_forecast": CO2ForecastTask.from_config,
    "g2p": G2PTask.from_config,
    "text_classification": TextClassificationTask.from_config,
    "anomaly_detection": AnomalyDetectionTask.from_config,
    "chorales": ChoralesTask.from_config,
}


def make_task(config: ml_collections.ConfigDict) -> Task:
    """Builds the task the config names; ValueError (one line) for an unknown task."""
    if config.task not in TASKS:
        raise ValueError(f"task={config.task!r} is not valid; choose one of {sorted(TASKS)}")
    return TASKS[config.task](config)
