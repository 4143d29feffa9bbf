"""Anomaly detection by forecasting error (after Malhotra et al. 2015, "LSTM-AD").

Data: a labelled univariate series that sktime ships as `sktime/datasets/data/<name>/<name>.csv`
(columns `data,label`; read with the csv module, without importing sktime):
  mitdb  7,500 points of an MIT-BIH ECG record; points 6,936-7,287 (352, one irregular beat
         and the pause after it) are labelled anomalous;
  yahoo  1,000 points of a Yahoo S5 series with 7 single-point anomalies (431 ... 846).

Regions, fixed per series (`REGIONS`); only the test region holds anomalies:
  train  [0, train_end)          every training target lies here (all normal);
  calib  [train_end, test_start) normal and never a training target: the eval loss (forecast
                                 MSE) is measured here and the detection threshold is set here;
  test   [test_start, N)         holds every anomaly; scored once, when the run ends.
A forecast's input window may reach back into earlier regions (it is the past, not a target).
Values are standardized with the train region's mean and standard deviation.

Forecast: origin o sees x[o-W:o] (W = `data.window`) and predicts x[o:o+H] (H = `data.horizon`).
Score (per point): every point t is forecast H times, from origins t-H+1 ... t;
  e_t = (1/H) sum_{h=0}^{H-1} (xhat[t | origin t-h] - x[t])^2,
  s_t = the mean of e over the `data.score_smoothing` points centred on t (1: no smoothing).
Threshold: tau = the `data.threshold_quantile` quantile of s over the calib region; a point is
flagged when s_t > tau. Scoring is per point: precision, recall and F1 of the flags against the
labels over the test region (not event-level, not "point-adjusted"). The same rule on the same
points with a persistence forecast (xhat[t | o] = x[o-1]) is the baseline; flagging every
point gives the always-anomalous F1; the best F1 over all thresholds on the test scores is
reported as `oracle_f1` (it looks at the labels: an upper bound, not a result).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
from typing import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from gatedrnn import losses
from gatedrnn.tasks import figures
from gatedrnn.tasks.base import Task
from gatedrnn.tasks.data import TRAIN_STREAM, eval_indices, package_file, stream_rng
from gatedrnn.validation import ConfigError, check_choice, check_positive

# name -> (train_end, test_start): train [0, train_end), calib [train_end, test_start), test after
REGIONS = {"mitdb": (3000, 5000), "yahoo": (300, 420)}
ANOMALY_PNG = "anomaly_scores.png"


@functools.lru_cache(maxsize=len(REGIONS))
def load_series(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(values float64 [N], labels int32 [N], 1 = anomalous) of sktime's `<name>.csv`."""
    check_choice("data.name", name, REGIONS)
    path = package_file("sktime", os.path.join("datasets", "data", name, f"{name}.csv"), "anomaly detection")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return np.asarray([float(r["data"]) for r in rows]), np.asarray([int(float(r["label"])) for r in rows], np.int32)


def detection_scores(flags: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Per-point precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2 P R / (P + R).

    flags, labels [n] of 0/1. A ratio whose denominator is 0 is 0.
    """
    flags, labels = np.asarray(flags, bool), np.asarray(labels, bool)
    tp = float(np.sum(flags & labels))
    fp = float(np.sum(flags & ~labels))
    fn = float(np.sum(~flags & labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def quantile_threshold(calib_scores: np.ndarray, quantile: float) -> float:
    """tau = the `quantile` quantile of the calibration scores (linear interpolation); flag s > tau."""
    return float(np.quantile(np.asarray(calib_scores, np.float64), quantile))


def best_f1(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(the highest F1 of the rule s > tau over every tau, that tau): the oracle threshold.

    Candidates: -inf (flag everything) and every distinct score value (flag the points above it).
    """
    candidates = np.concatenate([[-np.inf], np.unique(scores)])
    results = [(detection_scores(scores > tau, labels)["f1"], float(tau)) for tau in candidates]
    return max(results)


def smooth(errors: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average [n] -> [n] over the finite values among `width` points (NaN: none)."""
    errors = np.asarray(errors, np.float64)
    if width <= 1:
        return errors
    finite = np.isfinite(errors)
    kernel = np.ones(width)
    sums = np.convolve(np.where(finite, errors, 0.0), kernel, mode="same")
    counts = np.convolve(finite.astype(np.float64), kernel, mode="same")
    return np.where(counts > 0, sums / np.maximum(counts, 1.0), np.nan)


def point_errors(forecasts: np.ndarray, series: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """e_t [N] (NaN where not every horizon covers t) from forecasts [n_origins, H] made at `origins`.

    e_t = mean over h of (forecasts[origin t-h, h] - series[t])^2, for h = 0 .. H-1.
    """
    n, horizon = len(series), forecasts.shape[1]
    total, count = np.zeros(n), np.zeros(n)
    for h in range(horizon):
        t = origins + h
        ok = t < n
        np.add.at(total, t[ok], (forecasts[ok, h] - series[t[ok]]) ** 2)
        np.add.at(count, t[ok], 1.0)
    return np.where(count == horizon, total / np.maximum(count, 1.0), np.nan)


@functools.lru_cache(maxsize=len(REGIONS))
def standardized_series(name: str) -> np.ndarray:
    """(x - mean) / std, float32 [N], with the mean and std of the train region [0, train_end)."""
    x = load_series(name)[0]
    train = x[: REGIONS[name][0]]
    return ((x - train.mean()) / train.std()).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class AnomalyDetectionTask(Task):
    """inputs [b, window, 1] (standardized) -> outputs [b, horizon]: the next `horizon` values.

    Training origins keep their window and horizon inside the train region; the eval scores
    every origin whose horizon lies inside the calib region (normal, unseen), reporting the
    forecast MSE and `persistence_mse` (repeating the last value seen). The detection
    scores come from `final_report` (`final_metrics.json`, `report.txt`, and with `plots`
    plots/anomaly_scores.png).
    """

    name: str = "mitdb"
    window: int = 384
    horizon: int = 8
    threshold_quantile: float = 0.99
    score_smoothing: int = 1
    plots: bool = True  # config.log.plots: final_report draws plots/anomaly_scores.png

    input_size = 1
    readout = "last"
    vocab_size = None
    causal = False  # the targets follow the window: a bidirectional encoder of the window reads none of them

    def __post_init__(self):
        check_choice("data.name", self.name, REGIONS)
        for field in ("window", "horizon", "score_smoothing"):
            check_positive(f"data.{field}", getattr(self, field))
        q = self.threshold_quantile
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 < q < 1.0:
            raise ConfigError(f"data.threshold_quantile must lie in (0, 1) (exclusive), got {q!r}")
        train_end, test_start = REGIONS[self.name]
        if self.window + self.horizon > train_end or self.horizon > test_start - train_end:
            raise ConfigError(f"data.window + data.horizon = {self.window + self.horizon} must fit in the {self.name} "
                              f"train region ({train_end} points) and data.horizon in its calib region "
                              f"({test_start - train_end})")

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "AnomalyDetectionTask":
        d = config.data
        return cls(name=d.name, window=d.window, horizon=d.horizon, threshold_quantile=d.threshold_quantile,
                   score_smoothing=d.get("score_smoothing", 1), plots=figures.wants_plots(config))

    @property
    def output_size(self) -> int:
        return self.horizon

    @property
    def regions(self) -> tuple[int, int]:
        return REGIONS[self.name]

    @property
    def standardized(self) -> np.ndarray:
        return standardized_series(self.name)

    def _windows(self, origins: np.ndarray) -> dict[str, np.ndarray]:
        z = self.standardized
        return {"inputs": z[origins[:, None] + np.arange(-self.window, 0)][:, :, None],
                "targets": z[origins[:, None] + np.arange(self.horizon)]}

    def calib_origins(self) -> np.ndarray:
        train_end, test_start = self.regions
        return np.arange(train_end, test_start - self.horizon + 1)

    def train_batch(self, seed: int, step: int, batch_size: int) -> dict[str, np.ndarray]:
        """Origins drawn from (seed, step) with window and horizon inside the train region."""
        origins = stream_rng(seed, TRAIN_STREAM, step).integers(self.window, self.regions[0] - self.horizon + 1,
                                                                 batch_size)
        return {**self._windows(origins), "mask": np.ones(batch_size, np.float32)}

    def eval_batch(self, seed: int, index: int, batch_size: int) -> dict[str, np.ndarray]:
        """The calib origins in order; eval.num_batches * eval.batch_size >= their number scores them all."""
        origins = self.calib_origins()
        rows, mask = eval_indices(index, batch_size, len(origins))
        return {**self._windows(origins[rows]), "mask": mask}

    def metrics(self, outputs: jax.Array, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, losses.Sums]:
        targets, mask = batch["targets"], batch["mask"]
        cells = jnp.broadcast_to(mask[:, None], targets.shape)
        loss, sums = losses.regression_metrics(outputs, targets, cells)
        persistence = jnp.broadcast_to(batch["inputs"][:, -1, :], targets.shape)
        sums["persistence_mse"] = losses.regression_metrics(persistence, targets, cells)[1]["mse"]
        return loss, sums

    def forecasts(self, model, origins: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """The model's forecasts [n, horizon] (standardized) from `origins` [n], in batches of one
        shape (the last padded by repeating an origin), so the jitted forward compiles once."""
        forward = nnx.jit(lambda m, x: m(x))
        padded = np.concatenate([origins, np.repeat(origins[-1:], -len(origins) % batch_size)])
        out = [np.asarray(forward(model, jnp.asarray(self._windows(padded[i:i + batch_size])["inputs"])), np.float64)
               for i in range(0, len(padded), batch_size)]
        return np.concatenate(out)[: len(origins)]

    def detect(self, forecasts: np.ndarray, origins: np.ndarray) -> dict[str, object]:
        """Scores, threshold, flags and per-point P/R/F1 over the test region, from forecasts at `origins`.

        `origins` are `score_origins()` (or a superset), so every calib and test point but the
        last H-1 has all its H forecasts.
        """
        train_end, test_start = self.regions
        z = self.standardized.astype(np.float64)
        labels = load_series(self.name)[1]
        scores = smooth(point_errors(forecasts, z, origins), self.score_smoothing)
        tau = quantile_threshold(scores[train_end:test_start], self.threshold_quantile)
        test = slice(test_start, len(z) - self.horizon + 1)  # the last H-1 points lack forecasts
        flags = scores > tau
        return {"scores": scores, "threshold": tau, "flags": flags, "test": test,
                **detection_scores(flags[test], labels[test])}

    def score_origins(self) -> np.ndarray:
        """Every origin [n] whose horizon reaches a calib or test point."""
        return np.arange(self.regions[0] - self.horizon + 1, len(self.standardized) - self.horizon + 1)

    def final_report(self, model, seed: int, workdir: str) -> tuple[str, dict[str, float]]:
        """Detection on the test region by the trained model and by persistence: (report, test
        metrics for final_metrics.json); with `plots`, draws plots/anomaly_scores.png (`plot_detection`)."""
        del seed
        origins = self.score_origins()
        z = self.standardized.astype(np.float64)
        labels = load_series(self.name)[1]
        rnn = self.detect(self.forecasts(model, origins), origins)
        naive = self.detect(np.repeat(z[origins - 1][:, None], self.horizon, axis=1), origins)
        test = rnn["test"]
        oracle, oracle_tau = best_f1(rnn["scores"][test], labels[test])
        always = detection_scores(np.ones(len(labels[test]), bool), labels[test])
        metrics = {"f1": rnn["f1"], "precision": rnn["precision"], "recall": rnn["recall"], "threshold": rnn["threshold"],
                   "persistence_f1": naive["f1"], "persistence_precision": naive["precision"],
                   "persistence_recall": naive["recall"], "always_anomalous_f1": always["f1"], "oracle_f1": oracle}
        if self.plots:
            plot_detection(self, rnn, naive, figures.plots_path(workdir, ANOMALY_PNG))
        n_test, n_anom = len(labels[test]), int(labels[test].sum())
        return "\n".join([
            f"anomaly detection on {self.name}: test points {test.start}-{test.stop - 1} ({n_test}, {n_anom} anomalous), "
            f"per-point scores; threshold = {self.threshold_quantile} quantile of the calib-region scores",
            f"  RNN forecaster   F1 {rnn['f1']:.3f}  precision {rnn['precision']:.3f}  recall {rnn['recall']:.3f}",
            f"  persistence      F1 {naive['f1']:.3f}  precision {naive['precision']:.3f}  recall {naive['recall']:.3f}",
            f"  always anomalous F1 {always['f1']:.3f}",
            f"  oracle (best threshold on the test labels, not a result): RNN F1 {oracle:.3f} at tau {oracle_tau:.4g}",
            *([f"figure: {figures.PLOTS_DIR}/{ANOMALY_PNG}"] if self.plots else []),
        ]), {f"test_{k}": v for k, v in metrics.items()}


def plot_detection(task: AnomalyDetectionTask, rnn: Mapping[str, object], naive: Mapping[str, object], path: str):
    """The calib and test regions, three panels sharing the time axis; returns the Figure.

    Top: the series (raw values) with the labelled anomalies shaded red and the points the RNN
    flags marked. Middle, bottom: the RNN's and persistence's scores s_t (log scale) with their
    thresholds; flagged points (s_t > threshold) marked. A dashed line starts the test region.
    """
    train_end, test_start = task.regions
    x, labels = load_series(task.name)
    t = np.arange(train_end, len(x))
    fig, axes = figures.new_figure(3, 1, size=(14, 8.5), sharex=True)
    axes = axes[:, 0]
    for k, ax in enumerate(axes):
        ax.fill_between(t, 0, 1, where=labels[t] > 0, color="red", alpha=0.15, transform=ax.get_xaxis_transform(),
                        label="labelled anomalous" if k == 0 else None)
        ax.axvline(test_start, color="k", ls="--", lw=0.8)
    axes[0].plot(t, x[t], lw=0.6, color="C0", label="series")
    flagged = t[np.asarray(rnn["flags"])[t]]
    axes[0].plot(flagged, x[flagged], ".", ms=3, color="C3", label=f"flagged by the RNN ({len(flagged)} points)")
    axes[0].set_ylabel(f"{task.name} value")
    axes[0].set_title(f"{task.name}: calib region [{train_end}, {test_start}) | test region [{test_start}, {len(x)}): "
                      f"RNN F1 {rnn['f1']:.3f}, persistence F1 {naive['f1']:.3f} (per point, test region)")
    for ax, result, name in ((axes[1], rnn, "RNN forecast error"), (axes[2], naive, "persistence error")):
        scores = np.asarray(result["scores"])[t]
        ax.plot(t, np.maximum(scores, 1e-6), lw=0.6, color="C0", label=f"{name} (F1 {result['f1']:.3f})")
        over = t[np.asarray(result["flags"])[t]]
        ax.plot(over, np.maximum(np.asarray(result["scores"])[over], 1e-6), ".", ms=2, color="C3", label="flagged")
        ax.axhline(result["threshold"], color="k", lw=0.8,
                   label=f"threshold {result['threshold']:.3g} ({task.threshold_quantile} quantile of calib)")
        ax.set_yscale("log")
        ax.set_ylabel("score s_t\n(squared error, std. units)")
    for ax in axes:
        ax.legend(loc="upper left", fontsize=8)
    axes[-1].set_xlabel("time step (sample index)")
    figures.save_figure(fig, path, dpi=90)
    return fig
