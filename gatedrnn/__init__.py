"""gatedrnn: gated recurrent networks as pure-function cells under one `jax.lax.scan` engine."""

from gatedrnn.cells import (
    CELLS,
    GRU,
    LRU,
    LSTM,
    MGU,
    RGLRU,
    S6,
    SLSTM,
    UGRNN,
    Cell,
    ElmanRNN,
    LinearCell,
    LSTMCarry,
    MatrixMemoryCell,
    MinGRU,
    MLSTM,
    MinLSTM,
    SLSTMCarry,
    make_cell,
)
from gatedrnn.nn.layers import RNN, Bidirectional, Stack, build_rnn
from gatedrnn.scan import ScanOptions, flip_sequences, linear_scan, scan_cell

__version__ = "0.1.0"

__all__ = [
    "CELLS", "GRU", "LSTM", "MGU", "UGRNN", "Cell", "ElmanRNN", "LSTMCarry", "MinGRU", "make_cell",
    "LRU", "RGLRU", "LinearCell", "MinLSTM", "S6", "SLSTM", "SLSTMCarry", "MLSTM", "MatrixMemoryCell",
    "RNN", "Bidirectional", "Stack", "build_rnn", "ScanOptions", "flip_sequences", "linear_scan", "scan_cell",
]
