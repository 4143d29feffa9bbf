"""The one table writer of the lab: GitHub markdown and CSV from a header and rows.

  text = markdown_table(["cell", "MSE"], [["lstm", 0.0012345], ["gru", 2.5e-05]])
  write_table("/tmp/out", "cells", "adding problem, final eval MSE", header, rows)  # cells.md, cells.csv

Floats are written with 4 significant digits in markdown (every digit in CSV); anything else as `str`.
"""

from __future__ import annotations

import csv
import os
from typing import Any, Sequence


def format_cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown_row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(format_cell(v) for v in cells) + " |"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table, ending in a newline."""
    lines = [markdown_row(header), "|" + "---|" * len(header)] + [markdown_row(row) for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(path: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def write_text(path: str, text: str) -> None:
    """`text` into `path`, creating its directory."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def write_table(out: str, stem: str, caption: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """<out>/<stem>.md (caption, then the markdown table) and <out>/<stem>.csv; returns the table."""
    table = markdown_table(header, rows)
    write_text(os.path.join(out, f"{stem}.md"), f"{caption}\n\n{table}")
    write_csv(os.path.join(out, f"{stem}.csv"), header, rows)
    return table
