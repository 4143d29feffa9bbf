"""The shared front end of the architectures: optional token embedding + a recurrent stack.

Glossary: b batch, t time, d input features, v vocabulary, e embedding size, h hidden units.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from gatedrnn.losses import language_model_metrics
from gatedrnn.losses import sequence_mask as sequence_mask  # re-exported: README imports it from here
from gatedrnn.nn.layers import build_rnn
from gatedrnn.nn.params import resolve_param_dtype
from gatedrnn.validation import check_positive


class SequenceEncoder(nnx.Module):
    """Embedding (when `vocab_size` is given) followed by `build_rnn(cell, ...)`.

    Inputs are token ids [b, t] (int) with `vocab_size`, or features [b, t, input_size]
    (float) without. `outputs, carry = encoder(x, seq_lengths)`, outputs [b, t, output_size].
    `param_dtype` (None: float32, float64 under jax_enable_x64) and `dtype` (compute; None: the
    inputs') go to the embedding and every layer.

    Example:
      enc = SequenceEncoder("gru", hidden_size=32, vocab_size=100, embed_size=16,
                            bidirectional=True, rngs=nnx.Rngs(0))
      outputs, carries = enc(tokens, seq_lengths=lengths)      # [b, t] -> [b, t, 64]
    """

    def __init__(self, cell: str, hidden_size: int, *, rngs: nnx.Rngs, input_size: int | None = None,
                 vocab_size: int | None = None, embed_size: int | None = None, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, dtype: Any = None, param_dtype: Any = None,
                 **rnn_options: Any):
        if (input_size is None) == (vocab_size is None):
            raise ValueError(f"give exactly one of input_size (features) or vocab_size (tokens), got "
                             f"input_size={input_size!r} vocab_size={vocab_size!r}")
        if vocab_size is not None:
            check_positive("SequenceEncoder.vocab_size", vocab_size)
            embed_size = embed_size or hidden_size
            self.embed = nnx.Embed(vocab_size, embed_size, dtype=dtype, param_dtype=resolve_param_dtype(param_dtype),
                                   rngs=rngs)
            input_size = embed_size
        else:
            check_positive("SequenceEncoder.input_size", input_size)
            self.embed = None
        self.vocab_size = vocab_size
        if dtype is not None:
            rnn_options["dtype"] = dtype  # a ScanOptions field: the layers' compute dtype
        self.rnn = build_rnn(cell, input_size, hidden_size, rngs=rngs, num_layers=num_layers,
                             bidirectional=bidirectional, dropout=dropout, param_dtype=param_dtype, **rnn_options)

    @property
    def output_size(self) -> int:
        return self.rnn.output_size

    def embed_inputs(self, x: jax.Array) -> jax.Array:
        if self.embed is None:
            if x.ndim != 3 or not jnp.issubdtype(x.dtype, jnp.floating):
                raise ValueError(f"inputs must be float features [batch, time, {self.rnn.input_size}], got {x.shape} {x.dtype}")
            return x
        if not jnp.issubdtype(x.dtype, jnp.integer):
            raise ValueError(f"inputs must be integer token ids [batch, time] < {self.vocab_size}, got dtype {x.dtype}")
        return self.embed(x)

    def __call__(self, x, seq_lengths=None, initial_carry=None):
        return self.rnn(self.embed_inputs(x), seq_lengths=seq_lengths, initial_carry=initial_carry)


def carry_bridge(carry_template: Any, input_size: int, *, rngs: nnx.Rngs, dtype: Any = None,
                 param_dtype: Any = None) -> nnx.List:
    """One Linear(input_size -> leaf size) per leaf of a decoder's carry (e.g. `initial_carry(1)`)."""
    kw = dict(dtype=dtype, param_dtype=resolve_param_dtype(param_dtype), rngs=rngs)
    return nnx.List([nnx.Linear(input_size, leaf.shape[-1], **kw) for leaf in jax.tree.leaves(carry_template)])


def bridge_carry(bridge: nnx.List, carry_template: Any, v: jax.Array) -> Any:
    """v [b, f] -> the carry with leaves tanh(W_c v + b_c) [b, leaf size], in `carry_template`'s structure."""
    return jax.tree.unflatten(jax.tree.structure(carry_template), [jnp.tanh(layer(v)) for layer in bridge])


def sequence_cross_entropy(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean token cross-entropy over the valid tokens (`language_model_metrics`' loss, in float32):
    logits [b, t, v], int labels [b, t], bool mask [b, t] -> scalar (0 if no token is valid)."""
    return language_model_metrics(logits, labels, mask)[0]
