"""Streaming: chunked == one full pass, resets == fresh streams, StatefulRNN, truncated BPTT training."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from gatedrnn import ScanOptions, build_rnn, scan_cell
from gatedrnn.nn.lm import LanguageModel
from gatedrnn.nn.params import param_values
from gatedrnn.nn.streaming import ResettingCell, StatefulRNN, split_chunks, stream, tbptt_train

SIZES = [4, 4, 1]  # the same pieces as split_chunks(x, 4), so compiled shapes are shared
_GRU2 = build_rnn("gru", 3, 4, num_layers=2, rngs=nnx.Rngs(0))
# jitted once per shape: eager lax.scan would recompile its fresh closure on every call
stream_jit = nnx.jit(stream)
run_jit = nnx.jit(lambda layer, x: layer(x))


def _assert_tree_close(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)


@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("gru", 1)])
def test_chunked_stream_equals_one_full_pass(cell, layers):
    rnn = build_rnn(cell, 3, 5, num_layers=layers, residual=layers > 1, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, sum(SIZES), 3))
    full, full_carry = run_jit(rnn, x)
    outs, carry, start = [], None, 0
    for n in SIZES:
        y, carry = stream_jit(rnn, x[:, start : start + n], carry)
        outs.append(y)
        start += n
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, rtol=1e-5, atol=1e-6)
    _assert_tree_close(carry, full_carry)
    # the same with the carry kept inside a StatefulRNN (and after reset_state)
    stateful = StatefulRNN(rnn, batch_size=2)
    call = nnx.jit(lambda m, c: m(c))
    for _ in range(2):
        stateful.reset_state()
        outs = [call(stateful, c) for c in split_chunks(x, 4)]
        np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, rtol=1e-5, atol=1e-6)


@settings(max_examples=10)
@given(st.lists(st.integers(1, 8), min_size=1, max_size=8))
def test_any_chunking_equals_one_full_pass(cuts):
    """Property: however an 8-step stream is cut into chunks, the outputs and carry are the full pass's."""
    x = jax.random.normal(jax.random.key(1), (2, 8, 3))
    full, full_carry = run_jit(_GRU2, x)
    bounds = sorted({0, 8, *[c for c in cuts if c < 8]})
    outs, carry = [], None
    for a, b in zip(bounds, bounds[1:]):
        y, carry = stream_jit(_GRU2, x[:, a:b], carry)
        outs.append(y)
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, rtol=1e-5, atol=1e-6)
    _assert_tree_close(carry, full_carry)


def test_stateful_rnn_under_jit():
    rnn = build_rnn("gru", 3, 4, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 6, 3))
    full, _ = run_jit(rnn, x)
    stateful = StatefulRNN(rnn, batch_size=2)
    call = nnx.jit(lambda m, c: m(c))
    outs = [call(stateful, c) for c in split_chunks(x, 2)]
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, rtol=1e-5, atol=1e-6)


def test_chunk_reset_starts_a_fresh_stream():
    rnn = build_rnn("lstm", 3, 4, num_layers=2, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 7, 3))
    _, carry = stream_jit(rnn, x[:, :3])
    y, _ = stream_jit(rnn, x[:, 3:], carry, reset=jnp.array([True, False]))
    fresh, _ = run_jit(rnn, x[:1, 3:])
    full, _ = run_jit(rnn, x[1:])
    np.testing.assert_allclose(y[:1], fresh, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y[1:], full[:, 3:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_per_step_resets_equal_separate_segments(num_layers):
    rnn = build_rnn("lstm", 3, 4, num_layers=num_layers, rngs=nnx.Rngs(0))
    layer = rnn if num_layers > 1 else rnn.layers[0]
    x = jax.random.normal(jax.random.key(1), (2, 7, 3))
    resets = jnp.zeros((2, 7), bool).at[0, 4].set(True).at[1, 2].set(True)
    _, carry = stream_jit(layer, x[:, :2])  # some history that example 0 keeps until step 4
    y, _ = stream_jit(layer, x, carry, resets=resets)
    # example 0: history then x[0, :4]; then a fresh segment x[0, 4:]
    y0a, _ = stream_jit(layer, x[:1, :4], jax.tree.map(lambda a: a[:1], carry))
    y0b, _ = run_jit(layer, x[:1, 4:])
    np.testing.assert_allclose(y[:1], jnp.concatenate([y0a, y0b], axis=1), rtol=1e-5, atol=1e-6)
    y1b, _ = run_jit(layer, x[1:, 2:])
    np.testing.assert_allclose(y[1:, 2:], y1b, rtol=1e-5, atol=1e-6)


def test_per_step_resets_gradients_fused_equals_autodiff():
    layer = build_rnn("gru", 3, 4, rngs=nnx.Rngs(0)).layers[0]
    cell, params = ResettingCell.wrap(layer.cell), param_values(layer.params)
    x = jax.random.normal(jax.random.key(1), (2, 5, 3))
    flags = jnp.zeros((2, 5, 1)).at[0, 2, 0].set(1.0)

    def loss(p, x, vjp):
        ys, _ = scan_cell(cell, p, jnp.concatenate([x, flags], axis=-1), vjp=vjp)
        return jnp.sum(ys**2)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
    fused, plain = grad(params, x, "fused"), grad(params, x, "autodiff")
    _assert_tree_close(fused, plain)


def test_the_layers_scan_options_reach_the_streaming_engine():
    """With resets the stream runs its own scan_cell (a wrapped cell): the layer's ScanOptions go with it."""
    options = ScanOptions(dtype="bfloat16", remat=2, vjp="replay")
    layer = build_rnn("gru", 3, 4, scan=options, rngs=nnx.Rngs(0)).layers[0]
    x = jax.random.normal(jax.random.key(1), (2, 5, 3))
    resets = jnp.zeros((2, 5), bool).at[0, 2].set(True)
    y, carry = stream_jit(layer, x, resets=resets)
    assert y.dtype == jnp.bfloat16 and carry.dtype == jnp.bfloat16
    flags = resets.astype(x.dtype)[:, :, None]
    want = scan_cell(ResettingCell.wrap(layer.cell), param_values(layer.params), jnp.concatenate([x, flags], axis=-1),
                     options=options)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32),
                                                         atol=1e-2), (y, carry), want)


def test_short_last_chunk_keeps_the_last_valid_carry():
    rnn = build_rnn("gru", 3, 4, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 5, 3))
    _, carry = stream_jit(rnn, x, seq_lengths=jnp.array([5, 3]))
    _, want = run_jit(rnn, x[1:, :3])
    _assert_tree_close(jax.tree.map(lambda a: a[1:], carry), want)


def test_bidirectional_cannot_stream():
    rnn = build_rnn("gru", 3, 4, bidirectional=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unidirectional"):
        stream(rnn, jnp.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="batch_size=2"):
        StatefulRNN(build_rnn("gru", 3, 4, rngs=nnx.Rngs(0)), 2)(jnp.zeros((3, 2, 3)))


@pytest.mark.slow
def test_tbptt_learns_a_delay_across_chunk_boundaries():
    """y_t = x_{t-3} on a stream of random bits, chunks of 4 steps: 3 of every 4 targets lie in the
    previous chunk, so the loss can fall far below log 2 only if the carry crosses chunk boundaries."""
    delay, chunk = 3, 4
    model = LanguageModel("gru", 16, 2, embed_size=4, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    def loss_fn(model, x, y, carry):
        logits, carry = model(x, initial_carry=carry)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), carry

    def stream_data(seed, batch=16, time=400):
        bits = np.random.default_rng(seed).integers(0, 2, size=(batch, time + delay))
        return jnp.asarray(bits[:, delay:], jnp.int32), jnp.asarray(bits[:, :-delay], jnp.int32)

    losses = []
    for epoch in range(2):
        x, y = stream_data(epoch)
        epoch_losses, _ = tbptt_train(model, optimizer, loss_fn, x, y, chunk, model.initial_carry(16))
        losses += epoch_losses
    final = float(np.mean(losses[-20:]))
    baseline = math.log(2)
    print(f"tbptt loss {final:.4f} vs baseline {baseline:.4f}")
    assert final < 0.2 * baseline, (final, baseline)


@pytest.mark.parametrize("cell", ["mingru", "rglru"])
def test_linear_cells_stream_in_parallel_mode_with_resets_as_the_step_level_reference(cell):
    """Chunks of a parallel-mode stream, with per-step resets and a stream reset between chunks,
    equal the wrapped cell that zeroes its carry step by step (sequential), over the whole stream."""
    rnn = build_rnn(cell, 3, 4, num_layers=2, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, sum(SIZES), 3))
    resets = jnp.zeros((2, sum(SIZES)), bool).at[0, 2].set(True).at[1, 6].set(True).at[1, 4].set(True)
    outs, carry, start = [], None, 0
    for n in SIZES:
        y, carry = stream_jit(rnn, x[:, start:start + n], carry, resets=resets[:, start:start + n])
        outs.append(y)
        start += n
    h, flags = x, resets.astype(x.dtype)[:, :, None]
    for layer in rnn.layers:
        h, last = scan_cell(ResettingCell.wrap(layer.cell), param_values(layer.params),
                            jnp.concatenate([h, flags], axis=-1), mode="sequential")
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(carry[-1], last, rtol=1e-5, atol=1e-5)
