"""The LSTM ablation of experiments/study_lstm_ablation.py, in the manner of Greff et al. 2017
("LSTM: A Search Space Odyssey"): the vanilla LSTM (with peepholes) and its one-change variants,
on the adding problem, several seeds each.

`GREFF_VARIANTS` gives each variant as `model.cell_options`; `lstm_ablation_study` trains one
run per (variant, seed) into <out>/<variant>_s<seed> and writes <out>/lstm_ablation.png (final
eval MSE per run, median bar), lstm_ablation.md and .csv.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import ml_collections
import numpy as np

from gatedrnn.lab.plots import plot_points
from gatedrnn.lab.results import summarize_run
from gatedrnn.lab.runs import shrink_for_quick_run, train_runs, with_overrides
from gatedrnn.lab.tables import write_table
from gatedrnn.validation import check_choice

# Greff, Srivastava, Koutnik, Steunebrink & Schmidhuber 2017, "LSTM: A Search Space Odyssey":
# every variant is the vanilla LSTM (with peepholes) with one change.
GREFF_VARIANTS: dict[str, dict[str, Any]] = {
    "V": {"peephole": True},
    "NP": {},
    "CIFG": {"peephole": True, "cifg": True},
    "NFG": {"peephole": True, "forget_gate": False},
    "NIG": {"peephole": True, "input_gate": False},
    "NOG": {"peephole": True, "output_gate": False},
    "NIAF": {"peephole": True, "input_activation": False},
    "NOAF": {"peephole": True, "output_activation": False},
}


def lstm_ablation_study(config: ml_collections.ConfigDict, variants: Sequence[str], seeds: Sequence[int], out: str,
                        *, quick: bool = False) -> str:
    """Trains and tabulates every (variant, seed); ConfigError names an unknown variant.

    quick: a seconds-long version for tests (the first 2 variants, the first seed, T=10).
    Returns what the script prints: the table and the files written.
    """
    config = with_overrides(config, {"model.cell": "lstm"})
    if quick:
        config = with_overrides(shrink_for_quick_run(config, 10), {"data.seq_len": 10})
        variants, seeds = variants[:2], seeds[:1]
    for v in variants:
        check_choice("--variants", v, GREFF_VARIANTS)
    runs = {f"{v}_s{seed}": with_overrides(config, {"model.cell_options": GREFF_VARIANTS[v], "train.seed": seed})
            for v in variants for seed in seeds}
    workdirs = train_runs(runs, out)

    results = {v: [summarize_run(workdirs[f"{v}_s{seed}"]) for seed in seeds] for v in variants}
    header = ["variant", "cell options", "median eval MSE", "min", "max"] + [f"seed {s}" for s in seeds] + ["time (s)"]
    rows = []
    for v, summaries in results.items():
        losses = [s.eval_loss for s in summaries]
        options = ", ".join(f"{k}={val}" for k, val in GREFF_VARIANTS[v].items()) or "-"
        rows.append([v, options, float(np.median(losses)), min(losses), max(losses), *losses,
                     round(sum(s.train_time_s for s in summaries))])
    baseline = float(np.mean([s.baseline for ss in results.values() for s in ss]))
    table = write_table(out, "lstm_ablation", f"adding problem T={config.data.seq_len}, {config.train.num_steps} "
                        f"steps, hidden {config.model.hidden_size}; final eval MSE (baseline {baseline:.4g})",
                        header, rows)
    plot_points({v: [s.eval_loss for s in ss] for v, ss in results.items()},
                os.path.join(out, "lstm_ablation.png"), "final eval MSE", baseline=baseline,
                title=f"LSTM variants, adding problem T={config.data.seq_len}")
    return table + f"wrote {out}/lstm_ablation.png, .md, .csv"
