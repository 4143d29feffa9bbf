"""Every cell configuration the tests sweep, each with its NumPy reference."""

import pytest

from gatedrnn import GRU, LSTM, MGU, UGRNN, ElmanRNN, MinGRU
from gatedrnn.cells.minrnn import MinLSTM

import numpy_reference as ref

D, H = 3, 5

ZOO = {
    "rnn_tanh": (ElmanRNN(D, H), ref.elman),
    "rnn_relu": (ElmanRNN(D, H, nonlinearity="relu"), ref.elman),
    "irnn": (ElmanRNN(D, H, nonlinearity="relu", identity_init=True), ref.elman),
    "rnn_nobias": (ElmanRNN(D, H, bias=False), ref.elman),
    "lstm": (LSTM(D, H), ref.lstm_greff),
    "lstm_peephole": (LSTM(D, H, peephole=True), ref.lstm_greff),
    "lstm_cifg": (LSTM(D, H, cifg=True), ref.lstm_greff),
    "lstm_cifg_peephole": (LSTM(D, H, cifg=True, peephole=True, forget_bias=1.0), ref.lstm_greff),
    "lstm_proj": (LSTM(D, H, proj_size=2), ref.lstm_greff),
    "lstm_layernorm": (LSTM(D, H, layer_norm=True), ref.lstm_greff),
    "lstm_everything": (LSTM(D, H, peephole=True, proj_size=4, layer_norm=True, bias=False), ref.lstm_greff),
    "lstm_nig_nog": (LSTM(D, H, input_gate=False, output_gate=False, peephole=True), ref.lstm_greff),
    "lstm_nfg_niaf_noaf": (LSTM(D, H, forget_gate=False, input_activation=False, output_activation=False), ref.lstm_greff),
    "gru": (GRU(D, H), ref.gru),
    "gru_cho": (GRU(D, H, reset_after=False), ref.gru),
    "gru_nobias": (GRU(D, H, bias=False), ref.gru),
    "mgu": (MGU(D, H), ref.mgu),
    "ugrnn": (UGRNN(D, H), ref.ugrnn),
    "mingru": (MinGRU(D, H), ref.mingru),
    "minlstm": (MinLSTM(D, H), ref.minlstm),
}

NAMES = sorted(ZOO)

FAST = ("lstm", "gru", "mgu", "lstm_everything")  # what `pytest -m "not slow"` sweeps; CI sweeps every cell


def slow_unless(params, keep):
    """`params` for `parametrize`, every one that `keep` rejects under the `slow` marker.

    keep: a predicate or a collection of the params to keep fast. A tuple param stays a tuple of
    arguments, so test ids are unchanged.
    """
    fast = keep if callable(keep) else (lambda p: p in keep)
    return [p if fast(p) else pytest.param(*(p if isinstance(p, tuple) else (p,)), marks=pytest.mark.slow)
            for p in params]
