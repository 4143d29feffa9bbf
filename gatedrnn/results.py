"""The results table, built from training runs' workdirs (never typed by hand).

A run's workdir holds `config.json` (the resolved config) and `metrics.jsonl` (see
`gatedrnn.train.metrics`). `summarize_run` reads both; `results_rows` turns summaries into
table rows with the trivial baseline, a published figure where one exists and the command
that reproduces the run.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable

from gatedrnn.train.metrics import read_metrics

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
