"""The scan engine: against a Python loop of steps, jit vs eager, remat, unroll, reversal, lengths."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gatedrnn import GRU, LSTM, ScanOptions, flip_sequences, scan_cell
from gatedrnn.scan import with_overrides
from gatedrnn.validation import ConfigError

from zoo import FAST, ZOO, slow_unless

LENGTHS = jnp.array([7, 3, 0, 5])


def _setup(name="lstm_peephole", batch=4, time=7):
    cell, _ = ZOO[name]
    params = cell.init(jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (batch, time, cell.input_size))
    return cell, params, xs


def _python_loop(cell, params, xs, lengths, reverse=False):
    """Step by step, one sequence at a time, slicing off padding by hand."""
    ys = np.zeros(xs.shape[:2] + (cell.output_size,), np.float32)
    carries = []
    for b, n in enumerate(np.asarray(lengths)):
        carry = cell.initial_carry((1,))
        seq = xs[b:b + 1, :n]
        order = range(n - 1, -1, -1) if reverse else range(n)
        for t in order:
            carry, y = cell.step(params, carry, cell.project(params, seq[:, t]))
            ys[b, t] = np.asarray(y[0])
        carries.append(carry)
    return ys, jax.tree.map(lambda *c: jnp.concatenate(c), *carries)


@pytest.mark.parametrize("name", slow_unless(["lstm_peephole", "gru", "mgu", "lstm_proj"], ("gru", "lstm_proj")))
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_equals_python_loop_of_steps(name, reverse):
    cell, params, xs = _setup(name)
    ys, carry = scan_cell(cell, params, xs, seq_lengths=LENGTHS, reverse=reverse)
    want_ys, want_carry = _python_loop(cell, params, xs, LENGTHS, reverse)
    np.testing.assert_allclose(ys, want_ys, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), carry, want_carry)


def test_padded_outputs_are_exactly_zero_and_carry_is_last_valid():
    cell, params, xs = _setup()
    ys, carry = scan_cell(cell, params, xs, seq_lengths=LENGTHS)
    for b, n in enumerate(np.asarray(LENGTHS)):
        assert np.all(np.asarray(ys[b, n:]) == 0.0)
    np.testing.assert_array_equal(carry.h[2], np.zeros(cell.output_size))  # zero length: initial carry
    np.testing.assert_allclose(carry.h[1], ys[1, 2], atol=0)


def test_jit_equals_eager():
    cell, params, xs = _setup("gru")
    run = lambda p, x, n: scan_cell(cell, p, x, seq_lengths=n, reverse=True)  # noqa: E731
    eager = run(params, xs, LENGTHS)
    jitted = jax.jit(run)(params, xs, LENGTHS)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), eager, jitted)


@pytest.mark.slow
@pytest.mark.parametrize("remat", [True, "sqrt", 2, 3, 7, 10])
def test_remat_equals_plain_scan_in_values_and_grads(remat):
    cell, params, xs = _setup("lstm")

    def loss(p, x, remat):
        ys, carry = scan_cell(cell, p, x, seq_lengths=LENGTHS, remat=remat)
        return jnp.sum(ys**2) + jnp.sum(carry.c)

    run = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=2)
    plain_val, plain_grad = run(params, xs, False)
    val, grad = run(params, xs, remat)
    np.testing.assert_allclose(val, plain_val, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), grad, plain_grad)


def test_remat_without_lengths_masks_the_padded_tail():
    cell, params, xs = _setup("gru", time=10)
    plain = scan_cell(cell, params, xs)
    chunked = scan_cell(cell, params, xs, remat=4)  # 10 steps -> 3 chunks of 4, 2 padded steps
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), chunked, plain)


@pytest.mark.slow
def test_remat_memory_grows_sublinearly():
    cell = LSTM(8, 32)
    params = cell.init(jax.random.key(0))

    def temp_bytes(time, remat):
        xs = jnp.zeros((4, time, 8))
        loss = lambda p: jnp.sum(scan_cell(cell, p, xs, remat=remat)[1].h)  # noqa: E731
        return jax.jit(jax.grad(loss)).lower(params).compile().memory_analysis().temp_size_in_bytes

    plain = [temp_bytes(t, False) for t in (1024, 4096)]
    remat = [temp_bytes(t, True) for t in (1024, 4096)]
    assert plain[1] / plain[0] > 3.0  # linear in T
    assert remat[1] / remat[0] < 3.0  # ~ sqrt(4) = 2, plus the O(T) input and output
    assert remat[1] < plain[1] / 10


@pytest.mark.parametrize("unroll", [2, 3, True])
def test_unroll_does_not_change_results(unroll):
    cell, params, xs = _setup("lstm_cifg")
    want = scan_cell(cell, params, xs, seq_lengths=LENGTHS)
    got = scan_cell(cell, params, xs, seq_lengths=LENGTHS, unroll=unroll)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), got, want)


def test_initial_carry_is_used_and_continues_a_sequence():
    cell, params, xs = _setup("lstm")
    ys, carry = scan_cell(cell, params, xs)
    ys1, carry1 = scan_cell(cell, params, xs[:, :4])
    ys2, carry2 = scan_cell(cell, params, xs[:, 4:], initial_carry=carry1)
    np.testing.assert_allclose(jnp.concatenate([ys1, ys2], axis=1), ys, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), carry2, carry)


def test_flip_sequences_reverses_within_lengths_and_round_trips():
    x = jnp.arange(12).reshape(2, 6)
    flipped = flip_sequences(x, jnp.array([4, 6]))
    np.testing.assert_array_equal(flipped, [[3, 2, 1, 0, 4, 5], [11, 10, 9, 8, 7, 6]])
    np.testing.assert_array_equal(flip_sequences(flipped, jnp.array([4, 6])), x)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(seq_lengths=jnp.array([1, 2, 3])), r"seq_lengths must be integers of shape \[batch\]=\(4,\)"),
        (dict(seq_lengths=jnp.array([1.0, 2.0, 3.0, 4.0])), "seq_lengths must be integers"),
        (dict(seq_lengths=jnp.array([1, 2, 8, 4])), r"seq_lengths must lie in \[0, time=7\], got min 1 max 8"),
        (dict(seq_lengths=jnp.array([1, -1, 3, 4])), r"seq_lengths must lie in \[0, time=7\]"),
        (dict(remat=-3), "remat must be False, True, 'sqrt' or a positive chunk length, got -3"),
        (dict(projection_chunk=0), "projection_chunk must be None or a positive int, got 0"),
    ],
)
def test_bad_engine_arguments_are_named(kwargs, message):
    cell, params, xs = _setup("gru")
    with pytest.raises(ValueError, match=message):
        scan_cell(cell, params, xs, **kwargs)


def test_wrong_feature_size_is_named():
    cell = GRU(3, 4)
    with pytest.raises(ValueError, match=r"xs must have shape \[batch, time, 3\] for GRU, got \(2, 5, 6\)"):
        scan_cell(cell, cell.init(jax.random.key(0)), jnp.zeros((2, 5, 6)))


FUSED = [(name, "fused") for name in sorted(ZOO)] + [
    (name, "replay") for name in sorted(ZOO) if ZOO[name][0].analytic_backward
]


@pytest.mark.parametrize("name, vjp", slow_unless(FUSED, lambda p: p[0] in FAST))
def test_fused_vjp_equals_autodiff_in_values_and_gradients(name, vjp):
    """"fused" is the cell's analytic backward where it has one; "replay" the generic one."""
    cell, _ = ZOO[name]
    params = cell.init(jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (4, 7, cell.input_size))
    carry0 = jax.tree.map(lambda c: c + 0.1, cell.initial_carry((4,)))

    def loss(params, xs, carry0, vjp, reverse):
        ys, carry = scan_cell(cell, params, xs, initial_carry=carry0, seq_lengths=LENGTHS, reverse=reverse, vjp=vjp)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(c**2) for c in jax.tree.leaves(carry)), ys

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True), static_argnums=(3, 4))
    for reverse in (False, True):
        (want, ys_want), (got, ys_got) = grad(params, xs, carry0, "autodiff", reverse), grad(params, xs, carry0, vjp, reverse)
        np.testing.assert_allclose(ys_got, ys_want, atol=1e-6)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-5), got, want)


@pytest.mark.slow
def test_fused_vjp_composes_with_remat_and_bfloat16():
    cell, params, xs = _setup("lstm_proj", time=9)

    def loss(p, vjp, remat, dtype):
        ys, _ = scan_cell(cell, p, xs, seq_lengths=LENGTHS, vjp=vjp, remat=remat, dtype=dtype)
        return jnp.sum(ys.astype(jnp.float32) ** 2)

    grad = jax.jit(jax.grad(loss), static_argnums=(1, 2, 3))
    want = grad(params, "autodiff", False, None)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), grad(params, "fused", 4, None), want)
    bf16 = grad(params, "fused", False, jnp.bfloat16)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=0.1, rtol=0.1), bf16, want)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(bf16))


def test_analytic_backward_covers_the_plain_lstm_and_the_reset_after_gru_only():
    covered = sorted(name for name, (cell, _) in ZOO.items() if cell.analytic_backward)
    assert covered == ["gru", "gru_nobias", "lstm"]


class _Sentinel(Exception):
    pass


class _RecordingLSTM(LSTM):
    def step_backward(self, *args):
        raise _Sentinel


@pytest.mark.parametrize("vjp, used", [("fused", True), ("replay", False), ("autodiff", False)])
def test_fused_vjp_dispatches_to_the_cells_analytic_backward(vjp, used):
    cell = _RecordingLSTM(3, 4)
    params, xs = cell.init(jax.random.key(0)), jnp.ones((2, 5, 3))
    grad = lambda: jax.grad(lambda p: jnp.sum(scan_cell(cell, p, xs, vjp=vjp)[0]))(params)  # noqa: E731
    if used:
        with pytest.raises(_Sentinel):
            grad()
    else:
        grad()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_analytic_backward_composes_with_remat_chunks_and_bfloat16(name):
    cell, params, xs = _setup(name, time=9)

    def loss(p, vjp, remat, dtype, chunk=32):
        ys, carry = scan_cell(cell, p, xs, seq_lengths=LENGTHS, vjp=vjp, remat=remat, dtype=dtype,
                              reverse=True, projection_chunk=chunk)
        return jnp.sum(ys.astype(jnp.float32) ** 2) + sum(jnp.sum(c.astype(jnp.float32)) for c in jax.tree.leaves(carry))

    grad = jax.jit(jax.grad(loss), static_argnums=(1, 2, 3, 4))
    want = grad(params, "autodiff", False, None, 32)
    for remat, chunk in ((4, 32), (False, 2), (False, None)):
        got = grad(params, "fused", remat, None, chunk)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), got, want)
    bf16 = grad(params, "fused", False, jnp.bfloat16, 32)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=0.1, rtol=0.1), bf16, want)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(bf16))


def test_bad_vjp_is_named():
    cell, params, xs = _setup("gru")
    with pytest.raises(ValueError, match="vjp='fast' is not valid; choose one of"):
        scan_cell(cell, params, xs, vjp="fast")


@pytest.mark.parametrize("chunk", slow_unless([None, 1, 3, 32], (3,)))
@pytest.mark.parametrize("vjp", ["fused", "autodiff"])
def test_projection_chunks_do_not_change_values_or_gradients(chunk, vjp):
    cell, params, xs = _setup("lstm_peephole", time=7)

    def loss(p, x, chunk):
        ys, carry = scan_cell(cell, p, x, seq_lengths=LENGTHS, reverse=True, projection_chunk=chunk, vjp=vjp)
        return jnp.sum(ys**2) + jnp.sum(carry.c), ys

    run = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True), static_argnums=2)
    (_, ys_want), want = run(params, xs, None)
    (_, ys_got), got = run(params, xs, chunk)
    np.testing.assert_allclose(ys_got, ys_want, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), got, want)


# --- padding that holds NaN or inf (bug 6) ------------------------------------------------------

PAD_LENGTHS = jnp.array([5, 2, 0])
PAD_VARIANTS = {"forward": (False, False), "reverse_remat": (True, 2)}  # (reverse, remat)
PAD_FAST = ("lstm", "gru", "mgu")  # the other cells under the slow marker (CI runs them all)


def _vjps(cell):
    """Every distinct backward of the cell: "replay" is what "fused" runs for cells without an analytic one."""
    return ("fused", "replay", "autodiff") if cell.analytic_backward else ("fused", "autodiff")


@pytest.mark.parametrize("name", slow_unless(sorted(ZOO), PAD_FAST))
def test_nan_and_inf_padding_change_no_value_and_no_gradient(name):
    """Padded inputs reach no arithmetic: values and gradients (params and xs) equal those with zero
    padding, for every vjp, forwards, reversed and under remat; the padded xs get an exact zero gradient."""
    cell, _ = ZOO[name]
    params = cell.init(jax.random.key(0))
    valid = jnp.arange(5)[None, :, None] < PAD_LENGTHS[:, None, None]
    xs = jax.random.normal(jax.random.key(1), (3, 5, cell.input_size))

    @jax.jit
    def everything(xs):  # one compilation per cell: every vjp and variant at once
        out = {}
        for vjp in _vjps(cell):
            for variant, (reverse, remat) in PAD_VARIANTS.items():
                def loss(p, x):
                    ys, carry = scan_cell(cell, p, x, seq_lengths=PAD_LENGTHS, reverse=reverse, remat=remat, vjp=vjp)
                    return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(c**2) for c in jax.tree.leaves(carry))

                out[vjp, variant] = jax.value_and_grad(loss, argnums=(0, 1))(params, xs)
        return out

    want = everything(jnp.where(valid, xs, 0.0))
    for pad in (jnp.nan, jnp.inf, -jnp.inf):
        got = everything(jnp.where(valid, xs, pad))
        for key, (value, (d_params, d_xs)) in got.items():
            np.testing.assert_array_equal(value, want[key][0], err_msg=f"{key} pad={pad}")
            jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b, err_msg=f"{key} pad={pad}"),
                         d_params, want[key][1][0])
            np.testing.assert_array_equal(d_xs, want[key][1][1], err_msg=f"{key} pad={pad}")
            np.testing.assert_array_equal(jnp.where(valid, 0.0, d_xs), 0.0, err_msg=f"{key} pad={pad}")


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_analytic_backward_is_exact_in_float64(name):
    """Every sum of the fused backward is taken in float64 when the compute dtype is float64 (bug 7:
    the GRU's b_h gradient was summed in float32, 1e-7 off)."""
    cell, _ = ZOO[name]

    def loss(p, x, vjp):
        ys, carry = scan_cell(cell, p, x, seq_lengths=LENGTHS, reverse=True, vjp=vjp)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(c**2) for c in jax.tree.leaves(carry))

    with jax.enable_x64():
        params = jax.tree.map(lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0)))
        xs = jax.random.normal(jax.random.key(1), (4, 7, cell.input_size), jnp.float64)
        grad = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
        fused, want = grad(params, xs, "fused"), grad(params, xs, "autodiff")
        assert all(g.dtype == jnp.float64 for g in jax.tree.leaves(fused))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12), fused, want)


# --- ScanOptions: validation, overrides, equality ----------------------------------------------

@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(mode="fast"), "ScanOptions.mode='fast' is not valid; choose one of ['auto', 'chunkwise', 'parallel', 'sequential']"),
        (dict(vjp="fast"), "ScanOptions.vjp='fast' is not valid; choose one of ['autodiff', 'fused', 'replay']"),
        (dict(remat=0), "ScanOptions.remat must be False, True, 'sqrt' or a positive chunk length, got 0"),
        (dict(remat="cube"), "ScanOptions.remat must be False, True, 'sqrt' or a positive chunk length, got 'cube'"),
        (dict(unroll=0), "ScanOptions.unroll must be a positive integer or True (unroll fully), got 0"),
        (dict(unroll=1.5), "ScanOptions.unroll must be a positive integer or True (unroll fully), got 1.5"),
        (dict(projection_chunk=True), "ScanOptions.projection_chunk must be None or a positive int, got True"),
        (dict(dtype="int8"),
         "ScanOptions.dtype must be None or a floating dtype such as ['bfloat16', 'float32', 'float64'], got 'int8'"),
        (dict(dtype="bfloat61"),
         "ScanOptions.dtype must be None or a floating dtype such as ['bfloat16', 'float32', 'float64'], got 'bfloat61'"),
    ],
)
def test_scan_options_name_the_bad_value_in_one_line(fields, message):
    for build in (lambda: ScanOptions(**fields), lambda: with_overrides(ScanOptions(), **fields)):
        with pytest.raises(ConfigError) as error:
            build()
        assert str(error.value) == message
    cell, params, xs = _setup("gru")
    with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
        scan_cell(cell, params, xs, **fields)  # the keywords are validated by ScanOptions too


def test_unknown_scan_option_and_a_non_options_value_are_named():
    with pytest.raises(ConfigError, match=r"^ScanOptions.rematt is not a scan option; choose from \['mode', 'vjp', "):
        with_overrides(None, rematt=True)
    with pytest.raises(ConfigError, match="^model.scan.rematt is not a scan option"):
        ScanOptions.from_config({"rematt": True})
    with pytest.raises(ConfigError, match=r"^model.scan.vjp='fast' is not valid; choose one of"):
        ScanOptions.from_config({"vjp": "fast"})
    with pytest.raises(ConfigError, match="^scan options must be a ScanOptions, got dict$"):
        scan_cell(*_setup("gru"), options={"vjp": "fused"})


def test_equal_scan_options_are_equal_and_hash_equal():
    same = [ScanOptions(dtype="bfloat16"), ScanOptions(dtype=jnp.bfloat16), ScanOptions(dtype=np.dtype(jnp.bfloat16))]
    assert all(o == same[0] and hash(o) == hash(same[0]) for o in same)
    assert same[0].dtype == jnp.bfloat16
    assert ScanOptions(remat="sqrt") == ScanOptions(remat=True) and ScanOptions(unroll=False) == ScanOptions()
    assert ScanOptions(remat=4) != ScanOptions(remat=True) and ScanOptions(dtype="float32") != ScanOptions()
    # True == 1 in Python, but remat=True (sqrt chunks) and unroll=True (fully) are other options than 1
    assert ScanOptions(remat=1) != ScanOptions(remat=True) and ScanOptions(unroll=True) != ScanOptions(unroll=1)
    assert ScanOptions.from_config({"remat": "sqrt", "dtype": "bfloat16"}) == ScanOptions(remat=True, dtype=jnp.bfloat16)
    traces = []

    @functools.partial(jax.jit, static_argnums=1)
    def run(x, options):
        traces.append(options)
        return x + 1

    for options in same:
        run(jnp.zeros(2), options)
    assert len(traces) == 1  # a static jit argument: equal options never recompile


def test_keywords_override_the_same_fields_of_options():
    base = ScanOptions(vjp="replay", remat=3, projection_chunk=4, dtype="bfloat16")
    assert with_overrides(base, remat=False, projection_chunk=None, dtype=None) == ScanOptions("auto", "replay", projection_chunk=None)
    assert with_overrides(base) is base and with_overrides(None) == ScanOptions()
    cell, params, xs = _setup("gru")
    assert scan_cell(cell, params, xs, options=base)[0].dtype == jnp.bfloat16
    assert scan_cell(cell, params, xs, options=base, dtype=None)[0].dtype == jnp.float32  # None stays expressible
    assert scan_cell(cell, params, xs, options=ScanOptions(), dtype="bfloat16")[0].dtype == jnp.bfloat16
    # the vjp keyword wins over options.vjp: only "fused" reaches the cell's analytic backward
    cell = _RecordingLSTM(3, 4)
    params, xs = cell.init(jax.random.key(0)), jnp.ones((2, 5, 3))

    def grad(**kw):
        return jax.grad(lambda p: jnp.sum(scan_cell(cell, p, xs, **kw)[0]))(params)

    grad(options=ScanOptions(vjp="fused"), vjp="autodiff")
    with pytest.raises(_Sentinel):
        grad(options=ScanOptions(vjp="autodiff"), vjp="fused")
    with pytest.raises(_Sentinel):
        grad(options=ScanOptions(vjp="fused"))


@pytest.mark.parametrize(
    "fields",
    [dict(vjp="replay", remat=3, unroll=2), dict(vjp="autodiff", projection_chunk=None, dtype=jnp.bfloat16),
     dict(vjp="fused", projection_chunk=2, unroll=True)],
)
def test_options_give_the_same_numbers_as_the_keywords(fields):
    cell, params, xs = _setup("lstm", time=7)

    def loss(p, x, use_options):
        kw = dict(options=ScanOptions(**fields)) if use_options else fields
        ys, carry = scan_cell(cell, p, x, seq_lengths=LENGTHS, reverse=True, **kw)
        return jnp.sum(ys.astype(jnp.float32) ** 2) + jnp.sum(carry.c.astype(jnp.float32)), ys

    run = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True), static_argnums=2)
    jax.tree.map(np.testing.assert_array_equal, run(params, xs, True), run(params, xs, False))
