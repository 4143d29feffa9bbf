"""The studies' library (gatedrnn.lab.gradients, gates, runs, re-exported by gatedrnn.lab.studies) against
independent facts, a trained run read back by gatedrnn.train.runs.load_run, and every study script end to end
in its --quick mode."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gatedrnn import GRU, LSTM, ElmanRNN, scan_cell
from gatedrnn.lab import studies
from gatedrnn.lab.results import summarize_run
from gatedrnn.train import ConfigError
from gatedrnn.train.config import default_config
from gatedrnn.train.loop import make_experiment
from gatedrnn.train.runs import load_run

from paths import REPO as ROOT


def _adding_config(**overrides) -> ml_collections.ConfigDict:
    """The adding problem at T=10, shrunk by `shrink_for_quick_run` (10 steps), with dotted overrides."""
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


@pytest.mark.slow
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
    run = load_run(workdir)  # the config from the workdir's config.json
    assert run.step == config.train.num_steps and run.config.task == "adding"
    np.testing.assert_array_equal(run.params["head"]["kernel"], trained["head"]["kernel"])
    lstm, lstm_params = studies.first_layer_cell(run, run.params)  # the trained cell, from the model itself
    np.testing.assert_array_equal(lstm_params["r"], trained["rnn"]["layers"][0]["params"]["r"])
    assert lstm.hidden_size == config.model.hidden_size


# ------------------------------------------------------------------------------ scripts


def _run_script(module, *args, timeout=300):
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


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
