"""Variational dropout and zoneout: against step-by-step references with the same masks, eval-mode
semantics, padding invariance, and a tiny training run through a regularized stack."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gatedrnn import RNN, ScanOptions, build_rnn, make_cell, scan_cell
from gatedrnn.cells import LSTMCarry
from gatedrnn.nn.lm import LanguageModel
from gatedrnn.nn.params import param_values
from gatedrnn.nn.regularization import RegularizedRNN, regularize

from arch_training import counting_batch, fit, next_token_loss

apply_jit = nnx.jit(lambda reg, x, masks, lengths: reg.apply_masks(x, masks, lengths))


def _layer(cell="lstm", d=3, h=4, **kw):
    return RNN(make_cell(cell, d, h), rngs=nnx.Rngs(0), **kw)


def _gru_step(p, h, x, m):
    """GRU (reset_after) written out, with Gal's mask m on h only where it meets the recurrent weights."""
    sig = jax.nn.sigmoid
    hm = h * m
    xr, xz, xn = (x @ p["w"][:, g] + p["b_x"][g][None, :] for g in range(3))
    hr, hz, hn = (hm @ p["r"][:, g] + p["b_h"][g][None, :] for g in range(3))
    r, z = sig(xr + hr), sig(xz + hz)
    n = jnp.tanh(xn + r * hn)
    h = (1 - z) * n + z * h
    return h, h


def _reference(layer, x, masks):
    """A Python loop applying the masks as the module docstring says (GRU written out by hand)."""
    cell, params = layer.cell, param_values(layer.params)
    b, t, _ = x.shape
    if masks.input is not None:
        x = x * masks.input[:, None, :]
    carry = cell.initial_carry((b,))
    ys = []
    for s in range(t):
        m = jnp.ones((b, cell.output_size)) if masks.recurrent is None else masks.recurrent
        if isinstance(carry, LSTMCarry):  # y_{t-1} enters an LSTM step only through R
            new, y = cell.step(params, carry._replace(h=carry.h * m), cell.project(params, x[:, s]))
        else:
            new, y = _gru_step(params, carry, x[:, s], m)
        if masks.zoneout is not None:
            z = masks.zoneout[:, s]
            if isinstance(new, LSTMCarry):
                h = new.c.shape[-1]
                mc, mh = z[:, :h], z[:, h:]
                new = LSTMCarry(mc * carry.c + (1 - mc) * new.c, mh * carry.h + (1 - mh) * new.h)
                y = new.h
            else:
                new = z * carry + (1 - z) * new
                y = new
        carry = new
        ys.append(y)
    ys = jnp.stack(ys, axis=1)
    if masks.output is not None:
        ys = ys * masks.output[:, None, :]
    return ys, carry


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_matches_step_by_step_reference(cell, mode):
    layer = _layer(cell)
    reg = RegularizedRNN(layer, rngs=nnx.Rngs(dropout=3), input_dropout=0.2, recurrent_dropout=0.3,
                         output_dropout=0.1, zoneout=0.25)
    getattr(reg, mode)()
    x = jax.random.normal(jax.random.key(1), (3, 6, 3))
    masks = reg.draw_masks(3, 6)
    if mode == "train":
        assert masks.input.shape == (3, 3) and masks.output.shape == (3, 4)  # one mask per sequence
        assert masks.recurrent.shape == (3, 4)
        assert len(np.unique(np.asarray(masks.recurrent))) == 2  # {0, 1/keep}
        assert set(np.unique(np.asarray(masks.zoneout))) == {0.0, 1.0}
    else:
        np.testing.assert_array_equal(masks.input, 1.0)
        np.testing.assert_array_equal(masks.zoneout, 0.25)  # the expectation
    ys, carry = apply_jit(reg, x, masks, None)
    want_ys, want_carry = _reference(layer, x, masks)
    np.testing.assert_allclose(ys, want_ys, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), carry, want_carry)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_vjp_equals_autodiff_through_the_wrapper(cell):
    """The engine's fused VJP replays steps through the `matmul` hook; the wrapper's masks must survive it."""
    layer = _layer(cell)
    reg = RegularizedRNN(layer, rngs=nnx.Rngs(dropout=1), recurrent_dropout=0.3, zoneout=0.2)
    masks = reg.draw_masks(2, 5)
    x = jnp.concatenate([jax.random.normal(jax.random.key(1), (2, 5, 3)), masks.zoneout], axis=-1)
    params = {"cell": param_values(layer.params), "recurrent_mask": masks.recurrent}

    def loss(p, x, vjp):
        ys, carry = scan_cell(reg.cell, p, x, seq_lengths=jnp.array([5, 3]), vjp=vjp)
        return jnp.sum(ys**2) + sum(jnp.sum(c) for c in jax.tree.leaves(carry))

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
    fused, plain = grad(params, x, "fused"), grad(params, x, "autodiff")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), fused, plain)


def test_the_layers_scan_options_reach_the_wrapper():
    options = ScanOptions(dtype="bfloat16", remat=2, vjp="replay")
    layer = _layer("lstm", scan=options)
    reg = RegularizedRNN(layer, rngs=nnx.Rngs(dropout=1), recurrent_dropout=0.3, zoneout=0.2)
    x = jax.random.normal(jax.random.key(1), (2, 5, 3))
    masks = reg.draw_masks(2, 5)
    ys, carry = apply_jit(reg, x, masks, jnp.array([5, 3]))
    assert ys.dtype == jnp.bfloat16 and all(c.dtype == jnp.bfloat16 for c in jax.tree.leaves(carry))
    params = {"cell": param_values(layer.params), "recurrent_mask": masks.recurrent}
    want = scan_cell(reg.cell, params, jnp.concatenate([x, masks.zoneout], axis=-1), seq_lengths=jnp.array([5, 3]),
                     options=options)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32),
                                                         atol=1e-2), (ys, carry), want)


def test_zero_rates_and_eval_dropout_are_the_plain_layer():
    layer = _layer("gru")
    x = jax.random.normal(jax.random.key(1), (2, 5, 3))
    want, _ = layer(x)
    np.testing.assert_allclose(RegularizedRNN(layer, rngs=nnx.Rngs(0))(x)[0], want, rtol=1e-6)
    reg = RegularizedRNN(layer, rngs=nnx.Rngs(0), input_dropout=0.5, recurrent_dropout=0.5, output_dropout=0.5)
    reg.eval()
    np.testing.assert_allclose(reg(x)[0], want, rtol=1e-6)
    reg.train()
    a, b = reg(x)[0], reg(x)[0]
    assert float(jnp.max(jnp.abs(a - b))) > 1e-3  # fresh masks per call


def test_padded_batch_equals_unpadded_with_the_same_masks():
    layer = _layer("lstm")
    reg = RegularizedRNN(layer, rngs=nnx.Rngs(dropout=1), recurrent_dropout=0.3, zoneout=0.2)
    x = jax.random.normal(jax.random.key(1), (2, 6, 3))
    masks = reg.draw_masks(2, 6)
    lengths = jnp.array([6, 4])
    ys, carry = apply_jit(reg, x, masks, lengths)
    alone = masks._replace(recurrent=masks.recurrent[1:], zoneout=masks.zoneout[1:, :4])
    y1, c1 = apply_jit(reg, x[1:, :4], alone, None)
    np.testing.assert_allclose(ys[1:, :4], y1, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ys[1:, 4:], 0.0)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[1:], b, rtol=1e-5, atol=1e-6), carry, c1)


def test_regularize_wraps_every_layer_of_a_bidirectional_stack():
    stack = regularize(build_rnn("lstm", 3, 4, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0)),
                       rngs=nnx.Rngs(dropout=0), recurrent_dropout=0.2)
    assert all(isinstance(l.forward, RegularizedRNN) and isinstance(l.backward, RegularizedRNN) for l in stack.layers)
    assert stack.layers[0].backward.reverse
    stack.eval()
    plain = build_rnn("lstm", 3, 4, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 5, 3))
    np.testing.assert_allclose(stack(x, jnp.array([5, 3]))[0], plain(x, jnp.array([5, 3]))[0], rtol=1e-6)


def test_bad_rates():
    with pytest.raises(ValueError, match="zoneout must lie in"):
        RegularizedRNN(_layer(), rngs=nnx.Rngs(0), zoneout=1.0)
    with pytest.raises(ValueError, match="nothing to drop in MinGRU \\(a linear recurrence"):
        RegularizedRNN(_layer("mingru"), rngs=nnx.Rngs(0), recurrent_dropout=0.1)
    with pytest.raises(ValueError, match="expects a Stack"):
        regularize(_layer(), rngs=nnx.Rngs(0), zoneout=0.1)


@pytest.mark.slow
def test_regularized_language_model_trains():
    """Counting mod 8 with stride 1 or 3 (arch_training.counting_batch, as in test_lm), through a regularized LSTM."""
    lm = LanguageModel("lstm", 32, 8, embed_size=8, rngs=nnx.Rngs(0))
    regularize(lm.encoder.rnn, rngs=nnx.Rngs(dropout=1), recurrent_dropout=0.1, zoneout=0.1)
    baseline = math.log(8)
    loss = fit(lm, next_token_loss, counting_batch, steps=100, lr=1e-2)  # fit() leaves the model in eval mode
    eval_loss = float(next_token_loss(lm, counting_batch(10_000)))
    print(f"regularized lm train loss {loss:.4f}, eval loss {eval_loss:.4f} vs baseline {baseline:.4f}")
    assert eval_loss < 0.2 * baseline, (eval_loss, baseline)
