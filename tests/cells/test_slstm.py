"""sLSTM (xLSTM, Beck et al. 2024): NumPy transcription of the paper, NX-AI's official PyTorch cell,
its init, the engine's options (lengths, reverse, resets, remat, dtypes, VJPs) and long sequences."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from gatedrnn import SLSTM, SLSTMCarry, build_rnn, make_cell, scan_cell
from gatedrnn.validation import ConfigError

from conftest import xlstm_or_skip

# --- a NumPy transcription of the paper's equations (Beck et al. 2024, appendix: sLSTM forward) -----


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def numpy_slstm(params, x, cell, carry=None):
    """x [T, d] float64 -> (h [T, h], (c, n, m, h) final, (C, N) unstabilised final).

    Pre-activations W x + R h + b with R block-diagonal (head j: h[j k:(j+1) k] @ r[j] [k, 4, k]),
    gates (i, f, z, o). Stabilised: m_t = max(log f_t + m_{t-1}, log i_t), m_t = log i_t from a zero
    state (the official code's first step); unstabilised beside it: C = f C + i z, N = f N + i.
    """
    hsz, nh = cell.hidden_size, cell.num_heads
    k = hsz // nh
    c, n, m, h = (np.zeros(hsz) for _ in range(4)) if carry is None else (np.asarray(a, np.float64) for a in carry)
    big_c, big_n = c * np.exp(m), n * np.exp(m)
    b = np.zeros((4, hsz)) if "b" not in params else np.concatenate([params["b"][j] for j in range(nh)], axis=-1)
    ys = []
    for x_t in x:
        wx = np.einsum("a,agb->gb", x_t, params["w"]) if cell.inputs == "dense" else x_t.reshape(4, hsz)
        rh = np.concatenate([np.einsum("a,agb->gb", h[j * k:(j + 1) * k], params["r"][j]) for j in range(nh)], axis=-1)
        i_t, f_t, z_t, o_t = wx + rh + b
        log_i = i_t
        log_f = np.log(_sigmoid(f_t)) if cell.forget_gate == "sigmoid" else f_t
        m_new = np.where(n == 0, log_i, np.maximum(log_f + m, log_i))
        i_s, f_s = np.exp(log_i - m_new), np.where(n == 0, 1.0, np.exp(log_f + m - m_new))
        c = f_s * c + i_s * np.tanh(z_t)
        n = f_s * n + i_s
        m = m_new
        h = _sigmoid(o_t) * c / n
        big_c = np.exp(log_f) * big_c + np.exp(log_i) * np.tanh(z_t)
        big_n = np.exp(log_f) * big_n + np.exp(log_i)
        np.testing.assert_allclose(h, _sigmoid(o_t) * big_c / big_n, rtol=1e-9, atol=1e-12)  # m cancels in c / n
        ys.append(h)
    return np.stack(ys), (c, n, m, h), (big_c, big_n)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))  # one compilation, not one per eager op
def _params(cell, seed=0, scale=0.5):
    """Init params plus noise (r is zeros at init, which would hide the recurrence)."""
    params = cell.init(jax.random.key(seed))
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
    return jax.tree.unflatten(treedef, [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def _scan(cell, params, x, **kw):
    """scan_cell under jit (eagerly, every small op outside the loop would compile on its own)."""
    reverse = kw.pop("reverse", False)
    return jax.jit(lambda p, x, kw: scan_cell(cell, p, x, reverse=reverse, **kw))(params, x, kw)


def _inputs(cell, shape, seed=1, scale=1.0):
    return scale * jax.random.normal(jax.random.key(seed), (*shape, cell.input_size))


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
@pytest.mark.parametrize("inputs, num_heads",
                         [("dense", 4), ("gates", 2), pytest.param("dense", 1, marks=pytest.mark.slow)])
def test_matches_numpy_transcription_of_the_paper(forget_gate, inputs, num_heads):
    hsz = 8
    cell = SLSTM(4 * hsz if inputs == "gates" else 3, hsz, num_heads=num_heads, forget_gate=forget_gate, inputs=inputs)
    params = _params(cell)
    x = _inputs(cell, (2, 9), scale=2.0)
    ys, carry = _scan(cell, params, x)
    assert isinstance(carry, SLSTMCarry) and all(a.shape == (2, hsz) for a in carry)
    np_params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    for b in range(2):
        want_ys, want_carry, (big_c, big_n) = numpy_slstm(np_params, np.asarray(x[b], np.float64), cell)
        np.testing.assert_allclose(ys[b], want_ys, atol=2e-6, rtol=2e-5)
        for got, want in zip(carry, want_carry):
            np.testing.assert_allclose(got[b], want, atol=2e-6, rtol=2e-5)
        np.testing.assert_allclose(carry.c[b] * np.exp(carry.m[b]), big_c, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(carry.n[b] * np.exp(carry.m[b]), big_n, rtol=1e-4)


def test_from_a_nonzero_carry_and_a_zero_state_per_sequence():
    """A given carry runs the max rule; a sequence whose n is zero starts as from zeros, whatever the others."""
    cell = SLSTM(3, 8, num_heads=2)
    params = _params(cell)
    x = _inputs(cell, (2, 5))
    key = jax.random.split(jax.random.key(7), 3)
    carry0 = SLSTMCarry(jax.random.normal(key[0], (2, 8)), jnp.exp(jax.random.normal(key[1], (2, 8))),
                        jax.random.normal(key[2], (2, 8)), jnp.tanh(jax.random.normal(key[0], (2, 8))))
    carry0 = carry0._replace(**{f: getattr(carry0, f).at[1].set(0.0) for f in SLSTMCarry._fields})
    ys, carry = _scan(cell, params, x, initial_carry=carry0)
    np_params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    for b in range(2):
        want_ys, want_carry, _ = numpy_slstm(np_params, np.asarray(x[b], np.float64), cell, [a[b] for a in carry0])
        np.testing.assert_allclose(ys[b], want_ys, atol=2e-6, rtol=2e-5)
        for got, want in zip(carry, want_carry):
            np.testing.assert_allclose(got[b], want, atol=2e-6, rtol=2e-5)


# --- the official PyTorch sLSTM (NX-AI xlstm, vanilla backend) --------------------------------------


def _official_cell(hidden_size, num_heads, **kw):
    xlstm_or_skip()
    from xlstm.blocks.slstm.cell import sLSTMCell, sLSTMCellConfig

    return sLSTMCell(sLSTMCellConfig(hidden_size=hidden_size, num_heads=num_heads, backend="vanilla",
                                     dtype="float32", output_shape="BSH", **kw))


@pytest.mark.torch
@pytest.mark.parametrize("num_heads, inputs, from_zeros", [
    (4, "gates", True), pytest.param(2, "dense", True, marks=pytest.mark.slow),
    pytest.param(4, "gates", False, marks=pytest.mark.slow)])
def test_equals_the_official_pytorch_slstm_values_and_gradients(num_heads, inputs, from_zeros):
    import torch

    hsz, batch, time, d = 16, 3, 7, 5
    official = _official_cell(hsz, num_heads)
    cell = SLSTM(4 * hsz if inputs == "gates" else d, hsz, num_heads=num_heads, inputs=inputs)
    params = _params(cell, scale=0.5)
    with torch.no_grad():  # the official external layouts are ours: r [n, k, 4, k], b [n, 4, k]
        official.recurrent_kernel[:] = torch.tensor(np.asarray(params["r"]))
        official.bias[:] = torch.tensor(np.asarray(params["b"]))
    x = np.asarray(_inputs(cell, (batch, time), scale=2.0))
    key = jax.random.split(jax.random.key(5), 4)
    carry0 = None if from_zeros else SLSTMCarry(jax.random.normal(key[0], (batch, hsz)),
                                                jnp.exp(jax.random.normal(key[1], (batch, hsz))),
                                                jax.random.normal(key[2], (batch, hsz)),
                                                jax.random.normal(key[3], (batch, hsz)))

    tx = torch.tensor(x, requires_grad=True)
    gates = tx @ torch.tensor(np.asarray(params["w"])).reshape(d, 4 * hsz) if inputs == "dense" else tx
    official_order = None if from_zeros else (carry0.h, carry0.c, carry0.n, carry0.m)
    state = None if from_zeros else torch.stack([torch.tensor(np.asarray(a)) for a in official_order])
    ty, tstate = official(gates, state)  # tstate [4, b, h]: (h, c, n, m)
    (torch.sin(3 * ty).sum() + (tstate[:3] ** 2).sum()).backward()

    def loss(params, x):
        ys, carry = scan_cell(cell, params, x, initial_carry=carry0)
        return jnp.sum(jnp.sin(3 * ys)) + jnp.sum(carry.h**2) + jnp.sum(carry.c**2) + jnp.sum(carry.n**2), (ys, carry)

    grad_fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
    (_, (ys, carry)), (d_params, d_x) = grad_fn(params, jnp.asarray(x))
    np.testing.assert_allclose(ys, ty.detach().numpy(), atol=2e-6, rtol=1e-5)
    for i, name in enumerate(("h", "c", "n", "m")):
        np.testing.assert_allclose(getattr(carry, name), tstate[i].detach().numpy(), atol=2e-6, rtol=1e-5, err_msg=name)
    tol = dict(atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(d_x, tx.grad.numpy(), **tol)
    d_r = official._recurrent_kernel_int2ext(official._recurrent_kernel.grad)
    np.testing.assert_allclose(d_params["r"], d_r.numpy(), **tol)
    np.testing.assert_allclose(d_params["b"], official._bias_int2ext(official._bias.grad).numpy(), **tol)


# --- init ----------------------------------------------------------------------------------------------


@pytest.mark.torch
@pytest.mark.parametrize("num_heads, block_index, num_blocks", [(4, 0, 1), (2, 1, 3), (2, 2, 3), (1, 0, 4)])
def test_init_is_the_official_one(num_heads, block_index, num_blocks):
    """r zeros, b the official "powerlaw_blockdependent" bias (from the official cell itself)."""
    official = _official_cell(32, num_heads, _block_idx=block_index, _num_blocks=num_blocks)
    cell = SLSTM(6, 32, num_heads=num_heads, block_index=block_index, num_blocks=num_blocks)
    params = cell.init(jax.random.key(0))
    assert not np.any(np.asarray(params["r"])) and params["r"].shape == tuple(official.recurrent_kernel.shape)
    np.testing.assert_array_equal(official.recurrent_kernel[:].numpy(), 0)
    np.testing.assert_allclose(params["b"], official.bias[:].numpy(), rtol=1e-6, atol=1e-6)
    assert np.ptp(np.asarray(params["b"][:, 1])) > 1  # the forget gates' ramp, not a constant


@pytest.mark.torch
def test_input_weights_are_small_init_as_the_official_layer():
    xlstm_or_skip()
    import torch
    from xlstm.components.init import small_init_init_

    d, hsz = 200, 64
    w = np.asarray(SLSTM(d, hsz).init(jax.random.key(0))["w"])
    official = small_init_init_(torch.empty(d, 4 * hsz), dim=d).numpy()
    assert w.shape == (d, 4, hsz)
    assert abs(w.mean()) < 3e-3 and abs(w.std() / official.std() - 1) < 0.02  # 51200 draws: std within 2%


def test_forget_bias_of_a_one_feature_head_is_finite():
    # the official ramp divides 0 by 0 at head size 1 (NaN); here the one feature gets the ramp's start, +5
    np.testing.assert_array_equal(SLSTM(3, 4, num_heads=4).init(jax.random.key(0))["b"][:, 1, 0], 5.0)
    assert "b" not in SLSTM(3, 4, bias=False).init(jax.random.key(0))
    assert "w" not in SLSTM(16, 4, num_heads=2, inputs="gates").init(jax.random.key(0))


# --- the engine: lengths, reverse, resets, remat, dtypes, VJPs -------------------------------------------


def _np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _assert_carry(carry, b, want):
    for name, got, w in zip(SLSTMCarry._fields, carry, want):
        np.testing.assert_allclose(got[b], w, atol=2e-6, rtol=2e-5, err_msg=name)


def test_padding_and_lengths():
    cell = SLSTM(3, 8, num_heads=2)
    params = _params(cell)
    x = _inputs(cell, (3, 7))
    lengths = [7, 4, 1]
    x = x.at[1, 4:].set(jnp.nan)  # padding never reaches the arithmetic
    ys, carry = _scan(cell, params, x, seq_lengths=jnp.array(lengths))
    for b, n in enumerate(lengths):
        want_ys, want_carry, _ = numpy_slstm(_np(params), _np(x[b, :n]), cell)
        np.testing.assert_allclose(ys[b, :n], want_ys, atol=2e-6, rtol=2e-5)
        np.testing.assert_array_equal(ys[b, n:], 0)
        _assert_carry(carry, b, want_carry)  # the last valid step's


def test_reverse_runs_each_sequence_backwards_within_its_length():
    cell = SLSTM(3, 8, num_heads=4, forget_gate="exp")
    params = _params(cell)
    x = _inputs(cell, (2, 6))
    lengths = [6, 3]
    ys, carry = _scan(cell, params, x, seq_lengths=jnp.array(lengths), reverse=True)
    for b, n in enumerate(lengths):
        want_ys, want_carry, _ = numpy_slstm(_np(params), _np(x[b, :n][::-1]), cell)
        np.testing.assert_allclose(ys[b, :n], want_ys[::-1], atol=2e-6, rtol=2e-5)
        _assert_carry(carry, b, want_carry)


def test_resets_start_each_segment_from_zeros():
    cell = SLSTM(3, 8, num_heads=2)
    params = _params(cell)
    x = _inputs(cell, (2, 8))
    resets = jnp.zeros((2, 8), bool).at[0, 3].set(True).at[1, 5].set(True)
    ys, carry = _scan(cell, params, x, resets=resets)
    for b, start in ((0, 3), (1, 5)):
        first, _, _ = numpy_slstm(_np(params), _np(x[b, :start]), cell)
        second, last, _ = numpy_slstm(_np(params), _np(x[b, start:]), cell)
        np.testing.assert_allclose(ys[b], np.concatenate([first, second]), atol=2e-6, rtol=2e-5)
        _assert_carry(carry, b, last)


def _loss(cell, **kw):
    def loss(params, x):
        ys, carry = scan_cell(cell, params, x, **kw)
        states = sum(jnp.sum(a**2) for a in (carry.c, carry.n, carry.h))
        return jnp.sum(jnp.sin(ys)) + states + jnp.sum(jnp.sin(carry.m))
    return loss


@pytest.mark.parametrize("inputs, forget_gate, variants", [
    ("dense", "sigmoid", ("fused", "fused_remat")),
    pytest.param("gates", "exp", ("fused", "replay", "fused_remat", "autodiff_remat3"), marks=pytest.mark.slow)])
def test_fused_vjp_equals_autodiff_with_lengths_reverse_resets_and_remat(inputs, forget_gate, variants):
    cell = SLSTM(32 if inputs == "gates" else 3, 8, num_heads=2, inputs=inputs, forget_gate=forget_gate)
    params = _params(cell)
    x = _inputs(cell, (3, 9))
    kw = dict(seq_lengths=jnp.array([9, 5, 2]), reverse=True, resets=jnp.zeros((3, 9), bool).at[0, 4].set(True))
    runs = {"autodiff": dict(vjp="autodiff"), "fused": dict(vjp="fused"), "replay": dict(vjp="replay"),
            "fused_remat": dict(vjp="fused", remat=True), "autodiff_remat3": dict(vjp="autodiff", remat=3)}
    grads = {}
    for name in ("autodiff",) + variants:
        extra = runs[name]
        value, grads[name] = jax.jit(jax.value_and_grad(_loss(cell, **kw, **extra), argnums=(0, 1)))(params, x)
        if name == "autodiff":
            want = value
        np.testing.assert_allclose(value, want, rtol=1e-6, err_msg=name)
    assert float(jnp.max(jnp.abs(grads["autodiff"][0]["r"]))) > 1e-3
    for name, g in grads.items():
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5, rtol=2e-5, err_msg=name), g,
                     grads["autodiff"])


@pytest.mark.parametrize("vjp", ["fused", pytest.param("autodiff", marks=pytest.mark.slow)])
def test_check_grads_numerically(vjp):
    cell = SLSTM(3, 4, num_heads=2)
    params = _params(cell)
    x = _inputs(cell, (2, 4))
    loss = _loss(cell, seq_lengths=jnp.array([4, 2]), reverse=True, vjp=vjp)
    with jax.enable_x64():
        p64, x64 = jax.tree.map(lambda a: a.astype(jnp.float64), (params, x))
        check_grads(jax.jit(loss), (p64, x64), order=1, modes=["rev"] if vjp == "fused" else ["fwd", "rev"],
                    atol=1e-4, rtol=1e-4)


def test_bfloat16_compute_is_finite_and_close():
    cell = SLSTM(3, 16, num_heads=4)
    params = _params(cell, scale=0.3)
    x = _inputs(cell, (2, 12))
    run = jax.jit(lambda p, dtype: scan_cell(cell, p, x, dtype=dtype), static_argnums=1)
    y32, _ = run(params, None)
    y16, carry16 = run(params, jnp.bfloat16)
    assert y16.dtype == jnp.bfloat16 and all(a.dtype == jnp.bfloat16 for a in carry16)
    np.testing.assert_allclose(np.asarray(y16, np.float32), y32, atol=0.03, rtol=0.03)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(run(p, jnp.bfloat16)[0].astype(jnp.float32))))(params)
    assert all(g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
def test_long_sequence_with_large_input_gates_stays_finite_where_the_naive_form_overflows(forget_gate):
    hsz, time = 4, 4096
    cell = SLSTM(4 * hsz, hsz, num_heads=2, inputs="gates", forget_gate=forget_gate, bias=False)
    params = _params(cell, scale=0.3)
    keys = jax.random.split(jax.random.key(3), 2)
    x = jax.random.normal(keys[0], (1, time, 4 * hsz))
    x = x.at[..., :hsz].set(jax.random.uniform(keys[1], (1, time, hsz), minval=20.0, maxval=100.0))  # i~ up to 100
    x = x.at[..., hsz:2 * hsz].add(0.5)  # forget gates mostly open: m grows ~0.5 a step under "exp"
    run = jax.jit(lambda p, x, dtype: scan_cell(cell, p, x, dtype=dtype), static_argnums=2)
    ys, carry = run(params, x, None)
    assert bool(jnp.all(jnp.isfinite(ys))) and all(bool(jnp.all(jnp.isfinite(a))) for a in carry)
    ys16, carry16 = run(params, x, jnp.bfloat16)  # a bfloat16 carry: m ~ 2000 has a grid spacing of 16 there
    assert bool(jnp.all(jnp.isfinite(ys16))) and all(bool(jnp.all(jnp.isfinite(a))) for a in carry16)
    assert float(jnp.mean(jnp.abs(ys16.astype(jnp.float32) - ys))) < 0.05
    np_params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    want, _, _ = _stabilised_only(np_params, np.asarray(x[0], np.float64), cell)
    np.testing.assert_allclose(ys[0], want, atol=1e-4)

    def naive_step(state, x_t):  # the unstabilised recurrence in float32: exp(i~) itself
        big_c, big_n, h = state
        rh = jnp.concatenate([h[j * 2:(j + 1) * 2] @ params["r"][j].reshape(2, 8) for j in range(2)]).reshape(2, 4, 2)
        i_t, f_t, z_t, o_t = x_t.reshape(4, hsz) + jnp.swapaxes(rh, 0, 1).reshape(4, hsz)
        f = jax.nn.sigmoid(f_t) if forget_gate == "sigmoid" else jnp.exp(f_t)
        big_c, big_n = f * big_c + jnp.exp(i_t) * jnp.tanh(z_t), f * big_n + jnp.exp(i_t)
        h = jax.nn.sigmoid(o_t) * big_c / big_n
        return (big_c, big_n, h), h

    _, naive = jax.lax.scan(naive_step, (jnp.zeros(hsz),) * 3, x[0])
    assert not bool(jnp.all(jnp.isfinite(naive)))  # exp(100) overflows float32 (max ~ exp(88.7))
    grads = jax.jit(jax.grad(lambda p: jnp.sum(scan_cell(cell, p, x)[0])))(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def _stabilised_only(params, x, cell):
    """numpy_slstm without its unstabilised check (which overflows float64 too at these gates)."""
    hsz, nh = cell.hidden_size, cell.num_heads
    k = hsz // nh
    c, n, m, h = (np.zeros(hsz) for _ in range(4))
    ys = []
    for x_t in x:
        rh = np.concatenate([np.einsum("a,agb->gb", h[j * k:(j + 1) * k], params["r"][j]) for j in range(nh)], axis=-1)
        i_t, f_t, z_t, o_t = x_t.reshape(4, hsz) + rh
        log_f = np.log(_sigmoid(f_t)) if cell.forget_gate == "sigmoid" else f_t
        m_new = np.where(n == 0, i_t, np.maximum(log_f + m, i_t))
        f_s = np.where(n == 0, 1.0, np.exp(log_f + m - m_new))
        c, n, m = f_s * c + np.exp(i_t - m_new) * np.tanh(z_t), f_s * n + np.exp(i_t - m_new), m_new
        h = _sigmoid(o_t) * c / n
        ys.append(h)
    return np.stack(ys), (c, n, m, h), None


# --- registry, layers, configuration errors --------------------------------------------------------------


def test_registered_and_built_by_name():
    from flax import nnx

    cell = make_cell("slstm", 3, 8, num_heads=2, forget_gate="exp")
    same = SLSTM(3, 8, num_heads=2, forget_gate="exp")
    assert cell == same and hash(cell) == hash(same)
    layer = build_rnn("slstm", 3, 8, rngs=nnx.Rngs(0), num_heads=2)
    ys, carry = layer(jnp.ones((2, 5, 3)))
    assert ys.shape == (2, 5, 8) and bool(jnp.all(jnp.isfinite(ys))) and isinstance(carry[0], SLSTMCarry)


@pytest.mark.parametrize("build, message", [
    (lambda: SLSTM(3, 10, num_heads=4), "SLSTM.num_heads=4 must divide hidden_size=10"),
    (lambda: SLSTM(3, 8, num_heads=0), "SLSTM.num_heads must be a positive integer, got 0"),
    (lambda: SLSTM(3, 8, forget_gate="tanh"),
     "SLSTM.forget_gate='tanh' is not valid; choose one of ['exp', 'sigmoid']"),
    (lambda: SLSTM(3, 8, inputs="qkv"), "SLSTM.inputs='qkv' is not valid; choose one of ['dense', 'gates']"),
    (lambda: SLSTM(3, 8, inputs="gates"), "SLSTM.inputs='gates' needs input_size == 4 * hidden_size = 32"),
    (lambda: SLSTM(3, 8, bias=1), "SLSTM.bias must be True or False, got 1"),
    (lambda: SLSTM(3, 8, num_blocks=0), "SLSTM.num_blocks must be a positive integer, got 0"),
    (lambda: SLSTM(3, 8, block_index=2, num_blocks=2),
     "SLSTM.block_index must be an integer in [0, num_blocks=2), got 2"),
    (lambda: make_cell("slstm", 3, 8, heads=2), "model.cell_options.heads is not an option of the 'slstm' cell"),
])
def test_bad_options_are_one_line_config_errors(build, message):
    with pytest.raises(ConfigError) as info:
        build()
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
