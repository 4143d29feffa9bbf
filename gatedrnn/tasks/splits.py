"""Classification on a fixed train / test split held in memory: the batching and metrics the
UEA and text-classification tasks share.

A subclass provides `data`: {"train_x" [n, T, ...], "train_len" [n], "train_y" [n], test_*,
"classes"}. Train batches are epochs of the training split drawn from (seed, step); the eval
scores the whole test split in order (masked padding rows, see `gatedrnn.tasks.data.eval_indices`).
"""

from __future__ import annotations

from typing import Mapping

import jax
import numpy as np

from gatedrnn import losses
from gatedrnn.tasks import figures
from gatedrnn.tasks.base import Task
from gatedrnn.tasks.data import epoch_indices, eval_indices


class SplitClassification(Task):
    """inputs [b, T, ...] with `seq_lengths` [b] -> logits [b, classes] at the last valid step."""

    readout = "last"
    data: dict[str, np.ndarray]  # provided by the subclass
    name: str  # the data set, for figure titles
    plots: bool = True  # config.log.plots: final_report draws plots/confusion_matrix.png (a subclass field)

    @property
    def output_size(self) -> int:
        return len(self.data["classes"])

    @property
    def majority_class(self) -> int:
        return int(np.bincount(self.data["test_y"]).argmax())

    @property
    def baseline_accuracy(self) -> float:
        """The accuracy of always predicting the test split's majority class."""
        y = self.data["test_y"]
        return float(np.mean(y == self.majority_class))

    def _rows(self, part: str, rows: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        d = self.data
        return {"inputs": d[f"{part}_x"][rows], "seq_lengths": d[f"{part}_len"][rows], "labels": d[f"{part}_y"][rows],
                "mask": mask}

    def train_batch(self, seed: int, step: int, batch_size: int) -> dict[str, np.ndarray]:
        rows = epoch_indices(seed, step, batch_size, len(self.data["train_y"]))
        return self._rows("train", rows, np.ones(batch_size, np.float32))

    def eval_batch(self, seed: int, index: int, batch_size: int) -> dict[str, np.ndarray]:
        """The test split in order (eval.num_batches * eval.batch_size >= its size scores all of it)."""
        rows, mask = eval_indices(index, batch_size, len(self.data["test_y"]))
        return self._rows("test", rows, mask)

    def metrics(self, outputs: jax.Array, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, losses.Sums]:
        """Cross-entropy and accuracy, plus `baseline_accuracy` (always the test split's majority class)."""
        loss, sums = losses.classification_metrics(outputs, batch["labels"], batch["mask"])
        sums["baseline_accuracy"] = losses.constant_accuracy(batch["labels"], self.majority_class, batch["mask"])
        return loss, sums

    def final_report(self, model, seed: int, workdir: str) -> tuple[str, dict[str, float]]:
        """With `plots`: the confusion matrix of the whole test split, drawn into
        plots/confusion_matrix.png and written into the report; nothing without."""
        if not self.plots:
            return "", {}
        classes = [str(c) for c in self.data["classes"]]
        counts = figures.held_out_confusion(self, model, seed, len(self.data["test_y"]), classes)
        return figures.confusion_report(counts, classes, workdir, f"{self.name} test split"), {}
