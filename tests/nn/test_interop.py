"""gatedrnn.nn.interop against PyTorch's nn.RNN / nn.LSTM / nn.GRU on packed variable-length batches."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import torch_or_skip
from zoo import slow_unless

torch = torch_or_skip()

from flax import nnx  # noqa: E402

from gatedrnn import LSTMCarry, build_rnn  # noqa: E402
from gatedrnn.nn.interop import from_torch, to_torch  # noqa: E402

pytestmark = pytest.mark.torch

D, H, T = 5, 7, 11
LENGTHS = np.array([11, 4, 1, 8, 11, 6])


def _torch_module(kind, **kw):
    torch.manual_seed(0)
    if kind == "lstm":
        return torch.nn.LSTM(D, H, **kw)
    if kind == "gru":
        return torch.nn.GRU(D, H, **kw)
    return torch.nn.RNN(D, H, nonlinearity=kind.split("_")[1], **kw)


def _torch_forward(module, x, lengths):
    """torch on the packed batch; returns batch-first outputs (zero-padded) and h_n [, c_n]."""
    xt = torch.from_numpy(x)
    if not module.batch_first:
        xt = xt.transpose(0, 1)
    with torch.no_grad():
        if lengths is None:
            out, state = module(xt)
        else:
            packed = torch.nn.utils.rnn.pack_padded_sequence(
                xt, torch.from_numpy(lengths), batch_first=module.batch_first, enforce_sorted=False
            )
            out, state = module(packed)
            out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=module.batch_first, total_length=T)
    if not module.batch_first:
        out = out.transpose(0, 1)
    state = state if isinstance(state, tuple) else (state,)
    return out.numpy(), [s.numpy() for s in state]


def _final_states(carries, bidirectional):
    """Our per-layer carries as torch's h_n (and c_n) [layers * directions, batch, ...]."""
    per_direction = [d for c in carries for d in (c if bidirectional else (c,))]
    if isinstance(per_direction[0], LSTMCarry):
        return [np.stack([c.h for c in per_direction]), np.stack([c.c for c in per_direction])]
    return [np.stack(per_direction)]


CONFIGS = [
    dict(kind=kind, num_layers=layers, bidirectional=bi, bias=bias, batch_first=bf)
    for kind, layers, bi, bias, bf in itertools.product(
        ["lstm", "gru", "rnn_tanh", "rnn_relu"], [1, 2], [False, True], [True, False], [True, False]
    )
    if not (kind.startswith("rnn") and not bias and not bf)  # keep the sweep lean
] + [
    dict(kind="lstm", num_layers=layers, bidirectional=bi, bias=True, batch_first=True, proj_size=3)
    for layers, bi in itertools.product([1, 3], [False, True])
]


@pytest.mark.parametrize("config", slow_unless(CONFIGS, lambda c: c["num_layers"] > 1 and c["bidirectional"] and c["bias"]
                                                 and c["batch_first"]),
                         ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "full"])
def test_from_torch_matches_torch(config, packed):
    config = dict(config)
    module = _torch_module(config.pop("kind"), **config)
    x = np.random.default_rng(0).normal(size=(len(LENGTHS), T, D)).astype(np.float32)
    lengths = LENGTHS if packed else None
    want_out, want_state = _torch_forward(module, x, lengths)

    layer = from_torch(module)
    out, carries = layer(jnp.asarray(x), seq_lengths=None if lengths is None else jnp.asarray(lengths))
    np.testing.assert_allclose(np.asarray(out), want_out, atol=2e-5, rtol=0)
    if packed:
        for b, n in enumerate(LENGTHS):
            assert np.all(np.asarray(out[b, n:]) == 0.0)
    for got, want in zip(_final_states(carries, module.bidirectional), want_state):
        np.testing.assert_allclose(got, want, atol=2e-5, rtol=0)


@pytest.mark.parametrize(
    "cell, kw",
    slow_unless([
        ("lstm", dict(num_layers=2, bidirectional=True)),
        ("lstm", dict(num_layers=2, proj_size=3)),
        ("gru", dict(num_layers=3)),
        ("rnn", dict(bidirectional=True, nonlinearity="relu")),
        ("gru", dict(bias=False)),
    ], lambda p: p[0] != "lstm" or "proj_size" in p[1]),
)
def test_to_torch_round_trip(cell, kw):
    layer = build_rnn(cell, D, H, rngs=nnx.Rngs(3), **kw)
    module = to_torch(layer)
    assert module.batch_first
    x = np.random.default_rng(1).normal(size=(len(LENGTHS), T, D)).astype(np.float32)
    want_out, _ = _torch_forward(module, x, LENGTHS)
    out, _ = layer(jnp.asarray(x), seq_lengths=jnp.asarray(LENGTHS))
    np.testing.assert_allclose(np.asarray(out), want_out, atol=2e-5, rtol=0)
    back, _ = from_torch(module)(jnp.asarray(x), seq_lengths=jnp.asarray(LENGTHS))
    np.testing.assert_allclose(np.asarray(back), np.asarray(out), atol=2e-6, rtol=0)


def test_torch_dropout_carries_over_and_is_off_in_eval():
    module = _torch_module("gru", num_layers=2, dropout=0.5, batch_first=True).eval()
    layer = from_torch(module)
    assert layer.dropout_rate == 0.5
    layer.eval()
    x = np.random.default_rng(2).normal(size=(3, T, D)).astype(np.float32)
    want_out, _ = _torch_forward(module, x, None)
    np.testing.assert_allclose(np.asarray(layer(jnp.asarray(x))[0]), want_out, atol=2e-5, rtol=0)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: from_torch(torch.nn.Linear(2, 3)), "from_torch takes torch.nn.RNN, LSTM, GRU or MultiheadAttention, got Linear"),
        (lambda: to_torch(build_rnn("lstm", D, H, rngs=nnx.Rngs(0), peephole=True)), "has no torch equivalent"),
        (lambda: to_torch(build_rnn("gru", D, H, rngs=nnx.Rngs(0), reset_after=False)), "has no torch equivalent"),
        (lambda: to_torch(build_rnn("mgu", D, H, rngs=nnx.Rngs(0))), "has no torch equivalent"),
        (lambda: to_torch(build_rnn("gru", D, H, rngs=nnx.Rngs(0), bidirectional=True, merge="sum")), "merge='sum'"),
        (lambda: to_torch(build_rnn("gru", H, H, rngs=nnx.Rngs(0), num_layers=2, residual=True)), "residual"),
    ],
)
def test_untranslatable_layers_are_refused(build, message):
    with pytest.raises((TypeError, ValueError), match=message):
        build()


# --- torch.nn.MultiheadAttention ------------------------------------------------------------------

def _mha_inputs(kdim, vdim, e=8):
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(3, t, d, generator=g) for t, d in ((4, e), (5, kdim or e), (5, vdim or e)))
    pad = torch.arange(5)[None] >= torch.tensor([5, 3, 1])[:, None]  # torch: True = padding
    return q, k, v, pad


def _torch_mha(module, q, k, v, pad):
    out, w = module(q, k, v, key_padding_mask=pad, need_weights=True, average_attn_weights=False)
    return out.detach().numpy(), w.detach().numpy()


def _ours(attn, q, k, v, pad):
    context, weights = attn(*(jnp.asarray(a.numpy()) for a in (q, k, v)), jnp.asarray(~pad.numpy()))
    return np.asarray(context), np.asarray(weights)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kdim, vdim", [(None, None), (6, 3)])
def test_multihead_from_torch_equals_torch(bias, kdim, vdim):
    torch.manual_seed(0)
    module = torch.nn.MultiheadAttention(8, 2, bias=bias, kdim=kdim, vdim=vdim, batch_first=True).eval()
    if bias:
        with torch.no_grad():  # torch initializes the biases to 0: make them count
            module.in_proj_bias.normal_()
            module.out_proj.bias.normal_()
    attn = from_torch(module)
    assert attn.bias == bias
    inputs = _mha_inputs(kdim, vdim)
    want_out, want_w = _torch_mha(module, *inputs)
    out, w = _ours(attn, *inputs)
    assert w.shape == (3, 2, 4, 5)  # [b, heads, q, s], as torch's average_attn_weights=False
    np.testing.assert_allclose(out, want_out, atol=2e-6, rtol=1e-5)
    np.testing.assert_allclose(w, want_w, atol=1e-6, rtol=1e-5)


def test_multihead_without_bias_equals_torch_with_zeroed_in_proj_bias():
    """bias=False (the param tree of old checkpoints) is torch's module with in_proj_bias = 0."""
    from gatedrnn.nn.attention import MultiHeadAttention

    torch.manual_seed(0)
    module = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    with torch.no_grad():
        module.out_proj.bias.normal_()
    ours = MultiHeadAttention(8, 8, 2, 4, bias=False, rngs=nnx.Rngs(0))
    ported = from_torch(module)
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        getattr(ours, name).kernel[...] = getattr(ported, name).kernel[...]
    ours.out_proj.bias[...] = ported.out_proj.bias[...]
    inputs = _mha_inputs(None, None)
    with torch.no_grad():
        module.in_proj_bias.normal_()  # ours has none: with these torch differs ...
    differs = np.abs(_ours(ours, *inputs)[0] - _torch_mha(module, *inputs)[0]).max()
    with torch.no_grad():
        module.in_proj_bias.zero_()  # ... and without them it is the same
    want_out, want_w = _torch_mha(module, *inputs)
    out, w = _ours(ours, *inputs)
    assert differs > 1e-2
    np.testing.assert_allclose(out, want_out, atol=2e-6, rtol=1e-5)
    np.testing.assert_allclose(w, want_w, atol=1e-6, rtol=1e-5)


def test_multihead_options_without_equivalent_are_refused():
    with pytest.raises(ValueError, match="add_bias_kv=True or add_zero_attn=True"):
        from_torch(torch.nn.MultiheadAttention(8, 2, add_bias_kv=True))


def test_to_torch_bias_conventions():
    """RNN/LSTM: the one bias goes to bias_ih, bias_hh = 0 (torch sums them); GRU: both kept exactly."""
    torch.manual_seed(0)
    lstm, gru = torch.nn.LSTM(D, H, batch_first=True), torch.nn.GRU(D, H, batch_first=True)
    lstm_back, gru_back = to_torch(from_torch(lstm)), to_torch(from_torch(gru))
    np.testing.assert_array_equal(lstm_back.bias_hh_l0.detach().numpy(), 0.0)
    np.testing.assert_allclose(lstm_back.bias_ih_l0.detach().numpy(),
                               (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach().numpy(), rtol=0, atol=1e-7)
    for name in ("bias_ih_l0", "bias_hh_l0"):
        np.testing.assert_array_equal(getattr(gru_back, name).detach().numpy(), getattr(gru, name).detach().numpy())
