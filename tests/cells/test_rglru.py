"""RG-LRU (De et al. 2024) against RecurrentGemma's own RGLRU (JAX and PyTorch), a NumPy
transcription of the paper's equations, its bounded-derivative sqrt and its init ring."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gatedrnn import scan_cell
from gatedrnn.cells.rglru import RGLRU, sqrt_bound_derivative
from gatedrnn.validation import ConfigError

from conftest import torch_or_skip

_REASON = "RECURRENTGEMMA-MISSING: the RG-LRU reference tests need pip install recurrentgemma"
B, T = 2, 7


def _recurrentgemma():
    return pytest.importorskip("recurrentgemma.jax", reason=_REASON)


def _segment_pos(kind: str) -> np.ndarray:
    """[B, T] RecurrentGemma positions: "none" continues a sequence (no position 0), "docs"
    starts documents at t = 0 and mid-sequence, "mid" only mid-sequence."""
    t = np.arange(T)
    if kind == "none":
        return np.stack([t + 3, t + 11])
    if kind == "docs":
        return np.stack([t, np.where(t < 4, t, t - 4)])  # row 1: new document at t = 4
    return np.stack([np.where(t < 2, t + 5, t - 2), np.where(t < 5, t + 1, t - 5)])  # "mid": at t = 2 and t = 5


def _perturbed(params, seed=0, scale=0.3):
    """Params plus noise, so the zero-initialised gate biases are exercised too."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(treedef, [p + scale * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)])


def _rg_apply(module, variables, x, segment_pos, cache=None):
    # RecurrentGemma broadcasts implicitly; the suite's strict promotion would refuse it
    with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
        return module.apply(variables, x, jnp.asarray(segment_pos), cache)


def _rg_setup(width, num_heads, seed=0):
    rg = _recurrentgemma()
    module = rg.RGLRU(width=width, num_heads=num_heads)
    x = jax.random.normal(jax.random.key(seed + 1), (B, T, width))
    with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
        variables = module.init(jax.random.key(seed), x, jnp.asarray(_segment_pos("docs")))
    params = _perturbed(variables["params"], seed + 2)
    return module, params, x


def test_params_tree_is_recurrentgemmas():
    module, params, _ = _rg_setup(8, 2)
    ours = RGLRU(8, 8, num_heads=2).init(jax.random.key(0))
    assert jax.tree.map(jnp.shape, ours) == jax.tree.map(jnp.shape, params)


@pytest.mark.parametrize("num_heads", [1, 4])
@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_equals_recurrentgemma_jax(num_heads, mode):
    width = 8
    module, params, x = _rg_setup(width, num_heads)
    cell = RGLRU(width, width, num_heads=num_heads)
    run = jax.jit(lambda p, x, r, h0: scan_cell(cell, p, x, resets=r, initial_carry=h0, mode=mode))
    for kind in ("none", "docs", "mid"):
        for cache in (None, jax.random.normal(jax.random.key(5), (B, width))):
            pos = _segment_pos(kind)
            want_y, want_h = _rg_apply(module, {"params": params}, x, pos, cache)
            ys, h = run(params, x, jnp.asarray(pos == 0), cache)
            np.testing.assert_allclose(ys, want_y, atol=1e-6, rtol=1e-5, err_msg=f"{kind}, cache={cache is not None}")
            np.testing.assert_allclose(h, want_h, atol=1e-6, rtol=1e-5, err_msg=f"{kind}, cache={cache is not None}")


def _loss(y, h):
    return jnp.sum(jnp.sin(3 * y)) + jnp.sum(h**2)


@pytest.mark.parametrize("kind", ["none", "mid"])
@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_gradients_equal_recurrentgemma_jax(kind, mode):
    width = 8
    module, params, x = _rg_setup(width, 2, seed=3)
    pos = _segment_pos(kind)
    cache = jax.random.normal(jax.random.key(6), (B, width))
    cell = RGLRU(width, width, num_heads=2)

    def theirs(params, x, cache):
        return _loss(*_rg_apply(module, {"params": params}, x, pos, cache))

    def ours(params, x, cache):
        return _loss(*scan_cell(cell, params, x, resets=jnp.asarray(pos == 0), initial_carry=cache, mode=mode))

    with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
        want = jax.grad(theirs, argnums=(0, 1, 2))(params, x, cache)
    got = jax.jit(jax.grad(ours, argnums=(0, 1, 2)))(params, x, cache)
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-5), got, want)


@pytest.mark.torch
def test_equals_recurrentgemma_torch_values_and_gradients():
    torch = torch_or_skip()
    rgt = pytest.importorskip("recurrentgemma.torch", reason=_REASON)
    width, heads = 8, 2
    cell = RGLRU(width, width, num_heads=heads)
    params = _perturbed(cell.init(jax.random.key(0)), 1)
    x = jax.random.normal(jax.random.key(2), (B, T, width))
    cache = jax.random.normal(jax.random.key(3), (B, width))
    pos = _segment_pos("mid")

    module = rgt.RGLRU(width=width, num_heads=heads)
    flat = {"a_param": params["a_param"], "input_gate.w": params["input_gate"]["w"], "input_gate.b": params["input_gate"]["b"],
            "a_gate.w": params["a_gate"]["w"], "a_gate.b": params["a_gate"]["b"]}
    module.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in flat.items()})
    tx = torch.tensor(np.asarray(x), requires_grad=True)
    th0 = torch.tensor(np.asarray(cache), requires_grad=True)
    ty, th = module(tx, torch.tensor(pos), th0)
    (torch.sin(3 * ty).sum() + (th**2).sum()).backward()

    def ours(params, x, cache):
        return scan_cell(cell, params, x, resets=jnp.asarray(pos == 0), initial_carry=cache, mode="sequential")

    ys, h = ours(params, x, cache)
    np.testing.assert_allclose(ys, ty.detach().numpy(), atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(h, th.detach().numpy(), atol=1e-6, rtol=1e-5)
    g_params, g_x, g_h0 = jax.grad(lambda *a: _loss(*ours(*a)), argnums=(0, 1, 2))(params, x, cache)
    np.testing.assert_allclose(g_x, tx.grad.numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(g_h0, th0.grad.numpy(), atol=1e-5, rtol=1e-5)
    torch_grads = dict(module.named_parameters())
    g_flat = {"a_param": g_params["a_param"], "input_gate.w": g_params["input_gate"]["w"],
              "input_gate.b": g_params["input_gate"]["b"], "a_gate.w": g_params["a_gate"]["w"],
              "a_gate.b": g_params["a_gate"]["b"]}
    for name, g in g_flat.items():
        np.testing.assert_allclose(g, torch_grads[name].grad.numpy(), atol=1e-5, rtol=1e-5, err_msg=name)


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def rglru_numpy(p, x, cell, resets, h0):
    """De et al. 2024, eqs. (1)-(4), one sequence x [t, d] in float64, with per-head loops:
    r = sigma(W_a x + b_a), i = sigma(W_x x + b_x), a = sigma(-Lambda)^(c r) (the paper's
    sigma(Lambda) with RecurrentGemma's sign), h = a h + sqrt(1 - a^2) (i x); at a reset h = i x."""
    if "input" in p:
        x = x @ p["input"]["w"] + p["input"]["b"]
    n = cell.num_heads
    k = cell.hidden_size // n

    def block(v, w, b):
        return np.concatenate([v[j * k:(j + 1) * k] @ w[j] + b[j] for j in range(n)])

    h, ys = h0.copy(), []
    for x_t, reset in zip(x, resets):
        r = _sigmoid(block(x_t, p["a_gate"]["w"], p["a_gate"]["b"]))
        i = _sigmoid(block(x_t, p["input_gate"]["w"], p["input_gate"]["b"]))
        a = _sigmoid(-p["a_param"]) ** (cell.c * r)
        h = i * x_t if reset else a * h + np.sqrt(1 - a**2) * (i * x_t)
        ys.append(h)
    return np.stack(ys), h


@pytest.mark.parametrize("cell", [RGLRU(8, 8, num_heads=2), RGLRU(3, 6, num_heads=3, c=4.0), RGLRU(6, 6, input_projection=True)],
                         ids=["heads2", "projected_c4", "forced_projection"])
def test_matches_numpy_transcription(cell):
    params = _perturbed(cell.init(jax.random.key(0)), 1)
    x = jax.random.normal(jax.random.key(2), (B, T, cell.input_size))
    h0 = jax.random.normal(jax.random.key(3), (B, cell.hidden_size))
    resets = _segment_pos("mid") == 0
    ys, h = scan_cell(cell, params, x, resets=jnp.asarray(resets), initial_carry=h0, mode="sequential")
    p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    for b in range(B):
        want_ys, want_h = rglru_numpy(p64, np.asarray(x[b], np.float64), cell, resets[b], np.asarray(h0[b], np.float64))
        np.testing.assert_allclose(ys[b], want_ys, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(h[b], want_h, atol=1e-5, rtol=1e-5)


def test_input_projection_switch():
    assert "input" in RGLRU(3, 6).init(jax.random.key(0))
    assert "input" not in RGLRU(6, 6).init(jax.random.key(0))
    assert "input" in RGLRU(6, 6, input_projection=True).init(jax.random.key(0))


def test_sqrt_bound_derivative():
    m = 1000.0
    x = jnp.array([0.0, 1e-9, 1 / (4 * m**2), 1e-4, 0.25, 1.0, 4.0])
    grad = jax.vmap(jax.grad(lambda v: sqrt_bound_derivative(v, m)))(x)
    np.testing.assert_allclose(sqrt_bound_derivative(x, m), jnp.sqrt(x))
    assert bool(jnp.all(grad <= m * (1 + 1e-6))) and bool(jnp.all(jnp.isfinite(grad)))
    np.testing.assert_allclose(grad[:3], m, rtol=1e-6)  # at and below the bound: the cap
    np.testing.assert_allclose(grad[3:], 0.5 / jnp.sqrt(x[3:]), rtol=1e-6)  # above it: sqrt's own
    rg_layers = pytest.importorskip("recurrentgemma.jax.layers", reason=_REASON)
    want = jax.vmap(jax.grad(lambda v: rg_layers.sqrt_bound_derivative(v, m)))(x)
    np.testing.assert_allclose(grad, want, rtol=1e-6)


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_bfloat16_gradients_finite_where_plain_sqrt_is_not(mode):
    """softplus(Lambda) ~ 1e-4: a_t rounds to 1 in bfloat16 (not in float32), so 1 - a^2 = 0 and
    d sqrt = inf; the bounded derivative keeps every gradient finite."""
    x = jax.random.normal(jax.random.key(1), (B, T, 4))

    def grads(max_sqrt_gradient, dtype):
        cell = RGLRU(4, 4, max_sqrt_gradient=max_sqrt_gradient)  # inf: a plain sqrt
        params = cell.init(jax.random.key(0))
        params["a_param"] = jnp.full((4,), -9.0)
        loss = lambda p, x: jnp.sum(scan_cell(cell, p, x, dtype=dtype, mode=mode)[0].astype(jnp.float32))  # noqa: E731
        return jax.tree.leaves(jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x))

    def finite(leaves):
        return all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)

    assert finite(grads(float("inf"), jnp.float32))
    assert not finite(grads(float("inf"), jnp.bfloat16))
    assert finite(grads(1000.0, jnp.bfloat16))


def test_init_lies_in_the_ring():
    """rnn_real_param_init: exp(-softplus(Lambda))^2 ~ U(min_rad^2, max_rad^2) + 1e-8, so at r = 1
    a = exp(-c softplus(Lambda)) lies in [min_rad^c, (max_rad^2 + 1e-8)^(c/2)]."""
    h, heads, c, lo, hi = 4096, 4, 8.0, 0.9, 0.999
    params = RGLRU(h, h, num_heads=heads, c=c, min_rad=lo, max_rad=hi).init(jax.random.key(0))
    sp = jax.nn.softplus(params["a_param"])
    a = np.asarray(jnp.exp(-c * sp), np.float64)
    assert a.min() >= lo**c * (1 - 1e-5) and a.max() <= (hi**2 + 1e-8) ** (c / 2) * (1 + 1e-5)
    rad2 = np.asarray(jnp.exp(-2 * sp), np.float64)  # uniform on [lo^2, hi^2]
    spread = hi**2 - lo**2
    np.testing.assert_allclose(np.quantile(rad2, [0.1, 0.5, 0.9]), lo**2 + spread * np.array([0.1, 0.5, 0.9]), atol=0.03 * spread)
    # gate weights N(0, 1 / h) (flax's fan_in counts every head), biases zero
    for gate in ("a_gate", "input_gate"):
        np.testing.assert_allclose(np.std(params[gate]["w"]), 1 / np.sqrt(h), rtol=0.02)
        assert not np.any(params[gate]["b"])
    rg_layers = pytest.importorskip("recurrentgemma.jax.layers", reason=_REASON)
    theirs = jax.nn.softplus(rg_layers.rnn_real_param_init(lo, hi)(jax.random.key(1), (h,)))
    np.testing.assert_allclose(np.quantile(sp, [0.1, 0.5, 0.9]), np.quantile(theirs, [0.1, 0.5, 0.9]), rtol=0.1)


@pytest.mark.parametrize("kwargs, match", [
    (dict(hidden_size=6, num_heads=4), "num_heads=4 must divide hidden_size=6"),
    (dict(num_heads=0), "num_heads must be a positive integer"),
    (dict(c=0.0), "RGLRU.c must be a positive number"),
    (dict(min_rad=0.99, max_rad=0.9), "0 < min_rad < max_rad < 1"),
    (dict(max_rad=1.0), "0 < min_rad < max_rad < 1"),
    (dict(min_rad=0.0), "0 < min_rad < max_rad < 1"),
    (dict(input_projection="yes"), "input_projection must be None, True or False"),
    (dict(input_size=3, input_projection=False), "input_projection=False needs input_size == hidden_size"),
])
def test_bad_config_is_one_line_error(kwargs, match):
    kwargs = dict(dict(input_size=4, hidden_size=4), **kwargs)
    with pytest.raises(ConfigError, match=match) as err:
        RGLRU(**kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("reverse, chunk", [(False, None), (True, None), (False, 3), (True, 4)])
def test_parallel_equals_sequential(reverse, chunk):
    """Values and gradients (params, x, initial carry), with resets, lengths, reverse, chunks."""
    cell = RGLRU(3, 6, num_heads=2)
    params = _perturbed(cell.init(jax.random.key(0)), 1)
    x = jax.random.normal(jax.random.key(2), (B, T, 3))
    h0 = jax.random.normal(jax.random.key(3), (B, 6))
    resets = jnp.asarray(_segment_pos("mid") == 0)
    lengths = jnp.array([T, 4])

    def loss(mode, params, x, h0):
        ys, h = scan_cell(cell, params, x, initial_carry=h0, seq_lengths=lengths, reverse=reverse, resets=resets,
                          mode=mode, parallel_chunk=chunk)
        return _loss(ys, h), (ys, h)

    def run(mode):
        return jax.jit(jax.grad(functools.partial(loss, mode), argnums=(0, 1, 2), has_aux=True))(params, x, h0)

    (g_par, (ys_par, h_par)), (g_seq, (ys_seq, h_seq)) = run("parallel"), run("sequential")
    np.testing.assert_allclose(ys_par, ys_seq, atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(h_par, h_seq, atol=1e-6, rtol=1e-5)
    assert not np.any(ys_par[1, 4:])  # padding stays exactly zero
    jax.tree.map(lambda p, s: np.testing.assert_allclose(p, s, atol=1e-5, rtol=1e-5), g_par, g_seq)
