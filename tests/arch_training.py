"""A tiny training loop shared by the architecture tests: Adam on a loss(model, batch) -> scalar."""

from __future__ import annotations

from typing import Callable

import jax
import optax
from flax import nnx


def fit(model: nnx.Module, loss_fn: Callable, batches: Callable[[int], object], steps: int, lr: float = 1e-2) -> float:
    """Runs `steps` jitted Adam steps on batches(step); returns the mean loss of the last 10 steps."""
    optimizer = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, batch):
        loss, grads = nnx.value_and_grad(loss_fn)(model, batch)
        with jax.numpy_dtype_promotion("standard"):  # optax 0.2.8's adam computes `b1 ** count` (float ** int32)
            optimizer.update(model, grads)
        return loss

    model.train()
    last = []
    for step in range(steps):
        last.append(float(train_step(model, optimizer, batches(step))))
        last = last[-10:]
    model.eval()
    return sum(last) / len(last)
