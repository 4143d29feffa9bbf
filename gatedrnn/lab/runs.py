"""The studies' training runs: config variants, a seconds-long version of a config, and training
a set of runs into one directory. A finished run is read back with `gatedrnn.train.runs.load_run`.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import ml_collections

from gatedrnn.lab.results import read_manifests
from gatedrnn.train import train_and_evaluate
from gatedrnn.train.runs import Run, load_run


def with_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """A copy of `config` with dotted fields set, e.g. {"model.cell": "gru", "data.seq_len": 200};
    a dict value for "model.cell_options" becomes a ConfigDict."""
    config = config.copy_and_resolve_references()
    for dotted, value in overrides.items():
        *groups, name = dotted.split(".")
        node = config
        for group in groups:
            node = node[group]
        node[name] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value
    return config


def shrink_for_quick_run(config: ml_collections.ConfigDict, num_steps: int = 30) -> ml_collections.ConfigDict:
    """A seconds-long version of a config for the studies' --quick mode and their tests."""
    return with_overrides(config, {
        "model.hidden_size": 8, "train.num_steps": num_steps, "train.batch_size": 16, "optim.warmup_steps": 0,
        "eval.every_steps": num_steps, "eval.batch_size": 32, "eval.num_batches": 1, "log.every_steps": num_steps,
        "log.progress": False, "log.plots": False, "log.tensorboard": False, "checkpoint.every_steps": num_steps,
    })


def train_runs(runs: Mapping[str, ml_collections.ConfigDict], out: str,
               report: Callable[[str], None] = print) -> dict[str, str]:
    """Trains each (name -> config) run into `out/name` (one at a time; a finished run resumes
    to a no-op) and appends the workdirs to `out/manifest.txt`. Returns name -> workdir."""
    os.makedirs(out, exist_ok=True)
    workdirs = {}
    for name, config in runs.items():
        workdir = os.path.join(out, name)
        report(f"training {name} in {workdir}")
        train_and_evaluate(config, workdir)
        workdirs[name] = workdir
    manifest = os.path.join(out, "manifest.txt")
    known = read_manifests([manifest]) if os.path.exists(manifest) else []
    with open(manifest, "a") as f:
        f.writelines(w + "\n" for w in workdirs.values() if w not in known)
    return workdirs


def load_params(config: ml_collections.ConfigDict, workdir: str | None = None) -> tuple[Run, Any]:
    """(run, params): `config`'s initial params (workdir None) or those of the newest checkpoint in
    `workdir` (FileNotFoundError when there is none). The earlier form of `load_run(workdir, config=config)`;
    `run.task`, `run.config` and `run.model(params, rng)` are what the old experiment offered."""
    run = load_run(workdir, config=config)
    return run, run.params
