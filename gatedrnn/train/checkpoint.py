"""Checkpoints with orbax's `CheckpointManager`: keep the newest N and the best N, and
resume from the newest checkpoint that restores, setting damaged ones aside."""

from __future__ import annotations

import os
import shutil
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp


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
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, metrics: dict[str, float] | None = None) -> None:
        self.manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics, force=True)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    def restore_newest(self, abstract_state: Any, report: Callable[[str], None]) -> tuple[int | None, Any]:
        """Restores the newest checkpoint that reads back whole; returns (step, state) or (None, None).

        A checkpoint that fails to restore is reported through `report`, moved to
        `<directory>_damaged/<step>` (never deleted) and the next older one is tried.
        """
        for step in reversed(self.all_steps()):
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


def _check_structure(abstract_state: Any, state: Any) -> None:
    want = jax.tree.map(lambda a: (tuple(a.shape), str(a.dtype)), abstract_state)
    got = jax.tree.map(lambda a: (tuple(a.shape), str(a.dtype)), state)
    if want != got:
        raise ValueError("restored arrays do not have the expected shapes and dtypes")


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
