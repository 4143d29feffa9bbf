"""The figures a run writes into `<workdir>/plots/`, and the matplotlib plumbing they share with
the learning curves (`gatedrnn.train.metrics.plot_learning_curves`).

A figure here is a `matplotlib.figure.Figure` drawn on the Agg canvas: pyplot is never imported
(no global backend switch, nothing left open), so a `plot_*` can return its Figure for a test or a
notebook to inspect. `draw_*` draw on given Axes. Tasks write their figures from `final_report`
when their `plots` field (`config.log.plots`, see `wants_plots`) is on.

Classification: `confusion_matrix` counts [c, c] (rows: true class, columns: predicted class) over
the valid entries of a padded batch; `confusion_report` draws it into plots/confusion_matrix.png.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Sequence

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

PLOTS_DIR = "plots"  # <workdir>/plots/: learning_curves.png and the task's figures
CONFUSION_PNG = "confusion_matrix.png"


def wants_plots(config: ml_collections.ConfigDict) -> bool:
    """`config.log.plots` (True for a config without a `log` group): whether a run writes PNGs."""
    log = config.get("log", None)
    return True if log is None else bool(log.get("plots", True))


def plots_path(workdir: str, name: str) -> str:
    """<workdir>/plots/<name>."""
    return os.path.join(workdir, PLOTS_DIR, name)


def new_figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6.4, 4.8), **subplots: Any):
    """(Figure, axes [nrows, ncols] ndarray of Axes) on the Agg canvas, with constrained layout."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False, **subplots)


def save_figure(fig, path: str, dpi: int = 100) -> str:
    """Writes `fig` as a PNG at `path` (its folder created); returns `path`."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int,
                     mask: np.ndarray | None = None) -> np.ndarray:
    """counts int64 [c, c]: counts[i, j] = the valid entries of true class i predicted as class j.

    labels, preds: integer arrays of one shape (any); mask: the same shape, entries of mask 0
    (padding) are skipped whatever their label or prediction. A valid label or prediction
    outside [0, c) is a ValueError.
    """
    labels, preds = np.asarray(labels).reshape(-1), np.asarray(preds).reshape(-1)
    if labels.shape != preds.shape:
        raise ValueError(f"labels and preds must have one shape, got {np.shape(labels)} and {np.shape(preds)}")
    valid = np.ones(labels.shape, bool) if mask is None else np.asarray(mask).reshape(-1) > 0
    labels, preds = labels[valid].astype(np.int64), preds[valid].astype(np.int64)
    for name, values in (("label", labels), ("prediction", preds)):
        bad = values[(values < 0) | (values >= num_classes)]
        if bad.size:
            raise ValueError(f"a valid {name} {int(bad[0])} lies outside the {num_classes} classes [0, {num_classes})")
    return np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def predict_classes(task, model: nnx.Module, batches: Iterable[Mapping[str, np.ndarray]],
                    label_key: str = "labels") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, argmax predictions, mask), each flat [n], of `task.apply(model, batch, train=False)`
    over `batches` (a batch's `mask` [b] is broadcast over its labels; no mask: all valid).

    Every batch should have one shape: the forward is jitted and compiles once per shape.
    """
    forward = nnx.jit(lambda m, b: task.apply(m, b, False))
    labels, preds, masks = [], [], []
    for batch in batches:
        logits = np.asarray(forward(model, {k: jnp.asarray(v) for k, v in batch.items()}))
        y = np.asarray(batch[label_key])
        mask = np.asarray(batch["mask"]) if "mask" in batch else np.ones(y.shape[:1], np.float32)
        labels.append(y.reshape(-1))
        preds.append(np.argmax(logits, axis=-1).reshape(-1))
        masks.append(np.broadcast_to(mask.reshape(mask.shape + (1,) * (y.ndim - mask.ndim)), y.shape).reshape(-1))
    return np.concatenate(labels), np.concatenate(preds), np.concatenate(masks)


def draw_confusion_matrix(ax, counts: np.ndarray, class_names: Sequence[str] | None = None, title: str = "") -> None:
    """counts [c, c] (rows true, columns predicted) on `ax`: each cell's count written in it, its
    color the fraction of its true class (row) predicted so (the recall on the diagonal)."""
    counts = np.asarray(counts)
    c = counts.shape[0]
    names = [str(n) for n in class_names] if class_names is not None else [str(i) for i in range(c)]
    fractions = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, label="fraction of the true class", shrink=0.8)
    if c <= 30:
        for i in range(c):
            for j in range(c):
                ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=8 if c > 10 else 10,
                        color="white" if fractions[i, j] > 0.5 else "black")
    rotate = max(len(n) for n in names) > 3
    ax.set_xticks(range(c), names, rotation=45 if rotate else 0, ha="right" if rotate else "center",
                  rotation_mode="anchor")
    ax.set_yticks(range(c), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)


def plot_confusion_matrix(counts: np.ndarray, class_names: Sequence[str] | None, path: str, title: str = ""):
    """`draw_confusion_matrix` into a PNG at `path`; returns the Figure."""
    c = np.asarray(counts).shape[0]
    side = min(4.0 + 0.45 * c, 12.0)
    fig, axes = new_figure(size=(side + 1.5, side))
    draw_confusion_matrix(axes[0, 0], counts, class_names, title)
    save_figure(fig, path)
    return fig


def accuracy_of(counts: np.ndarray) -> float:
    """trace / total of a confusion matrix (NaN when it counts nothing)."""
    total = np.sum(counts)
    return float(np.trace(counts) / total) if total else float("nan")


def format_confusion(counts: np.ndarray, class_names: Sequence[str]) -> str:
    """The matrix as text: one row per true class, one column per predicted class."""
    names = [str(n) for n in class_names]
    first = max(len(n) for n in names)
    width = max(first, len(str(int(np.max(counts, initial=0))))) + 1
    lines = ["rows: true class, columns: predicted class", " " * first + "".join(n.rjust(width) for n in names)]
    lines += [n.ljust(first) + "".join(str(int(v)).rjust(width) for v in row) for n, row in zip(names, counts)]
    return "\n".join("  " + line for line in lines)


def confusion_report(counts: np.ndarray, class_names: Sequence[str], workdir: str, what: str,
                     unit: str = "examples") -> str:
    """Draws plots/confusion_matrix.png (titled "<what>: accuracy A% on N <unit>") and returns the
    report text: the title, the matrix as text and "figure: plots/confusion_matrix.png"."""
    title = f"{what}: accuracy {100 * accuracy_of(counts):.1f}% on {int(np.sum(counts))} {unit}"
    plot_confusion_matrix(counts, class_names, plots_path(workdir, CONFUSION_PNG), title)
    return "\n".join([f"confusion matrix, {title}", format_confusion(counts, class_names),
                      f"figure: {PLOTS_DIR}/{CONFUSION_PNG}"])


REPORT_BATCH = 256  # examples per forward pass when a final report scores a held-out set


def held_out_confusion(task, model: nnx.Module, seed: int, num_examples: int, class_names: Sequence[str],
                       label_key: str = "labels") -> np.ndarray:
    """The confusion matrix [c, c] of `model` on `task.eval_batch(seed, i, b)` for the batches that
    cover `num_examples` (padding rows carry mask 0 and are not counted)."""
    batch = min(REPORT_BATCH, num_examples)
    batches = (task.eval_batch(seed, i, batch) for i in range(-(-num_examples // batch)))
    labels, preds, mask = predict_classes(task, model, batches, label_key)
    return confusion_matrix(labels, preds, len(class_names), mask)
