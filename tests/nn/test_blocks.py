"""The blocks (gatedrnn.nn.blocks): Conv1D, HawkBlock and ResidualBlock against recurrentgemma.jax
with copied weights (values, gradients, document boundaries, decoding), the minGRU and LRU blocks
against their equations, and the layer protocol every block keeps: padding, reverse within
lengths, bidirectional stacks, chunked runs with carries, jit, and training through the config."""

import functools
import math
import os
import runpy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gatedrnn import ScanOptions, build_rnn, flip_sequences, scan_cell
from gatedrnn.cells.lru import LRU
from gatedrnn.cells.minrnn import MinGRU, MinLSTM
from gatedrnn.cells.mlstm import MLSTM
from gatedrnn.cells.rglru import RGLRU
from gatedrnn.cells.slstm import SLSTM
from gatedrnn.nn.blocks import (
    BLOCKS,
    Conv1D,
    GatedMLP,
    HawkBlock,
    LRUBlock,
    MinBlock,
    ResidualBlock,
    RMSNorm,
    load_recurrentgemma,
    make_block,
)
from gatedrnn.nn.layers import Bidirectional
from gatedrnn.nn.params import param_values
from gatedrnn.tasks.registry import make_task
from gatedrnn.train import train_and_evaluate
from gatedrnn.train.loop import make_experiment
from gatedrnn.train.model import SequenceModel
from gatedrnn.validation import ConfigError

from paths import REPO

_REASON = "RECURRENTGEMMA-MISSING: the Hawk block reference tests need pip install recurrentgemma"
B, T = 3, 9
# RecurrentGemma positions: row 0 new documents at t = 3 and t = 4 (adjacent) and t = 7; row 1 one
# document; row 2 a document continued from before (no position 0) with a new one at t = 5.
SEGMENT_POS = np.array([[0, 1, 2, 0, 0, 1, 2, 0, 1], list(range(T)), [4, 5, 6, 7, 8, 0, 1, 2, 3]])
RESETS = jnp.asarray(SEGMENT_POS == 0)
LENGTHS = jnp.array([9, 4, 6])
VALID = (jnp.arange(T)[None, :] < LENGTHS[:, None])[..., None]  # [B, T, 1]
X = jax.random.normal(jax.random.key(11), (B, T, 5))


def _rg(module: str):
    return pytest.importorskip(f"recurrentgemma.jax.{module}", reason=_REASON)


def _rg_call(fn, *args, **kwargs):
    # recurrentgemma broadcasts implicitly and mixes dtypes; the suite's strict promotion refuses both
    with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
        return fn(*args, **kwargs)


def _perturbed(params, seed=0, scale=0.3):
    """Params plus noise: the zero-initialised biases and norm scales are exercised too."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(treedef, [p + scale * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)])


def _close(got, want, atol=1e-5, rtol=1e-5, **kw):
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, atol=atol, rtol=rtol, **kw), got, want)


def _mask_before_last_start(state, segment_pos, length, k):
    """recurrentgemma's conv cache (the last k - 1 inputs) with the entries before the last
    document start zeroed: what our Conv1D keeps, so decoding never reads across a boundary."""
    state = np.array(state)
    for b in range(state.shape[0]):
        starts = [p for p in range(length) if segment_pos[b, p] == 0]
        if starts:
            first = length - (k - 1)  # position of state[:, 0]
            state[b, : max(0, starts[-1] - first)] = 0
    return state


# --- Conv1D ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("k,time", [(1, T), (2, T), (4, T), (6, T), (4, 2)])
def test_conv1d_equals_recurrentgemma_across_document_boundaries(k, time):
    layers = _rg("layers")
    width = 5
    x = jax.random.normal(jax.random.key(0), (B, time, width))
    pos = SEGMENT_POS[:, :time]
    module = layers.Conv1D(width=width, temporal_width=k)
    params = _perturbed(_rg_call(module.init, jax.random.key(1), x, jnp.asarray(pos), return_cache=False)["params"])
    # recurrentgemma cannot return a cache of width 1 (its padding goes negative): values only there
    run = lambda pos: _rg_call(module.apply, {"params": params}, x, jnp.asarray(pos), return_cache=k > 1)  # noqa: E731
    conv = Conv1D(width, k, rngs=nnx.Rngs(0))
    conv.w[...], conv.b[...] = params["w"], params["b"]
    want, cache = run(pos)
    got, state = conv(x, resets=jnp.asarray(pos == 0))
    _close(got, want, atol=1e-6)
    assert state.shape == (B, k - 1, width)
    if k > 1:
        _close(state, _mask_before_last_start(cache, pos, time, k), atol=0)
    # without boundaries it is a plain causal convolution: recurrentgemma with no position 0
    want, cache = run(pos + 1)
    got, state = conv(x)
    _close(got, want, atol=1e-6)
    if k > 1:
        _close(state, cache, atol=0)


def test_conv1d_reads_no_padding_and_keeps_the_last_valid_inputs():
    layers = _rg("layers")
    width, k = 4, 4
    x = jax.random.normal(jax.random.key(0), (B, T, width))
    valid = (jnp.arange(T)[None, :] < LENGTHS[:, None])[..., None]
    x_nan = jnp.where(valid, x, jnp.nan)
    module = layers.Conv1D(width=width, temporal_width=k)
    params = _perturbed(_rg_call(module.init, jax.random.key(1), x, jnp.asarray(SEGMENT_POS))["params"])
    conv = Conv1D(width, k, rngs=nnx.Rngs(0))
    conv.w[...], conv.b[...] = params["w"], params["b"]
    got, state = conv(x_nan, seq_lengths=LENGTHS, resets=RESETS)
    np.testing.assert_array_equal(jnp.where(valid, 0.0, got), 0.0)
    for b, n in enumerate(np.asarray(LENGTHS)):
        pos = SEGMENT_POS[b:b + 1, :n]
        want, cache = _rg_call(module.apply, {"params": params}, x[b:b + 1, :n], jnp.asarray(pos))
        _close(got[b:b + 1, :n], want, atol=1e-6)
        _close(state[b:b + 1], _mask_before_last_start(cache, pos, n, k), atol=0)


# --- HawkBlock and ResidualBlock against recurrentgemma -------------------------------------------


WIDTH, LRU_WIDTH, HEADS = 8, 12, 2  # lru_width != width: the RG-LRU runs on its own width


def _ours(kind: str, mode: str = "auto") -> HawkBlock | ResidualBlock:
    scan = ScanOptions(mode=mode)
    hawk = HawkBlock(WIDTH, WIDTH, RGLRU(LRU_WIDTH, LRU_WIDTH, num_heads=HEADS), rngs=nnx.Rngs(0), scan=scan)
    return hawk if kind == "hawk" else ResidualBlock(WIDTH, hawk, rngs=nnx.Rngs(1), mlp_expansion=3, scan=scan)


@functools.lru_cache(maxsize=None)
def _reference(kind: str):
    """recurrentgemma's RecurrentBlock ("hawk") or ResidualBlock ("residual", recurrent temporal
    mixing) with perturbed params, an input x, a cotangent and (jitted) its apply and gradients."""
    modules = _rg("modules")
    common = pytest.importorskip("recurrentgemma.common", reason=_REASON)
    if kind == "hawk":
        rg = modules.RecurrentBlock(width=WIDTH, num_heads=HEADS, lru_width=LRU_WIDTH)
    else:
        rg = modules.ResidualBlock(width=WIDTH, mlp_expanded_width=3 * WIDTH, num_heads=HEADS, attention_window_size=4,
                                   temporal_block_type=common.TemporalBlockType.RECURRENT, lru_width=LRU_WIDTH)
    x = jax.random.normal(jax.random.key(0), (B, T, WIDTH))
    ct = jax.random.normal(jax.random.key(7), (B, T, WIDTH))
    init = jax.jit(lambda key, x: rg.init(key, x, jnp.asarray(SEGMENT_POS))["params"])
    params = _perturbed(_rg_call(init, jax.random.key(1), x), 2)
    apply = jax.jit(lambda p, x, pos, cache=None: rg.apply({"params": p}, x, pos, cache))
    grads = jax.jit(jax.grad(lambda p, x, pos: jnp.sum(rg.apply({"params": p}, x, pos)[0] * ct), argnums=(0, 1)))
    return params, x, ct, lambda *a: _rg_call(apply, *a), lambda *a: _rg_call(grads, *a)


def _loaded(kind: str, mode: str = "auto"):
    params, x, ct, apply, grads = _reference(kind)
    block = _ours(kind, mode)
    load_recurrentgemma(block, params)
    return block, params, x, ct, apply, grads


@nnx.jit
def _run(block, x, seq_lengths=None, initial_carry=None, resets=None):
    return block(x, seq_lengths=seq_lengths, initial_carry=initial_carry, resets=resets)


@pytest.mark.parametrize("kind", ["hawk", "residual"])
@pytest.mark.parametrize("mode", ["parallel", "sequential"])
def test_block_equals_recurrentgemma_values_and_gradients(kind, mode):
    """HawkBlock == RecurrentBlock and ResidualBlock == ResidualBlock (recurrent temporal mixing)
    with copied weights, across document boundaries mid-sequence: outputs, the RG-LRU state,
    the conv state, and the gradients of every param and of the input."""
    block, params, x, ct, apply, grads = _loaded(kind, mode)
    pos = jnp.asarray(SEGMENT_POS)
    want, cache = apply(params, x, pos)
    got, carry = _run(block, x, resets=RESETS)
    _close(got, want, atol=1e-5)
    _close(carry.rnn, cache.rg_lru_state, atol=1e-6)
    _close(carry.conv, _mask_before_last_start(cache.conv1d_state, SEGMENT_POS, T, 4), atol=1e-6)

    want_p, want_x = grads(params, x, pos)
    loss = lambda block, x: jnp.sum(block(x, resets=RESETS)[0] * ct)  # noqa: E731
    got_p, got_x = nnx.jit(nnx.grad(loss, argnums=(0, 1)))(block, x)
    twin = _ours(kind)
    load_recurrentgemma(twin, want_p)  # recurrentgemma's gradients in our layout
    _close(nnx.to_pure_dict(got_p), nnx.to_pure_dict(nnx.state(twin, nnx.Param)), atol=1e-5)
    _close(got_x, want_x, atol=1e-5)


def test_hawk_block_decodes_as_recurrentgemma_from_the_carry():
    """A prompt, then one token at a time from the carry, equals recurrentgemma's decoding with
    its cache token for token (its first token, segment_pos 0, is a reset)."""
    block, params, x, _, apply, _ = _loaded("hawk")
    pos = jnp.broadcast_to(jnp.arange(T), (B, T))  # one document per row
    want, cache = apply(params, x[:, :5], pos[:, :5])
    got, carry = _run(block, x[:, :5], resets=pos[:, :5] == 0)
    _close(got, want, atol=1e-5)
    for t in range(5, T):
        want, cache = apply(params, x[:, t:t + 1], pos[:, t:t + 1], cache)
        got, carry = _run(block, x[:, t:t + 1], initial_carry=carry)
        _close(got, want, atol=1e-5, err_msg=f"step {t}")
        _close(carry.conv, cache.conv1d_state, atol=1e-6)
        _close(carry.rnn, cache.rg_lru_state, atol=1e-6)


def test_rmsnorm_and_gated_mlp_equal_recurrentgemma():
    layers, modules = _rg("layers"), _rg("modules")
    x = jax.random.normal(jax.random.key(0), (B, T, 6))

    def reference(module, seed):
        params = _perturbed(_rg_call(jax.jit(module.init), jax.random.key(seed), x)["params"], seed)
        return params, _rg_call(jax.jit(module.apply), {"params": params}, x)

    p, want = reference(layers.RMSNorm(width=6), 1)
    norm = RMSNorm(6)
    norm.scale[...] = p["scale"]
    _close(norm(x), want, atol=1e-6)
    p, want = reference(modules.MLPBlock(width=6, expanded_width=10), 2)
    mlp = GatedMLP(6, 10, rngs=nnx.Rngs(0))
    for k, linear in enumerate((mlp.gate, mlp.up)):
        linear.kernel[...], linear.bias[...] = p["ffw_up"]["w"][k], p["ffw_up"]["b"][k].reshape(-1)
    mlp.down.kernel[...], mlp.down.bias[...] = p["ffw_down"]["kernel"], p["ffw_down"]["bias"]
    _close(mlp(x), want, atol=1e-5)


# --- the minGRU/minLSTM and LRU blocks against their equations ------------------------------------


def _np_rmsnorm(x, scale, eps=1e-6):
    x = np.asarray(x, np.float64)
    return x / np.sqrt(np.mean(x**2, -1, keepdims=True) + eps) * (1 + np.asarray(scale))


def _np_layernorm(x, scale, bias, eps=1e-5):
    x = np.asarray(x, np.float64)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * np.asarray(scale) + np.asarray(bias)


def _np_gelu(u):  # the tanh approximation (jax.nn.gelu's default, recurrentgemma's)
    return 0.5 * u * (1 + np.tanh(np.sqrt(2 / np.pi) * (u + 0.044715 * u**3)))


def _np_linear(x, linear):
    return x @ np.asarray(linear.kernel[...], np.float64) + np.asarray(linear.bias[...], np.float64)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell", [MinGRU(8, 8, expansion=2.0), MinLSTM(8, 8, expansion=1.5)], ids=["mingru", "minlstm"])
def test_min_block_is_x_plus_cell_of_rmsnorm(cell, reverse):
    """... with the cell run by the engine itself, reverse and resets included (the block's own
    flipping of sequences and segments agrees with `scan_cell(reverse=True, resets=)`)."""
    block = MinBlock(8, cell, input_size=5, rngs=nnx.Rngs(0), reverse=reverse)
    block.norm.scale[...] = jax.random.normal(jax.random.key(3), (8,))
    x = jax.random.normal(jax.random.key(1), (B, T, 5))
    got, carry = _run(block, x, LENGTHS, None, RESETS)
    u = _np_linear(np.asarray(x, np.float64), block.input_proj)
    normed = jnp.asarray(_np_rmsnorm(u, block.norm.scale[...]), jnp.float32)
    h, want_carry = scan_cell(cell, param_values(block.rnn.params), normed, seq_lengths=LENGTHS, resets=RESETS,
                              reverse=reverse, mode="sequential")
    _close(got, np.where(VALID, u + np.asarray(h), 0), atol=1e-5)
    _close(carry, want_carry, atol=1e-5)
    assert carry.shape == (B, cell.state_size)


def test_lru_block_is_x_plus_glu_of_gelu_of_lru_of_layernorm():
    cell = LRU(8, 8, r_min=0.5, r_max=0.95)
    block = LRUBlock(8, cell, rngs=nnx.Rngs(0))
    block.norm.scale[...] = 1 + jax.random.normal(jax.random.key(3), (8,))
    block.norm.bias[...] = jax.random.normal(jax.random.key(4), (8,))
    x = jax.random.normal(jax.random.key(1), (B, T, 8))
    got, carry = block(x, resets=RESETS)
    normed = _np_layernorm(x, block.norm.scale[...], block.norm.bias[...])
    h, want_carry = scan_cell(cell, param_values(block.rnn.params), jnp.asarray(normed, jnp.float32), resets=RESETS,
                              mode="sequential")
    u = _np_gelu(np.asarray(h, np.float64))
    want = np.asarray(x) + _np_linear(u, block.glu_value) / (1 + np.exp(-_np_linear(u, block.glu_gate)))
    _close(got, want, atol=1e-5)
    _close(carry, want_carry, atol=1e-5)
    assert carry.dtype == jnp.complex64


# --- the layer protocol, for every block ----------------------------------------------------------


def _block(name, input_size=5, width=8, seed=0, scan=None):
    cell = {"hawk": RGLRU(width, width, num_heads=2), "griffin": RGLRU(width, width), "min": MinGRU(width, width, expansion=2.0),
            "lru": LRU(width, width, r_min=0.5, r_max=0.95), "mlstm": MLSTM(width, width, num_heads=2),
            "slstm": SLSTM(width, width, num_heads=2), "xlstm": MLSTM(width, width, num_heads=2)}[name]
    options = {"xlstm": {"num_blocks": 2, "ratio": "1:1"}}.get(name, {})  # an mLSTM and an sLSTM block
    return make_block(name, cell, input_size, width, rngs=nnx.Rngs(seed), scan=scan, **options)


# the xLSTM blocks run these in the slow suite (their fast, jitted versions: tests/nn/test_xlstm.py)
PROTOCOL_BLOCKS = [pytest.param(n, marks=pytest.mark.slow) if n in ("mlstm", "slstm", "xlstm") else n
                   for n in sorted(BLOCKS)]


def _perturb_module(block, seed=5):
    """Nonzero norm scales and biases everywhere, so that no term hides behind its init."""
    nnx.update(block, _perturbed(nnx.state(block, nnx.Param), seed, scale=0.2))
    return block


@pytest.mark.parametrize("name", PROTOCOL_BLOCKS)
def test_padding_changes_no_valid_output_or_gradient_and_padded_outputs_are_zero(name):
    block = _perturb_module(_block(name))
    x_nan = jnp.where(VALID, X, jnp.nan)
    y, carry = _run(block, x_nan, LENGTHS, None, RESETS)
    np.testing.assert_array_equal(jnp.where(VALID, 0.0, y), 0.0)
    for b, n in enumerate(np.asarray(LENGTHS)):
        alone, c = _run(block, X[b:b + 1, :n], None, None, RESETS[b:b + 1, :n])
        _close(y[b:b + 1, :n], alone, atol=1e-5)
        _close(jax.tree.map(lambda a: a[b:b + 1], carry), c, atol=1e-5)

    ct = jax.random.normal(jax.random.key(2), y.shape)
    loss = lambda block, x: jnp.sum(block(x, seq_lengths=LENGTHS, resets=RESETS)[0] * ct)  # noqa: E731
    grad = nnx.jit(nnx.grad(loss, argnums=(0, 1)))
    g_nan, gx_nan = grad(block, x_nan)
    g_zero, _ = grad(block, jnp.where(VALID, X, 0.0))
    assert all(np.isfinite(a).all() for a in jax.tree.leaves(g_nan))
    _close(nnx.to_pure_dict(g_nan), nnx.to_pure_dict(g_zero), atol=1e-6)
    np.testing.assert_array_equal(jnp.where(VALID, 0.0, gx_nan), 0.0)


def _reversed_segments(x, resets, lengths):
    """Every segment of every row, reversed, as rows of one padded batch: (xs, lengths, starts,
    where) with starts True at a reversed segment's first step unless the segment ends the
    sequence and step 0 is no marked start (running backwards, the last valid step then
    continues the initial carry: `gatedrnn.scan.reverse_resets`) and where[i] = (row, s, e)."""
    x, resets = np.asarray(x), np.asarray(resets)
    rows, where = [], []
    for b, n in enumerate(np.asarray(lengths)):
        starts = [t for t in range(n) if t == 0 or resets[b, t]]
        where += [(b, s, e) for s, e in zip(starts, starts[1:] + [n])]
    xs = np.zeros((len(where), x.shape[1], x.shape[2]), x.dtype)
    starts = np.zeros((len(where), x.shape[1]), bool)
    for i, (b, s, e) in enumerate(where):
        xs[i, :e - s] = x[b, s:e][::-1]
        starts[i, 0] = e < lengths[b] or resets[b, 0]
        rows.append(e - s)
    return jnp.asarray(xs), jnp.asarray(rows), jnp.asarray(starts), where


@pytest.mark.parametrize("name", PROTOCOL_BLOCKS)
def test_reverse_is_the_forward_block_on_each_segment_flipped_within_its_length(name):
    block = _perturb_module(_block(name))
    backward = nnx.clone(block)
    backward.reverse = True
    y, _ = _run(backward, X, LENGTHS)
    y_f, _ = _run(block, flip_sequences(X, LENGTHS), LENGTHS)
    _close(y, flip_sequences(y_f, LENGTHS), atol=1e-5)
    # with documents: each one runs backwards on its own
    y, _ = _run(backward, X, LENGTHS, None, RESETS)
    xs, lengths, starts, where = _reversed_segments(X, RESETS, LENGTHS)
    alone, _ = _run(block, xs, lengths, None, starts)
    for i, (b, s, e) in enumerate(where):
        _close(y[b, s:e], alone[i, :e - s][::-1], atol=1e-5, err_msg=f"row {b} segment {s}:{e}")


@pytest.mark.parametrize("name", PROTOCOL_BLOCKS)
def test_chunks_run_one_after_another_from_the_carry_equal_one_pass(name):
    """The carry (conv state included) continues a sequence exactly, across document starts at
    a chunk's end (t = 3, 4) and in the next chunk; also what SequenceModel.step relies on."""
    block = _perturb_module(_block(name))
    y, carry = _run(block, X, None, None, RESETS)
    y1, c1 = _run(block, X[:, :4], None, None, RESETS[:, :4])
    y2, c2 = _run(block, X[:, 4:], None, c1, RESETS[:, 4:])
    _close(jnp.concatenate([y1, y2], axis=1), y, atol=1e-5)
    _close(c2, carry, atol=1e-5)


@pytest.mark.parametrize("name", ["griffin", "lru"])
def test_jit_equals_eager(name):
    block = _perturb_module(_block(name))
    run = nnx.jit(lambda m, x, n, r: m(x, seq_lengths=n, resets=r))
    _close(run(block, X, LENGTHS, RESETS), block(X, seq_lengths=LENGTHS, resets=RESETS), atol=1e-6)


@pytest.mark.parametrize("name", ["griffin", "lru"])
def test_bfloat16_compute_stays_close_to_float32_with_finite_gradients(name):
    block = _perturb_module(_block(name))
    b16 = _block(name, scan=ScanOptions(dtype="bfloat16"))
    nnx.update(b16, nnx.state(block, nnx.Param))  # the same float32 params
    y16, _ = _run(b16, X, LENGTHS, None, RESETS)
    assert y16.dtype == jnp.bfloat16
    _close(y16.astype(jnp.float32), _run(block, X, LENGTHS, None, RESETS)[0], atol=0.1, rtol=0.05)
    loss = lambda m: jnp.sum(m(X, seq_lengths=LENGTHS, resets=RESETS)[0].astype(jnp.float32))  # noqa: E731
    grads = nnx.jit(nnx.grad(loss))(b16)
    assert all(np.isfinite(a).all() for a in jax.tree.leaves(grads))


def test_build_rnn_bidirectional_blocks_project_the_merged_input():
    rnn = build_rnn("gru", 5, 8, num_layers=2, bidirectional=True, block="griffin", rngs=nnx.Rngs(0))
    first, second = rnn.layers
    assert isinstance(first, Bidirectional) and not first.forward.reverse and first.backward.reverse
    assert isinstance(first.forward, ResidualBlock) and first.forward.input_proj is not None
    assert second.forward.input_size == 16 and rnn.output_size == 16
    y, _ = _run(rnn, X, LENGTHS)
    h = X
    for layer in rnn.layers:  # the backward block is its forward twin on sequences flipped within their lengths
        twin = nnx.clone(layer.backward)
        twin.reverse = False
        y_b = flip_sequences(_run(twin, flip_sequences(h, LENGTHS), LENGTHS)[0], LENGTHS)
        h = jnp.concatenate([_run(layer.forward, h, LENGTHS)[0], y_b], axis=-1)
    _close(y, h, atol=1e-5)
    np.testing.assert_array_equal(jnp.where(VALID, 0.0, y), 0.0)
    y, _ = _run(rnn, X, LENGTHS, None, RESETS)  # resets reach every layer and direction
    y_none, _ = _run(rnn, X, LENGTHS)
    assert not np.allclose(y, y_none)


def test_build_rnn_block_layers_and_their_errors():
    rnn = build_rnn("gru", 5, 8, num_layers=2, block="min", rngs=nnx.Rngs(0))
    assert [type(layer).__name__ for layer in rnn.layers] == ["MinBlock", "MinBlock"]
    assert rnn.layers[0].input_proj is not None and rnn.layers[1].input_proj is None
    assert rnn.layers[0].rnn.cell.input_size == 8  # the cell maps the block's width to itself
    hawk = build_rnn("gru", 5, 8, block="hawk", block_options={"conv_width": 2}, rngs=nnx.Rngs(0)).layers[0]
    assert hawk.conv_1d.temporal_width == 2 and hawk.linear_x.in_features == 5
    cases = [
        (dict(block="griffon"), r"^model\.block='griffon' is not valid; choose one of \['griffin', 'hawk', 'lru', 'min', 'mlstm', 'slstm', 'xlstm'\]$"),
        (dict(block="min", block_options={"conv_width": 4}),
         r"^model\.block_options\.conv_width is not an option of the 'min' block; choose from \[\]$"),
        (dict(block="griffin", residual=True), r"^model\.residual=True is not valid with model\.block='griffin'"),
        (dict(block="griffin", block_options={"mlp_expansion": -1}), r"^ResidualBlock\.mlp_expansion must be"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ConfigError, match=match):
            build_rnn("gru", 5, 8, rngs=nnx.Rngs(0), **kwargs)
    with pytest.raises(ConfigError, match=r"^MinBlock needs a cell of input and output size 8, got MinGRU"):
        MinBlock(8, MinGRU(8, 4), rngs=nnx.Rngs(0))


def test_sequence_model_with_a_block_steps_as_it_runs():
    model = SequenceModel(cell="gru", input_size=5, hidden_size=8, output_size=2, readout="all", rngs=nnx.Rngs(0),
                          num_layers=2, block="hawk")
    _perturb_module(model)
    want = model(X)
    out, carry = model.prefill(X[:, :4])
    _close(out, want[:, 3], atol=1e-5)
    for t in range(4, T):
        out, carry = model.step(X[:, t], carry)
        _close(out, want[:, t], atol=1e-5, err_msg=f"step {t}")


def _config(name: str):
    return runpy.run_path(os.path.join(REPO, "configs", f"{name}.py"))["get_config"]("smoke")


def test_adding_smoke_run_with_rglru_in_a_griffin_block(tmp_path):
    """configs/adding.py:smoke with --config.model.cell=rglru --config.model.block=griffin, end to end."""
    config = _config("adding")
    config.model.cell, config.model.block = "rglru", "griffin"
    config.log.tensorboard = False
    last = train_and_evaluate(config, str(tmp_path))
    assert last["step"] == config.train.num_steps
    assert math.isfinite(last["loss"]) and math.isfinite(last["eval_loss"])


def test_config_builds_a_bidirectional_block_model_and_a_causal_task_refuses_it():
    config = _config("adding")
    config.model.cell, config.model.block, config.model.bidirectional = "mingru", "min", True
    layer = make_experiment(config).abstract_params["rnn"]["layers"][0]
    for direction in ("forward", "backward"):  # two MinBlocks, the adding task's 2 features projected to 8
        assert layer[direction]["input_proj"]["kernel"].shape == (2, 8) and "norm" in layer[direction]
    config = _config("char_lm")
    config.model.block, config.model.bidirectional = "griffin", True
    with pytest.raises(ConfigError, match="model.bidirectional=True is not valid for the causal task"):
        make_task(config)
