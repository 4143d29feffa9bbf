"""Helpers the tasks share: random streams, package data without importing the package, epochs, eval sets.

Every data set here ships inside a pip package of the `data` extra and is read from the
package's directory (found with `importlib.util.find_spec`, which does not import it: the
packages' own imports take seconds). A missing package is a `MissingPackageError`, one line
naming the extra. Shapes: n examples, b batch, t time, d features.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from gatedrnn.validation import ConfigError

TRAIN_STREAM, EVAL_STREAM = 0, 1  # `stream_rng` streams: training steps and eval batches
EXTRA = "pip install -e '.[data]'"


class MissingPackageError(ConfigError):
    """A task's data package is not installed: one line naming the extra to install."""


def package_dir(package: str, what: str) -> str:
    """The installed directory of `package` (not imported), or MissingPackageError."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(f"{what} needs {package}: {EXTRA}")
    return list(spec.submodule_search_locations)[0]


def package_file(package: str, relative: str, what: str) -> str:
    path = os.path.join(package_dir(package, what), relative)
    if not os.path.exists(path):
        raise MissingPackageError(f"{what}: {path} is missing from the installed {package}; reinstall it ({EXTRA})")
    return path


def stream_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """An independent NumPy generator per (seed, stream, index): a train step or an eval batch.

    Every task draws its batches from it, so a batch is a function of (seed, step) alone.
    """
    return np.random.default_rng([seed, stream, index])


def epoch_indices(seed: int, step: int, batch_size: int, n: int) -> np.ndarray:
    """Example indices [b] of training step `step`: epochs of a fresh permutation each.

    Position p = step * batch_size + i is example perm_e[p mod n] of epoch e = p // n, with
    perm_e drawn from (seed, e): every epoch sees every example once, and the batch is a
    function of (seed, step) alone, so a resumed run sees the same data.
    """
    positions = step * batch_size + np.arange(batch_size)
    epochs, offsets = np.divmod(positions, n)
    out = np.empty(batch_size, np.int64)
    for e in np.unique(epochs):
        perm = stream_rng(seed, TRAIN_STREAM, int(e)).permutation(n)
        sel = epochs == e
        out[sel] = perm[offsets[sel]]
    return out


def eval_indices(index: int, batch_size: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows [b] of eval batch `index` of a fixed set of n, in order, and a float32 mask [b].

    Past the end the rows repeat example 0 with mask 0, so batches keep one shape and a set
    that `eval.num_batches * eval.batch_size` covers is scored exactly once.
    """
    rows = index * batch_size + np.arange(batch_size)
    valid = rows < n
    return np.where(valid, rows, 0), valid.astype(np.float32)


def pad_sequences(seqs: list[np.ndarray], max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """[t_i, d] arrays -> zero-padded float32 [n, max_len, d] and int32 lengths [n]."""
    lengths = np.asarray([len(s) for s in seqs], np.int32)
    max_len = int(lengths.max()) if max_len is None else max_len
    out = np.zeros((len(seqs), max_len, seqs[0].shape[1]), np.float32)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, lengths
