"""Per-sequence helpers the engine and the layers share: reversal within lengths, per-example selects."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def flip_sequences(xs: jax.Array, seq_lengths: jax.Array | None) -> jax.Array:
    """Reverses each sequence within its own length; padding stays where it is.

    xs [batch, time, ...], seq_lengths [batch] or None (all full length).
    Position t < L maps to L - 1 - t; t >= L maps to itself, so flipping twice is the identity.
    """
    if seq_lengths is None:
        return jnp.flip(xs, axis=1)
    t = jnp.arange(xs.shape[1], dtype=seq_lengths.dtype)[None, :]
    lengths = seq_lengths[:, None]
    idx = jnp.where(t < lengths, lengths - 1 - t, t)
    idx = idx.reshape(idx.shape + (1,) * (xs.ndim - 2))
    return jnp.take_along_axis(xs, idx, axis=1)


def select(mask: jax.Array, new: Any, old: Any) -> Any:
    """Per-example select over pytrees (carries): mask [batch] True picks new, else old."""

    def pick(n, o):
        return jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - 1)), n, o)

    return jax.tree.map(pick, new, old)
