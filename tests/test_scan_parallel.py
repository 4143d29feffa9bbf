"""The parallel (associative-scan) mode of the engine against the sequential one and NumPy.

Every linear cell in `gatedrnn.CELLS` runs both ways; they agree in values and gradients with
lengths, reverse, an initial carry, resets, chunking and remat. Resets are also checked against
an independent reference: each segment run on its own.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatedrnn import CELLS, LSTM, ScanOptions, linear_scan, make_cell, scan_cell
from gatedrnn.scan import linear_cells, log_linear_scan, resolve_mode
from gatedrnn.validation import ConfigError

B, T, D, H = 3, 11, 4, 6
LINEAR = {
    "mingru": {},
    "mingru_tanh_expanded": dict(candidate="tanh", expansion=2.0),
    "minlstm": {},
    "minlstm_linear": dict(candidate="linear", normalise=False),
    "lru": {},
    "rglru": dict(num_heads=2),
    "s6": dict(ssm_state_size=2),
}


def _cell(name):
    base = name.split("_")[0]
    cell = make_cell(base, D, H, **LINEAR[name])
    return cell, cell.init(jax.random.key(1))


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(B, T, D)), jnp.float32)
    lengths = jnp.asarray([T, 7, 0], jnp.int32)
    resets = jnp.asarray(rng.random((B, T)) < 0.25)
    return x, lengths, resets


def _carry(cell, seed=3):
    zeros = cell.initial_carry((B,))
    h = jax.random.normal(jax.random.key(seed), zeros.shape)
    return h.astype(zeros.dtype) if not getattr(cell, "log_space", False) else jnp.abs(h) + 0.1


def _close(a, b, rtol=2e-5, atol=2e-5):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=atol), a, b)


def test_every_registered_linear_cell_is_covered_and_auto_picks_parallel():
    assert set(linear_cells()) == {"mingru", "minlstm", "lru", "rglru", "s6"}
    assert {n.split("_")[0] for n in LINEAR} == set(linear_cells())
    for name in linear_cells():
        assert resolve_mode(make_cell(name, D, H), "auto") == "parallel"
    assert resolve_mode(LSTM(D, H), "auto") == "sequential"


def test_parallel_mode_on_a_nonlinear_cell_is_one_line_naming_the_linear_cells():
    cell = LSTM(D, H)
    with pytest.raises(ConfigError) as error:
        scan_cell(cell, cell.init(jax.random.key(0)), jnp.zeros((B, T, D)), mode="parallel")
    message = str(error.value)
    assert "\n" not in message and "LSTM" in message
    assert all(name in message for name in ("mingru", "minlstm", "lru", "rglru", "s6"))


CASES = {
    "plain": dict(),
    "lengths_reverse": dict(seq_lengths=True, reverse=True),
    "carry_resets": dict(initial_carry=True, resets=True),
    "everything": dict(seq_lengths=True, reverse=True, initial_carry=True, resets=True),
    "chunked": dict(seq_lengths=True, resets=True, parallel_chunk=4),
    "chunked_remat": dict(seq_lengths=True, initial_carry=True, remat=True),
    "associative": dict(seq_lengths=True, reverse=True, initial_carry=True, resets=True, parallel_scan="associative"),
    "associative_chunked": dict(seq_lengths=True, resets=True, parallel_chunk=4, parallel_scan="associative"),
    "linear": dict(seq_lengths=True, reverse=True, initial_carry=True, resets=True, parallel_scan="linear"),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", LINEAR)
def test_parallel_equals_sequential_in_values_and_gradients(name, case):
    cell, params = _cell(name)
    x, lengths, resets = _inputs()
    spec = CASES[case]
    kw = dict(reverse=spec.get("reverse", False))
    if spec.get("seq_lengths"):
        kw["seq_lengths"] = lengths
    if spec.get("resets"):
        kw["resets"] = resets
    h0 = _carry(cell) if spec.get("initial_carry") else None
    parallel = ScanOptions(mode="parallel", parallel_chunk=spec.get("parallel_chunk"), remat=spec.get("remat", False),
                           parallel_scan=spec.get("parallel_scan", "auto"))

    def loss(params, x, h0, options):
        ys, h = scan_cell(cell, params, x, initial_carry=h0, options=options, **kw)
        w = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        return jnp.sum(ys * w) + jnp.sum(jnp.abs(h) ** 2), (ys, h)

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2) if h0 is not None else (0, 1), has_aux=True),
                   static_argnums=3)
    (_, out_p), grads_p = grad(params, x, h0, parallel)
    (_, out_s), grads_s = grad(params, x, h0, ScanOptions(mode="sequential"))
    _close(out_p, out_s)
    _close(grads_p, grads_s, rtol=1e-4, atol=1e-4)
    if "seq_lengths" in kw:
        ys = np.asarray(out_p[0])
        assert not ys[1, 7:].any() and not ys[2].any()  # padded outputs exactly zero
        _close(out_p[1][2], h0[2] if h0 is not None else jnp.zeros_like(out_p[1][2]))  # a 0-length sequence


def _segments(resets_row, length):
    starts = [0] + [t for t in range(1, length) if resets_row[t]]
    return list(zip(starts, starts[1:] + [length]))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name, mode", [("mingru", "parallel"), ("mingru", "sequential"), ("gru", "sequential")])
def test_resets_equal_running_each_segment_on_its_own(name, mode, reverse):
    """The independent reference: a reset splits a sequence into segments, each run from zeros
    (the first from the initial carry forwards, the last from it backwards, unless step 0 is a
    marked start too)."""
    cell = make_cell(name, D, H)
    params = cell.init(jax.random.key(0))
    x, lengths, resets = _inputs(seed=5)
    resets = resets.at[0, 0].set(True).at[1, 0].set(False)  # both kinds of sequence start
    h0 = _carry(cell)
    ys, carry = scan_cell(cell, params, x, initial_carry=h0, seq_lengths=lengths, resets=resets, reverse=reverse,
                          mode=mode)
    for b in range(B):
        n = int(lengths[b])
        segments = _segments(np.asarray(resets[b]), n) if n else []
        want_y = np.zeros((T, cell.output_size), np.float32)
        want_carry = np.asarray(h0[b])
        for k, (s, e) in enumerate(segments):
            first = k == (len(segments) - 1 if reverse else 0)
            init = h0[b:b + 1] if first and not resets[b, 0] else None  # step 0 marked: no initial carry
            y, c = scan_cell(cell, params, x[b:b + 1, s:e], initial_carry=init, reverse=reverse, mode=mode)
            want_y[s:e] = np.asarray(y[0])
            if k == (0 if reverse else len(segments) - 1):
                want_carry = np.asarray(c[0])
        np.testing.assert_allclose(np.asarray(ys[b]), want_y, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(carry[b]), want_carry, rtol=1e-5, atol=1e-5)


def _numpy_linear(a, b, h0):
    h, out = h0, []
    for t in range(a.shape[0]):
        h = a[t] * h + b[t]
        out.append(h)
    return np.stack(out)


@pytest.mark.parametrize("algorithm", ["associative", "linear"])
@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
def test_linear_scan_equals_the_loop_and_its_custom_vjp_equals_autodiff(dtype, algorithm):
    rng = np.random.default_rng(0)
    shape = (37, 2, 3)

    def sample(scale=1.0):
        z = rng.uniform(-scale, scale, shape)
        return (z + 1j * rng.uniform(-scale, scale, shape) if dtype == np.complex64 else z).astype(dtype)

    a, b, h0 = sample(0.99), sample(), sample()[0]
    ours_scan = functools.partial(linear_scan, algorithm=algorithm)
    h = ours_scan(jnp.asarray(a), jnp.asarray(b), jnp.asarray(h0))
    np.testing.assert_allclose(np.asarray(h), _numpy_linear(a, b, h0), rtol=1e-4, atol=1e-5)

    def by_loop(a, b, h0):
        return jax.lax.scan(lambda h, ab: (ab[0] * h + ab[1],) * 2, h0, (a, b))[1]

    weights = jnp.asarray(sample())

    def loss(fn):
        return lambda a, b, h0: jnp.real(jnp.sum(fn(a, b, h0) * weights))

    ours = jax.grad(loss(ours_scan), argnums=(0, 1, 2))(a, b, h0)
    want = jax.grad(loss(by_loop), argnums=(0, 1, 2))(a, b, h0)
    _close(ours, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("algorithm", ["associative", "linear"])
def test_log_linear_scan_equals_the_loop_with_resets_and_a_negative_initial_state(algorithm):
    rng = np.random.default_rng(1)
    shape = (29, 2, 3)
    a, b = rng.uniform(0.05, 0.99, shape).astype(np.float32), rng.uniform(0.1, 2.0, shape).astype(np.float32)
    a[5] = 0.0  # a reset: log a = -inf
    b[9] = 0.0  # log b = -inf (a padded step)
    h0 = rng.normal(size=shape[1:]).astype(np.float32)
    with np.errstate(divide="ignore"):
        log_a, log_b = jnp.log(a), jnp.log(b)
    h = log_linear_scan(log_a, log_b, jnp.asarray(h0), algorithm)
    np.testing.assert_allclose(np.asarray(h), _numpy_linear(a, b, h0), rtol=1e-5, atol=1e-6)
    grads = jax.grad(lambda la, lb, h0: jnp.sum(jnp.sin(log_linear_scan(la, lb, h0, algorithm))), argnums=(0, 1, 2))(
        log_a, log_b, jnp.asarray(h0))
    want = jax.grad(lambda a, b, h0: jnp.sum(jnp.sin(linear_scan(a, b, h0))), argnums=(0, 1, 2))(
        jnp.asarray(a), jnp.asarray(b), jnp.asarray(h0))
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)
    _close(grads[0], want[0] * a, rtol=1e-4, atol=1e-5)  # d log a = a d a
    _close(grads[1], want[1] * b, rtol=1e-4, atol=1e-5)
    _close(grads[2], want[2], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["mingru", "lru"])
def test_bfloat16_compute_accumulates_the_scan_in_float32(name):
    cell, params = _cell(name)
    x, lengths, resets = _inputs()
    kw = dict(seq_lengths=lengths, resets=resets, mode="parallel")
    ys16, h16 = scan_cell(cell, params, x, dtype="bfloat16", **kw)
    ys32, h32 = scan_cell(cell, params, x, **kw)
    assert ys16.dtype == jnp.bfloat16
    assert h16.dtype == cell.initial_carry((1,), jnp.bfloat16).dtype
    np.testing.assert_allclose(np.asarray(ys16, np.float32), np.asarray(ys32), rtol=0.05, atol=0.05)
    grads = jax.grad(lambda p: jnp.sum(scan_cell(cell, p, x, dtype="bfloat16", **kw)[0].astype(jnp.float32)))(params)
    assert all(np.isfinite(np.asarray(g, np.float32)).all() for g in jax.tree.leaves(grads))


def test_jit_equals_eager_in_parallel_mode():
    cell, params = _cell("minlstm")
    x, lengths, resets = _inputs()
    run = functools.partial(scan_cell, cell, mode="parallel", parallel_chunk=3)
    eager = run(params, x, seq_lengths=lengths, resets=resets, reverse=True)
    jitted = jax.jit(lambda p, x, n, r: run(p, x, seq_lengths=n, resets=r, reverse=True))(params, x, lengths, resets)
    _close(eager, jitted, rtol=1e-6, atol=1e-6)


def test_parallel_chunk_and_scan_are_validated_in_one_line():
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ConfigError, match=r"^ScanOptions.parallel_chunk must be None or a positive int, got"):
            ScanOptions(parallel_chunk=bad)
    with pytest.raises(ConfigError, match=r"^ScanOptions.parallel_scan='tree' is not valid; choose one of "
                                          r"\['associative', 'auto', 'linear'\]$"):
        ScanOptions(parallel_scan="tree")


def test_auto_parallel_scan_is_the_linear_loop_on_cpu():
    from gatedrnn.scan import resolve_parallel_scan

    assert jax.default_backend() == "cpu" and resolve_parallel_scan("auto") == "linear"
    assert resolve_parallel_scan("associative") == "associative"


def test_resets_of_the_wrong_shape_or_dtype_are_refused():
    cell, params = _cell("mingru")
    x, _, resets = _inputs()
    with pytest.raises(ValueError, match=r"resets must be bool of shape \[batch, time\]"):
        scan_cell(cell, params, x, resets=resets.astype(jnp.int32))
    with pytest.raises(ValueError, match=r"resets must be bool of shape \[batch, time\]"):
        scan_cell(cell, params, x, resets=resets[:, :-1])


@functools.cache
def _pair(name, reverse, chunk):
    cell, params = _cell(name)
    kw = dict(reverse=reverse)
    run = {m: jax.jit(lambda x, n, r, m=m: scan_cell(cell, params, x, seq_lengths=n, resets=r, mode=m,
                                                    parallel_chunk=chunk, **kw)) for m in ("parallel", "sequential")}
    return cell, run


@given(
    st.sampled_from(list(LINEAR)),
    st.booleans(),
    st.sampled_from([None, 2, 5]),
    st.lists(st.integers(0, T), min_size=B, max_size=B),
    st.integers(0, 2**31 - 1),
)
def test_property_parallel_equals_sequential(name, reverse, chunk, lengths, seed):
    cell, run = _pair(name, reverse, chunk)
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(B, T, D)), jnp.float32)
    resets = jnp.asarray(rng.random((B, T)) < 0.3)
    n = jnp.asarray(lengths, jnp.int32)
    _close(run["parallel"](x, n, resets), run["sequential"](x, n, resets), rtol=3e-5, atol=3e-5)


def test_every_cell_in_the_registry_states_whether_it_is_linear():
    for name, cls in CELLS.items():
        assert isinstance(cls.linear, bool), name
