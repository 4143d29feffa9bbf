"""Parameters of the NNX modules as plain arrays, and optax updates of them under strict promotion."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx


def resolve_param_dtype(param_dtype: Any = None) -> jnp.dtype:
    """The dtype a module stores its parameters in: `param_dtype`, or for None the default float
    dtype of `jnp.zeros`: float32, float64 under `jax_enable_x64` (every module of `gatedrnn.nn`
    takes `param_dtype=None` and resolves it here, when it is built)."""
    return jnp.dtype(jnp.result_type(float)) if param_dtype is None else jnp.dtype(param_dtype)


def cast(x: jax.Array, dtype: Any) -> jax.Array:
    """x in the compute dtype `dtype` (None: x as it is)."""
    return x if dtype is None else x.astype(dtype)


def param_values(module_params: Any) -> Any:
    """A pytree of nnx.Variable (e.g. an `RNN`'s `params`) -> the same pytree of arrays."""
    return jax.tree.map(lambda v: v[...], module_params, is_leaf=lambda v: isinstance(v, nnx.Variable))


def standard_promotion():
    """`with standard_promotion(): optimizer.update(...)`: optax under standard dtype promotion.

    optax 0.2.8's Adam bias correction computes `b1 ** count` (a float to an int32 power), which
    `jax_numpy_dtype_promotion="strict"` (our tests' setting) rejects. Only optax runs under it;
    our own code stays strict.
    """
    return jax.numpy_dtype_promotion("standard")


def with_standard_promotion(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """`tx` with its init and update run under `standard_promotion()`, whatever the caller's setting."""

    def init(params):
        with standard_promotion():
            return tx.init(params)

    def update(updates, state, params=None):
        with standard_promotion():
            return tx.update(updates, state, params)

    return optax.GradientTransformation(init, update)
