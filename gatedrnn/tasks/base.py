"""The task contract: `Task`, a `typing.Protocol` that says what the training system may call.

Required (no default):
  input_size, output_size, readout ("last" | "all"), vocab_size (None: float inputs)   what the model needs
  train_batch(seed, step, batch_size) -> dict of NumPy arrays   (deterministic in (seed, step))
  eval_batch(seed, index, batch_size) -> dict of NumPy arrays   (a fixed held-out set)
  metrics(outputs, batch) -> (loss, sums)                       (see `gatedrnn.losses`)
Optional (defaults here):
  causal = False          True when the targets are later inputs (next character, next frame): the
                          model must not read ahead, so `make_task` refuses model.bidirectional=True
  build_model(config, rngs) -> the task's own model, or None (default): the loop's SequenceModel
  apply(model, batch, train) -> outputs   (default: model(batch["inputs"], batch.get("seq_lengths")))
  final_report(model, seed, workdir) -> (text, metrics)   run once when a run finishes (not after a
                          SIGTERM); the loop writes the text to report.txt and the metrics to
                          final_metrics.json when they are not empty. Default: ("", {}), nothing.

Every task of this package inherits `Task` explicitly (`class CharLMTask(Task)` under
`@dataclasses.dataclass(frozen=True)`): a Protocol alone cannot give its defaults to a class that
does not inherit it, and inheriting makes a missing required method a TypeError when the task is
built. A task's own fields are checked in its `__post_init__` / `from_config` with
`gatedrnn.validation` (one-line ConfigError naming the field).
"""

from __future__ import annotations

import abc
from typing import Any, Mapping, Protocol

import jax
import ml_collections
import numpy as np
from flax import nnx

from gatedrnn import losses

Batch = dict[str, np.ndarray]


class Task(Protocol):
    """A task: data on the fly plus the loss (see the module docstring for every member)."""

    input_size: int
    output_size: int
    readout: str
    vocab_size: int | None
    causal: bool = False

    @abc.abstractmethod
    def train_batch(self, seed: int, step: int, batch_size: int) -> Batch:
        """Training batch `step`, a function of (seed, step) alone (a resumed run sees the same data)."""

    @abc.abstractmethod
    def eval_batch(self, seed: int, index: int, batch_size: int) -> Batch:
        """Held-out batch `index` (the same every evaluation)."""

    @abc.abstractmethod
    def metrics(self, outputs: Any, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, losses.Sums]:
        """(scalar loss to minimize, {name: [sum, count]}) for `apply`'s outputs on `batch`."""

    def build_model(self, config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> nnx.Module | None:
        """The task's own model (e.g. an encoder-decoder), or None: the training system's SequenceModel."""
        del config, rngs
        return None

    def apply(self, model: nnx.Module, batch: Mapping[str, jax.Array], train: bool) -> Any:
        """The model's outputs on `batch` (what `metrics` takes)."""
        del train
        return model(batch["inputs"], batch.get("seq_lengths"))

    def final_report(self, model: nnx.Module, seed: int, workdir: str) -> tuple[str, dict[str, float]]:
        """(text for report.txt, numbers for final_metrics.json) from the trained model, in eval mode."""
        del model, seed, workdir
        return "", {}
