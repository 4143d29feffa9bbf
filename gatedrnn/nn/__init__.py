"""Flax NNX layers and architectures over the scan engine: thin modules that own parameters.

`layers` (RNN, Bidirectional, Stack, build_rnn), `blocks` (Griffin/Hawk's recurrent and residual
blocks, the minGRU/minLSTM and LRU blocks, Conv1D, RMSNorm, GatedMLP), `xlstm` (the xLSTM blocks and
stack), `attention`, `heads` (many-to-one readouts),
`encoder` (SequenceEncoder), `seq2seq` (encoder-decoder with attention), `ctc`, `lm`
(language models and one-to-many generation), `streaming` (stateful step-by-step inference),
`regularization` (zoneout, variational dropout, weight drop) and `interop` (PyTorch <-> gatedrnn).
"""

from gatedrnn.nn.blocks import BLOCKS, HawkBlock, LRUBlock, MinBlock, ResidualBlock, make_block
from gatedrnn.nn.layers import RNN, Bidirectional, Stack, build_rnn
from gatedrnn.nn.interop import load_official
from gatedrnn.nn.xlstm import MLSTMBlock, SLSTMBlock, XLSTMStack

__all__ = ["BLOCKS", "HawkBlock", "LRUBlock", "MinBlock", "ResidualBlock", "make_block",
           "RNN", "Bidirectional", "Stack", "build_rnn", "MLSTMBlock", "SLSTMBlock", "XLSTMStack", "load_official"]
