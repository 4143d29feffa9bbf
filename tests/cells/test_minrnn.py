"""minGRU and minLSTM (Feng et al. 2024) against NumPy transcriptions of the paper's sequential
equations and of the official code's log-space parallel form; parallel == sequential."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gatedrnn import scan_cell
from gatedrnn.cells import minrnn
from gatedrnn.cells.minrnn import MinGRU, MinLSTM
from gatedrnn.validation import ConfigError

import numpy_reference as ref
from zoo import slow_unless

D, H, T = 3, 4, 7

CONFIGS = [
    (MinGRU, dict(candidate=c, expansion=e)) for c in ("g", "linear", "tanh") for e in (1.0, 2.0)
] + [
    (MinLSTM, dict(candidate=c, expansion=e, normalise=n))
    for c in ("g", "linear", "tanh") for e in (1.0, 2.0) for n in (True, False)
]
LOG_SPACE = [MinGRU(D, H), MinLSTM(D, H), MinLSTM(D, H, normalise=False), MinGRU(D, H, expansion=2.0)]


def _id(config):
    cls, kw = config
    return "-".join([cls.__name__] + [f"{k}={v}" for k, v in kw.items()])


def _reference(cell):
    return ref.mingru if isinstance(cell, MinGRU) else ref.minlstm


def _params(cell, seed=0):
    """Init params plus noise, so that the gates and the candidate leave their init range."""
    params = cell.init(jax.random.key(seed))
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
    return jax.tree.unflatten(treedef, [p + 0.5 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def _np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def softplus(x):
    return np.logaddexp(0.0, x)


def np_log_g(x):
    return np.where(x >= 0, np.log(np.maximum(x, 0) + 0.5), -softplus(-x))


# fast: every minGRU and the log-space minLSTMs; CI sweeps all 18
@pytest.mark.parametrize("config", [
    c if c[1]["candidate"] == "g" or c[0] is MinGRU else pytest.param(c, marks=pytest.mark.slow) for c in CONFIGS
], ids=_id)
def test_sequential_step_matches_numpy_transcription(config):
    cls, kw = config
    cell = cls(D, H, **kw)
    params = _params(cell)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, T, D)).astype(np.float32)
    h0 = rng.normal(size=(2, cell.state_size)).astype(np.float32)
    resets = rng.random((2, T)) < 0.25
    ys, carry = scan_cell(cell, params, jnp.asarray(x), initial_carry=jnp.asarray(h0), resets=jnp.asarray(resets),
                          mode="sequential")
    assert ys.shape == (2, T, H) and carry.shape == (2, cell.state_size)
    for b in range(2):
        want_ys, want_h = _reference(cell)(_np(params), x[b].astype(np.float64), cell, h0=h0[b], resets=resets[b])
        np.testing.assert_allclose(np.asarray(ys[b]), want_ys, atol=2e-5, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(carry[b]), want_h, atol=2e-5, rtol=1e-5)


def _np_coefficients(cell, k):
    """(a, b) of h = a h + b from the pre-activations k [gates, ...], by the paper's equations."""
    sig = ref.sigmoid
    cand = ref._min_candidate(k[-1], cell.candidate)
    if isinstance(cell, MinGRU):
        z = sig(k[0])
        return 1 - z, z * cand
    f, i = sig(k[0]), sig(k[1])
    if cell.normalise:
        f, i = f / (f + i), i / (f + i)
    return f, i * cand


@pytest.mark.parametrize("cell", LOG_SPACE, ids=repr)
def test_log_recurrence_is_the_log_of_the_linear_one(cell):
    # pre-activations over [-20, 20]: where log(sigmoid(.)) in float32 would lose everything
    k = np.linspace(-20, 20, 3 * 41 * cell.state_size).reshape(3, 41, cell.state_size)
    k = np.random.default_rng(0).permutation(k.reshape(-1)).reshape(k.shape)[: cell.num_gates]
    xp = tuple(jnp.asarray(v, jnp.float32) for v in k)
    want_a, want_b = _np_coefficients(cell, k)
    assert cell.log_space
    log_a, log_b = cell.log_recurrence(None, xp)
    np.testing.assert_allclose(np.asarray(log_a), np.log(want_a), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(log_b), np.log(want_b), atol=1e-5, rtol=1e-5)
    a, b = cell.linear_recurrence(None, xp)
    np.testing.assert_allclose(np.asarray(a), want_a, atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(b), want_b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("candidate", ["linear", "tanh"])
def test_signed_candidates_scan_in_linear_space(candidate):
    for cell in (MinGRU(D, H, candidate=candidate), MinLSTM(D, H, candidate=candidate)):
        assert not cell.log_space
        k = np.random.default_rng(0).normal(size=(cell.num_gates, 5, H))
        a, b = cell.linear_recurrence(None, tuple(jnp.asarray(v, jnp.float32) for v in k))
        want_a, want_b = _np_coefficients(cell, k)
        np.testing.assert_allclose(np.asarray(a), want_a, atol=1e-6, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(b), want_b, atol=1e-6, rtol=1e-5)
        with pytest.raises(NotImplementedError, match="no log-space recurrence"):
            cell.log_recurrence(None, tuple(jnp.asarray(v) for v in k))


def _official_parallel_scan_log(log_coeffs, log_values):
    """BorealisAI/minRNNs (Heinsen's scan): h = exp(a* + logcumsumexp(log_values - a*)), a* the
    cumulative sum of log_coeffs; log_values [T+1, s] has log h0 first and log_coeffs [T, s]
    is padded with a leading 0 for it, without h0 both are [T, s] (h0 = 0)."""
    a_star = np.cumsum(log_coeffs, axis=0)
    if len(log_values) == len(log_coeffs) + 1:
        a_star = np.concatenate([np.zeros_like(a_star[:1]), a_star])
    log_h = a_star + np.logaddexp.accumulate(log_values - a_star, axis=0)
    return np.exp(log_h)[len(log_h) - len(log_coeffs):]


def _official_log_terms(cell, k):
    """(log_coeffs, log_values) as the official minGRU / minLSTM forward computes them."""
    if isinstance(cell, MinGRU):
        log_coeffs, log_val_coeffs = -softplus(k[0]), -softplus(-k[0])
    elif cell.normalise:
        diff = softplus(-k[0]) - softplus(-k[1])
        log_coeffs, log_val_coeffs = -softplus(diff), -softplus(-diff)
    else:
        log_coeffs, log_val_coeffs = -softplus(-k[0]), -softplus(-k[1])
    return log_coeffs, log_val_coeffs + np_log_g(k[-1])


@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("cell", LOG_SPACE, ids=repr)
def test_official_log_space_parallel_form_equals_the_sequential_loop(cell, with_h0):
    params = _np(_params(cell))
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, D)) * 3  # long enough for exp(log a*) to span many decades
    k = np.einsum("td,dgs->gts", x, params["w"]) + params["b"][:, None]
    log_coeffs, log_values = _official_log_terms(cell, k)
    h0 = None
    if with_h0:  # the official init_hidden_state p enters as log g(p)
        p0 = rng.normal(size=cell.state_size)
        h0 = np.exp(np_log_g(p0))
        log_values = np.concatenate([np_log_g(p0)[None], log_values])
    h = _official_parallel_scan_log(log_coeffs, log_values)
    want_ys, want_h = _reference(cell)(params, x, cell, h0=h0)
    ys = h @ params["w_out"] if cell.expansion != 1 else h
    np.testing.assert_allclose(ys, want_ys, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h[-1], want_h, rtol=1e-10, atol=1e-12)
    # and the cell's own log-space coefficients are the official ones
    got = cell.log_recurrence(None, tuple(jnp.asarray(v, jnp.float32) for v in k))
    np.testing.assert_allclose(np.asarray(got[0]), log_coeffs, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(got[1]), log_values[1:] if with_h0 else log_values, atol=2e-5, rtol=1e-5)


def test_params_layout_and_readout():
    cell = MinLSTM(D, H, expansion=1.5, bias=False)
    params = cell.init(jax.random.key(0))
    assert cell.state_size == 6 and cell.output_size == H
    assert {k: v.shape for k, v in params.items()} == {"w": (D, 3, 6), "w_out": (6, H)}
    assert float(jnp.max(jnp.abs(params["w"]))) <= 1 / np.sqrt(H)
    assert set(MinGRU(D, H).init(jax.random.key(0))) == {"w", "b"}  # no projection at expansion 1
    h = jax.random.normal(jax.random.key(1), (2, 6))
    np.testing.assert_allclose(cell.readout(params, h, None), h @ params["w_out"], atol=1e-6)
    assert hash(MinGRU(D, H, expansion=2.0)) == hash(MinGRU(D, H, expansion=2.0))


def test_docstring_example_runs():
    assert doctest.testmod(minrnn, raise_on_error=True).attempted > 0


CHOICES = "['g', 'linear', 'tanh']"


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: MinGRU(D, H, candidate="relu"), "MinGRU.candidate='relu' is not valid; choose one of " + CHOICES),
        (lambda: MinLSTM(D, H, candidate="G"), "MinLSTM.candidate='G' is not valid; choose one of " + CHOICES),
        (lambda: MinGRU(D, H, expansion=0), "MinGRU.expansion must be a positive number, got 0"),
        (lambda: MinLSTM(D, H, expansion=-1.5), "MinLSTM.expansion must be a positive number, got -1.5"),
        (lambda: MinGRU(D, H, expansion="2"), "MinGRU.expansion must be a positive number, got '2'"),
        (lambda: MinGRU(D, H, expansion=0.2), "MinGRU.expansion=0.2 gives int(4 * 0.2) = 0 state units"),
        (lambda: MinLSTM(D, 0), "MinLSTM.hidden_size must be a positive integer, got 0"),
    ],
)
def test_bad_options_are_one_line_config_errors(build, message):
    with pytest.raises(ConfigError) as info:
        build()
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


PARITY = [
    (MinGRU, dict()),
    (MinGRU, dict(candidate="linear", expansion=2.0)),
    (MinLSTM, dict()),
    (MinLSTM, dict(candidate="tanh", expansion=2.0, normalise=False)),
]


PARITY_CASES = [(config, reverse, chunk) for config in PARITY for reverse in (False, True) for chunk in (None, 3)]
PARITY_FAST = [(PARITY[0], True, None), (PARITY[2], False, 3), (PARITY[3], True, 3)]


@pytest.mark.parametrize("config, reverse, chunk", slow_unless(PARITY_CASES, PARITY_FAST),
                         ids=[f"{_id(c)}-reverse={r}-chunk={k}" for c, r, k in PARITY_CASES])
def test_parallel_equals_sequential_values_and_gradients(config, reverse, chunk):
    cls, kw = config
    cell = cls(D, H, **kw)
    params = _params(cell)
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(3, T, D)), jnp.float32)
    h0 = jnp.asarray(rng.normal(size=(3, cell.state_size)), jnp.float32)
    lengths = jnp.asarray([T, 4, 0], jnp.int32)
    resets = jnp.asarray(rng.random((3, T)) < 0.3)

    def run(mode):
        def loss(params, x, h0):
            ys, carry = scan_cell(cell, params, x, initial_carry=h0, seq_lengths=lengths, reverse=reverse,
                                  resets=resets, mode=mode, parallel_chunk=chunk if mode == "parallel" else None)
            return jnp.sum(jnp.sin(ys)) + jnp.sum(carry**2), (ys, carry)

        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(params, x, h0)

    (loss_p, out_p), grads_p = run("parallel")
    (loss_s, out_s), grads_s = run("sequential")
    jax.tree.map(lambda p, s: np.testing.assert_allclose(p, s, atol=1e-5, rtol=1e-5), out_p, out_s)
    np.testing.assert_array_equal(out_p[0][1:, 4:], 0.0)  # padded outputs exactly zero
    np.testing.assert_array_equal(out_p[1][2], h0[2])  # length 0: the initial carry comes back
    jax.tree.map(lambda p, s: np.testing.assert_allclose(p, s, atol=1e-5, rtol=1e-5), grads_p, grads_s)
