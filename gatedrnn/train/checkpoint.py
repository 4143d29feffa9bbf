"""Checkpoints with orbax's `CheckpointManager`: keep the newest N and the best N, and
resume from the newest checkpoint that restores, setting damaged ones aside."""

from __future__ import annotations

import os
import shutil
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp

from gatedrnn.train.config import ConfigError

CHECKPOINT_DIR = "checkpoints"  # a run's checkpoints live in <workdir>/checkpoints/<step>/


def checkpoint_steps(directory: str) -> list[int]:
    """The steps saved in `directory`, read from its names without opening a CheckpointManager
    (whose background threads a process that exits at once can race)."""
    return sorted(ocp.utils.checkpoint_steps(directory)) if os.path.isdir(directory) else []


class Checkpointer:
    """Saves the train state (a pytree of arrays) under `directory/<step>`.

    `keep` newest checkpoints are kept, plus the `keep_best` ones with the lowest
    `metrics[best_metric]` (the eval loss). Saving is asynchronous; `wait()` blocks until
    every save is on disk. All processes call every method (orbax synchronizes them).
    """

    def __init__(self, directory: str, *, keep: int, keep_best: int, best_metric: str = "eval_loss"):
        self.directory = os.path.abspath(directory)
        self.best_metric = best_metric
        policies: list[ocp.checkpoint_managers.PreservationPolicy] = [ocp.checkpoint_managers.LatestN(n=keep)]
        if keep_best > 0:
            policies.append(ocp.checkpoint_managers.BestN(
                get_metric_fn=lambda metrics: metrics[best_metric], reverse=True, n=keep_best,
                keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
            create=True,
            cleanup_tmp_directories=True,  # half-written saves of a killed run
            enable_async_checkpointing=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_handlers=ocp.StandardCheckpointHandler())

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, metrics: dict[str, float] | None = None) -> None:
        # orbax keeps `metrics` in memory only; the custom metadata puts them on disk (`saved_metrics`)
        self.manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics, force=True,
                          custom_metadata={"metrics": {k: float(v) for k, v in (metrics or {}).items()}})

    def saved_metrics(self, step: int) -> dict[str, float]:
        """The metrics the checkpoint at `step` was saved with ({} for one saved without, or unreadable)."""
        try:
            custom = self.manager.metadata(step).custom_metadata or {}
        except Exception:  # noqa: BLE001 - damaged or older metadata: no metrics
            return {}
        return dict(custom.get("metrics") or {})

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    def restore(self, step: int, abstract_state: Any) -> Any:
        """The checkpoint at `step` (one of `all_steps()`), read into `abstract_state`'s shapes;
        ConfigError when it holds other shapes (another config wrote it). Nothing is moved."""
        saved = self.manager.item_metadata(step)
        saved = saved.tree if hasattr(saved, "tree") else saved
        mismatch = describe_mismatch(saved, abstract_state) if isinstance(saved, dict) else None
        if mismatch:
            raise ConfigError(f"the checkpoint at step {step} in {self.directory} was written by a different "
                              f"config ({mismatch})")
        state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
        _check_structure(abstract_state, state)
        return state

    def restore_newest(self, abstract_state: Any, report: Callable[[str], None]) -> tuple[int | None, Any]:
        """Restores the newest checkpoint that reads back whole; returns (step, state) or (None, None).

        A checkpoint that fails to restore is reported through `report`, moved to
        `<directory>_damaged/<step>` (never deleted) and the next older one is tried. A
        checkpoint that reads back but holds other shapes than `abstract_state` was written by
        another config: ConfigError, and nothing is moved.
        """
        for step in reversed(self.all_steps()):
            try:
                saved = self.manager.item_metadata(step)
                saved = saved.tree if hasattr(saved, "tree") else saved  # orbax 0.12 wraps the tree; 0.11 does not
            except Exception:  # noqa: BLE001 - unreadable metadata: the restore below reports it
                saved = None
            if isinstance(saved, dict):
                mismatch = describe_mismatch(saved, abstract_state)
                if mismatch:
                    raise ConfigError(f"the checkpoint at step {step} in {self.directory} was written by a different "
                                      f"config ({mismatch}); use that config or a new --workdir")
            try:
                state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
                _check_structure(abstract_state, state)
                return step, state
            except Exception as e:  # noqa: BLE001 - any read failure means a damaged checkpoint
                first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                target = os.path.join(self.directory + "_damaged", str(step))
                report(f"checkpoint {step} in {self.directory} is damaged ({type(e).__name__}: {first_line}); "
                       f"moved it to {target} and trying an older one")
                if jax.process_index() == 0:
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    if os.path.exists(target):
                        shutil.rmtree(target)
                    shutil.move(os.path.join(self.directory, str(step)), target)
                _barrier(f"checkpoint_damaged_{step}")
                self.manager.reload()
        return None, None


def _signatures(tree: Any) -> dict[str, tuple]:
    """{"params/rnn/layers/0/params/w": ((2, 4, 8), "float32"), ...}; keys as strings."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        parts = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]
        out["/".join(parts)] = (tuple(leaf.shape), str(leaf.dtype))
    return out


def describe_mismatch(saved: dict, abstract_state: dict) -> str | None:
    """How a checkpoint's array metadata differs from the state this config builds, or None.

    Entries are compared by path, except `opt_state`, whose named tuples orbax stores as lists:
    there only the multiset of shapes and dtypes is compared.
    """
    for group in sorted(set(saved) | set(abstract_state), key=lambda g: (g == "opt_state", g)):  # params first
        have, want = _signatures(saved.get(group, {})), _signatures(abstract_state.get(group, {}))
        if group == "opt_state":
            if sorted(have.values()) != sorted(want.values()):
                return "the optimizer state differs (another optim.name?)"
            continue
        for name in sorted(set(have) | set(want)):
            if have.get(name) != want.get(name):
                got = "absent" if name not in have else f"shape {have[name][0]} {have[name][1]}"
                need = "absent" if name not in want else f"shape {want[name][0]} {want[name][1]}"
                return f"{group}/{name} is {got} there, {need} here".replace("/ is", " is")
    return None


def _check_structure(abstract_state: Any, state: Any) -> None:
    want = jax.tree.map(lambda a: (tuple(a.shape), str(a.dtype)), abstract_state)
    got = jax.tree.map(lambda a: (tuple(a.shape), str(a.dtype)), state)
    if want != got:
        raise ValueError("restored arrays do not have the expected shapes and dtypes")


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
