"""Cells against NumPy transcriptions of their papers' equations, gradients, dtypes, inits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from gatedrnn import CELLS, LSTM, ElmanRNN, LSTMCarry, make_cell, scan_cell

from zoo import FAST, NAMES, ZOO, slow_unless


def _perturbed_params(cell, seed=0):
    """Init params plus noise, so that LayerNorm gains/biases and zero inits are exercised too."""
    params = cell.init(jax.random.key(seed))
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
    noisy = [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, noisy)


@pytest.mark.parametrize("name", slow_unless(NAMES, FAST + ("rnn_tanh", "gru_cho", "ugrnn", "mingru")))
def test_cell_matches_numpy_transcription(name):
    cell, reference = ZOO[name]
    params = _perturbed_params(cell)
    x = np.random.default_rng(1).normal(size=(2, 9, cell.input_size)).astype(np.float32)
    ys, carry = scan_cell(cell, params, jnp.asarray(x))
    np_params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    for b in range(2):
        want_ys, want_carry = reference(np_params, x[b].astype(np.float64), cell)
        np.testing.assert_allclose(np.asarray(ys[b]), want_ys, atol=2e-5, rtol=1e-5)
        got = carry if not isinstance(carry, LSTMCarry) else (carry.c, carry.h)
        jax.tree.map(lambda g, w: np.testing.assert_allclose(np.asarray(g)[b], w, atol=2e-5, rtol=1e-5), got, want_carry)


@pytest.mark.parametrize(
    "name, vjp",
    slow_unless(
        [(name, "fused") for name in NAMES]  # the default path, every cell
        + [(name, "autodiff") for name in ("lstm_everything", "gru_cho", "mgu", "rnn_relu")],  # equal by test_scan
        (("lstm", "fused"), ("gru", "fused"), ("mgu", "autodiff")),
    ),
)
def test_check_grads_every_cell(name, vjp):
    cell, _ = ZOO[name]
    params = _perturbed_params(cell)
    x = jax.random.normal(jax.random.key(2), (2, 4, cell.input_size))

    def loss(params, x):
        ys, carry = scan_cell(cell, params, x, seq_lengths=jnp.array([4, 2]), reverse=True, vjp=vjp)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(c**2) for c in jax.tree.leaves(carry))

    with jax.enable_x64():
        params64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        check_grads(jax.jit(loss), (params64, x.astype(jnp.float64)), order=1, modes=["rev"] if vjp == "fused" else ["fwd", "rev"], atol=1e-4, rtol=1e-4)


# the dtype plumbing is the engine's: the analytic LSTM and GRU backwards, and the replayed one
# through LayerNorm (float32 statistics) and a projection
@pytest.mark.parametrize("name", ["lstm", "gru", "lstm_everything"])
def test_bfloat16_compute_with_float32_params(name):
    cell, _ = ZOO[name]
    params = cell.init(jax.random.key(0))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    x = jax.random.normal(jax.random.key(1), (2, 6, cell.input_size))
    run = jax.jit(lambda p, dtype: scan_cell(cell, p, x, dtype=dtype), static_argnums=1)
    y32, _ = run(params, None)
    y16, carry16 = run(params, jnp.bfloat16)
    assert y16.dtype == jnp.bfloat16
    assert all(c.dtype == jnp.bfloat16 for c in jax.tree.leaves(carry16))
    np.testing.assert_allclose(np.asarray(y16, np.float32), np.asarray(y32), atol=0.06, rtol=0.05)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(run(p, jnp.bfloat16)[0].astype(jnp.float32))))(params)
    assert all(g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_irnn_init_is_identity_recurrence():
    params = ElmanRNN(4, 6, nonlinearity="relu", identity_init=True).init(jax.random.key(0))
    np.testing.assert_array_equal(params["r"], np.eye(6))
    np.testing.assert_array_equal(params["b"], np.zeros(6))
    assert float(jnp.std(params["w"])) < 0.01


def test_forget_bias_shifts_only_the_forget_gate():
    plain = LSTM(4, 6).init(jax.random.key(0))
    shifted = LSTM(4, 6, forget_bias=1.0).init(jax.random.key(0))
    np.testing.assert_allclose(shifted["b"] - plain["b"], np.array([0, 1, 0, 0])[:, None] * np.ones((4, 6)), atol=1e-6)


def test_projection_is_one_matmul_over_time():
    """project() on [time, batch, d] equals project() applied one step at a time."""
    for name in NAMES:
        cell, _ = ZOO[name]
        params = _perturbed_params(cell)
        xs = jax.random.normal(jax.random.key(3), (5, 2, cell.input_size))
        whole = cell.project(params, xs)
        for t in range(5):
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a[t], b, atol=1e-6), whole, cell.project(params, xs[t]))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: make_cell("lstmm", 3, 4), "model.cell='lstmm' is not valid; choose one of"),
        (lambda: make_cell("gru", 3, 0), "GRU.hidden_size must be a positive integer, got 0"),
        (lambda: make_cell("rnn", -1, 4), "ElmanRNN.input_size must be a positive integer, got -1"),
        (lambda: ElmanRNN(3, 4, nonlinearity="sigmoid"), "ElmanRNN.nonlinearity='sigmoid' is not valid"),
        (lambda: LSTM(3, 4, proj_size=-2), "LSTM.proj_size must be a positive integer, got -2"),
    ],
)
def test_bad_hyperparameters_are_named(build, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build()


def test_registry_lists_every_cell():
    assert set(CELLS) == {"rnn", "lstm", "gru", "mgu", "ugrnn", "mingru", "minlstm", "lru", "rglru", "s6",
                          "slstm", "mlstm"}
    assert hash(LSTM(3, 4, peephole=True)) == hash(LSTM(3, 4, peephole=True))
