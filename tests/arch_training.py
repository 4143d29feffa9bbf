"""A tiny training loop shared by the architecture tests: Adam on a loss(model, batch) -> scalar; and the
counting task the language-model tests train on."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from gatedrnn.nn.encoder import sequence_cross_entropy
from gatedrnn.nn.params import with_standard_promotion


def fit(model: nnx.Module, loss_fn: Callable, batches: Callable[[int], object], steps: int, lr: float = 1e-2) -> float:
    """Runs `steps` jitted Adam steps on batches(step); returns the mean loss of the last 10 steps."""
    optimizer = nnx.Optimizer(model, with_standard_promotion(optax.adam(lr)), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, batch):
        loss, grads = nnx.value_and_grad(loss_fn)(model, batch)
        optimizer.update(model, grads)
        return loss

    model.train()
    last = []
    for step in range(steps):
        last.append(float(train_step(model, optimizer, batches(step))))
        last = last[-10:]
    model.eval()
    return sum(last) / len(last)


def counting_batch(step: int, batch: int = 32, time: int = 10, vocab: int = 8) -> jax.Array:
    """Tokens [batch, time] with x_{t+1} = x_t + stride (mod vocab), stride in {1, 3} given by the first two tokens."""
    rng = np.random.default_rng(step)
    start = rng.integers(0, vocab, size=(batch, 1))
    stride = rng.choice([1, 3], size=(batch, 1))
    return jnp.asarray((start + stride * np.arange(time)[None]) % vocab, jnp.int32)


def next_token_loss(model: nnx.Module, tokens: jax.Array) -> jax.Array:
    """Mean next-token cross-entropy of a LanguageModel on tokens [b, t]."""
    logits, _ = model(tokens[:, :-1])
    return sequence_cross_entropy(logits, tokens[:, 1:], jnp.ones(tokens[:, 1:].shape, bool))
