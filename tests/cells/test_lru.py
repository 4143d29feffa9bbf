"""The LRU (Orvieto et al. 2023) against NumPy transcriptions of the paper's Appendix A code."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from gatedrnn import scan_cell
from gatedrnn.cells.lru import LRU
from gatedrnn.validation import ConfigError

CELLS = {
    "diagonal_D": LRU(4, 4, r_min=0.5, r_max=0.95, max_phase=math.pi),  # the paper's D * x
    "dense_D": LRU(3, 5, state_size=6, r_min=0.2, r_max=0.99),  # d != h: D [d, h]
}


def _params(cell, seed=0):
    return cell.init(jax.random.key(seed))


def _np(params):
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


def paper_elements(p, x):
    """The paper's forward(): Lambda [n] and the elements B_norm @ u_t [t, n], complex128."""
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    b_norm = (p["B_re"] + 1j * p["B_im"]) * np.exp(p["gamma_log"])[:, None]
    return lam, x @ b_norm.T


def paper_readout(p, h, x):
    """y_t = Re(C h_t) + D x_t (D diagonal [h], or dense [d, h] when d != h)."""
    c = p["C_re"] + 1j * p["C_im"]
    skip = x * p["D"] if p["D"].ndim == 1 else x @ p["D"]
    return (h @ c.T).real + skip


def lru_loop(p, x, h0=None, resets=None):
    """Sequential h_t = Lambda h_{t-1} + B_norm u_t, state zeroed where resets[t]; x [t, d] float64."""
    lam, bu = paper_elements(p, x)
    h = np.zeros(lam.shape, np.complex128) if h0 is None else np.asarray(h0, np.complex128)
    hs = []
    for t in range(x.shape[0]):
        if resets is not None and resets[t]:
            h = np.zeros_like(h)
        h = lam * h + bu[t]
        hs.append(h)
    hs = np.stack(hs)
    return paper_readout(p, hs, x), hs


def binary_operator_diag(q_i, q_j):
    """The paper's operator: (A_i, b_i) . (A_j, b_j) = (A_j A_i, A_j b_i + b_j)."""
    a_i, b_i = q_i
    a_j, b_j = q_j
    return a_j * a_i, a_j * b_i + b_j


def hillis_steele_scan(op, elements):
    """Inclusive scan in ceil(log2 T) rounds (what an associative scan computes): element t
    combines with element t - 2^k in round k. Relies on op being associative."""
    a, b = (np.array(e) for e in elements)
    offset = 1
    while offset < a.shape[0]:
        prev_a, prev_b = a[:-offset].copy(), b[:-offset].copy()
        a[offset:], b[offset:] = op((prev_a, prev_b), (a[offset:], b[offset:]))
        offset *= 2
    return a, b


@pytest.mark.parametrize("name", CELLS)
def test_matches_numpy_transcription_of_the_paper(name):
    cell = CELLS[name]
    params = _params(cell)
    x = np.random.default_rng(1).normal(size=(2, 9, cell.input_size)).astype(np.float32)
    h0 = jax.lax.complex(*jax.random.normal(jax.random.key(3), (2, 2, cell.state_size)))  # [b, n] complex64
    ys, h = scan_cell(cell, params, jnp.asarray(x), initial_carry=h0, mode="sequential")
    assert ys.shape == (2, 9, cell.hidden_size) and ys.dtype == jnp.float32 and h.dtype == jnp.complex64
    for b in range(2):
        want_y, want_h = lru_loop(_np(params), x[b].astype(np.float64), h0=np.asarray(h0[b]))
        np.testing.assert_allclose(np.asarray(ys[b]), want_y, atol=2e-5, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(h[b]), want_h[-1], atol=2e-5, rtol=1e-5)


def test_paper_parallel_form_equals_the_loop():
    cell = CELLS["dense_D"]
    p = _np(_params(cell))
    x = np.random.default_rng(2).normal(size=(13, cell.input_size))  # 13: not a power of two
    lam, bu = paper_elements(p, x)
    _, hs = hillis_steele_scan(binary_operator_diag, (np.repeat(lam[None], 13, axis=0), bu))
    want_y, want_hs = lru_loop(p, x)
    np.testing.assert_allclose(hs, want_hs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(paper_readout(p, hs, x), want_y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", CELLS)
def test_coefficients_under_jax_associative_scan_equal_the_sequential_engine(name):
    """The cell's (a, b) through the paper's parallel_scan(binary_operator_diag) give the engine's states."""
    cell = CELLS[name]
    params = _params(cell)
    x = jax.random.normal(jax.random.key(4), (11, 2, cell.input_size))  # [t, b, d]
    xp = cell.project(params, x)
    a, b = cell.linear_recurrence(params, xp)
    _, hs = jax.lax.associative_scan(binary_operator_diag, (jnp.broadcast_to(a, b.shape), b))
    ys, h = scan_cell(cell, params, jnp.swapaxes(x, 0, 1), mode="sequential")
    np.testing.assert_allclose(np.asarray(h), np.asarray(hs[-1]), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(ys), np.swapaxes(np.asarray(cell.readout(params, hs, xp)), 0, 1), atol=1e-5)


def test_init_lies_on_the_ring_and_gamma_normalises():
    r_min, r_max, max_phase = 0.4, 0.8, math.pi / 3
    d, n = 7, 4000
    cell = LRU(d, 5, state_size=n, r_min=r_min, r_max=r_max, max_phase=max_phase)
    p = _params(cell)
    lam = np.asarray(cell.diag_lambda(p))
    r, phase = np.abs(lam), np.angle(lam)
    assert np.all((r >= r_min - 1e-6) & (r <= r_max + 1e-6))
    assert np.all((phase >= 0) & (phase <= max_phase + 1e-6))
    # uniform on the ring's area: |lambda|^2 ~ U[r_min^2, r_max^2]; phase ~ U[0, max_phase]
    assert abs(np.mean(r**2) - (r_min**2 + r_max**2) / 2) < 0.01
    assert abs(np.mean(phase) - max_phase / 2) < 0.03
    np.testing.assert_allclose(np.exp(np.asarray(p["gamma_log"])), np.sqrt(1 - r**2), rtol=1e-5)
    assert all(v.dtype == jnp.float32 for v in p.values())


def test_init_scales_are_the_papers():
    """B ~ N(0, 1/(2d)), C ~ N(0, 1/n), diagonal D ~ N(0, 1); the dense D [d, h] ~ N(0, 1/d)."""
    d, h, n = 60, 50, 40
    dense, diagonal = LRU(d, h, state_size=n).init(jax.random.key(1)), LRU(h, h).init(jax.random.key(2))
    assert dense["B_re"].shape == (n, d) and dense["C_re"].shape == (h, n)
    assert dense["D"].shape == (d, h) and diagonal["D"].shape == (h,)
    for name, var in [("B_re", 1 / (2 * d)), ("B_im", 1 / (2 * d)), ("C_re", 1 / n), ("C_im", 1 / n), ("D", 1 / d)]:
        assert abs(np.var(np.asarray(dense[name])) / var - 1) < 0.1, name
    assert abs(np.var(np.asarray(diagonal["D"])) - 1) < 0.45  # 50 samples


def test_init_with_r_max_one_is_finite():
    p = _params(LRU(2, 3, state_size=5000, r_min=0.0, r_max=1.0))
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in p.values())


def test_gradients_are_real_and_finite_and_match_finite_differences():
    cell = CELLS["dense_D"]
    params = _params(cell)
    x = jax.random.normal(jax.random.key(5), (2, 4, cell.input_size))

    def loss(params, x):
        ys, h = scan_cell(cell, params, x, seq_lengths=jnp.array([4, 3]), reverse=True, mode="sequential")
        return jnp.sum(jnp.sin(ys)) + jnp.sum(jnp.abs(h) ** 2)

    grads = jax.jit(jax.grad(loss))(params, x)
    assert all(g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g))) for g in grads.values())
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in grads.values())
    with jax.enable_x64():
        params64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        check_grads(jax.jit(loss), (params64, x.astype(jnp.float64)), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


def test_float64_compute_has_a_complex128_state():
    cell = CELLS["diagonal_D"]
    with jax.enable_x64():
        params = jax.tree.map(lambda a: a.astype(jnp.float64), _params(cell))
        x = np.random.default_rng(6).normal(size=(1, 8, cell.input_size))
        ys, h = scan_cell(cell, params, jnp.asarray(x), mode="sequential")
        assert ys.dtype == jnp.float64 and h.dtype == jnp.complex128
        want_y, _ = lru_loop(_np(params), x[0])
        np.testing.assert_allclose(np.asarray(ys[0]), want_y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(r_min=-0.1), "LRU.r_min must be a non-negative number, got -0.1"),
        (dict(r_max=1.5), "LRU.r_max must be a number with r_min=0.0 < r_max <= 1, got 1.5"),
        (dict(r_min=0.5, r_max=0.5), "LRU.r_max must be a number with r_min=0.5 < r_max <= 1, got 0.5"),
        (dict(max_phase=0.0), "LRU.max_phase must be a positive number, got 0.0"),
        (dict(state_size=0), "LRU.state_size must be a positive integer, got 0"),
    ],
)
def test_bad_options_raise_one_line(options, message):
    with pytest.raises(ConfigError) as err:
        LRU(3, 4, **options)
    assert str(err.value) == message


def test_equal_configs_are_equal():
    assert LRU(3, 4) == LRU(3, 4, state_size=4) and hash(LRU(3, 4)) == hash(LRU(3, 4, state_size=4))


PARALLEL_CASES = {
    "plain": {},
    "reverse_lengths": dict(seq_lengths=jnp.array([5, 7, 0]), reverse=True),
    "resets": dict(resets=jnp.array([[0, 0, 1, 0, 0, 1, 0], [1, 0, 0, 0, 1, 1, 0], [0] * 7], bool)),
    "resets_reverse_lengths": dict(resets=jnp.array([[0, 1, 0, 0, 1, 0, 0]] * 3, bool), reverse=True,
                                   seq_lengths=jnp.array([7, 4, 2]), initial_carry=True),
    "chunked_remat": dict(parallel_chunk=3, remat=True, seq_lengths=jnp.array([7, 6, 2]), initial_carry=True),
}


def _run(cell, params, x, h0, mode, case):
    kwargs = dict(case, initial_carry=h0 if case.get("initial_carry") else None)
    if mode == "sequential":
        kwargs.pop("parallel_chunk", None)
    return scan_cell(cell, params, x, mode=mode, **kwargs)


@pytest.mark.parametrize("case", PARALLEL_CASES)
def test_parallel_equals_sequential_values_and_gradients(case):
    cell = CELLS["dense_D"]
    case = PARALLEL_CASES[case]
    params = _params(cell)
    x = jax.random.normal(jax.random.key(7), (3, 7, cell.input_size))
    h0 = jax.lax.complex(*jax.random.normal(jax.random.key(8), (2, 3, cell.state_size)))

    def loss(params, x, h0, mode):
        ys, h = _run(cell, params, x, h0, mode, case)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(jnp.real(h) * jnp.imag(h)) + jnp.sum(jnp.real(h)), (ys, h)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True), static_argnums=3)
    (g_seq, (ys_seq, h_seq)), (g_par, (ys_par, h_par)) = grad(params, x, h0, "sequential"), grad(params, x, h0, "parallel")
    assert h_par.dtype == jnp.complex64 and ys_par.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(ys_par), np.asarray(ys_seq), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(h_par), np.asarray(h_seq), atol=1e-5, rtol=1e-5)
    if "seq_lengths" in case:  # padded outputs exactly zero
        pad = np.arange(7)[None, :] >= np.asarray(case["seq_lengths"])[:, None]
        assert np.all(np.asarray(ys_par)[pad] == 0)
    jax.tree.map(lambda p, s: np.testing.assert_allclose(np.asarray(p), np.asarray(s), atol=1e-4, rtol=1e-5), g_par, g_seq)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(g_par))


def test_parallel_resets_match_the_numpy_loop():
    cell = CELLS["diagonal_D"]
    params = _params(cell)
    resets = np.array([[0, 0, 1, 0, 0, 0, 1, 0, 0]], bool)
    x = np.random.default_rng(9).normal(size=(1, 9, cell.input_size)).astype(np.float32)
    h0 = jax.lax.complex(*jax.random.normal(jax.random.key(10), (2, 1, cell.state_size)))
    ys, h = scan_cell(cell, params, jnp.asarray(x), initial_carry=h0, resets=jnp.asarray(resets), mode="parallel")
    want_y, want_h = lru_loop(_np(params), x[0].astype(np.float64), h0=np.asarray(h0[0]), resets=resets[0])
    np.testing.assert_allclose(np.asarray(ys[0]), want_y, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(h[0]), want_h[-1], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
def test_bfloat16_compute_keeps_a_complex64_state(mode):
    cell = LRU(4, 6, state_size=5, r_min=0.9, r_max=0.999, max_phase=math.pi / 10)  # the paper's long-range init
    params = _params(cell)
    x = jax.random.normal(jax.random.key(11), (2, 12, cell.input_size))
    run = jax.jit(lambda p, dtype: scan_cell(cell, p, x, dtype=dtype, mode=mode, seq_lengths=jnp.array([12, 9])),
                  static_argnums=1)
    y32, h32 = run(params, None)
    y16, h16 = run(params, "bfloat16")
    assert y16.dtype == jnp.bfloat16 and h16.dtype == jnp.complex64
    np.testing.assert_allclose(np.asarray(y16, np.float32), np.asarray(y32), atol=0.1, rtol=0.05)
    np.testing.assert_allclose(np.asarray(h16), np.asarray(h32), atol=0.05, rtol=0.05)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(run(p, "bfloat16")[0].astype(jnp.float32))))(params)
    assert all(g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_auto_mode_is_parallel_and_jit_equals_eager():
    cell = CELLS["diagonal_D"]
    params = _params(cell)
    x = jax.random.normal(jax.random.key(12), (2, 5, cell.input_size))
    eager, _ = scan_cell(cell, params, x)
    jitted, _ = jax.jit(lambda p, x: scan_cell(cell, p, x, mode="parallel"))(params, x)
    sequential, _ = scan_cell(cell, params, x, mode="sequential")
    np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(eager), np.asarray(sequential), atol=1e-5, rtol=1e-5)
