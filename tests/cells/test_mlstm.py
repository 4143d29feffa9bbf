"""mLSTM: the recurrent, parallel and chunkwise forms against each other, a NumPy transcription of
the paper's equations and NX-AI's native JAX kernels (`mlstm_kernels.jax`), in values and gradients,
with lengths, resets, reverse, initial carries, remat, bfloat16 and long sequences."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import mlstm_kernels_or_skip
from zoo import slow_unless
from gatedrnn import MLSTM, LSTM, ScanOptions, build_rnn, make_cell, scan_cell
from gatedrnn.cells.mlstm import MLSTMCarry
from gatedrnn.validation import ConfigError

from flax import nnx

MODES = ("sequential", "parallel", "chunkwise")


def _cell_and_params(seed=0, d=5, h=8, heads=2, scale=0.5, **options):
    """A cell whose params are moved off their (mostly zero) init so every gate matters."""
    cell = MLSTM(d, h, num_heads=heads, **options)
    params = cell.init(jax.random.key(seed))
    keys = iter(jax.random.split(jax.random.key(seed + 1), len(params)))
    params = {k: v + scale * jax.random.normal(next(keys), v.shape) for k, v in params.items()}
    return cell, params


def _xs(b, t, d, seed=3):
    return jax.random.normal(jax.random.key(seed), (b, t, d))


def _run(cell, params, xs, mode, chunk=None, **kw):
    return scan_cell(cell, params, xs, mode=mode, parallel_chunk=chunk, **kw)


def _close(a, b, rtol=2e-5, atol=2e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=rtol, atol=atol)


def numpy_mlstm(p, x, cell):
    """Beck et al. 2024, appendix (mLSTM forward with the stabiliser), one sequence x [T, d], float64."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    x = np.asarray(x, np.float64)
    heads, dk, dv = cell.num_heads, cell.key_size, cell.value_size
    C, n, m = np.zeros((heads, dk, dv)), np.zeros((heads, dk)), np.zeros(heads)
    ys = []
    for x_t in x:
        q = (x_t @ p["w_q"] + p["b_q"]).reshape(heads, dk)
        k = ((x_t @ p["w_k"] + p["b_k"]) / np.sqrt(dk)).reshape(heads, dk)
        v = (x_t @ p["w_v"] + p["b_v"]).reshape(heads, dv)
        i_pre = x_t @ p["w_i"] + p["b_i"]
        f_pre = x_t @ p["w_f"] + p["b_f"]
        o = 1 / (1 + np.exp(-(x_t @ p["w_o"] + p["b_o"])))
        log_f = -np.log1p(np.exp(-f_pre))  # log sigmoid
        h = np.zeros((heads, dv))
        for j in range(heads):
            m_new = max(log_f[j] + m[j], i_pre[j])
            i_s, f_s = np.exp(i_pre[j] - m_new), np.exp(log_f[j] + m[j] - m_new)
            C[j] = f_s * C[j] + i_s * np.outer(k[j], v[j])
            n[j] = f_s * n[j] + i_s * k[j]
            h[j] = C[j].T @ q[j] / (max(abs(n[j] @ q[j]), np.exp(-m_new)) + cell.eps)
            m[j] = m_new
        ys.append(o * h.reshape(-1))
    return np.stack(ys), (C, n, m)


@pytest.mark.parametrize("mode", MODES)
def test_every_form_equals_the_numpy_transcription_of_the_paper(mode):
    cell, params = _cell_and_params()
    xs = _xs(2, 23, 5)
    ys, carry = _run(cell, params, xs, mode, chunk=8 if mode == "chunkwise" else None)
    for b in range(2):
        want_y, (c, n, m) = numpy_mlstm(params, xs[b], cell)
        _close(ys[b], want_y, rtol=1e-4, atol=1e-4)
        # the paper scales k by 1/sqrt(dk), the official kernels (and we) scale q: C and n differ by sqrt(dk)
        root = np.sqrt(cell.key_size)
        _close((carry.c[b], carry.n[b], carry.m[b]), (c * root, n * root, m), rtol=1e-4, atol=1e-4)


def _official_inputs(cell, params, xs):
    """q, k, v [b, H, t, d] and the gate pre-activations [b, H, t] the official kernels take."""
    xp = cell.project(params, xs)
    mi = cell.memory_inputs(params, xp)
    heads_first = lambda a: jnp.moveaxis(a, 2, 1)  # noqa: E731
    q = heads_first(mi.q) * cell.key_size ** 0.5  # they scale q.k by dk^-0.5 themselves
    return (q, heads_first(mi.k), heads_first(mi.v), jnp.moveaxis(xp.i, 2, 1), jnp.moveaxis(xp.f, 2, 1)), xp


def _h_tilde(cell, ys, xp):
    """Undo the output gate: our y [b, t, H dv] -> h~ [b, H, t, dv] as the kernels return it."""
    h = ys / jax.nn.sigmoid(xp.o)
    return jnp.moveaxis(h.reshape(*h.shape[:2], cell.num_heads, cell.value_size), 2, 1)


def _official(fn, *args, **kwargs):
    with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
        return fn(*args, **kwargs)


@pytest.mark.parametrize("mode", MODES)
def test_every_form_equals_the_official_native_jax_kernels(mode):
    kernels = mlstm_kernels_or_skip()
    cell, params = _cell_and_params(seed=4)
    xs = _xs(2, 64, 5)
    ys, carry = _run(cell, params, xs, mode, chunk=16 if mode == "chunkwise" else None)
    args, xp = _official_inputs(cell, params, xs)
    h = _h_tilde(cell, ys, xp)
    ref_parallel = _official(kernels.parallel, *args)
    ref_chunkwise, (c, n, m) = _official(kernels.chunkwise, *args, chunk_size=16, return_last_states=True)
    ref_recurrent = _official(kernels.recurrent, *args)
    scale = float(jnp.abs(ref_recurrent).max())
    for ref in (ref_parallel, ref_chunkwise, ref_recurrent):
        _close(h, ref, rtol=1e-4, atol=1e-5 * scale)
    _close((carry.c, carry.n, carry.m), (c, n, m), rtol=1e-4, atol=1e-4)


def test_chunkwise_equals_the_official_kernel_from_an_initial_state_and_in_gradients():
    kernels = mlstm_kernels_or_skip()
    cell, params = _cell_and_params(seed=5)
    xs = _xs(2, 32, 5, seed=6)
    start = scan_cell(cell, params, _xs(2, 7, 5, seed=7))[1]

    def ours(params, xs):
        ys, carry = _run(cell, params, xs, "chunkwise", 8, initial_carry=start)
        return _h_tilde(cell, ys, cell.project(params, xs)), carry

    def theirs(params, xs):  # the same projections, then the official chunkwise kernel
        args, _ = _official_inputs(cell, params, xs)
        h, (c, n, m) = _official(kernels.chunkwise, *args, c_initial=start.c, n_initial=start.n, m_initial=start.m,
                                 chunk_size=8, return_last_states=True)
        return h, MLSTMCarry(c, n, m)

    _close(ours(params, xs), theirs(params, xs), rtol=1e-4, atol=1e-4)

    def loss(fn):
        return lambda p, x: jnp.sum(jnp.sin(fn(p, x)[0])) + jnp.sum(fn(p, x)[1].n)

    _close(jax.grad(loss(ours), argnums=(0, 1))(params, xs), jax.grad(loss(theirs), argnums=(0, 1))(params, xs),
           rtol=2e-4, atol=2e-4)


def _grads(cell, params, xs, mode, chunk=None, **kw):
    def loss(params, xs):
        ys, carry = _run(cell, params, xs, mode, chunk, **kw)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(jnp.cos(carry.c)) + jnp.sum(carry.n)

    return jax.grad(loss, argnums=(0, 1))(params, xs)


@pytest.mark.parametrize("mode,chunk", slow_unless([("parallel", None), ("chunkwise", 5), ("chunkwise", 64)],
                                                   [("chunkwise", 5)]))
def test_forms_agree_in_values_and_gradients_with_lengths_resets_reverse_and_initial_carry(mode, chunk):
    cell, params = _cell_and_params(seed=8)
    b, t = 3, 19
    xs = _xs(b, t, 5, seed=9)
    lengths = jnp.array([19, 11, 0], jnp.int32)
    resets = jax.random.bernoulli(jax.random.key(10), 0.2, (b, t))
    init = scan_cell(cell, params, _xs(b, 4, 5, seed=11))[1]
    for reverse in (False, True):
        kw = dict(seq_lengths=lengths, resets=resets, reverse=reverse, initial_carry=init)
        _close(_run(cell, params, xs, mode, chunk, **kw), _run(cell, params, xs, "sequential", **kw))
        _close(_grads(cell, params, xs, mode, chunk, **kw), _grads(cell, params, xs, "sequential", **kw),
               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", slow_unless(MODES, ["chunkwise"]))
def test_padding_never_reaches_the_arithmetic(mode):
    cell, params = _cell_and_params(seed=12)
    xs = _xs(2, 12, 5, seed=13)
    lengths = jnp.array([12, 7], jnp.int32)
    poisoned = xs.at[1, 7:].set(jnp.nan)
    ys, carry = _run(cell, params, poisoned, mode, chunk=4 if mode == "chunkwise" else None, seq_lengths=lengths)
    alone, alone_carry = _run(cell, params, xs[1:, :7], mode, chunk=4 if mode == "chunkwise" else None)
    _close(ys[1, :7], alone[0])
    assert np.all(np.asarray(ys[1, 7:]) == 0)
    _close(jax.tree.map(lambda a: a[1], carry), jax.tree.map(lambda a: a[0], alone_carry))
    g = _grads(cell, params, poisoned, mode, 4 if mode == "chunkwise" else None, seq_lengths=lengths)
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(g[0]))
    assert np.all(np.asarray(g[1][1, 7:]) == 0)


def test_a_long_sequence_stays_finite_where_the_naive_exponential_gate_overflows():
    cell, params = _cell_and_params(seed=14, scale=0.0)
    params = dict(params, b_i=jnp.full_like(params["b_i"], 100.0), b_f=jnp.full_like(params["b_f"], 8.0),
                  b_q=jnp.ones_like(params["b_q"]), b_k=jnp.ones_like(params["b_k"]))  # n.q well away from 0
    xs = _xs(1, 4096, 5, seed=15)
    i_pre = cell.project(params, xs).i
    assert not np.isfinite(np.asarray(jnp.exp(i_pre))).any()  # the unstabilised gate exp(i~) is inf everywhere
    outs = [_run(cell, params, xs, mode)[0] for mode in ("chunkwise", "sequential")]
    assert all(np.isfinite(np.asarray(o)).all() for o in outs)
    _close(outs[0], outs[1], rtol=1e-3, atol=1e-3)  # float32 sums over 4,096 steps
    g = _grads(cell, params, xs, "chunkwise")
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(g))


@pytest.mark.parametrize("mode", MODES)
def test_bfloat16_runs_its_memory_in_float32_and_stays_close(mode):
    cell, params = _cell_and_params(seed=16)
    xs = _xs(2, 40, 5, seed=17)
    ys32, _ = _run(cell, params, xs, mode)
    ys16, carry16 = _run(cell, params, xs, mode, dtype="bfloat16")
    assert ys16.dtype == jnp.bfloat16
    assert all(leaf.dtype == jnp.float32 for leaf in carry16)
    scale = float(jnp.abs(ys32).max())
    np.testing.assert_allclose(np.asarray(ys16, np.float32), np.asarray(ys32), atol=0.05 * scale)


@pytest.mark.slow
def test_remat_and_jit_give_the_same_values_and_gradients():
    cell, params = _cell_and_params(seed=18)
    xs = _xs(2, 30, 5, seed=19)
    plain = _grads(cell, params, xs, "chunkwise", 8)
    _close(_grads(cell, params, xs, "chunkwise", 8, remat=True), plain)
    jitted = jax.jit(lambda p, x: _grads(cell, p, x, "chunkwise", 8))
    _close(jitted(params, xs), plain)


def test_auto_mode_is_chunkwise_and_the_carry_is_the_stabilised_state():
    cell, params = _cell_and_params(seed=20)
    xs = _xs(2, 130, 5, seed=21)
    auto = scan_cell(cell, params, xs)
    _close(auto, scan_cell(cell, params, xs, options=ScanOptions(mode="chunkwise", parallel_chunk=64)), 0, 0)
    carry = auto[1]
    assert isinstance(carry, MLSTMCarry)
    assert carry.c.shape == (2, 2, 4, 4) and carry.n.shape == (2, 2, 4) and carry.m.shape == (2, 2)


def test_qkv_inputs_are_the_official_cell_of_the_block():
    cell = MLSTM(3 * 8, 8, num_heads=2, inputs="qkv", output_gate=False)
    params = cell.init(jax.random.key(0))
    assert set(params) == {"w_i", "b_i", "w_f", "b_f"} and params["w_i"].shape == (24, 2)
    np.testing.assert_array_equal(params["w_f"], 0)
    np.testing.assert_allclose(params["b_f"], np.linspace(3, 6, 2))
    xs = _xs(2, 9, 24)
    ys = {mode: _run(cell, params, xs, mode)[0] for mode in MODES}
    _close(ys["parallel"], ys["sequential"])
    _close(ys["chunkwise"], ys["sequential"])


def test_layers_and_configs_build_the_mlstm_by_name():
    rnn = build_rnn("mlstm", 5, 8, num_layers=2, rngs=nnx.Rngs(0), num_heads=2)
    x = _xs(2, 10, 5)
    y, _ = rnn(x, seq_lengths=jnp.array([10, 6], jnp.int32))
    assert y.shape == (2, 10, 8) and np.all(np.asarray(y[1, 6:]) == 0)
    assert isinstance(make_cell("mlstm", 5, 8, num_heads=4), MLSTM)


@pytest.mark.parametrize("options,message", [
    (dict(num_heads=3), "num_heads=3 must divide hidden_size=8"),
    (dict(qk_size=6, num_heads=4), "must divide qk_size=6"),
    (dict(inputs="qk"), "MLSTM.inputs"),
    (dict(forget_gate="tanh"), "MLSTM.forget_gate"),
    (dict(inputs="qkv", output_gate=False), "input_size = 2 * qk_size + hidden_size = 24"),
    (dict(eps=-1.0), "MLSTM.eps"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        MLSTM(5, 8, **options)
    assert "\n" not in str(err.value)


def test_parallel_modes_refuse_a_nonlinear_cell_and_name_the_cells_that_have_them():
    cell = LSTM(3, 4)
    with pytest.raises(ConfigError, match="mode='chunkwise' needs a cell .*mlstm"):
        scan_cell(cell, cell.init(jax.random.key(0)), jnp.zeros((1, 2, 3)), mode="chunkwise")
