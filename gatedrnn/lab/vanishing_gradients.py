"""The vanishing-gradient study (experiments/study_vanishing_gradients.py): || d loss / d x_t ||
against the time lag, for each cell at initialization and after training on the adding problem.

Trains one run per cell with `train_and_evaluate` into <out>/runs/<cell> (a finished run is
reused: the loop resumes it to a no-op), then measures `input_gradient_norms` on one held-out
batch with the initial and the trained params.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import jax.numpy as jnp
import ml_collections
import numpy as np

from gatedrnn.lab.gradients import input_gradient_norms, model_loss_fn, time_lags
from gatedrnn.lab.plots import plot_gradient_norms
from gatedrnn.lab.runs import shrink_for_quick_run, train_runs, with_overrides
from gatedrnn.lab.tables import markdown_table, write_csv, write_text
from gatedrnn.train.runs import load_run


def gradient_norm_curves(configs: Mapping[str, ml_collections.ConfigDict], workdirs: Mapping[str, str],
                         batch_size: int) -> dict[str, np.ndarray]:
    """"<cell> (init)" and "<cell> (trained)" -> norms [t], on one held-out batch of each run's task
    (eval batch 0 of its train.seed): the initial params and those of the workdir's newest checkpoint."""
    curves = {}
    for cell, config in configs.items():
        for label, workdir in (("init", None), ("trained", workdirs[cell])):
            run = load_run(workdir, config=config)
            batch = run.task.eval_batch(config.train.seed, 0, batch_size)
            loss_fn = model_loss_fn(run, run.params, jnp.asarray(batch["targets"]))
            curves[f"{cell} ({label})"] = input_gradient_norms(loss_fn, jnp.asarray(batch["inputs"]))
    return curves


def vanishing_gradients_study(config: ml_collections.ConfigDict, cells: Sequence[str], out: str, *,
                              runs: str | None = None, batch_size: int = 256, quick: bool = False) -> str:
    """Trains one run per cell into out/runs/<cell> (or resumes the workdirs `runs.format(cell=...)`),
    then writes out/vanishing_gradients.png (log scale), .csv (every lag) and .md (selected lags).

    quick: a seconds-long version (tiny model, T=20, 30 steps) for tests. Returns what the script
    prints: the table, the ratio of the norms at the largest lag and at lag 0, the files written.
    """
    if quick:
        config = with_overrides(shrink_for_quick_run(config), {"data.seq_len": 20})
    configs = {cell: with_overrides(config, {"model.cell": cell}) for cell in cells}
    if runs:
        workdirs = {cell: runs.format(cell=cell) for cell in cells}
        for cell, workdir in workdirs.items():  # resumed to the config's num_steps: a no-op when finished
            train_runs({os.path.basename(workdir): configs[cell]}, os.path.dirname(workdir))
    else:
        workdirs = train_runs(configs, os.path.join(out, "runs"))
    curves = gradient_norm_curves(configs, workdirs, batch_size)

    time = config.data.seq_len
    header = ["lag"] + list(curves)
    write_csv(os.path.join(out, "vanishing_gradients.csv"), header,
              [[int(lag)] + [float(c[t]) for c in curves.values()] for t, lag in enumerate(time_lags(time))])
    shown = sorted({0, 1, 5, 10, 25, 50, 100, 150, time // 2, time - 1} & set(range(time)))
    table = markdown_table(header, [[lag] + [float(c[time - 1 - lag]) for c in curves.values()] for lag in shown])
    write_text(os.path.join(out, "vanishing_gradients.md"),
               f"mean || d loss / d x_t || on {batch_size} held-out examples, adding problem T={time}\n\n{table}")
    plot_gradient_norms(curves, os.path.join(out, "vanishing_gradients.png"), title=f"adding problem, T={time}")
    ratio = {k: float(c[0] / c[-1]) if c[-1] > 0 else np.inf for k, c in curves.items()}
    return (table + "norm at the largest lag / norm at lag 0: " + ", ".join(f"{k}: {v:.3g}" for k, v in ratio.items())
            + f"\nwrote {out}/vanishing_gradients.png, .csv, .md")
