"""The results table, built from training runs' workdirs (never typed by hand).

A run's workdir holds `config.json` (the resolved config) and `metrics.jsonl` (see
`gatedrnn.train.metrics`). `summarize_run` reads both; `results_rows` turns summaries into
table rows with the trivial baseline, a published figure where one exists and the command
that reproduces the run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Iterable

from gatedrnn.train.metrics import read_final_metrics, read_metrics

# (task, cell) -> (the shortest T it applies from, published result, source); only for the cell's
# default options. Qualitative where the source gives a figure, not a number.
PUBLISHED: dict[tuple[str, str], tuple[int, str, str]] = {
    ("adding", "lstm"): (150, "solved: MSE -> ~0 at T = 150, 200, 300, 400", "Le, Jaitly & Hinton 2015, Fig. 2"),
    ("adding", "rnn"): (150, "not solved: MSE stays at ~0.167 for T >= 150", "Le, Jaitly & Hinton 2015, Fig. 2"),
}

SOLVED = 0.1  # a run counts as solving its task once the eval loss is below 0.1 x the trivial baseline

HEADER = ["run", "task", "T", "cell", "options", "steps", "eval loss (last)", "eval loss (best)", "baseline",
          "last / baseline", "first step < 0.1 x baseline", "published", "train time (s)", "command"]


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys; `model.cell_options` stays one value (it is one command-line field)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name != "model.cell_options":
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def train_time_s(records: Iterable[dict[str, Any]]) -> float:
    """Seconds the loop ran (compilation and evals included): each record's steps since the
    previous record divided by its `steps_per_s`."""
    total, previous = 0.0, 0
    for r in records:
        if "step" in r and r.get("steps_per_s"):
            total += (r["step"] - previous) / r["steps_per_s"]
            previous = r["step"]
    return total


def summarize_run(workdir: str) -> dict[str, Any]:
    """What the table needs from one workdir; FileNotFoundError names a missing file."""
    config_path, metrics_path = os.path.join(workdir, "config.json"), os.path.join(workdir, "metrics.jsonl")
    for path in (config_path, metrics_path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} is missing: {workdir} is not a finished training run")
    with open(config_path) as f:
        config = json.load(f)
    records = read_metrics(metrics_path)
    evals = [r for r in records if isinstance(r.get("eval_loss"), (int, float)) and math.isfinite(r["eval_loss"])]
    baselines = [r[k] for r in evals for k in r if k.startswith("eval_baseline")]
    return {
        "workdir": os.path.abspath(workdir),
        "config": config,
        "task": config["task"],
        "cell": config["model"]["cell"],
        "cell_options": config["model"].get("cell_options") or {},
        "seq_len": config.get("data", {}).get("seq_len"),
        "steps": records[-1]["step"] if records else 0,
        "eval_loss": evals[-1]["eval_loss"] if evals else math.nan,
        "best_eval_loss": min(r["eval_loss"] for r in evals) if evals else math.nan,
        "baseline": sum(baselines) / len(baselines) if baselines else math.nan,
        "train_time_s": train_time_s(records),
        "solved_step": next((r["step"] for r in evals if baselines and r["eval_loss"] < SOLVED * baselines[0]), None),
    }


def reproduce_command(config: dict[str, Any], default: dict[str, Any] | None, config_file: str,
                      workdir: str) -> str:
    """The `experiments.train` command that trains this config: every field that differs from
    `default` (the config file's own values) as a --config override."""
    current, base = _flatten(config), _flatten(default or {})
    parts = [f"python -m experiments.train --config={config_file} --workdir={workdir}"]
    for field in sorted(current):
        value = current[field]
        if field in base and base[field] == value:
            continue
        if field == "model.cell_options":
            if not value and not base.get(field):
                continue
            parts.append(f"\"--config.{field}={value!r}\"")
        else:
            parts.append(f"--config.{field}={value}")
    return " ".join(parts)


def results_rows(summaries: Iterable[dict[str, Any]], defaults: dict[str, dict[str, Any]] | None = None,
                 workdir_for_command: str = "/tmp/{name}") -> list[list[Any]]:
    """Table rows (see HEADER), in the order given.

    defaults: task -> the default config of configs/<task>.py as a dict (for the commands);
    workdir_for_command: the --workdir in each command, formatted with name = the run's directory name.
    """
    rows = []
    for s in summaries:
        min_len, published, source = PUBLISHED.get((s["task"], s["cell"]), (0, "", ""))
        if s["cell_options"] or (s["seq_len"] or 0) < min_len:
            published = ""
        options = ", ".join(f"{k}={v}" for k, v in sorted(s["cell_options"].items())) or "-"
        command = reproduce_command(s["config"], (defaults or {}).get(s["task"]), f"configs/{s['task']}.py",
                                    workdir_for_command.format(name=os.path.basename(s["workdir"])))
        rows.append([
            os.path.basename(s["workdir"]), s["task"], s["seq_len"] if s["seq_len"] is not None else "-", s["cell"], options, s["steps"],
            s["eval_loss"], s["best_eval_loss"], s["baseline"], s["eval_loss"] / s["baseline"],
            "never" if s["solved_step"] is None else s["solved_step"],
            f"{published} ({source})" if published else "-", round(s["train_time_s"]), command,
        ])
    return rows


# ------------------------------------------------------------------------------ the results suite
#
# Every task's headline number, computed from a run's metrics.jsonl (the last eval) or its
# final_metrics.json (numbers a task computes once at the end, e.g. beam-search error rates).


@dataclasses.dataclass(frozen=True)
class Headline:
    """What a task's row reports: `key` and `baseline` name a metric ("eval_x" from the last eval
    record, "final:x" from final_metrics.json) or, for the baseline, give a constant."""

    metric: str  # as printed, e.g. "accuracy"
    key: str
    baseline: str | float | None
    baseline_name: str  # what the trivial predictor is
    higher_is_better: bool


HEADLINES: dict[str, Headline] = {
    "adding": Headline("MSE", "eval_loss", "eval_baseline_mse", "always 1", False),
    "copy_memory": Headline("cross-entropy per step", "eval_loss", "eval_baseline_loss", "memoryless", False),
    "parity": Headline("accuracy at 4x the training length", "eval_accuracy", 0.5, "chance", True),
    "sequential_mnist": Headline("accuracy", "eval_accuracy", 0.1, "chance", True),
    "uea_classification": Headline("accuracy", "eval_accuracy", "eval_baseline_accuracy", "majority class", True),
    "char_lm": Headline("bits per character", "eval_bits_per_char", "eval_unigram_bits_per_char", "unigram", False),
    "co2_forecast": Headline("MAE (ppm), 12 months", "eval_mae_ppm", "eval_seasonal_naive_mae_ppm", "seasonal naive",
                             False),
    "text_classification": Headline("accuracy", "eval_accuracy", "eval_baseline_accuracy", "majority class", True),
    "anomaly_detection": Headline("F1 (per point)", "final:test_f1", "final:test_always_anomalous_f1",
                                  "flag everything", True),
    "chorales": Headline("NLL per step (nats)", "eval_nll_per_step", "eval_baseline_nll_per_step",
                         "independent pitches", False),
    "g2p": Headline("phoneme error rate, beam search", "final:test_per_beam", None, "-", False),
}


def metric_value(records: list[dict[str, Any]], final: dict[str, float], key: str | float | None) -> float:
    """A headline or baseline value of one run: the last finite eval value, a final metric or a constant."""
    if key is None:
        return math.nan
    if isinstance(key, (int, float)):
        return float(key)
    if key.startswith("final:"):
        return float(final.get(key[len("final:"):], math.nan))
    values = [r[key] for r in records if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return float(values[-1]) if values else math.nan


@dataclasses.dataclass(frozen=True)
class Entry:
    """One row of the results suite: a config file with overrides, trained once per seed."""

    name: str
    config: str  # e.g. "configs/japanese_vowels.py"
    overrides: tuple[tuple[str, Any], ...] = ()
    seeds: tuple[int, ...] = (0,)
    published: str = ""  # the literature's figure with its source, where one applies

    def command(self, workdir: str, seed: int) -> list[str]:
        """The argv (after `python -m`) of `experiments.train` for one seed."""
        args = ["experiments.train", f"--config={self.config}", f"--workdir={workdir}"]
        args += [f"--config.{k}={v}" for k, v in self.overrides]
        return args + ([f"--config.train.seed={seed}"] if seed else [])


SUITE: tuple[Entry, ...] = (
    Entry("adding_T200_lstm", "configs/adding.py", (("data.seq_len", 200), ("train.num_steps", 4000)),
          published="solved: MSE -> ~0 at T = 150-400 (Le, Jaitly & Hinton 2015, Fig. 2)"),
    Entry("adding_T200_gru", "configs/adding.py",
          (("data.seq_len", 200), ("train.num_steps", 4000), ("model.cell", "gru"))),
    Entry("adding_T200_rnn", "configs/adding.py",
          (("data.seq_len", 200), ("train.num_steps", 4000), ("model.cell", "rnn")),
          published="not solved: stays at ~0.167 for T >= 150 (Le, Jaitly & Hinton 2015, Fig. 2)"),
    Entry("copy_memory_T50_lstm", "configs/copy_memory.py"),
    Entry("copy_memory_T50_gru", "configs/copy_memory.py", (("model.cell", "gru"), ("model.hidden_size", 128),
                                                             ("train.num_steps", 6000), ("train.learning_rate", 2e-3))),
    Entry("parity_lstm", "configs/parity.py", seeds=(0, 1, 2)),
    Entry("mnist_rows_lstm", "configs/mnist_rows.py", seeds=(0, 1, 2)),
    Entry("japanese_vowels_lstm", "configs/japanese_vowels.py", seeds=(0, 1, 2),
          published="94.1% (Kudo, Toyama & Shimbo 1999)"),
    *(Entry(f"japanese_vowels_{cell}", "configs/japanese_vowels.py", (("model.cell", cell),), seeds=(0, 1, 2))
      for cell in ("gru", "mgu", "ugrnn", "mingru", "rnn")),  # the cell comparison on a real task
    Entry("basic_motions_lstm", "configs/basic_motions.py", seeds=(0, 1, 2)),
    Entry("char_lm_shakespeare_lstm", "configs/char_lm.py"),
    Entry("co2_forecast_gru", "configs/co2_forecast.py", seeds=(0, 1, 2)),
    Entry("bbc_news_gru", "configs/bbc_news.py"),
    Entry("tweet_sentiment_gru", "configs/tweet_sentiment.py"),
    Entry("ecg_anomaly_lstm", "configs/ecg_anomaly.py"),
    Entry("bach_chorales_lstm", "configs/bach_chorales.py",
          published="JSB Chorales test 8.67 (LSTM), 8.54 (GRU), 8.61 (tanh) nats/step (Chung et al. 2014, Table 2)"),
    Entry("g2p_cmudict_lstm", "configs/g2p_cmudict.py",
          published="PER 7.63% / WER 28.61%, encoder-decoder LSTM on their CMUdict split (Yao & Zweig 2015)"),
)

SUITE_HEADER = ["run", "config", "cell", "seeds", "metric", "reached", "baseline", "published", "steps",
                "CPU s per run", "wall s per run"]


def seed_workdir(out: str, entry: Entry, seed: int) -> str:
    return os.path.join(out, entry.name, f"seed{seed}")


def is_finished(workdir: str) -> bool:
    """A run whose metrics.jsonl reached its config's train.num_steps."""
    try:
        s = summarize_run(workdir)
    except FileNotFoundError:
        return False
    return s["steps"] == s["config"]["train"]["num_steps"]


def _mean_sd(values: list[float]) -> str:
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return "-"
    mean = sum(values) / len(values)
    if len(values) == 1 or max(values) - min(values) <= 1e-9 * max(1.0, abs(mean)):  # one seed, or a constant
        return f"{mean:.4g}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.4g} ± {sd:.2g} ({min(values):.4g}-{max(values):.4g})"


def suite_row(entry: Entry, workdirs: list[str]) -> list[Any]:
    """One table row (SUITE_HEADER) from the seed runs of `entry`: mean ± sd (min-max) over seeds."""
    summaries = [summarize_run(w) for w in workdirs]
    task = summaries[0]["task"]
    if task not in HEADLINES:
        raise ValueError(f"task {task!r} has no headline metric; add one to gatedrnn.lab.results.HEADLINES")
    h = HEADLINES[task]
    reached, baseline, cpu = [], [], []
    for s, w in zip(summaries, workdirs):
        records = read_metrics(os.path.join(w, "metrics.jsonl"))
        final = read_final_metrics(w)
        reached.append(metric_value(records, final, h.key))
        baseline.append(metric_value(records, final, h.baseline))
        cpu.append(max((r.get("cpu_s") or 0.0) for r in records) if records else math.nan)
    arrow = "↑" if h.higher_is_better else "↓"
    base = _mean_sd(baseline)
    return [
        entry.name, os.path.basename(entry.config), summaries[0]["cell"], len(summaries), f"{h.metric} {arrow}",
        _mean_sd(reached), f"{base} ({h.baseline_name})" if base != "-" else "-", entry.published or "-",
        summaries[0]["steps"], round(sum(cpu) / len(cpu)) if all(c > 0 for c in cpu) else "-",
        round(sum(s["train_time_s"] for s in summaries) / len(summaries)),
    ]
