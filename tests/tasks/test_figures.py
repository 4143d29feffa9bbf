"""The figures tasks write into <workdir>/plots/: confusion matrices (against sklearn), forecast vs
actual, anomaly scores; none when the config's log.plots is off."""

import dataclasses
import importlib.util
import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gatedrnn.tasks import figures
from gatedrnn.tasks.registry import make_task
from gatedrnn.train.config import default_config

sklearn_metrics = pytest.importorskip("sklearn.metrics")
HAVE_SKTIME = importlib.util.find_spec("sktime") is not None
HAVE_STATSMODELS = importlib.util.find_spec("statsmodels") is not None
needs_sktime = pytest.mark.skipif(not HAVE_SKTIME, reason="DATA-MISSING: needs sktime: pip install -e '.[data]'")
needs_statsmodels = pytest.mark.skipif(not HAVE_STATSMODELS,
                                       reason="DATA-MISSING: needs statsmodels: pip install -e '.[data]'")


def test_confusion_matrix_equals_sklearns_on_a_padded_batch_with_garbage_in_the_padding():
    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 5, (6, 40)), rng.integers(0, 5, (6, 40))
    mask = (rng.random((6, 40)) < 0.7).astype(np.float32)
    labels[mask == 0] = rng.choice([-1, 5, 99], int(np.sum(mask == 0)))  # out of range, but padding
    preds[mask == 0] = -7
    counts = figures.confusion_matrix(labels, preds, 5, mask)
    valid = mask > 0
    reference = sklearn_metrics.confusion_matrix(labels[valid], preds[valid], labels=range(5))
    np.testing.assert_array_equal(counts, reference)
    assert counts.sum() == valid.sum()
    with pytest.raises(ValueError, match="a valid label 99 lies outside the 5 classes"):
        figures.confusion_matrix(np.array([1, 99]), np.array([1, 1]), 5)


class Echo(nnx.Module):
    """Outputs its inputs: the 'logits' are whatever the batch holds."""

    def __call__(self, x, seq_lengths=None):
        return x


class MeanPool(nnx.Module):
    """logits = Linear(mean of x over the valid steps): a quick-to-build model that padding must not change."""

    def __init__(self, d: int, c: int):
        self.linear = nnx.Linear(d, c, rngs=nnx.Rngs(0))

    def __call__(self, x, seq_lengths=None):
        x = jnp.asarray(x, jnp.float32)
        x = x[:, :, None] if x.ndim == 2 else x
        t = x.shape[1]
        lengths = jnp.full((x.shape[0],), t, jnp.int32) if seq_lengths is None else jnp.asarray(seq_lengths, jnp.int32)
        m = (jnp.arange(t, dtype=jnp.int32)[None, :] < lengths[:, None]).astype(jnp.float32)[:, :, None]
        return self.linear(jnp.sum(x * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0))


@dataclasses.dataclass(frozen=True)
class EchoTask:
    def apply(self, model, batch, train):
        return model(batch["inputs"])


def test_predictions_skip_masked_rows_even_with_nan_logits():
    rng = np.random.default_rng(1)
    batches, expected_labels, expected_preds = [], [], []
    for _ in range(3):
        logits = rng.normal(size=(8, 4)).astype(np.float32)
        labels = rng.integers(0, 4, 8).astype(np.int32)
        mask = np.array([1, 1, 1, 1, 1, 0, 0, 0], np.float32)
        logits[mask == 0] = np.nan
        labels[mask == 0] = 3
        batches.append({"inputs": logits, "labels": labels, "mask": mask})
        expected_labels.append(labels[:5])
        expected_preds.append(np.argmax(logits[:5], axis=1))
    labels, preds, mask = figures.predict_classes(EchoTask(), Echo(), batches)
    counts = figures.confusion_matrix(labels, preds, 4, mask)
    reference = sklearn_metrics.confusion_matrix(np.concatenate(expected_labels), np.concatenate(expected_preds),
                                                 labels=range(4))
    np.testing.assert_array_equal(counts, reference)


def test_the_confusion_figure_shows_counts_class_names_and_the_accuracy(tmp_path):
    counts = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 4]])
    text = figures.confusion_report(counts, ["business", "sport", "tech"], str(tmp_path), "bbc_news test split")
    assert text.splitlines()[0] == "confusion matrix, bbc_news test split: accuracy 80.0% on 20 examples"
    assert text.splitlines()[-1] == "figure: plots/confusion_matrix.png"
    assert os.path.getsize(tmp_path / "plots" / "confusion_matrix.png") > 1000
    fig, axes = figures.new_figure()
    ax = axes[0, 0]
    figures.draw_confusion_matrix(ax, counts, ["business", "sport", "tech"], "t")
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class" and ax.get_title() == "t"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["business", "sport", "tech"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["business", "sport", "tech"]
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): int(t.get_text()) for t in ax.texts}
    assert cells == {(i, j): int(counts[i, j]) for i in range(3) for j in range(3)}  # (row true, column predicted)


def config_for(task, **data):
    config = default_config()
    config.task = task
    for key, value in data.items():
        config.data[key] = value
    return config


@pytest.mark.parametrize("plots", [True, False])
def test_tasks_take_plots_from_the_config(plots):
    config = config_for("parity", seq_len=8)
    config.log.plots = plots
    assert make_task(config).plots is plots
    if HAVE_SKTIME:
        config = config_for("uea_classification", name="BasicMotions")
        config.log.plots = plots
        assert make_task(config).plots is plots


@needs_sktime
def test_uea_report_counts_the_whole_test_split_as_one_unpadded_forward_does(tmp_path, monkeypatch):
    config = config_for("uea_classification", name="BasicMotions")
    task = make_task(config)
    model = MeanPool(task.input_size, task.output_size)
    d = task.data
    logits = np.asarray(model(jnp.asarray(d["test_x"]), jnp.asarray(d["test_len"])))  # all 40 at once, no padding rows
    reference = sklearn_metrics.confusion_matrix(d["test_y"], logits.argmax(-1), labels=range(task.output_size))
    classes = [str(c) for c in d["classes"]]
    monkeypatch.setattr(figures, "REPORT_BATCH", 16)  # 3 batches of 16 for 40 examples, the last half padding
    text, metrics = task.final_report(model, 0, str(tmp_path))
    assert metrics == {} and figures.format_confusion(reference, classes) in text  # the report's counts
    assert text.endswith("figure: plots/confusion_matrix.png")
    assert os.path.getsize(tmp_path / "plots" / "confusion_matrix.png") > 1000
    off = dataclasses.replace(task, plots=False)
    assert off.final_report(model, 0, str(tmp_path / "off")) == ("", {})
    assert not os.path.exists(tmp_path / "off")


def test_parity_report_is_a_two_class_confusion_matrix(tmp_path):
    task = make_task(config_for("parity", seq_len=6, labels="last"))
    model = MeanPool(1, 2)
    text, _ = task.final_report(model, 0, str(tmp_path))
    assert "parity of 6 bits (last step): accuracy" in text and f"on {task.REPORT_SEQUENCES} sequences" in text
    assert os.path.exists(tmp_path / "plots" / "confusion_matrix.png")


@needs_statsmodels
def test_forecast_figure_shows_the_series_and_forecasts_in_ppm_against_years(tmp_path):
    from gatedrnn.tasks.forecast import co2_monthly, month_years, plot_forecast

    task = make_task(config_for("co2_forecast", window=36, horizon=12, test_months=120, arima_baseline=False))
    model = MeanPool(1, 12)
    origins = task.eval_origins()
    forecasts = task.forecasts_ppm(model, origins)
    y = co2_monthly()
    windows = np.stack([(y[o - 36:o] - y[o - 1]) / task.scale for o in origins])[:, :, None].astype(np.float32)
    expected = y[origins - 1][:, None] + task.scale * np.asarray(model(jnp.asarray(windows)), np.float64)
    np.testing.assert_allclose(forecasts["model"], expected, rtol=1e-6)
    np.testing.assert_array_equal(forecasts["seasonal naive"], y[origins[:, None] + np.arange(12) - 12])
    assert month_years(0) == pytest.approx(1958 + 2.5 / 12)  # March 1958, the csv's first week: 19580329

    fig = plot_forecast(task, origins, forecasts, str(tmp_path / "f.png"))
    top, bottom = fig.axes
    assert (top.get_xlabel(), top.get_ylabel()) == ("year", "CO2 (ppm)")
    assert (bottom.get_xlabel(), bottom.get_ylabel()) == ("months ahead", "MAE (ppm)")
    labels = [line.get_label() for line in top.get_lines()]
    assert {"actual (monthly mean)", "model forecast", "seasonal naive forecast"} <= set(labels)
    actual = top.get_lines()[0]
    assert actual.get_xdata()[-1] == pytest.approx(2001 + 11.5 / 12)  # December 2001
    np.testing.assert_allclose(actual.get_ydata()[-120:], y[-120:])
    mae = next(line for line in bottom.get_lines() if line.get_label().startswith("model"))
    np.testing.assert_allclose(mae.get_ydata(), np.mean(np.abs(expected - y[origins[:, None] + np.arange(12)]), 0),
                               rtol=1e-6)

    text, metrics = task.final_report(model, 0, str(tmp_path))
    assert metrics == {} and text.endswith("figure: plots/forecast.png")
    assert os.path.getsize(tmp_path / "plots" / "forecast.png") > 10_000
    assert dataclasses.replace(task, plots=False).final_report(model, 0, str(tmp_path / "off")) == ("", {})
    assert not os.path.exists(tmp_path / "off")


@needs_sktime
def test_anomaly_figure_marks_labels_flags_and_thresholds(tmp_path):
    from gatedrnn.tasks.anomaly import AnomalyDetectionTask, plot_detection

    task = AnomalyDetectionTask("yahoo", window=16, horizon=2)
    origins = task.score_origins()
    z = task.standardized.astype(np.float64)
    naive = task.detect(np.repeat(z[origins - 1][:, None], 2, axis=1), origins)
    doubled = task.detect(np.repeat(z[origins - 1][:, None], 2, axis=1) * 2, origins)
    fig = plot_detection(task, doubled, naive, str(tmp_path / "a.png"))
    series, rnn, persistence = fig.axes
    assert series.get_ylabel() == "yahoo value" and persistence.get_xlabel() == "time step (sample index)"
    for ax, result in ((rnn, doubled), (persistence, naive)):
        assert ax.get_yscale() == "log"
        threshold = next(line for line in ax.get_lines() if line.get_label().startswith("threshold"))
        np.testing.assert_allclose(threshold.get_ydata(), [result["threshold"]] * 2)
        flagged = next(line for line in ax.get_lines() if line.get_label() == "flagged")
        assert len(flagged.get_xdata()) == int(np.sum(result["flags"][task.regions[0]:]))
    assert "F1" in series.get_title()
    assert os.path.getsize(tmp_path / "a.png") > 10_000
