"""Where the numbers go: `metrics.jsonl`, TensorBoard event files and PNG learning curves.

Only process 0 writes (the writer of every other process is a no-op). On resume, records
after the restored step (written by the interrupted run) are dropped from metrics.jsonl and
purged from TensorBoard, so the files read as if the run had never stopped.

`plot_learning_curves(records, path, title)` draws plots/learning_curves.png: one panel per unit
(loss, MSE, accuracy in %, errors in the task's units, learning rate), baselines as horizontal
lines on their metric's panel, identical curves once, log axes where values span decades (see
`learning_curve_panels`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Iterable

import numpy as np

from gatedrnn.tasks.figures import new_figure, save_figure
from gatedrnn.train.provenance import recorded_config_file, write_json

FINAL_METRICS = "final_metrics.json"


def write_final_metrics(workdir: str, metrics: dict[str, float]) -> str:
    """Numbers a task computes once when a run ends (e.g. beam-search error rates) -> <workdir>/final_metrics.json."""
    path = os.path.join(workdir, FINAL_METRICS)
    write_json(path, {k: float(v) for k, v in metrics.items()})  # atomically
    return path


def read_final_metrics(workdir: str) -> dict[str, float]:
    """<workdir>/final_metrics.json, or {} when there is none (the run has not finished, or its
    task's `final_report` returned no metrics)."""
    path = os.path.join(workdir, FINAL_METRICS)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def read_metrics(path: str) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl, skipping a half-written last line (a killed writer)."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


class MetricsWriter:
    def __init__(self, workdir: str, *, resume_step: int, enabled: bool, tensorboard: bool, plots: bool):
        self.enabled = enabled
        self.workdir = workdir
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.plot_path = os.path.join(workdir, "plots", "learning_curves.png")
        self.plots = plots
        self._tb = None
        if not enabled:
            return
        kept = [r for r in read_metrics(self.path) if r.get("step", math.inf) <= resume_step]
        with open(self.path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        self._file = open(self.path, "a")
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=resume_step + 1 if resume_step else None)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            step = record["step"]
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, step)

    def plot(self, title: str | None = None) -> str | None:
        """Writes plots/learning_curves.png from metrics.jsonl, titled `title` (default: `run_title`
        of the workdir); returns its path, or None when plots are off (`log.plots=False`) or this
        process does not write."""
        if not (self.enabled and self.plots):
            return None
        title = run_title(self.workdir) if title is None else title
        plot_learning_curves(read_metrics(self.path), self.plot_path, title)
        return self.plot_path

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._tb is not None:
            self._tb.close()


# ---- learning curves ------------------------------------------------------------------------------

# metrics (train or eval_) that are not drawn
_NOT_CURVES = ("step", "steps_per_s", "cpu_s", "perplexity")  # perplexity = exp(nll): the loss curve again
# a metric "<prefix>_<metric>" with one of these prefixes is a reference for <metric>, drawn as a line
BASELINE_PREFIXES = ("baseline", "persistence", "seasonal_naive", "arima", "unigram", "majority", "chance")
_ACRONYMS = {"mse": "MSE", "mae": "MAE", "per": "PER", "wer": "WER", "cer": "CER", "ctc": "CTC", "nll": "NLL",
             "arima": "ARIMA", "ppm": "ppm"}
_NAMES = {"bits_per_char": "bits/char", "nll_per_step": "NLL/step", "ctc_per_sequence": "CTC/sequence"}
_ORDER = ("loss", "mse", "nll_per_step", "bits_per_char", "error_rate", "accuracy")  # panels after the loss's
_DECADES = 1.5  # a panel whose positive values span more than this many decades gets a log axis


@dataclasses.dataclass
class Curve:
    label: str  # e.g. "eval MSE", or "eval loss = eval MSE" for identical curves drawn once
    steps: np.ndarray  # [n] training steps
    values: np.ndarray  # [n] in the panel's unit (accuracies and error rates in %)
    split: str  # "train" or "eval"


@dataclasses.dataclass
class Panel:
    """One y unit: its curves, its baselines (label, value) drawn as horizontal lines, its scale."""

    key: str  # the metric the panel shows, e.g. "mse", "accuracy", "mae_ppm", "learning_rate"
    title: str
    ylabel: str
    curves: list[Curve]
    baselines: list[tuple[str, float]]
    yscale: str = "linear"  # "linear", "log" or "symlog" (positive values spanning decades, with zeros)
    linthresh: float | None = None  # symlog only: the smallest positive value


def _pretty(name: str) -> str:
    if name in _NAMES:
        return _NAMES[name]
    return " ".join(_ACRONYMS.get(w, w) for w in name.split("_"))


def _split_key(key: str) -> tuple[str, str, str | None]:
    """'eval_seasonal_naive_mae_ppm' -> ('eval', 'mae_ppm', 'seasonal_naive'); 'loss' -> ('train', 'loss', None)."""
    split, name = ("eval", key[5:]) if key.startswith("eval_") else ("train", key)
    for prefix in BASELINE_PREFIXES:
        if name.startswith(prefix + "_"):
            return split, name[len(prefix) + 1:], prefix
    return split, name, None


def _kind(metric: str, loss_unit: str) -> tuple[str, str, str, float, bool]:
    """metric -> (panel key, panel title, y label, factor to the plotted unit, may use a log axis)."""
    if metric in ("loss", "nll"):
        return "loss", "loss", loss_unit, 1.0, True
    if metric == "mse":
        return "mse", "mean squared error", "MSE", 1.0, True
    if metric == "mae" or metric.startswith("mae_"):
        unit = metric[4:]
        suffix = f" ({unit})" if unit else ""
        return metric, "mean absolute error" + suffix, "MAE" + suffix, 1.0, True
    if metric.endswith("accuracy"):
        return "accuracy", "accuracy", "accuracy (%)", 100.0, False
    if metric in ("per", "wer", "cer") or metric.endswith("error_rate"):
        return "error_rate", "error rate", "error rate (%)", 100.0, True
    if metric == "bits_per_char":
        return "bits_per_char", "bits per character", "bits/char", 1.0, True
    if metric == "nll_per_step":
        return "nll_per_step", "negative log-likelihood", "NLL (nats/step)", 1.0, True
    if metric == "ctc_per_sequence":
        return metric, "CTC loss per sequence", "CTC loss (nats/sequence)", 1.0, True
    if metric == "learning_rate":
        return metric, "learning rate", "learning rate", 1.0, False  # the schedule's shape reads best linear
    return metric, _pretty(metric), _pretty(metric), 1.0, True


def _series(records: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["step"], float(r[key])) for r in records if "step" in r and isinstance(r.get(key), (int, float))
           and not isinstance(r.get(key), bool) and math.isfinite(r[key])]
    steps, values = zip(*pts) if pts else ((), ())
    return np.asarray(steps, np.float64), np.asarray(values, np.float64)


def _same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    """Two series with the same steps and the same values (to 1e-9 relative): one curve."""
    return (len(a[0]) > 0 and a[0].shape == b[0].shape and np.array_equal(a[0], b[0])
            and np.allclose(a[1], b[1], rtol=1e-9, atol=1e-15))


def learning_curve_panels(records: Iterable[dict[str, Any]]) -> list[Panel]:
    """The panels of `plot_learning_curves`: metrics grouped by unit, one panel per unit.

    - loss in its own panel ("loss (nats/token)" ...), unless it is identical to `mse`, `nll` or
      `nll_per_step` (regression: loss = MSE), when it joins that metric's panel;
    - curves identical at every step (eval_loss == eval_mse) are drawn once, labelled "a = b";
    - `mae` is left out when `mae_<unit>` exists (the same error in the task's units);
    - "<prefix>_<metric>" for a prefix of BASELINE_PREFIXES is a horizontal line (its eval value;
      the mean over training batches when the eval has none) on <metric>'s panel;
    - accuracies and error rates in %; learning rate last, linear; steps_per_s, cpu_s and
      perplexity are not drawn, nor bits_per_char (the loss / ln 2) unless a baseline is in bits;
    - a log y axis where the positive values (baselines included) span more than 1.5 decades
      (symlog when some values are exactly 0); accuracy and learning rate stay linear.
    """
    records = [r for r in records if isinstance(r, dict)]
    keys = list(dict.fromkeys(k for r in records for k in r if _split_key(k)[1] not in _NOT_CURVES))
    series = {k: s for k in keys if len((s := _series(records, k))[0])}
    names = {_split_key(k)[1] for k in series}
    if "bits_per_char" in names and not any(_split_key(k)[1:] == ("bits_per_char", "unigram") for k in series):
        series = {k: s for k, s in series.items() if _split_key(k)[1] != "bits_per_char"}  # nll / ln 2: the loss again
    loss_alias = next((m for m in ("mse", "nll", "nll_per_step") if m in names and all(
        _same(series[f"{p}loss"], series[f"{p}{m}"]) for p in ("", "eval_")
        if f"{p}loss" in series and f"{p}{m}" in series)), None)
    loss_unit = ("cross-entropy (nats/token)" if "nll" in names else "CTC loss (nats/label)"
                 if "ctc_per_sequence" in names else "cross-entropy (nats)" if names & {"accuracy", "copy_accuracy"}
                 else "loss")
    panels: dict[str, Panel] = {}
    factors: dict[str, tuple[float, bool]] = {}

    def panel_of(metric: str) -> Panel:
        key, title, ylabel, factor, log_ok = _kind(loss_alias if metric == "loss" and loss_alias else metric, loss_unit)
        factors[key] = (factor, log_ok)
        return panels.setdefault(key, Panel(key, title, ylabel, [], []))

    has_unit_mae = any(n.startswith("mae_") for n in names)
    curves = [k for k in series if _split_key(k)[2] is None and not (has_unit_mae and _split_key(k)[1] == "mae")]
    curves.sort(key=lambda k: (_split_key(k)[1] != "loss", _split_key(k)[1], _split_key(k)[0] != "train"))
    for key in curves:
        split, metric, _ = _split_key(key)
        if metric == "learning_rate" and split == "eval":
            continue
        panel = panel_of(metric)
        factor = factors[panel.key][0]
        steps, values = series[key]
        label = ("learning rate" if metric == "learning_rate" else
                 f"{split} {'MAE' if metric.startswith('mae_') else _pretty(metric)}")  # the unit is on the axis
        for curve in panel.curves:
            if curve.split == split and _same((curve.steps, curve.values / factor), (steps, values)):
                curve.label += f" = {_pretty(metric)}"
                break
        else:
            panel.curves.append(Curve(label, steps, values * factor, split))
    for key in series:
        split, metric, prefix = _split_key(key)
        if prefix is None or (split == "train" and f"eval_{key}" in series):
            continue
        if metric == "mae" and has_unit_mae:
            continue
        panel = panel_of(metric)
        values = series[key][1] * factors[panel.key][0]
        value = float(np.median(values) if split == "eval" else np.mean(values))
        where = "eval" if split == "eval" else "mean over training batches"
        percent = "%" if factors[panel.key][0] == 100.0 else ""
        panel.baselines.append((f"{_pretty(prefix)} ({where}) = {value:.4g}{percent}", value))
    loss_panel = panel_of("loss").key if "loss" in names else None
    panels = {k: p for k, p in panels.items() if p.curves or p.baselines}
    ordered = sorted(panels.values(), key=lambda p: (
        p.key != loss_panel, p.key == "learning_rate", not p.curves,
        _ORDER.index(p.key) if p.key in _ORDER else len(_ORDER), p.key))
    for panel in ordered:
        _choose_scale(panel, factors[panel.key][1])
    return ordered


def _choose_scale(panel: Panel, log_ok: bool) -> None:
    values = np.concatenate([c.values for c in panel.curves] + [np.asarray([v for _, v in panel.baselines])])
    positive = values[values > 0]
    if not log_ok or positive.size < 2 or np.any(values < 0):
        return
    if np.log10(positive.max() / positive.min()) > _DECADES:
        if positive.size == values.size:
            panel.yscale = "log"
        else:
            panel.yscale, panel.linthresh = "symlog", float(positive.min())


def draw_panel(ax, panel: Panel) -> None:
    """One `Panel` on a matplotlib Axes: curves (eval with markers), baselines as dashed lines."""
    for curve in panel.curves:
        few = len(curve.steps) < 30
        ax.plot(curve.steps, curve.values, label=curve.label, lw=1.0 if curve.split == "train" else 1.6,
                alpha=0.75 if curve.split == "train" else 1.0, marker="o" if few and curve.split == "eval" else
                ("." if few else None), ms=4)
    for k, (label, value) in enumerate(panel.baselines):
        ax.axhline(value, color=f"C{(len(panel.curves) + k) % 10}", ls="--", lw=1.2, label=label)
    if panel.yscale == "symlog":
        ax.set_yscale("symlog", linthresh=panel.linthresh)
    elif panel.yscale == "log":
        ax.set_yscale("log")
    ax.set_title(panel.title)
    ax.set_xlabel("training step")
    ax.set_ylabel(panel.ylabel)
    ax.grid(True, which="both" if panel.yscale != "linear" else "major", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def plot_learning_curves(records: Iterable[dict[str, Any]], path: str, title: str = ""):
    """metrics.jsonl records -> a PNG at `path`, one panel per unit (`learning_curve_panels`),
    titled `title` (e.g. `run_title(workdir)`); returns the matplotlib Figure (drawn on the Agg
    canvas, nothing left open: its `axes` are the panels, in order)."""
    panels = learning_curve_panels(records)
    ncols = min(max(len(panels), 1), 3)
    nrows = max(1, -(-len(panels) // ncols))
    fig, axes = new_figure(nrows, ncols, size=(5.2 * ncols, 3.9 * nrows + 0.4))
    axes = list(axes.reshape(-1))
    for ax, panel in zip(axes, panels):
        draw_panel(ax, panel)
    for ax in axes[max(len(panels), 1):]:
        ax.remove()
    if not panels:
        axes[0].text(0.5, 0.5, "no metrics recorded", ha="center", va="center", transform=axes[0].transAxes)
    if title:
        fig.suptitle(title)
    save_figure(fig, path)
    return fig


_CONFIG_JSON = "config.json"  # gatedrnn.train.runs.CONFIG_JSON (runs imports this module)


def run_title(workdir: str) -> str:
    """"<task> <data.name>: <cell>, <h> units x <layers> layer(s), <n> steps (<config file>)" from the
    workdir's config.json and the --config of run.json (or config_file.txt), each left out when missing."""
    parts = []
    try:
        with open(os.path.join(workdir, _CONFIG_JSON)) as f:
            config = json.load(f)
    except (OSError, json.JSONDecodeError):
        config = {}
    if config:
        data, model = config.get("data") or {}, config.get("model") or {}
        what = " ".join(str(v) for v in (config.get("task"), data.get("name")) if v)
        layers = model.get("num_layers", 1)
        arch = f"{model.get('cell')}, {model.get('hidden_size')} units x {layers} layer{'s' if layers != 1 else ''}"
        parts.append(f"{what}: {arch}, {(config.get('train') or {}).get('num_steps')} steps")
    config_file = recorded_config_file(workdir)
    if config_file:
        parts.append(f"({config_file})")
    return " ".join(parts)
