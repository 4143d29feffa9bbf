"""NNX layers: RNN, Bidirectional (every merge), Stack (dropout, residual), against the engine."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gatedrnn import GRU, LSTM, RNN, Bidirectional, ScanOptions, Stack, build_rnn, scan_cell
from gatedrnn.nn.layers import MERGES
from gatedrnn.nn.params import param_values

LENGTHS = jnp.array([6, 2, 4])
X = jax.random.normal(jax.random.key(0), (3, 6, 4))


@pytest.mark.parametrize("merge", sorted(MERGES))
def test_bidirectional_merges_forward_and_within_length_reversed_passes(merge):
    cell = GRU(4, 5)
    layer = Bidirectional(RNN(cell, rngs=nnx.Rngs(0)), RNN(cell, rngs=nnx.Rngs(1), reverse=True), merge=merge)
    out, (carry_f, carry_b) = layer(X, seq_lengths=LENGTHS)
    y_f, want_cf = scan_cell(cell, param_values(layer.forward.params), X, seq_lengths=LENGTHS)
    # backward by hand: reverse each sequence within its length, run forwards, reverse back
    y_b = np.zeros_like(y_f)
    for b, n in enumerate(np.asarray(LENGTHS)):
        seq = X[b:b + 1, :n][:, ::-1]
        yb, cb = scan_cell(cell, param_values(layer.backward.params), seq)
        y_b[b, :n] = np.asarray(yb[0, ::-1])
        np.testing.assert_allclose(carry_b[b], cb[0], atol=1e-6)
    want = {"concat": np.concatenate([y_f, y_b], -1), "sum": y_f + y_b, "mean": (y_f + y_b) / 2, "product": y_f * y_b}
    np.testing.assert_allclose(out, want[merge], atol=1e-6)
    np.testing.assert_allclose(carry_f, want_cf, atol=1e-6)
    assert layer.output_size == out.shape[-1]


def test_stack_feeds_layers_in_turn_and_returns_every_carry():
    rnn = build_rnn("lstm", 4, 5, num_layers=3, rngs=nnx.Rngs(0), proj_size=4)
    out, carries = rnn(X, seq_lengths=LENGTHS)
    h = X
    for layer, carry in zip(rnn.layers, carries):
        h, want = scan_cell(layer.cell, param_values(layer.params), h, seq_lengths=LENGTHS)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), carry, want)
    np.testing.assert_allclose(out, h, atol=1e-6)


def test_stack_residual_adds_inputs_where_sizes_agree():
    rnn = build_rnn("gru", 4, 4, num_layers=2, residual=True, rngs=nnx.Rngs(0))
    plain = Stack(list(rnn.layers))
    h, valid = X, (jnp.arange(X.shape[1])[None, :] < LENGTHS[:, None])[..., None]
    for layer in rnn.layers:
        h = jnp.where(valid, h, 0.0) + layer(h, seq_lengths=LENGTHS)[0]
    out = rnn(X, seq_lengths=LENGTHS)[0]
    np.testing.assert_allclose(out, h, atol=1e-6)
    np.testing.assert_array_equal(jnp.where(valid, 0.0, out), 0.0)  # padding stays exactly zero
    h1 = X + rnn.layers[0](X)[0]  # without lengths: plain x + layer(x)
    np.testing.assert_allclose(rnn(X)[0], h1 + rnn.layers[1](h1)[0], atol=1e-6)
    assert not np.allclose(plain(X)[0], rnn(X)[0])


def test_nan_in_the_padding_of_a_residual_stack_changes_no_gradient():
    """Bug 6 above the engine: the residual connection must not carry padded inputs onwards."""
    rnn = build_rnn("gru", 4, 4, num_layers=2, residual=True, rngs=nnx.Rngs(0))
    head = nnx.Linear(4, 1, rngs=nnx.Rngs(1))
    valid = (jnp.arange(X.shape[1])[None, :] < LENGTHS[:, None])[..., None]

    def loss(w, x):
        ys = rnn(x, seq_lengths=LENGTHS)[0] @ w
        return jnp.sum(jnp.where(valid, ys, 0.0) ** 2)

    w = head.kernel[...]
    want = jax.grad(loss, argnums=(0, 1))(w, jnp.where(valid, X, 0.0))
    got = jax.grad(loss, argnums=(0, 1))(w, jnp.where(valid, X, jnp.nan))
    jax.tree.map(np.testing.assert_array_equal, got, want)


def test_stack_dropout_is_between_layers_and_off_in_eval():
    rnn = build_rnn("gru", 4, 5, num_layers=2, dropout=0.5, rngs=nnx.Rngs(0, dropout=1))
    no_dropout = Stack(list(rnn.layers))
    rnn.train()
    a, b = rnn(X)[0], rnn(X)[0]
    assert not np.allclose(a, b)  # fresh masks per call
    assert not np.allclose(a, no_dropout(X)[0])
    rnn.eval()
    np.testing.assert_allclose(rnn(X)[0], no_dropout(X)[0], atol=1e-6)


def test_initial_carry_flows_to_each_layer():
    rnn = build_rnn("lstm", 4, 5, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0))
    carry0 = jax.tree.map(lambda z: z + 0.5, rnn.initial_carry(3))
    out0, _ = rnn(X, initial_carry=carry0)
    out_zero, _ = rnn(X, initial_carry=rnn.initial_carry(3))
    np.testing.assert_allclose(out_zero, rnn(X)[0], atol=1e-6)
    assert not np.allclose(out0, out_zero)


def test_bfloat16_layer_keeps_float32_params():
    for rnn in (build_rnn("lstm", 4, 5, num_layers=2, scan=ScanOptions(dtype="bfloat16"), rngs=nnx.Rngs(0)),
                build_rnn("lstm", 4, 5, num_layers=2, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))):  # the old keyword
        out, _ = rnn(X)
        assert out.dtype == jnp.bfloat16
        assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(nnx.state(rnn, nnx.Param)))


def test_scan_options_reach_every_layer_and_direction_and_the_engine():
    options = ScanOptions(vjp="replay", remat=True, unroll=2, projection_chunk=None)
    rnn = build_rnn("gru", 4, 5, num_layers=2, bidirectional=True, scan=options, rngs=nnx.Rngs(0))
    rnns = [r for layer in rnn.layers for r in (layer.forward, layer.backward)]
    assert [r.scan for r in rnns] == [options] * 4
    # keywords named like ScanOptions fields override them; the rest are the cell's options
    rnn = build_rnn("lstm", 4, 5, scan=options, remat=False, dtype="bfloat16", proj_size=3, rngs=nnx.Rngs(0))
    assert rnn.layers[0].scan == ScanOptions(vjp="replay", unroll=2, projection_chunk=None, dtype=jnp.bfloat16)
    assert rnn.layers[0].cell.proj_size == 3
    layer = RNN(GRU(4, 5), rngs=nnx.Rngs(0), scan=options, unroll=3)
    assert layer.scan == ScanOptions(vjp="replay", remat=True, unroll=3, projection_chunk=None)
    want = scan_cell(layer.cell, param_values(layer.params), X, seq_lengths=LENGTHS, options=layer.scan)
    jax.tree.map(np.testing.assert_array_equal, layer(X, seq_lengths=LENGTHS), want)
    with pytest.raises(ValueError, match=r"^ScanOptions.vjp='fast' is not valid"):
        build_rnn("gru", 4, 5, vjp="fast", rngs=nnx.Rngs(0))


def test_nnx_jit_and_grad_through_a_stack():
    rnn = build_rnn("lstm", 4, 5, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0))

    def loss(model, x, n):
        return jnp.mean(model(x, seq_lengths=n)[0] ** 2)

    eager = loss(rnn, X, LENGTHS)
    value, grads = nnx.jit(nnx.value_and_grad(loss))(rnn, X, LENGTHS)
    np.testing.assert_allclose(value, eager, rtol=1e-6)
    assert all(bool(jnp.any(g != 0)) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: build_rnn("gru", 4, 5, merge="max", bidirectional=True, rngs=nnx.Rngs(0)), "merge='max' is not valid"),
        (lambda: build_rnn("gru", 4, 5, num_layers=0, rngs=nnx.Rngs(0)), "num_layers must be a positive integer"),
        (lambda: build_rnn("gru", 4, 5, dropout=1.5, rngs=nnx.Rngs(0)), r"dropout must lie in \[0, 1\), got 1.5"),
        (lambda: Stack([RNN(LSTM(4, 5), rngs=nnx.Rngs(0)), RNN(LSTM(6, 5), rngs=nnx.Rngs(0))]), "output size 5 feeds one of input size 6"),
        (lambda: RNN(LSTM(4, 5)), "RNN needs rngs"),
    ],
)
def test_bad_layer_arguments_are_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()
