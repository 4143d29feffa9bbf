"""The cell zoo: pure-function recurrent cells (see `gatedrnn.cells.base` for the contract)."""

import dataclasses

from gatedrnn.cells.base import Cell
from gatedrnn.cells.gru import GRU
from gatedrnn.cells.lstm import LSTM, LSTMCarry
from gatedrnn.cells.minimal import MGU, UGRNN, MinGRU
from gatedrnn.cells.rnn import ElmanRNN
from gatedrnn.validation import ConfigError, check_choice

CELLS: dict[str, type[Cell]] = {
    "rnn": ElmanRNN,
    "lstm": LSTM,
    "gru": GRU,
    "mgu": MGU,
    "ugrnn": UGRNN,
    "mingru": MinGRU,
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


__all__ = ["CELLS", "Cell", "ElmanRNN", "GRU", "LSTM", "LSTMCarry", "MGU", "MinGRU", "UGRNN", "make_cell"]
