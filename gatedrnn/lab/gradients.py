"""Input-gradient norms: how much a loss depends on the input t steps before it (vanishing gradients).

Glossary: b batch, t time, d input features.

- `input_gradient_norms(loss_fn, xs)`: || d loss_b / d x_{b,t} ||, averaged over the batch, per step t.
- `model_loss_fn(run, params, targets)`: a trained regression model's per-example loss as a
  function of its inputs (`run` from `gatedrnn.train.runs.load_run`).

The study of experiments/study_vanishing_gradients.py is `gatedrnn.lab.vanishing_gradients`.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


def input_gradient_norms(loss_fn: Callable[[jax.Array], jax.Array], xs: jax.Array) -> np.ndarray:
    """Mean over the batch of || d loss_b / d x_{b,t} ||_2, for every step t.

    loss_fn: xs [b, t, d] -> per-example losses [b] (example b's loss depends on x_b only, so
      the gradient of their sum w.r.t. x_{b,t} is d loss_b / d x_{b,t}).
    The gradient is computed in the inputs' dtype: in float32 it underflows to exactly 0 once it
    falls below ~1e-38 (~1e-45 with denormals), which the plots leave blank.
    Returns a float64 NumPy array [t]. Index t is the input step; the time lag from a loss read
    at the last step is `t_max - 1 - t` (see `time_lags`).
    """
    grads = np.asarray(jax.grad(lambda x: jnp.sum(loss_fn(x)))(xs), np.float64)  # [b, t, d]
    return np.mean(np.linalg.norm(grads, axis=-1), axis=0)  # in float64: squares of tiny float32 values do not underflow


def time_lags(time: int) -> np.ndarray:
    """[time] lags from the last step: step t is T - 1 - t steps before the readout."""
    return np.arange(time - 1, -1, -1)


def model_loss_fn(run: Any, params: Any, targets: jax.Array) -> Callable[[jax.Array], jax.Array]:
    """Per-example squared error of a trained regression model (e.g. the adding problem):
    xs [b, t, d] -> [b], summed over the output features; the model in eval mode.

    run: a `gatedrnn.train.runs.Run` (or anything with its `model(params, rng)`).
    """

    def loss(xs):
        model = run.model(params, jax.random.key(0))
        model.eval()
        return jnp.sum(jnp.square(model(xs) - targets), axis=-1)

    return loss
