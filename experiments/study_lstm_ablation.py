"""LSTM ablation in the manner of Greff et al. 2017 ("LSTM: A Search Space Odyssey"): the vanilla
LSTM (with peepholes) and its one-change variants, on the adding problem, several seeds each.

  python -m experiments.study_lstm_ablation --out=/tmp/studies/ablation --seeds=0,1,2

Variants (`gatedrnn.lab.studies.GREFF_VARIANTS`, passed as `model.cell_options`): V (vanilla, with
peepholes), NP (no peepholes), CIFG (coupled input-forget gate), NFG / NIG / NOG (no forget /
input / output gate), NIAF / NOAF (no input / output activation). One `train_and_evaluate`
run per (variant, seed) into --out/<variant>_s<seed>; writes --out/lstm_ablation.png (final
eval MSE per run, median bar), lstm_ablation.md and .csv. Other --config.* fields override the
adding problem's config (T, steps, ...). --quick: a seconds-long version for tests.
"""

import os

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from gatedrnn.lab import studies
from gatedrnn.lab.results import summarize_run

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/adding.py", "The task config (the adding problem).")
flags.DEFINE_string("out", "/tmp/studies/ablation", "Output directory (runs, plot, tables).")
flags.DEFINE_list("variants", list(studies.GREFF_VARIANTS), "Variants to train.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "train.seed of each run.")
flags.DEFINE_bool("quick", False, "A seconds-long version for tests (2 variants, 1 seed).")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    config = studies.with_overrides(FLAGS.config, {"model.cell": "lstm"})
    variants, seeds = FLAGS.variants, [int(s) for s in FLAGS.seeds]
    if FLAGS.quick:
        config = studies.with_overrides(studies.shrink_for_quick_run(config, 10), {"data.seq_len": 10})
        variants, seeds = variants[:2], seeds[:1]
    for v in variants:
        if v not in studies.GREFF_VARIANTS:
            raise app.UsageError(f"--variants: {v!r} is not one of {list(studies.GREFF_VARIANTS)}")
    runs = {f"{v}_s{seed}": studies.with_overrides(config, {"model.cell_options": studies.GREFF_VARIANTS[v],
                                                           "train.seed": seed})
            for v in variants for seed in seeds}
    workdirs = studies.train_runs(runs, FLAGS.out)

    results = {v: [summarize_run(workdirs[f"{v}_s{seed}"]) for seed in seeds] for v in variants}
    header = ["variant", "cell options", "median eval MSE", "min", "max"] + [f"seed {s}" for s in seeds] + ["time (s)"]
    rows = []
    for v, summaries in results.items():
        losses = [s["eval_loss"] for s in summaries]
        options = ", ".join(f"{k}={val}" for k, val in studies.GREFF_VARIANTS[v].items()) or "-"
        rows.append([v, options, float(np.median(losses)), min(losses), max(losses), *losses,
                     round(sum(s["train_time_s"] for s in summaries))])
    baseline = float(np.mean([s["baseline"] for ss in results.values() for s in ss]))
    table = studies.write_table(FLAGS.out, "lstm_ablation", f"adding problem T={config.data.seq_len}, "
                                f"{config.train.num_steps} steps, hidden {config.model.hidden_size}; final eval MSE "
                                f"(baseline {baseline:.4g})", header, rows)
    studies.plot_points({v: [s["eval_loss"] for s in ss] for v, ss in results.items()},
                        os.path.join(FLAGS.out, "lstm_ablation.png"), "final eval MSE", baseline=baseline,
                        title=f"LSTM variants, adding problem T={config.data.seq_len}")
    print(table)
    print(f"wrote {FLAGS.out}/lstm_ablation.png, .md, .csv")


if __name__ == "__main__":
    app.run(main)
