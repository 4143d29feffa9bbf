"""The model a task trains: an optional embedding, a `build_rnn` stack (of RNN layers or blocks) and a linear readout."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from gatedrnn.nn.blocks import resolve_block
from gatedrnn.nn.heads import last_pool
from gatedrnn.nn.layers import build_rnn
from gatedrnn.scan import ScanOptions
from gatedrnn.validation import check_choice

READOUTS = ("last", "all")


class SequenceModel(nnx.Module):
    """inputs [b, t, d] float (or [b, t] int tokens when `vocab_size` is set) ->
    outputs [b, output_size] (readout "last": the last valid step) or [b, t, output_size]
    (readout "all"), always float32 whatever the compute dtype.

    A unidirectional model also runs step by step (what sampling feeds back):
      outputs, carry = model.prefill(prompt)      # [b, t] tokens or [b, t, d] -> [b, output_size]
      outputs, carry = model.step(x, carry)       # [b] tokens or [b, d] -> [b, output_size]
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
        scan: ScanOptions | None = None,
        cell_options: dict[str, Any] | None = None,
        block: str | None = None,
        block_options: dict[str, Any] | None = None,
    ):
        check_choice("readout", readout, READOUTS)
        self.readout, self.bidirectional = readout, bidirectional
        scan = ScanOptions() if scan is None else scan
        dtype = scan.dtype  # the compute dtype of the embedding and head too
        self.embed = nnx.Embed(vocab_size, input_size, dtype=dtype, rngs=rngs) if vocab_size else None
        self.rnn = build_rnn(cell, input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                             dropout=dropout, residual=residual, scan=scan, rngs=rngs, block=resolve_block(cell, block),
                             block_options=block_options, **(cell_options or {}))
        self.head = nnx.Linear(self.rnn.output_size, output_size, dtype=dtype, rngs=rngs)

    def __call__(self, inputs: jax.Array, seq_lengths: jax.Array | None = None) -> jax.Array:
        x = self.embed(inputs) if self.embed is not None else inputs
        ys, _ = self.rnn(x, seq_lengths=seq_lengths)
        if self.readout == "last":
            ys = last_pool(ys, seq_lengths)
        return self.head(ys).astype(jnp.float32)

    def prefill(self, prompt: jax.Array, carry: Any = None) -> tuple[jax.Array, Any]:
        """prompt [b, t] tokens (or [b, t, d] features) from `carry` (None: the initial carry) ->
        (outputs [b, output_size] float32 at the last step, the carry after it)."""
        if self.bidirectional:
            raise ValueError("stepping needs a unidirectional model (model.bidirectional=False)")
        x = self.embed(prompt) if self.embed is not None else prompt
        ys, carry = self.rnn(x, initial_carry=carry)
        return self.head(ys[:, -1]).astype(jnp.float32), carry

    def step(self, x: jax.Array, carry: Any) -> tuple[jax.Array, Any]:
        """One step: x [b] tokens (or [b, d] features) and the carry -> (outputs [b, output_size] float32, carry)."""
        return self.prefill(x[:, None], carry)
