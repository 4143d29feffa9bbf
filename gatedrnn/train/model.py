"""The model a task trains: an optional embedding, a `build_rnn` stack and a linear readout."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from gatedrnn.nn.layers import build_rnn

READOUTS = ("last", "all")


class SequenceModel(nnx.Module):
    """inputs [b, t, d] float (or [b, t] int tokens when `vocab_size` is set) ->
    outputs [b, output_size] (readout "last": the last valid step) or [b, t, output_size]
    (readout "all"), always float32 whatever the compute dtype.
    """

    def __init__(
        self,
        *,
        cell: str,
        input_size: int,
        hidden_size: int,
        output_size: int,
        readout: str,
        rngs: nnx.Rngs,
        vocab_size: int | None = None,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        residual: bool = False,
        unroll: int = 1,
        dtype: Any = None,
        cell_options: dict[str, Any] | None = None,
    ):
        if readout not in READOUTS:
            raise ValueError(f"readout={readout!r} is not valid; choose one of {list(READOUTS)}")
        self.readout = readout
        self.embed = nnx.Embed(vocab_size, input_size, dtype=dtype, rngs=rngs) if vocab_size else None
        self.rnn = build_rnn(cell, input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                             dropout=dropout, residual=residual, unroll=unroll, dtype=dtype, rngs=rngs,
                             **(cell_options or {}))
        self.head = nnx.Linear(self.rnn.output_size, output_size, dtype=dtype, rngs=rngs)

    def __call__(self, inputs: jax.Array, seq_lengths: jax.Array | None = None) -> jax.Array:
        x = self.embed(inputs) if self.embed is not None else inputs
        ys, _ = self.rnn(x, seq_lengths=seq_lengths)
        if self.readout == "last":
            if seq_lengths is None:
                ys = ys[:, -1]
            else:
                idx = jnp.maximum(seq_lengths.astype(jnp.int32) - 1, 0)
                ys = jnp.take_along_axis(ys, idx[:, None, None], axis=1)[:, 0]
        return self.head(ys).astype(jnp.float32)
