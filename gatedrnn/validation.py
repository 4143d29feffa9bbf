"""Argument and config validation: the one place the checks and their messages live.

Every check raises `ConfigError` (a `ValueError`) with one line that names the bad value and
what is valid, e.g. `model.cell='lstmm' is not valid; choose one of ['gru', 'lstm', ...]`. The
entry points print it without a traceback. This module is the bottom floor: it imports nothing
from gatedrnn, so cells, the engine, layers, tasks and the training system all use it.
"""

from __future__ import annotations

from typing import Any, Iterable


class ConfigError(ValueError):
    """A bad config value, argument or workdir: a one-line message, no traceback."""


def check_positive(field: str, value: Any, *, integer: bool = True) -> None:
    """`value` must be a positive int (or, with integer=False, a positive number); bools are not."""
    kind = "a positive integer" if integer else "a positive number"
    ok = (isinstance(value, int) if integer else isinstance(value, (int, float))) and not isinstance(value, bool)
    if not ok or value <= 0:
        raise ConfigError(f"{field} must be {kind}, got {value!r}")


def check_non_negative(field: str, value: Any, *, integer: bool = False, note: str = "") -> None:
    """`value` must be a number >= 0 (with integer=True an int >= 0); bools are not. `note` is put
    after the kind in the message, e.g. " (0: data.seq_len)"."""
    kind = "a non-negative integer" if integer else "a non-negative number"
    ok = (isinstance(value, int) if integer else isinstance(value, (int, float))) and not isinstance(value, bool)
    if not ok or value < 0:
        raise ConfigError(f"{field} must be {kind}{note}, got {value!r}")


def check_choice(field: str, value: Any, valid: Iterable[Any]) -> None:
    """`value` must be one of `valid` (listed sorted in the message)."""
    valid = sorted(valid, key=str)
    if value not in valid:
        raise ConfigError(f"{field}={value!r} is not valid; choose one of {valid}")
