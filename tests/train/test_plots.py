"""Learning curves: one panel per unit, labelled axes, baselines on their metric's panel, identical
curves drawn once, log axes over decades, a run title; no PNG when plots are off."""

import json
import os

import numpy as np
import pytest

from gatedrnn.train import runs
from gatedrnn.train.metrics import MetricsWriter, learning_curve_panels, plot_learning_curves, run_title

PNG = b"\x89PNG\r\n\x1a\n"


def regression_records():
    """An adding-problem-like run: loss = mse, eval_loss = eval_mse, falling 3 decades."""
    records = []
    for k, step in enumerate(range(100, 2100, 100)):
        mse = 0.2 * 10 ** (-3 * k / 19)
        r = {"step": step, "loss": mse, "mse": mse, "mae": 0.35 - 0.01 * k, "baseline_mse": 0.16 + 0.01 * (k % 3),
             "learning_rate": 1e-3 * (1 - k / 20), "steps_per_s": 50.0 + k, "cpu_s": 3.0 * k}
        if step % 500 == 0:
            emse = 1.1 * mse
            r.update(eval_loss=emse, eval_mse=emse, eval_mae=0.36 - 0.01 * k, eval_baseline_mse=1 / 6)
        records.append(r)
    return records


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_regression_curves_one_line_for_identical_loss_and_mse_and_a_baseline_line(tmp_path):
    records = regression_records()
    path = str(tmp_path / "plots" / "lc.png")
    fig = plot_learning_curves(records, path, title="adding: lstm, 8 units x 1 layer (configs/adding.py)")
    with open(path, "rb") as f:
        assert f.read(8) == PNG
    assert fig.get_suptitle() == "adding: lstm, 8 units x 1 layer (configs/adding.py)"
    assert [ax.get_title() for ax in fig.axes] == ["mean squared error", "mean absolute error", "learning rate"]
    assert all(ax.get_xlabel() == "training step" for ax in fig.axes)
    mse, mae, lr = fig.axes
    assert mse.get_ylabel() == "MSE" and mse.get_yscale() == "log"  # 3 decades
    assert mae.get_ylabel() == "MAE" and mae.get_yscale() == "linear"  # 0.36 -> 0.17
    assert lr.get_ylabel() == "learning rate" and lr.get_yscale() == "linear"
    lines = lines_by_label(mse)
    assert set(lines) == {"train loss = MSE", "eval loss = MSE", "baseline (eval) = 0.1667"}
    evals = [r for r in records if "eval_mse" in r]
    np.testing.assert_array_equal(lines["eval loss = MSE"].get_xdata(), [r["step"] for r in evals])
    np.testing.assert_allclose(lines["eval loss = MSE"].get_ydata(), [r["eval_mse"] for r in evals])
    np.testing.assert_allclose(lines["baseline (eval) = 0.1667"].get_ydata(), [1 / 6, 1 / 6])  # a horizontal line
    assert not any("baseline" in label for ax in (mae, lr) for label in lines_by_label(ax))
    drawn = {label for ax in fig.axes for label in lines_by_label(ax)}
    assert not any("steps" in label or "cpu" in label for label in drawn)
    assert all(ax.get_legend() is not None for ax in fig.axes)


def test_a_loss_that_differs_from_mse_keeps_its_own_panel():
    records = regression_records()
    for r in records:
        if "eval_loss" in r:
            r["eval_loss"] = r["eval_mse"] + 0.01  # e.g. a weight-decayed objective
    panels = learning_curve_panels(records)
    assert [p.key for p in panels] == ["loss", "mse", "mae", "learning_rate"]
    assert [c.label for c in panels[0].curves] == ["train loss", "eval loss"]
    assert [c.label for c in panels[1].curves] == ["train MSE", "eval MSE"]
    assert panels[1].baselines == [("baseline (eval) = 0.1667", pytest.approx(1 / 6))]


def test_classification_accuracy_in_percent_with_its_baseline_and_a_nats_loss_axis(tmp_path):
    records = [{"step": s, "loss": 2.3 / s, "accuracy": min(0.01 * s, 0.99), "baseline_accuracy": 0.25,
                "eval_loss": 2.4 / s, "eval_accuracy": min(0.009 * s, 0.98), "eval_baseline_accuracy": 0.2}
               for s in range(1, 101)]
    fig = plot_learning_curves(records, str(tmp_path / "lc.png"), title="t")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]  # no learning rate recorded
    loss, acc = fig.axes
    assert loss.get_ylabel() == "cross-entropy (nats)" and loss.get_yscale() == "log"  # 2.3 -> 0.023
    assert set(lines_by_label(loss)) == {"train loss", "eval loss"}  # the baseline accuracy is not on the loss axis
    assert acc.get_ylabel() == "accuracy (%)" and acc.get_yscale() == "linear"  # 1% -> 99% stays linear
    lines = lines_by_label(acc)
    assert set(lines) == {"train accuracy", "eval accuracy", "baseline (eval) = 20%"}  # the eval one, not the train one
    np.testing.assert_allclose(lines["eval accuracy"].get_ydata(), [100 * r["eval_accuracy"] for r in records])
    np.testing.assert_allclose(lines["baseline (eval) = 20%"].get_ydata(), [20.0, 20.0])


def test_errors_in_the_tasks_units_with_every_baseline_on_that_panel():
    """co2_forecast: mae_ppm replaces the scaled mae; seasonal naive and ARIMA on the ppm panel."""
    records = [{"step": s, "loss": 20.0 / s, "mse": 20.0 / s, "mae": 3.0 / s, "mae_ppm": 2.0 / s,
                "seasonal_naive_mae_ppm": 1.3, "eval_loss": 21.0 / s, "eval_mse": 21.0 / s, "eval_mae": 3.1 / s,
                "eval_mae_ppm": 2.1 / s, "eval_seasonal_naive_mae_ppm": 1.57, "eval_arima_mae_ppm": 0.48}
               for s in (1, 2, 4, 8)]
    panels = {p.key: p for p in learning_curve_panels(records)}
    assert list(panels) == ["mse", "mae_ppm"]
    ppm = panels["mae_ppm"]
    assert ppm.ylabel == "MAE (ppm)" and [c.label for c in ppm.curves] == ["train MAE", "eval MAE"]
    assert sorted(ppm.baselines) == [("ARIMA (eval) = 0.48", 0.48), ("seasonal naive (eval) = 1.57", 1.57)]
    assert panels["mse"].baselines == []


def test_zeros_and_non_finite_values_never_make_a_misleading_axis():
    records = [{"step": s, "loss": 1.0 / s, "eval_per": max(0.5 / s**2, 0.0) if s < 9 else 0.0,
                "eval_wer": float("nan") if s == 3 else 0.9 / s} for s in range(1, 11)]
    panels = {p.key: p for p in learning_curve_panels(records)}
    errors = panels["error_rate"]
    assert errors.ylabel == "error rate (%)"
    assert errors.yscale == "symlog" and errors.linthresh == pytest.approx(100 * 0.5 / 64)  # zeros: symlog, not log
    wer = next(c for c in errors.curves if c.label == "eval WER")
    assert 3 not in wer.steps and np.all(np.isfinite(wer.values))
    assert panels["loss"].yscale == "linear"  # 1 -> 0.1: one decade


def test_no_records_still_write_a_figure(tmp_path):
    fig = plot_learning_curves([], str(tmp_path / "lc.png"))
    assert os.path.getsize(tmp_path / "lc.png") > 0 and len(fig.axes) == 1


def write_run_files(workdir, config_file=None):
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump({"task": "uea_classification", "data": {"name": "JapaneseVowels"},
                   "model": {"cell": "gru", "hidden_size": 32, "num_layers": 2}, "train": {"num_steps": 600}}, f)
    if config_file:
        with open(os.path.join(workdir, runs.CONFIG_FILE), "w") as f:
            f.write(config_file + "\n")


def test_the_title_names_task_cell_and_config_file(tmp_path):
    workdir = str(tmp_path)
    write_run_files(workdir)
    assert run_title(workdir) == "uea_classification JapaneseVowels: gru, 32 units x 2 layers, 600 steps"
    write_run_files(workdir, "configs/japanese_vowels.py")
    assert run_title(workdir) == ("uea_classification JapaneseVowels: gru, 32 units x 2 layers, 600 steps "
                                  "(configs/japanese_vowels.py)")
    with open(os.path.join(workdir, "run.json"), "w") as f:  # what train_and_evaluate records at the start
        json.dump({"config_file": "configs/japanese_vowels.py:smoke"}, f)
    assert run_title(workdir).endswith("600 steps (configs/japanese_vowels.py:smoke)")
    assert run_title(str(tmp_path / "missing")) == ""


@pytest.mark.parametrize("plots", [True, False])
def test_the_writer_plots_only_when_plots_are_on(tmp_path, plots):
    workdir = str(tmp_path)
    write_run_files(workdir, "configs/japanese_vowels.py")
    writer = MetricsWriter(workdir, resume_step=0, enabled=True, tensorboard=False, plots=plots)
    for r in regression_records():
        writer.write(r)
    writer.close()
    path = writer.plot()
    if plots:
        assert path == os.path.join(workdir, "plots", "learning_curves.png")
        with open(path, "rb") as f:
            assert f.read(8) == PNG
    else:
        assert path is None and not os.path.exists(os.path.join(workdir, "plots"))


def test_language_model_bits_per_char_only_with_its_unigram_baseline_and_no_perplexity():
    def records(with_unigram):
        out = []
        for s in (10, 20, 30):
            nll = 3.0 / s
            r = {"step": s, "loss": nll, "nll": nll, "bits_per_char": nll / np.log(2), "perplexity": np.exp(nll),
                 "eval_loss": nll, "eval_nll": nll, "eval_bits_per_char": nll / np.log(2), "eval_perplexity": 9.0}
            if with_unigram:
                r["eval_unigram_bits_per_char"] = 4.58
            out.append(r)
        return out

    panels = {p.key: p for p in learning_curve_panels(records(with_unigram=True))}
    assert list(panels) == ["loss", "bits_per_char"]
    assert panels["loss"].ylabel == "cross-entropy (nats/token)"
    assert [c.label for c in panels["loss"].curves] == ["train loss = NLL", "eval loss = NLL"]
    assert [c.label for c in panels["bits_per_char"].curves] == ["train bits/char", "eval bits/char"]
    assert panels["bits_per_char"].baselines == [("unigram (eval) = 4.58", 4.58)]
    assert [p.key for p in learning_curve_panels(records(with_unigram=False))] == ["loss"]  # nll / ln 2 is the loss
