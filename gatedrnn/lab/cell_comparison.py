"""The cell comparison of experiments/study_cells.py: every cell on the adding problem at increasing T.

One `train_and_evaluate` run per (cell, T) into <out>/<cell>_T<T>, with the same config for every
cell (steps, learning rate); <out>/cells.md and cells.csv give the final eval MSE per cell and T,
against the baseline 0.167, and the first eval step below `solved_below`.
"""

from __future__ import annotations

from typing import Sequence

import ml_collections

from gatedrnn.lab.results import summarize_run
from gatedrnn.lab.runs import shrink_for_quick_run, train_runs, with_overrides
from gatedrnn.lab.tables import write_table


def first_step_below(records: Sequence[dict], threshold: float) -> int | str:
    """The first eval step of a run's records (`RunSummary.records`) whose loss is below `threshold`,
    or "-" when none is."""
    for r in records:
        if r.get("eval_loss", float("inf")) < threshold:
            return r["step"]
    return "-"


def cell_comparison_study(config: ml_collections.ConfigDict, cells: Sequence[str], seq_lens: Sequence[int],
                          out: str, *, solved_below: float = 0.05, quick: bool = False) -> str:
    """Trains and tabulates every (cell, T). quick: a seconds-long version for tests (the first
    2 cells, T=10). Returns what the script prints: the table and the files written."""
    if quick:
        config, cells, seq_lens = shrink_for_quick_run(config, 10), cells[:2], [10]
    runs = {f"{cell}_T{t}": with_overrides(config, {"model.cell": cell, "data.seq_len": t})
            for t in seq_lens for cell in cells}
    workdirs = train_runs(runs, out)

    header = (["cell"] + [f"T={t} MSE" for t in seq_lens] + [f"T={t} step < {solved_below:g}" for t in seq_lens]
              + ["time (s)"])
    rows = []
    for cell in cells:
        summaries = [summarize_run(workdirs[f"{cell}_T{t}"]) for t in seq_lens]
        rows.append([cell] + [s.eval_loss for s in summaries]
                    + [first_step_below(s.records, solved_below) for s in summaries]
                    + [round(sum(s.train_time_s for s in summaries))])
    table = write_table(out, "cells", f"adding problem, {config.train.num_steps} steps, hidden "
                        f"{config.model.hidden_size}, lr {config.train.learning_rate}; final eval MSE "
                        "(baseline 0.167)", header, rows)
    return table + f"wrote {out}/cells.md, .csv"
