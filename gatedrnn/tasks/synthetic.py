"""Synthetic memory and state-tracking tasks generated from (seed, step): adding, copy memory, parity.

Shapes: b batch, t time, v vocabulary (copy memory and parity: token ids are the inputs; the model
embeds them). None is causal: every target is a function of the current and earlier inputs, so a
bidirectional model reads nothing it should not (it just does not help).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gatedrnn import losses
from gatedrnn.tasks import figures
from gatedrnn.tasks.base import Batch, Task
from gatedrnn.tasks.data import EVAL_STREAM, TRAIN_STREAM, stream_rng
from gatedrnn.validation import ConfigError, check_choice, check_non_negative, check_positive


def _constant_pair(value: float, count: jax.Array) -> jax.Array:
    """[value * count, count]: a per-token constant as a metric sum."""
    count = jnp.asarray(count, jnp.float32)
    return jnp.stack([count * jnp.float32(value), count])


@dataclasses.dataclass(frozen=True)
class AddingTask(Task):
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
            raise ConfigError(f"data.seq_len must be at least 2 for the adding problem, got {self.seq_len}")

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
        return self._batch(stream_rng(seed, TRAIN_STREAM, step), batch_size)

    def eval_batch(self, seed: int, index: int, batch_size: int) -> Batch:
        return self._batch(stream_rng(seed, EVAL_STREAM, index), batch_size)

    def metrics(self, outputs: jax.Array, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, losses.Sums]:
        loss, sums = losses.regression_metrics(outputs, batch["targets"])
        _, baseline = losses.regression_metrics(jnp.ones_like(outputs), batch["targets"])
        sums["baseline_mse"] = baseline["mse"]  # always predicting 1, on the same batch
        return loss, sums


@dataclasses.dataclass(frozen=True)
class CopyMemoryTask(Task):
    """The copy memory problem (Arjovsky, Shah & Bengio 2016, section 4.2).

    Tokens: 0 blank, 1..8 symbols, 9 delimiter. Input [b, T + 20]: 10 symbols drawn uniformly
    from the 8, then T - 1 blanks, the delimiter, and 10 blanks. Target [b, T + 20]: blanks for
    the first T + 10 steps, then the 10 symbols. A memoryless model predicts blank for T + 10
    steps and a uniform guess over the 8 symbols for the last 10: cross-entropy
    10 log 8 / (T + 20) per step (`baseline_loss`), the number to beat.
    """

    seq_len: int  # T

    num_symbols = 8
    copy_len = 10
    blank, delimiter = 0, 9
    vocab_size = 10
    input_size = 10  # unused: the model embeds the tokens
    output_size = 10
    readout = "all"

    def __post_init__(self):
        check_positive("data.seq_len", self.seq_len)

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "CopyMemoryTask":
        return cls(seq_len=config.data.seq_len)

    @property
    def baseline(self) -> float:
        return self.copy_len * math.log(self.num_symbols) / (self.seq_len + 2 * self.copy_len)

    def _batch(self, rng: np.random.Generator, batch_size: int) -> Batch:
        t, k = self.seq_len, self.copy_len
        symbols = rng.integers(1, self.num_symbols + 1, (batch_size, k)).astype(np.int32)
        inputs = np.zeros((batch_size, t + 2 * k), np.int32)
        inputs[:, :k] = symbols
        inputs[:, t + k - 1] = self.delimiter
        targets = np.zeros_like(inputs)
        targets[:, t + k:] = symbols
        return {"inputs": inputs, "targets": targets}

    def train_batch(self, seed: int, step: int, batch_size: int) -> Batch:
        return self._batch(stream_rng(seed, TRAIN_STREAM, step), batch_size)

    def eval_batch(self, seed: int, index: int, batch_size: int) -> Batch:
        return self._batch(stream_rng(seed, EVAL_STREAM, index), batch_size)

    def metrics(self, outputs: jax.Array, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, losses.Sums]:
        """outputs [b, T + 20, 10]: `loss` per step over the whole sequence (the paper's),
        `copy_accuracy` over the 10 recalled symbols, `baseline_loss` 10 log 8 / (T + 20)."""
        targets = batch["targets"]
        loss, sums = losses.language_model_metrics(outputs, targets)
        sums.pop("nll")  # not a language model: no perplexity or bits per character
        recall = jnp.zeros(targets.shape, jnp.float32).at[:, -self.copy_len:].set(1.0)
        _, recalled = losses.language_model_metrics(outputs, targets, recall)
        sums["copy_accuracy"] = recalled["accuracy"]
        sums["baseline_loss"] = _constant_pair(self.baseline, sums["loss"][1])
        return loss, sums


LABELS = ("every_step", "last")
PARITY_CLASSES = ("even", "odd")


@dataclasses.dataclass(frozen=True)
class ParityTask(Task):
    """Parity, a state-tracking task: input bits [b, T]; the target is the parity (XOR) of the
    bits so far, at every step (`labels="every_step"`, readout "all") or only at the end
    (`labels="last"`). No function of the current input alone beats chance: accuracy 0.5,
    cross-entropy ln 2 = 0.693 (`baseline_loss`). A two-state automaton solves it at any
    length; linear recurrences with positive diagonal transitions (e.g. minGRU) cannot
    (Grazzi et al. 2024), which makes it a test of what a cell can track.

    `eval_seq_len` (0: the training T) scores length generalisation on longer sequences.
    """

    seq_len: int
    labels: str = "every_step"
    eval_seq_len: int = 0
    plots: bool = True  # config.log.plots: final_report draws plots/confusion_matrix.png

    vocab_size = 2
    input_size = 2  # unused: the model embeds the bits
    output_size = 2
    baseline = math.log(2.0)
    REPORT_SEQUENCES = 1024  # eval sequences in the final report's confusion matrix

    def __post_init__(self):
        check_positive("data.seq_len", self.seq_len)
        check_choice("data.labels", self.labels, LABELS)
        check_non_negative("data.eval_seq_len", self.eval_seq_len, integer=True, note=" (0: data.seq_len)")

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "ParityTask":
        d = config.data
        return cls(seq_len=d.seq_len, labels=d.get("labels", "every_step"), eval_seq_len=d.get("eval_seq_len", 0),
                   plots=figures.wants_plots(config))

    @property
    def readout(self) -> str:
        return "all" if self.labels == "every_step" else "last"

    def _batch(self, rng: np.random.Generator, batch_size: int, t: int) -> Batch:
        bits = rng.integers(0, 2, (batch_size, t)).astype(np.int32)
        running = (np.cumsum(bits, axis=1) % 2).astype(np.int32)
        return {"inputs": bits, "targets": running if self.labels == "every_step" else running[:, -1]}

    def train_batch(self, seed: int, step: int, batch_size: int) -> Batch:
        return self._batch(stream_rng(seed, TRAIN_STREAM, step), batch_size, self.seq_len)

    def eval_batch(self, seed: int, index: int, batch_size: int) -> Batch:
        return self._batch(stream_rng(seed, EVAL_STREAM, index), batch_size, self.eval_seq_len or self.seq_len)

    def metrics(self, outputs: jax.Array, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, losses.Sums]:
        """outputs [b, t, 2] or [b, 2]: cross-entropy, accuracy, and ln 2 as `baseline_loss`."""
        if self.labels == "every_step":
            loss, sums = losses.language_model_metrics(outputs, batch["targets"])
            sums.pop("nll")  # not a language model: no perplexity or bits per character
        else:
            loss, sums = losses.classification_metrics(outputs, batch["targets"])
        sums["baseline_loss"] = _constant_pair(self.baseline, sums["loss"][1])
        return loss, sums

    def final_report(self, model, seed: int, workdir: str) -> tuple[str, dict[str, float]]:
        """With `plots`: the confusion matrix (even / odd; every step's or the last parity) over
        `REPORT_SEQUENCES` eval sequences, drawn into plots/confusion_matrix.png; nothing without."""
        if not self.plots:
            return "", {}
        counts = figures.held_out_confusion(self, model, seed, self.REPORT_SEQUENCES, PARITY_CLASSES, "targets")
        t = self.eval_seq_len or self.seq_len
        what = f"parity of {t} bits ({'every step' if self.labels == 'every_step' else 'last step'})"
        unit = "steps" if self.labels == "every_step" else "sequences"
        return figures.confusion_report(counts, PARITY_CLASSES, workdir, what, unit), {}
