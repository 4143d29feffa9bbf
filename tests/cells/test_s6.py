"""S6, Mamba's selective SSM (Gu & Dao 2023), against a NumPy transcription of the official
`selective_scan_ref` (state-spaces/mamba) and of the paper's ZOH; Theorem 1 (the gated
recurrence); parallel == sequential in values and gradients; the official init."""

import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gatedrnn import scan_cell
from gatedrnn.cells import s6
from gatedrnn.cells.s6 import S6
from gatedrnn.validation import ConfigError

from zoo import slow_unless

B, T = 3, 7


def _np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def softplus(x):
    return np.logaddexp(0.0, x)


def _perturbed(params, seed=0, scale=0.3):
    """Params plus noise, so that every weight leaves its init (D = 1, A = -(1..N), ...)."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(treedef, [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def selective_scan_ref(u, delta, A, Bm, Cm, D, delta_bias, cu_seqlens=None, zoh=False):
    """NumPy transcription of the official `selective_scan_ref` (variable B and C, real A,
    delta_softplus=True, z=None, return_last_state=True), float64.

    u, delta [batch, dim, L]; A [dim, N]; Bm, Cm [batch, N, L]; D, delta_bias [dim];
    cu_seqlens: the packed-sequence boundaries, where the state restarts (x = deltaB_u).
    zoh: replace the official Euler deltaB_u = delta B u by the paper's eq. 4,
    (delta A)^-1 (exp(delta A) - 1) delta B u, written literally.
    Returns (out [batch, dim, L], last_state [batch, dim, N]).
    """
    delta = softplus(delta + delta_bias[..., None])
    batch, dim, dstate = u.shape[0], A.shape[0], A.shape[1]
    x = np.zeros((batch, dim, dstate))
    ys = []
    deltaA = np.exp(np.einsum("bdl,dn->bdln", delta, A))
    deltaB_u = np.einsum("bdl,bnl,bdl->bdln", delta, Bm, u)
    if zoh:
        dA = np.einsum("bdl,dn->bdln", delta, A)
        deltaB_u = (1 / dA) * (np.exp(dA) - 1) * deltaB_u
    for i in range(u.shape[2]):
        if cu_seqlens is not None and i in cu_seqlens[1:-1]:
            x = deltaB_u[:, :, i]
        else:
            x = deltaA[:, :, i] * x + deltaB_u[:, :, i]
        ys.append(np.einsum("bdn,bn->bd", x, Cm[:, :, i]))
    y = np.stack(ys, axis=2)
    return y + u * D[:, None], x


def _official_inputs(p, x, cell):
    """Mamba's forward up to the scan (x_proj, dt_proj without its bias), NumPy, one sequence
    x [L, d] -> (u [1, D, L], delta [1, D, L], B [1, N, L], C [1, N, L])."""
    r, n = cell.effective_dt_rank, cell.ssm_state_size
    u = x @ p["input"]["w"] if "input" in p else x
    x_dbl = u @ p["x_proj"]["w"]
    dt, b, c = x_dbl[:, :r], x_dbl[:, r:r + n], x_dbl[:, r + n:]
    delta = dt @ p["dt_proj"]["w"]
    return tuple(v.T[None] for v in (u, delta, b, c))


CONFIGS = [
    dict(discretization="euler"),
    dict(discretization="zoh"),
    dict(discretization="zoh", input_projection=False, dt_rank=2),
]


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_equals_numpy_transcription_of_official_selective_scan_ref(kw, mode):
    d = 4 if kw.get("input_projection") is False else 3
    cell = S6(d, 4, ssm_state_size=3, **kw)
    assert cell.projects_input == (d != 4)
    params = _perturbed(cell.init(jax.random.key(0)))
    p = _np(params)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(B, T, d)).astype(np.float32)
    resets = np.zeros((B, T), bool)
    resets[1, 3] = resets[2, [2, 5]] = True  # packed sequences: the official cu_seqlens restarts
    ys, carry = scan_cell(cell, params, jnp.asarray(x), resets=jnp.asarray(resets), mode=mode)
    assert ys.shape == (B, T, 4) and carry.shape == (B, 12)
    A = -np.exp(p["A_log"])
    for b in range(B):
        cu_seqlens = [0, *np.flatnonzero(resets[b]), T]
        u, delta, bm, cm = _official_inputs(p, x[b].astype(np.float64), cell)
        want_y, want_h = selective_scan_ref(u, delta, A, bm, cm, p["D"], p["dt_proj"]["b"], cu_seqlens,
                                            zoh=cell.discretization == "zoh")
        np.testing.assert_allclose(np.asarray(ys[b]), want_y[0].T, atol=2e-5, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(carry[b]), want_h[0].reshape(-1), atol=2e-5, rtol=1e-5)


def _theorem_1_params(w_g, b_g, k):
    """S6 params (D = k + 1 channels, N = 1, R = D) for inputs [u_1..u_k, 1]: A = -1, B_t = C_t =
    the constant channel = 1, D = 0, Delta = softplus(W_g x + b_g) (W_x_dt = I)."""
    d = k + 1
    const = np.eye(d)[:, -1:]
    return {
        "A_log": jnp.zeros((d, 1), jnp.float32),
        "D": jnp.zeros((d,), jnp.float32),
        "x_proj": {"w": jnp.asarray(np.concatenate([np.eye(d), const, const], axis=1), jnp.float32)},
        "dt_proj": {"w": jnp.asarray(w_g, jnp.float32), "b": jnp.asarray(b_g, jnp.float32)},
    }


def _gated_loop(x, w_g, b_g, h0, k):
    """Theorem 1's form, minGRU-style: g_t = sigmoid(W_g x_t + b_g), h_t = (1 - g_t) h_{t-1} + g_t u_t."""
    h, out = h0, []
    for x_t in x:
        g = 1 / (1 + np.exp(-(x_t @ w_g + b_g)))[:k]
        h = (1 - g) * h + g * x_t[:k]
        out.append(h)
    return np.stack(out)


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_theorem_1_zoh_with_n1_a_minus1_b1_is_the_gated_recurrence(mode):
    k = 3
    rng = np.random.default_rng(2)
    w_g, b_g = rng.normal(size=(k + 1, k + 1)), rng.normal(size=k + 1)
    u = rng.normal(size=(B, T, k)) * 2
    x = np.concatenate([u, np.ones((B, T, 1))], axis=-1)
    h0 = rng.normal(size=(B, k + 1))
    params = _theorem_1_params(w_g, b_g, k)
    for discretization in ("zoh", "euler"):
        cell = S6(k + 1, k + 1, ssm_state_size=1, dt_rank=k + 1, discretization=discretization)
        ys, carry = scan_cell(cell, params, jnp.asarray(x, jnp.float32), initial_carry=jnp.asarray(h0, jnp.float32),
                              mode=mode)
        for b in range(B):
            want = _gated_loop(x[b], w_g, b_g, h0[b, :k], k)
            if discretization == "zoh":
                np.testing.assert_allclose(np.asarray(ys[b, :, :k]), want, atol=1e-5, rtol=1e-5)
                np.testing.assert_allclose(np.asarray(carry[b, :k]), want[-1], atol=1e-5, rtol=1e-5)
            else:  # Euler's Bbar = Delta is not 1 - exp(-Delta): the theorem needs ZOH
                assert np.max(np.abs(np.asarray(ys[b, :, :k]) - want)) > 1e-2


def test_zoh_coefficient_is_the_papers_formula_and_tends_to_euler_for_small_delta():
    cell = S6(2, 2, ssm_state_size=3)
    euler = S6(2, 2, ssm_state_size=3, discretization="euler")
    params = _perturbed(cell.init(jax.random.key(3)))
    A = -np.exp(np.asarray(params["A_log"], np.float64))
    rng = np.random.default_rng(4)
    delta = np.concatenate([np.geomspace(1e-6, 5.0, 10)[:, None] * np.ones((1, 2)), rng.uniform(0, 3, (4, 2))])
    xp = s6.S6Inputs(*(jnp.asarray(v, jnp.float32) for v in (rng.normal(size=(14, 2)), delta,
                                                             rng.normal(size=(14, 3)), rng.normal(size=(14, 3)))))
    a, b = cell.linear_recurrence(params, xp)
    dA = delta[..., None] * A
    want_b = (1 / dA) * (np.exp(dA) - 1) * delta[..., None] * np.asarray(xp.B)[:, None] * np.asarray(xp.x)[..., None]
    np.testing.assert_allclose(np.asarray(a), np.exp(dA).reshape(14, 6), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(b), want_b.reshape(14, 6), rtol=2e-5, atol=1e-7)
    _, b_euler = euler.linear_recurrence(params, xp)
    np.testing.assert_allclose(np.asarray(b[:3]), np.asarray(b_euler[:3]), rtol=1e-4, atol=1e-9)  # Delta <= 1e-5
    assert np.max(np.abs(np.asarray(b[-4:] - b_euler[-4:]))) > 1e-2


PARITY = [(disc, reverse, chunk) for disc in ("zoh", "euler") for reverse in (False, True) for chunk in (None, 3)]
PARITY_FAST = [("zoh", True, None), ("euler", False, 3)]


@pytest.mark.parametrize("disc, reverse, chunk", slow_unless(PARITY, PARITY_FAST),
                         ids=[f"{d}-reverse={r}-chunk={c}" for d, r, c in PARITY])
def test_parallel_equals_sequential_values_and_gradients(disc, reverse, chunk):
    cell = S6(3, 4, ssm_state_size=2, discretization=disc)
    params = _perturbed(cell.init(jax.random.key(5)))
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.normal(size=(B, T, 3)), jnp.float32)
    h0 = jnp.asarray(rng.normal(size=(B, cell.state_size)), jnp.float32)
    lengths = jnp.asarray([T, 4, 0], jnp.int32)
    resets = jnp.asarray(rng.random((B, T)) < 0.3)

    def run(mode):
        def loss(params, x, h0):
            ys, carry = scan_cell(cell, params, x, initial_carry=h0, seq_lengths=lengths, reverse=reverse,
                                  resets=resets, mode=mode, parallel_chunk=chunk if mode == "parallel" else None)
            return jnp.sum(jnp.sin(ys)) + jnp.sum(carry**2), (ys, carry)

        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(params, x, h0)

    (_, out_p), grads_p = run("parallel")
    (_, out_s), grads_s = run("sequential")
    jax.tree.map(lambda p, s: np.testing.assert_allclose(p, s, atol=1e-5, rtol=1e-5), out_p, out_s)
    np.testing.assert_array_equal(out_p[0][1:, 4:], 0.0)  # padded outputs exactly zero
    np.testing.assert_array_equal(out_p[1][2], h0[2])  # length 0: the initial carry comes back
    jax.tree.map(lambda p, s: np.testing.assert_allclose(p, s, atol=1e-5, rtol=1e-5), grads_p, grads_s)
    assert all(np.abs(np.asarray(g)).max() > 0 for g in jax.tree.leaves(grads_p))  # every param is used


def test_official_init_and_params_layout():
    cell = S6(5, 40, ssm_state_size=6, dt_min=0.002, dt_max=0.05)
    assert cell.effective_dt_rank == math.ceil(40 / 16) == 3 and cell.state_size == 240 and cell.output_size == 40
    params = cell.init(jax.random.key(7))
    shapes = jax.tree.map(lambda a: a.shape, params)
    assert shapes == {"A_log": (40, 6), "D": (40,), "x_proj": {"w": (40, 3 + 12)},
                      "dt_proj": {"w": (3, 40), "b": (40,)}, "input": {"w": (5, 40)}}
    np.testing.assert_allclose(-np.exp(params["A_log"]), -np.tile(np.arange(1.0, 7.0), (40, 1)), rtol=1e-6)  # S4D-real
    np.testing.assert_array_equal(params["D"], 1.0)
    dt = np.asarray(jax.nn.softplus(params["dt_proj"]["b"]))
    assert dt.min() >= 0.002 * (1 - 1e-5) and dt.max() <= 0.05 * (1 + 1e-5)
    log_dt = (np.log(dt) - np.log(0.002)) / (np.log(0.05) - np.log(0.002))  # U(0, 1) if log-uniform
    assert log_dt.min() < 0.15 and log_dt.max() > 0.85 and 0.3 < log_dt.mean() < 0.7
    assert np.abs(params["dt_proj"]["w"]).max() <= 3**-0.5
    assert np.abs(params["x_proj"]["w"]).max() <= 40**-0.5 and np.abs(params["input"]["w"]).max() <= 5**-0.5
    floored = S6(2, 32, dt_min=1e-6, dt_max=2e-6).init(jax.random.key(0))  # the official 1e-4 floor
    np.testing.assert_allclose(jax.nn.softplus(floored["dt_proj"]["b"]), 1e-4, rtol=1e-3)
    assert "input" not in S6(4, 4).init(jax.random.key(0)) and "input" in S6(4, 4, input_projection=True).init(
        jax.random.key(0))
    assert S6(4, 4, ssm_state_size=2).initial_carry((2,)).shape == (2, 8)
    assert hash(S6(4, 4, discretization="euler")) == hash(S6(4, 4, discretization="euler"))


def test_docstring_example_runs():
    assert doctest.testmod(s6, raise_on_error=True).attempted > 0


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: S6(3, 4, discretization="bilinear"),
         "S6.discretization='bilinear' is not valid; choose one of ['euler', 'zoh']"),
        (lambda: S6(3, 4, ssm_state_size=0), "S6.ssm_state_size must be a positive integer, got 0"),
        (lambda: S6(3, 4, dt_rank=1.5), "S6.dt_rank must be a positive integer, got 1.5"),
        (lambda: S6(3, 4, dt_min=0), "S6.dt_min must be a positive number, got 0"),
        (lambda: S6(3, 4, dt_max="0.1"), "S6.dt_max must be a positive number, got '0.1'"),
        (lambda: S6(3, 4, dt_min=0.2, dt_max=0.1), "S6 needs dt_min <= dt_max, got dt_min=0.2, dt_max=0.1"),
        (lambda: S6(3, 4, input_projection=1), "S6.input_projection must be None, True or False, got 1"),
        (lambda: S6(3, 4, input_projection=False), "S6.input_projection=False needs input_size == hidden_size"),
        (lambda: S6(3, 0), "S6.hidden_size must be a positive integer, got 0"),
    ],
)
def test_bad_options_are_one_line_config_errors(build, message):
    with pytest.raises(ConfigError) as info:
        build()
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
