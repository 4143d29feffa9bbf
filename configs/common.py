"""What every configs/<task>.py shares: the `:smoke` argument, and the sequential-MNIST builder.

A config file's `get_config(arg)` builds the full run and ends with
`return finish(config, arg, "<name>", smoke=...)`: no argument gives the full run, `smoke` a
run of a few seconds (the shared fields shrunk by `shrink_for_smoke_test`, then the task's
own `smoke(config)` edits), anything else a one-line error naming the valid arguments.
"""

from __future__ import annotations

from typing import Callable

import ml_collections

from gatedrnn.train.config import default_config, shrink_for_smoke_test


def finish(config: ml_collections.ConfigDict, arg: str | None, name: str,
           smoke: Callable[[ml_collections.ConfigDict], None] | None = None) -> ml_collections.ConfigDict:
    """Applies the config-file argument `arg` (None or "smoke") to `config`, in place."""
    if arg == "smoke":
        shrink_for_smoke_test(config)
        if smoke is not None:
            smoke(config)
    elif arg:
        raise ValueError(f"configs/{name}.py takes no argument or 'smoke', got {arg!r}")
    return config


def mnist_config(order: str, arg: str | None, *, num_steps: int, batch_size: int, learning_rate: float):
    """The shared config of configs/mnist_{pixel,permuted,rows}.py: a 64-unit LSTM, eval on all
    1,000 held-out digits; `arg` is None or "smoke" (a few seconds, for tests)."""
    config = default_config()
    config.task = "sequential_mnist"
    config.data.order = order
    config.data.permutation_seed = 0

    config.model.cell = "lstm"
    config.model.hidden_size = 64

    config.train.num_steps = num_steps
    config.train.batch_size = batch_size
    config.train.learning_rate = learning_rate
    config.optim.warmup_steps = 100

    config.eval.every_steps = 500
    config.eval.batch_size = 500
    config.eval.num_batches = 2
    config.log.every_steps = 50
    config.checkpoint.every_steps = 500

    def smoke(config):
        config.train.num_steps = 10
        config.eval.every_steps = 10
        config.log.every_steps = 5

    return finish(config, arg, f"mnist_{order}", smoke)
