"""The studies' library (gatedrnn.lab.studies, gatedrnn.lab.results) against independent facts, and every
study script end to end in its --quick mode."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gatedrnn import GRU, LSTM, ElmanRNN, scan_cell
from gatedrnn.lab import studies
from gatedrnn.lab.results import HEADER, reproduce_command, results_rows, summarize_run, train_time_s
from gatedrnn.train import ConfigError
from gatedrnn.train.config import default_config
from gatedrnn.train.loop import make_experiment

from paths import REPO as ROOT


def _adding_config(**overrides) -> ml_collections.ConfigDict:
    """configs/adding.py:smoke, built here by the same defaults (configs/ is not a package)."""
    config = default_config()
    config.task = "adding"
    config.data.seq_len = 10
    config = studies.shrink_for_quick_run(config, 10)
    return studies.with_overrides(config, overrides)


# ------------------------------------------------------------------------------ gradient norms


def _numpy_elman_losses(params, xs, v, targets):
    """Per-example (h_T . v - target)^2 of a tanh RNN, in float64 NumPy (a transcription of Elman 1990)."""
    h = np.zeros((xs.shape[0], params["r"].shape[0]))
    for t in range(xs.shape[1]):
        h = np.tanh(xs[:, t] @ params["w"] + h @ params["r"] + params["b"])
    return (h @ v - targets) ** 2


def test_input_gradient_norms_match_finite_differences():
    cell = ElmanRNN(input_size=2, hidden_size=5)
    params = cell.init(jax.random.key(0))
    params = {**params, "r": params["r"] * 3.0}  # gradients that survive a few steps
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(3, 6, 2)).astype(np.float32)
    v = rng.normal(size=(5,)).astype(np.float32)
    targets = rng.normal(size=(3,)).astype(np.float32)

    def loss_fn(x):
        ys, _ = scan_cell(cell, params, x)
        return jnp.square(ys[:, -1] @ jnp.asarray(v) - jnp.asarray(targets))

    norms = studies.input_gradient_norms(loss_fn, jnp.asarray(xs))

    p64 = {k: np.asarray(a, np.float64) for k, a in params.items()}
    x64, eps = xs.astype(np.float64), 1e-6
    grads = np.zeros_like(x64)
    for index in np.ndindex(*x64.shape):
        up, down = x64.copy(), x64.copy()
        up[index] += eps
        down[index] -= eps
        b = index[0]
        grads[index] = (_numpy_elman_losses(p64, up, v, targets)[b] - _numpy_elman_losses(p64, down, v, targets)[b]) / (2 * eps)
    expected = np.mean(np.linalg.norm(grads, axis=-1), axis=0)
    np.testing.assert_allclose(norms, expected, rtol=1e-3, atol=1e-7)
    assert norms[0] > 0 and norms.shape == (6,)


def test_without_recurrence_only_the_last_step_has_a_gradient():
    cell = ElmanRNN(input_size=2, hidden_size=4)
    params = {**cell.init(jax.random.key(1)), "r": jnp.zeros((4, 4))}
    loss_fn = lambda x: jnp.sum(scan_cell(cell, params, x)[0][:, -1], axis=-1)  # noqa: E731
    norms = studies.input_gradient_norms(loss_fn, jax.random.normal(jax.random.key(2), (2, 5, 2)))
    assert np.all(norms[:-1] == 0.0) and norms[-1] > 0
    np.testing.assert_array_equal(studies.time_lags(5), [4, 3, 2, 1, 0])


# ------------------------------------------------------------------------------ gates


@pytest.mark.parametrize("variant", ["V", "NP", "CIFG", "NFG", "NIG", "NOG", "NIAF", "NOAF"])
def test_lstm_gates_rebuild_the_cells_own_states(variant):
    cell = LSTM(input_size=3, hidden_size=4, **studies.GREFF_VARIANTS[variant])
    params = cell.init(jax.random.key(3))
    xs = jax.random.normal(jax.random.key(4), (2, 7, 3))
    g = studies.lstm_gates(cell, params, xs)
    ys, _ = scan_cell(cell, params, xs)
    np.testing.assert_allclose(g["y"], ys, rtol=1e-6, atol=1e-6)
    c_prev = np.concatenate([np.zeros_like(g["c"][:, :1]), g["c"][:, :-1]], axis=1)
    np.testing.assert_allclose(g["c"], g["f"] * c_prev + g["i"] * g["z"], rtol=1e-5, atol=1e-6)
    act = np.tanh(g["c"]) if cell.output_activation else g["c"]
    np.testing.assert_allclose(g["y"], g["o"] * act, rtol=1e-5, atol=1e-6)
    for name in "ifo":
        assert np.all((g[name] > 0) & (g[name] <= 1)), name
    if variant == "CIFG":
        np.testing.assert_allclose(g["i"], 1.0 - g["f"], atol=1e-7)


def test_gru_gates_rebuild_the_cells_own_states():
    cell = GRU(input_size=3, hidden_size=4)
    params = cell.init(jax.random.key(5))
    xs = jax.random.normal(jax.random.key(6), (2, 7, 3))
    g = studies.gru_gates(cell, params, xs)
    ys, _ = scan_cell(cell, params, xs)
    np.testing.assert_allclose(g["h"], ys, rtol=1e-6, atol=1e-6)
    h_prev = np.concatenate([np.zeros_like(g["h"][:, :1]), g["h"][:, :-1]], axis=1)
    np.testing.assert_allclose(g["h"], (1 - g["z"]) * g["n"] + g["z"] * h_prev, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ configs and runs


def test_cell_options_reach_the_cell():
    exp = make_experiment(_adding_config(**{"model.cell_options": {"peephole": True, "cifg": True}}))
    _, params = studies.load_params(exp.config)
    layer = params["rnn"]["layers"][0]["params"]
    assert {"p_f", "p_o"} <= set(layer) and "p_i" not in layer and layer["w"].shape == (2, 3, 8)
    with pytest.raises(ConfigError, match="peeholes"):
        make_experiment(_adding_config(**{"model.cell_options": {"peeholes": True}}))


@pytest.mark.slow
def test_load_params_gives_the_trained_model(tmp_path):
    config = _adding_config()
    (name, workdir), = studies.train_runs({"run": config}, str(tmp_path), report=lambda m: None).items()
    exp, trained = studies.load_params(config, workdir)
    _, initial = studies.load_params(config)
    assert not np.allclose(trained["head"]["kernel"], initial["head"]["kernel"])
    batch = exp.task.eval_batch(config.train.seed, 0, config.eval.batch_size)
    per_example = studies.model_loss_fn(exp, trained, jnp.asarray(batch["targets"]))(jnp.asarray(batch["inputs"]))
    logged = summarize_run(workdir)["eval_loss"]  # one eval batch: the logged eval MSE is this mean
    np.testing.assert_allclose(float(jnp.mean(per_example)), logged, rtol=1e-5)
    assert (tmp_path / "manifest.txt").read_text().split() == [workdir]


# ------------------------------------------------------------------------------ results table


def _fabricate_run(path, cell="rnn", seq_len=200, options=None):
    config = _adding_config(**{"model.cell": cell, "data.seq_len": seq_len, "train.num_steps": 300})
    if options:
        config = studies.with_overrides(config, {"model.cell_options": options})
    os.makedirs(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config.to_dict(), f)
    records = [
        {"step": 100, "loss": 0.2, "steps_per_s": 10.0},
        {"step": 200, "loss": 0.1, "steps_per_s": 50.0, "eval_loss": 0.05, "eval_baseline_mse": 0.16},
        {"step": 300, "loss": 0.1, "steps_per_s": 25.0, "eval_loss": 0.07, "eval_baseline_mse": 0.18},
    ]
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
        f.write('{"step": 40')  # a half-written last line (a killed writer) is skipped
    return config


def test_results_rows_from_a_fabricated_run(tmp_path):
    workdir = str(tmp_path / "adding200_rnn")
    _fabricate_run(workdir)
    s = summarize_run(workdir)
    assert (s["task"], s["cell"], s["seq_len"], s["steps"]) == ("adding", "rnn", 200, 300)
    assert (s["eval_loss"], s["best_eval_loss"]) == (0.07, 0.05)
    assert s["baseline"] == pytest.approx(0.17)
    assert s["train_time_s"] == pytest.approx(100 / 10 + 100 / 50 + 100 / 25)
    default = _adding_config().to_dict()
    (row,) = results_rows([s], {"adding": default}, "/runs/{name}")
    assert row[:11] == ["adding200_rnn", "adding", 200, "rnn", "-", 300, 0.07, 0.05, pytest.approx(0.17),
                        pytest.approx(0.07 / 0.17), "never"]
    assert "Le, Jaitly & Hinton 2015" in row[11] and row[12] == 16
    assert row[13] == ("python -m experiments.train --config=configs/adding.py --workdir=/runs/adding200_rnn "
                       "--config.data.seq_len=200 --config.model.cell=rnn --config.train.num_steps=300")
    assert len(row) == len(HEADER)
    assert train_time_s([{"step": 5}]) == 0.0


def test_solved_step_is_the_first_eval_below_a_tenth_of_the_baseline(tmp_path):
    _fabricate_run(str(tmp_path / "run"))
    records = [{"step": 100, "steps_per_s": 1.0, "eval_loss": 0.1, "eval_baseline_mse": 0.2},
               {"step": 200, "steps_per_s": 1.0, "eval_loss": 0.019, "eval_baseline_mse": 0.2},
               {"step": 300, "steps_per_s": 1.0, "eval_loss": 0.01, "eval_baseline_mse": 0.2}]
    with open(tmp_path / "run" / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    assert summarize_run(str(tmp_path / "run"))["solved_step"] == 200


def test_reproduce_command_names_the_cell_options():
    default = _adding_config().to_dict()
    config = _adding_config(**{"model.cell_options": {"peephole": True}}).to_dict()
    assert reproduce_command(config, default, "configs/adding.py", "/w") == (
        "python -m experiments.train --config=configs/adding.py --workdir=/w \"--config.model.cell_options={'peephole': True}\"")


def test_published_figures_only_where_they_apply(tmp_path):
    _fabricate_run(str(tmp_path / "short"), cell="lstm", seq_len=50)
    _fabricate_run(str(tmp_path / "variant"), cell="lstm", options={"peephole": True})
    _fabricate_run(str(tmp_path / "long"), cell="lstm")
    rows = results_rows([summarize_run(str(tmp_path / n)) for n in ("short", "variant", "long")])
    assert [row[11] != "-" for row in rows] == [False, False, True]


# ------------------------------------------------------------------------------ scripts


def _run_script(module, *args, timeout=300):
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_results_table_script(tmp_path):
    _fabricate_run(str(tmp_path / "adding200_rnn"))
    out = tmp_path / "results.md"
    _run_script("experiments.results_table", f"--runs={tmp_path / 'adding200_rnn'}", f"--out={out}",
                f"--csv={tmp_path / 'results.csv'}")
    text = out.read_text()
    assert "| adding200_rnn | adding | 200 | rnn | - | 300 | 0.07 | 0.05 | 0.17 | 0.4118 | never |" in text
    command = text.split("# adding200_rnn\n")[1].splitlines()[0]  # against configs/adding.py's own values
    assert command.startswith("python -m experiments.train --config=configs/adding.py --workdir=/tmp/adding200_rnn ")
    for override in ("--config.data.seq_len=200", "--config.model.cell=rnn", "--config.train.num_steps=300",
                     "--config.train.learning_rate=0.001"):
        assert f" {override}" in command
    assert (tmp_path / "results.csv").read_text().count("\n") == 2


@pytest.mark.slow
def test_study_vanishing_gradients_quick(tmp_path):
    stdout = _run_script("experiments.study_vanishing_gradients", "--quick", f"--out={tmp_path}", "--cells=rnn,lstm")
    assert "| lag | rnn (init) | rnn (trained) | lstm (init) | lstm (trained) |" in stdout
    for name in ("vanishing_gradients.png", "vanishing_gradients.csv", "vanishing_gradients.md"):
        assert (tmp_path / name).stat().st_size > 0
    lines = (tmp_path / "vanishing_gradients.csv").read_text().splitlines()
    assert len(lines) == 1 + 20 and lines[-1].startswith("0,")  # T=20 lags, the last row is lag 0


@pytest.mark.slow
def test_study_lstm_ablation_quick(tmp_path):
    stdout = _run_script("experiments.study_lstm_ablation", "--quick", f"--out={tmp_path}")
    assert "| V | peephole=True |" in stdout and "| NP | - |" in stdout
    assert (tmp_path / "lstm_ablation.png").stat().st_size > 0
    assert len((tmp_path / "manifest.txt").read_text().split()) == 2


@pytest.mark.slow
def test_study_cells_quick(tmp_path):
    stdout = _run_script("experiments.study_cells", "--quick", f"--out={tmp_path}")
    assert "| rnn |" in stdout and "| lstm |" in stdout
    assert (tmp_path / "cells.csv").read_text().splitlines()[0].startswith("cell,T=10 MSE")
