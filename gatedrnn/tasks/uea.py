"""Multivariate time-series classification from the UEA archive: speech and activity recognition.

JapaneseVowels (Kudo et al. 1999): 9 male speakers saying /ae/, 12 LPC cepstrum
coefficients per frame, 7-29 frames; 270 train / 370 test; the label is the speaker.
BasicMotions: accelerometer and gyroscope (6 channels) at 10 Hz for 10 s (100 steps) while
standing, walking, running or playing badminton; 40 train / 40 test, 4 classes.

Both read the `.ts` files that sktime ships (`sktime/datasets/data/<name>/<name>_{TRAIN,TEST}.ts`,
identical to aeon's) without importing sktime. Channels are standardized with the training
split's mean and standard deviation; sequences are zero-padded to the longest in the data set
and the true lengths go to the RNN as `seq_lengths` (padding never changes an output).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import ml_collections
import numpy as np

from gatedrnn.tasks.data import package_dir, pad_sequences
from gatedrnn.tasks.figures import wants_plots
from gatedrnn.tasks.splits import SplitClassification
from gatedrnn.validation import check_choice

DATASETS = ("JapaneseVowels", "BasicMotions")


def parse_ts(path: str) -> tuple[list[np.ndarray], list[str], list[str]]:
    """A sktime/aeon `.ts` file -> (series [t_i, d] float32, labels, the declared class labels).

    Format: `#` comments, `@key value` headers up to `@data`, then one case per line: the
    channels separated by `:`, values by `,`, the class label last.
    """
    series, labels, classes = [], [], []
    in_data = False
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                lower = line.lower()
                if lower.startswith("@classlabel"):
                    classes = line.split()[2:]
                in_data = lower.startswith("@data")
                continue
            *channels, label = line.split(":")
            series.append(np.asarray([[float(v) for v in c.split(",")] for c in channels], np.float32).T)
            labels.append(label.strip())
    return series, labels, classes


@functools.lru_cache(maxsize=len(DATASETS))
def load_uea(name: str) -> dict[str, np.ndarray]:
    """{"train_x" [n, T, d] standardized and zero-padded, "train_len" [n], "train_y" [n], test_*,
    "classes"}: labels are indices into the file's declared class labels."""
    check_choice("data.name", name, DATASETS)
    root = os.path.join(package_dir("sktime", name), "datasets", "data", name)
    split = {}
    for part in ("train", "test"):
        series, labels, classes = parse_ts(os.path.join(root, f"{name}_{part.upper()}.ts"))
        split[part] = (series, np.asarray([classes.index(l) for l in labels], np.int32))
    frames = np.concatenate(split["train"][0])
    mean, std = frames.mean(0), frames.std(0) + 1e-6
    max_len = max(len(s) for part in split.values() for s in part[0])
    out = {"classes": np.asarray(classes)}
    for part, (series, y) in split.items():
        x, lengths = pad_sequences([(s - mean) / std for s in series], max_len)
        out.update({f"{part}_x": x, f"{part}_len": lengths, f"{part}_y": y})
    return out


@dataclasses.dataclass(frozen=True)
class UEAClassificationTask(SplitClassification):
    """Variable-length multivariate classification; the readout is the last valid step.

    Inputs [b, T_max, d] with `seq_lengths` [b]; labels [b]; `baseline_accuracy` is the
    majority class of the test split (what a constant predictor scores).
    """

    name: str
    plots: bool = True  # config.log.plots: final_report draws plots/confusion_matrix.png

    vocab_size = None

    def __post_init__(self):
        check_choice("data.name", self.name, DATASETS)

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "UEAClassificationTask":
        return cls(name=config.data.name, plots=wants_plots(config))

    @property
    def data(self) -> dict[str, np.ndarray]:
        return load_uea(self.name)

    @property
    def input_size(self) -> int:
        return self.data["train_x"].shape[-1]
