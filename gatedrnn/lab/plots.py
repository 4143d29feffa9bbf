"""The studies' and notebooks' figures (matplotlib): gradient norms against the time lag, gate
heatmaps, and one column of dots per group.

`draw_*` draw on given Axes (the notebooks); `plot_*` write a PNG from a Figure on the Agg canvas
(the scripts), without pyplot, so a notebook's own backend stays as it is.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from gatedrnn.lab.gradients import time_lags
from gatedrnn.tasks.figures import new_figure, save_figure


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> None:
    save_figure(fig, path)


def draw_gradient_norms(ax, curves: Mapping[str, np.ndarray], title: str = "") -> None:
    """curves: label -> norms [t] (input step order), drawn on a matplotlib Axes against the
    time lag, log scale; labels "<cell> (<stage>)" share a color per cell, "init" ones are dashed;
    exact zeros (float32 underflow) are left out."""
    colors = {}
    for label, norms in curves.items():
        norms = np.asarray(norms, np.float64)
        color = colors.setdefault(label.split(" (")[0], f"C{len(colors)}")  # one color per cell
        ax.plot(time_lags(len(norms)), np.where(norms > 0, norms, np.nan), label=label, color=color,
                linestyle="--" if "init" in label else "-")
    ax.set_yscale("log")
    ax.set_xlabel("time lag T - 1 - t (steps before the readout)")
    ax.set_ylabel("mean || d loss / d x_t ||")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def plot_gradient_norms(curves: Mapping[str, np.ndarray], path: str, title: str = "") -> None:
    """`draw_gradient_norms` into a PNG file."""
    fig, axes = new_figure(size=(7, 4.5))
    ax = axes[0, 0]
    draw_gradient_norms(ax, curves, title)
    _save(fig, path)


def draw_gates(axes, gates: Mapping[str, np.ndarray], names: list[str], example: int = 0,
               markers: np.ndarray | None = None) -> None:
    """One heatmap per gate (units x time) of one example, from `lstm_gates` / `gru_gates`;
    `markers` [t] (e.g. the adding problem's marker channel) draws a vertical line at each nonzero step."""
    for ax, name in zip(axes, names):
        values = np.asarray(gates[name][example]).T  # [h, t]
        bounded = name in ("i", "f", "o", "r", "z") and np.all(values >= 0)
        im = ax.imshow(values, aspect="auto", interpolation="nearest", cmap="viridis" if bounded else "coolwarm",
                       vmin=0.0 if bounded else None, vmax=1.0 if bounded else None)
        ax.set_ylabel(f"{name}\nunit")
        if markers is not None:
            for t in np.flatnonzero(np.asarray(markers)):
                ax.axvline(t, color="white" if bounded else "black", linewidth=1, linestyle=":")
        ax.figure.colorbar(im, ax=ax, pad=0.01)
    axes[-1].set_xlabel("time step")


def plot_points(groups: Mapping[str, list[float]], path: str, ylabel: str, baseline: float | None = None,
                title: str = "") -> None:
    """One column per group: every value as a dot and the median as a bar (log scale)."""
    fig, axes = new_figure(size=(max(5.0, 0.8 * len(groups) + 2), 4.5))
    ax = axes[0, 0]
    for k, (name, values) in enumerate(groups.items()):
        values = np.maximum(np.asarray(values, np.float64), 1e-12)
        ax.scatter(np.full(len(values), k), values, color="C0", zorder=3)
        ax.hlines(np.median(values), k - 0.3, k + 0.3, color="C1", linewidth=2)
    if baseline is not None:
        ax.axhline(baseline, color="gray", linestyle=":", label=f"baseline {baseline:.3g}")
        ax.legend()
    ax.set_xticks(range(len(groups)), list(groups), rotation=30)
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    _save(fig, path)
