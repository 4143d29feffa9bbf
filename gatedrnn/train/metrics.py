"""Where the numbers go: `metrics.jsonl`, TensorBoard event files and PNG learning curves.

Only process 0 writes (the writer of every other process is a no-op). On resume, records
after the restored step (written by the interrupted run) are dropped from metrics.jsonl and
purged from TensorBoard, so the files read as if the run had never stopped.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable

FINAL_METRICS = "final_metrics.json"


def write_final_metrics(workdir: str, metrics: dict[str, float]) -> str:
    """Numbers a task computes once when a run ends (e.g. beam-search error rates) -> <workdir>/final_metrics.json."""
    path = os.path.join(workdir, FINAL_METRICS)
    with open(path, "w") as f:
        json.dump({k: float(v) for k, v in metrics.items()}, f, indent=2, sort_keys=True)
    return path


def read_final_metrics(workdir: str) -> dict[str, float]:
    """<workdir>/final_metrics.json, or {} when there is none (the run has not finished, or its
    task's `final_report` returned no metrics)."""
    path = os.path.join(workdir, FINAL_METRICS)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def read_metrics(path: str) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl, skipping a half-written last line (a killed writer)."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


class MetricsWriter:
    def __init__(self, workdir: str, *, resume_step: int, enabled: bool, tensorboard: bool, plots: bool):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.plot_path = os.path.join(workdir, "plots", "learning_curves.png")
        self.plots = plots
        self._tb = None
        if not enabled:
            return
        kept = [r for r in read_metrics(self.path) if r.get("step", math.inf) <= resume_step]
        with open(self.path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        self._file = open(self.path, "a")
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=resume_step + 1 if resume_step else None)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            step = record["step"]
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, step)

    def plot(self) -> str | None:
        """Writes plots/learning_curves.png from metrics.jsonl; returns its path."""
        if not (self.enabled and self.plots):
            return None
        plot_learning_curves(read_metrics(self.path), self.plot_path)
        return self.plot_path

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def plot_learning_curves(records: Iterable[dict[str, Any]], path: str) -> None:
    """Left: training and eval loss (and the task's baseline), log scale. Right: the other eval metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = list(records)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    eval_keys = sorted({k for r in records for k in r if k.startswith("eval_")})
    panels = [
        ["loss", "eval_loss"] + [k for k in eval_keys if "baseline" in k],
        [k for k in eval_keys if k != "eval_loss" and "baseline" not in k],
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, keys, log in zip(axes, panels, (True, False)):
        for key in keys:
            pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, label=key, marker="." if len(pts) < 30 else None)
        if log and all(r.get("loss", 1.0) > 0 for r in records):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
