"""The cell zoo: pure-function recurrent cells (see `gatedrnn.cells.base` for the contract)."""

import dataclasses

from gatedrnn.cells.base import Cell, LinearCell, MatrixMemoryCell
from gatedrnn.cells.gru import GRU
from gatedrnn.cells.lru import LRU
from gatedrnn.cells.lstm import LSTM, LSTMCarry
from gatedrnn.cells.minimal import MGU, UGRNN
from gatedrnn.cells.minrnn import MinGRU, MinLSTM
from gatedrnn.cells.mlstm import MLSTM, MLSTMCarry
from gatedrnn.cells.rglru import RGLRU
from gatedrnn.cells.rnn import ElmanRNN
from gatedrnn.cells.s6 import S6
from gatedrnn.cells.slstm import SLSTM, SLSTMCarry
from gatedrnn.validation import ConfigError, check_choice

CELLS: dict[str, type[Cell]] = {
    "rnn": ElmanRNN,
    "lstm": LSTM,
    "gru": GRU,
    "mgu": MGU,
    "ugrnn": UGRNN,
    "mingru": MinGRU,
    "minlstm": MinLSTM,
    "lru": LRU,
    "rglru": RGLRU,
    "s6": S6,
    "slstm": SLSTM,
    "mlstm": MLSTM,
}


def make_cell(name: str, input_size: int, hidden_size: int, **options) -> Cell:
    """Builds a registered cell by name, e.g. make_cell("lstm", 8, 32, peephole=True).

    ConfigError (one line) for an unknown name or an option the cell does not have.
    """
    check_choice("model.cell", name, CELLS)
    cls = CELLS[name]
    valid = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("input_size", "hidden_size")]
    for option in options:
        if option not in valid:
            raise ConfigError(f"model.cell_options.{option} is not an option of the {name!r} cell; "
                              f"choose from {sorted(valid)}")
    return cls(input_size=input_size, hidden_size=hidden_size, **options)


__all__ = ["CELLS", "Cell", "ElmanRNN", "GRU", "LRU", "LSTM", "LSTMCarry", "LinearCell", "MGU", "MLSTM", "MLSTMCarry", "MatrixMemoryCell", "MinGRU", "MinLSTM",
           "RGLRU", "S6", "SLSTM", "SLSTMCarry", "UGRNN", "make_cell"]
