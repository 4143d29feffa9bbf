"""Anomaly detection by forecasting error: the series, the regions, the scores, the threshold and P/R/F1."""

import dataclasses
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gatedrnn import losses
from gatedrnn.tasks.anomaly import (
    AnomalyDetectionTask,
    best_f1,
    detection_scores,
    load_series,
    point_errors,
    quantile_threshold,
    smooth,
    standardized_series,
)
from gatedrnn.tasks.data import MissingPackageError
from gatedrnn.train.config import ConfigError
from gatedrnn.train.model import SequenceModel

HAVE_DATA = importlib.util.find_spec("sktime") is not None
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="DATA-MISSING: anomaly detection needs sktime: "
                                                      "pip install -e '.[data]'")


def test_precision_recall_f1_by_hand():
    flags = np.array([1, 1, 0, 0, 1, 0, 0])
    labels = np.array([1, 0, 1, 0, 1, 1, 0])  # TP 2 (0, 4), FP 1 (1), FN 2 (2, 5)
    out = detection_scores(flags, labels)
    assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == pytest.approx(2 / 4)
    assert out["f1"] == pytest.approx(2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2))  # = 4/7
    assert detection_scores(np.zeros(7), labels) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    everything = detection_scores(np.ones(7), labels)
    assert everything["recall"] == 1.0 and everything["precision"] == pytest.approx(4 / 7)


def test_threshold_rule_and_oracle():
    scores = np.arange(1.0, 101.0)
    tau = quantile_threshold(scores, 0.9)
    assert tau == pytest.approx(90.1)  # linear interpolation at position 0.9 * 99 = 89.1
    assert int(np.sum(scores > tau)) == 10
    f1, at = best_f1(np.array([0.1, 0.9, 0.2, 0.8, 0.3]), np.array([0, 1, 0, 1, 0]))
    assert (f1, at) == (1.0, 0.3)  # flag > 0.3: exactly the two anomalies
    f1, _ = best_f1(np.array([0.5, 0.5]), np.array([1, 0]))
    assert f1 == pytest.approx(2 / 3)  # tied scores: only "flag both" finds the anomaly


def test_point_errors_and_smoothing_by_hand():
    series = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    origins = np.array([1, 2, 3, 4])
    forecasts = np.array([[1.0, 3.0], [2.0, 2.0], [4.0, 3.0], [4.0, 4.0]])  # H = 2: [x[o], x[o+1]]
    # t = 2: origin 2 (h 0) says 2, origin 1 (h 1) says 3 -> (0 + 1) / 2; t = 3: origin 3 says 4, origin 2 says 2
    # -> (1 + 1) / 2; t = 4: origin 4 says 4, origin 3 says 3 -> (0 + 1) / 2; t = 1, 5 have one forecast only.
    e = point_errors(forecasts, series, origins)
    np.testing.assert_allclose(e, [np.nan, np.nan, 0.5, 1.0, 0.5, np.nan])
    np.testing.assert_allclose(smooth(np.array([1.0, np.nan, 3.0, 5.0]), 3), [1.0, 2.0, 4.0, 4.0])
    np.testing.assert_allclose(smooth(np.array([1.0, 2.0, 6.0]), 1), [1.0, 2.0, 6.0])


@needs_data
def test_the_series_and_the_regions():
    x, labels = load_series("mitdb")
    assert x.shape == labels.shape == (7500,) and labels.sum() == 352
    np.testing.assert_array_equal(np.flatnonzero(labels), np.arange(6936, 7288))  # one event
    assert x[0] == pytest.approx(-0.195)
    y, yl = load_series("yahoo")
    assert y.shape == (1000,) and yl.sum() == 7 and np.flatnonzero(yl)[0] == 431
    task = AnomalyDetectionTask("mitdb", window=64, horizon=4)
    train_end, test_start = task.regions
    assert labels[:test_start].sum() == 0  # train and calib are normal
    z = standardized_series("mitdb")
    assert z[:train_end].mean() == pytest.approx(0.0, abs=1e-5) and z[:train_end].std() == pytest.approx(1.0, abs=1e-5)
    b = task.train_batch(0, 3, 512)
    assert b["inputs"].shape == (512, 64, 1) and b["targets"].shape == (512, 4)
    # every training window and target is a slice of the train region: find each window's origin
    starts = np.lib.stride_tricks.sliding_window_view(z, 68)
    found = [np.flatnonzero((starts == np.concatenate([w[:, 0], t])).all(1)) for w, t in zip(b["inputs"], b["targets"])]
    assert all(len(f) for f in found) and max(f[0] + 68 for f in found) <= train_end
    e = task.eval_batch(0, 0, 2048)
    origins = task.calib_origins()
    assert e["mask"].sum() == len(origins) == test_start - train_end - 4 + 1
    assert origins.min() == train_end and origins.max() + 4 <= test_start


@needs_data
def test_eval_reports_the_persistence_mse():
    task = AnomalyDetectionTask("mitdb", window=32, horizon=3)
    batch = task.eval_batch(0, 0, 64)
    z = standardized_series("mitdb").astype(np.float64)
    o = task.calib_origins()[:64]
    expect = np.mean([(z[oi - 1] - z[oi + h]) ** 2 for oi in o for h in range(3)])
    _, sums = task.metrics(jnp.zeros((64, 3), jnp.float32), {k: jnp.asarray(v) for k, v in batch.items()})
    out = losses.normalize(jax.device_get(sums))
    assert out["persistence_mse"] == pytest.approx(expect, rel=1e-5)
    assert out["mse"] == pytest.approx(np.mean([z[oi + h] ** 2 for oi in o for h in range(3)]), rel=1e-5)


@needs_data
def test_detection_with_persistence_against_a_direct_transcription():
    """detect() on persistence forecasts equals a loop over points: errors, smoothing, quantile, counts."""
    task = AnomalyDetectionTask("mitdb", window=16, horizon=3, threshold_quantile=0.95, score_smoothing=5)
    z = standardized_series("mitdb").astype(np.float64)
    labels = load_series("mitdb")[1]
    origins = task.score_origins()
    out = task.detect(np.repeat(z[origins - 1][:, None], 3, axis=1), origins)
    n, (train_end, test_start) = len(z), task.regions
    e = np.full(n, np.nan)
    for t in range(train_end, n - 2):  # t is forecast from origins t, t-1, t-2, each repeating x[origin - 1]
        e[t] = np.mean([(z[t - h - 1] - z[t]) ** 2 for h in range(3)])
    s = np.array([np.nanmean(e[max(0, t - 2): t + 3]) if np.isfinite(e[max(0, t - 2): t + 3]).any() else np.nan
                  for t in range(n)])
    np.testing.assert_allclose(out["scores"][train_end:n - 2], s[train_end:n - 2], rtol=1e-9)
    calib = np.sort(s[train_end:test_start])
    pos = 0.95 * (len(calib) - 1)
    tau = calib[int(pos)] + (pos - int(pos)) * (calib[int(pos) + 1] - calib[int(pos)])
    assert out["threshold"] == pytest.approx(tau)
    tp = fp = fn = 0
    for t in range(test_start, n - 2):
        flag, anomalous = s[t] > tau, labels[t] == 1
        tp, fp, fn = tp + (flag and anomalous), fp + (flag and not anomalous), fn + (not flag and anomalous)
    assert out["precision"] == pytest.approx(tp / (tp + fp)) and out["recall"] == pytest.approx(tp / (tp + fn))
    assert out["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))


@pytest.mark.slow
@needs_data
def test_final_report_writes_metrics_and_the_plot(tmp_path):
    task = AnomalyDetectionTask("mitdb", window=16, horizon=2)
    model = SequenceModel(cell="gru", input_size=1, hidden_size=4, output_size=2, readout="last", rngs=nnx.Rngs(0))
    report, metrics = task.final_report(model, 0, str(tmp_path))
    assert "persistence" in report and "oracle" in report
    for key in ("test_f1", "test_precision", "test_recall", "test_persistence_f1", "test_always_anomalous_f1",
                "test_oracle_f1", "test_threshold"):
        assert np.isfinite(metrics[key]), key
    assert metrics["test_always_anomalous_f1"] == pytest.approx(2 * 352 / (2 * 352 + 2499 - 352))  # test points 5000-7498
    assert metrics["test_oracle_f1"] >= max(metrics["test_f1"], metrics["test_always_anomalous_f1"]) - 1e-12
    assert report.endswith("figure: plots/anomaly_scores.png")
    assert os.path.getsize(tmp_path / "plots" / "anomaly_scores.png") > 10_000
    quiet, same = dataclasses.replace(task, plots=False).final_report(model, 0, str(tmp_path / "off"))  # plots off
    assert same == metrics and "figure" not in quiet and not os.path.exists(tmp_path / "off")


def test_bad_config_values_name_the_field_and_what_is_valid():
    with pytest.raises(ConfigError, match=r"^data.name='ecg' is not valid; choose one of \['mitdb', 'yahoo'\]$"):
        AnomalyDetectionTask("ecg")
    for q in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match=rf"^data.threshold_quantile must lie in \(0, 1\) \(exclusive\), got {q}$"):
            AnomalyDetectionTask("mitdb", threshold_quantile=q)
    with pytest.raises(ConfigError, match=r"^data.window must be a positive integer, got 0$"):
        AnomalyDetectionTask("mitdb", window=0)
    with pytest.raises(ConfigError, match=r"^data.window \+ data.horizon = 308 must fit in the yahoo train region"):
        AnomalyDetectionTask("yahoo", window=300, horizon=8)


def test_a_missing_package_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "sktime" else real(n, *a))
    load_series.cache_clear()
    standardized_series.cache_clear()
    try:
        with pytest.raises(MissingPackageError, match=r"^anomaly detection needs sktime: pip install -e '\.\[data\]'$"):
            AnomalyDetectionTask("mitdb").standardized
    finally:
        load_series.cache_clear()
        standardized_series.cache_clear()
