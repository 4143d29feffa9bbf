"""What the command line prints and writes beyond training: `--list`, `--dry_run`, the final line
of a run and `experiments.evaluate`'s metrics of a checkpoint.

A task's headline (which metric says how well a run did, and the trivial baseline beside it)
is an object with `metric` (a name, e.g. "MSE"), `key` ("eval_x" from the eval metrics or
"final:x" from final_metrics.json), `baseline` (such a key, a constant or None) and
`baseline_name` ("always 1"); `gatedrnn.lab.results.HEADLINES` holds one per task, and the
scripts pass it in (this floor does not import the lab).
"""

from __future__ import annotations

import ast
import glob
import math
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from gatedrnn.cells import CELLS
from gatedrnn.nn.blocks import BLOCKS
from gatedrnn.tasks.registry import TASKS
from gatedrnn.train.config import to_json
from gatedrnn.train.metrics import read_final_metrics, read_metrics
from gatedrnn.train.optim import warmup_warning
from gatedrnn.train.provenance import write_json


def _number(metrics: dict[str, Any], key: Any) -> float | None:
    if key is None:
        return None
    if isinstance(key, (int, float)):
        return float(key)
    value = metrics.get(key)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def headline_line(step: int, metrics: dict[str, Any], headline: Any = None, prefix: str = "final",
                  suffix: str = "") -> str:
    """One line: the headline metric beside its baseline, e.g.
    "final: eval_loss 0.002961 (MSE; baseline 0.1655, always 1) at step 1500".

    `metrics` holds eval metrics ("eval_x") and final metrics ("final:x"). Without a headline, or
    when its metric is missing (a "final:" one that only the end of training computes), it is
    eval_loss beside the task's eval_baseline_* metric, if it logs one.
    """
    key = getattr(headline, "key", None)
    value = _number(metrics, key)
    if value is None:
        key, value, name = "eval_loss", _number(metrics, "eval_loss"), None
        baseline_key = next((k for k in sorted(metrics) if k.startswith("eval_baseline")), None)
        baseline, baseline_name = _number(metrics, baseline_key), baseline_key
    else:
        name = headline.metric
        baseline, baseline_name = _number(metrics, headline.baseline), headline.baseline_name
    shown = "nan" if value is None else f"{value:.4g}"
    notes = [n for n in (name, None if baseline is None else f"baseline {baseline:.4g}, {baseline_name}") if n]
    label = key.removeprefix("final:")
    return f"{prefix}: {label} {shown}" + (f" ({'; '.join(notes)})" if notes else "") + f" at step {step}{suffix}"


def final_line(workdir: str, headline: Any = None) -> str | None:
    """The headline line of a finished run (its last eval in metrics.jsonl and final_metrics.json),
    or None when metrics.jsonl holds no eval."""
    evals = [r for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if "eval_loss" in r]
    if not evals:
        return None
    final = {f"final:{k}": v for k, v in read_final_metrics(workdir).items()}
    return headline_line(evals[-1]["step"], {**evals[-1], **final}, headline)


def config_files(configs_dir: str) -> list[tuple[str, str]]:
    """(path, first docstring line) of every configs/*.py that defines get_config (read, not run)."""
    out = []
    for path in sorted(glob.glob(os.path.join(configs_dir, "*.py"))):
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        if any(isinstance(n, ast.FunctionDef) and n.name == "get_config" for n in tree.body):
            doc = (ast.get_docstring(tree) or "").strip().splitlines()
            out.append((path, doc[0] if doc else ""))
    return out


def choices_text(configs_dir: str) -> str:
    """What `experiments.train --list` prints: the config files, tasks, cells and blocks."""
    files = config_files(configs_dir)
    width = max((len(os.path.relpath(p)) for p, _ in files), default=0)
    lines = ["configs (--config=PATH, or PATH:smoke for a run of seconds):"]
    lines += [f"  {os.path.relpath(p):<{width}}  {doc}" for p, doc in files]
    lines += ["tasks (--config.task; each config file sets its own): " + ", ".join(sorted(TASKS)),
              "cells (--config.model.cell): " + ", ".join(sorted(CELLS)),
              "blocks (--config.model.block): auto (the default), None (plain RNN layers), "
              + ", ".join(sorted(BLOCKS))]
    return "\n".join(lines)


def parameter_count(abstract_params: Any) -> int:
    """The number of parameters in a pytree of arrays or jax.ShapeDtypeStructs."""
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(abstract_params))


def dry_run_text(config: ml_collections.ConfigDict) -> str:
    """What `experiments.train --dry_run` prints: the config as config.json would hold it, then the
    model's parameter count (from abstract shapes: nothing is initialized, compiled or written).
    ConfigError for a bad config, as the run would raise it."""
    from gatedrnn.train.loop import make_experiment  # the loop's own validation and model

    exp = make_experiment(config)
    m = config.model
    warning = warmup_warning(config)
    return "\n".join([to_json(config), *([warning] if warning else []),
                      f"parameters: {parameter_count(exp.abstract_params):,} (task {config.task}, cell {m.cell}, "
                      f"hidden_size {m.hidden_size}, num_layers {m.num_layers}, block {m.get('block')})"])


def default_out(workdir: str, step: int) -> str:
    return os.path.join(workdir, f"eval_{step}.json")


def evaluate_checkpoint(workdir: str, checkpoint: str = "auto", out: str | None = None,
                        headline: Any = None) -> tuple[list[str], str]:
    """`experiments.evaluate`: the eval metrics of one checkpoint of the run in `workdir`, written as
    JSON to `out` (default <workdir>/eval_<step>.json); returns (the lines to print, the JSON path).

    `checkpoint`: "auto" ("best" when the run keeps a best checkpoint, checkpoint.keep_best > 0,
    and one recorded an eval loss; else "newest"), "best", "newest" or a step. The JSON holds
    {"workdir", "checkpoint", "step", "metrics", "headline"}. Errors as `load_run` raises them.
    """
    from gatedrnn.train.runs import best_step, load_run, read_config

    chosen = checkpoint
    if checkpoint == "auto":
        config = read_config(workdir)
        chosen = "best" if config.checkpoint.keep_best > 0 and best_step(workdir) is not None else "newest"
    run = load_run(workdir, checkpoint=chosen)
    metrics = run.evaluate()
    which = f"the {chosen} checkpoint" if chosen in ("best", "newest") else "the checkpoint"
    line = headline_line(run.step, metrics, headline, prefix="eval", suffix=f" ({which})")
    path = out or default_out(run.workdir, run.step)
    record = {"workdir": run.workdir, "checkpoint": chosen, "step": run.step, "metrics": metrics, "headline": line}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_json(path, record)
    lines = [f"{k} {v:.6g}" for k, v in sorted(metrics.items())] + [f"wrote {path}", line]
    return lines, path
