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
