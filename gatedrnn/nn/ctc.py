"""Connectionist temporal classification (Graves et al. 2006): sequence-to-labels without alignments.

Glossary: b batch, t frames, n labels per sequence, k classes (blank included).

The model emits per-frame logits over k classes, class `blank_id` (default 0) being the blank.
Training maximizes p(labels | x) = sum over alignments a that collapse to the labels of
prod_t p(a_t | x) (`gatedrnn.losses.ctc_loss`, over `optax.ctc_loss`). Greedy decoding takes the per-frame argmax, merges
repeats, then drops blanks: "aa-ab--b" -> "a-ab-b" -> "aabb" with '-' the blank.

A label sequence needs at least `ctc_min_frames` frames (its length plus a blank between
repeats); with fewer, p = 0 and the loss is inf, as in torch (`zero_infinity=True`: 0, with no
gradient, as torch's option).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from gatedrnn.losses import ctc_loss, ctc_min_frames, sequence_mask  # noqa: F401 (ctc_min_frames re-exported)
from gatedrnn.nn.encoder import SequenceEncoder
from gatedrnn.nn.params import resolve_param_dtype
from gatedrnn.validation import check_positive


class CTCDecoded(NamedTuple):
    labels: jax.Array  # [b, t] int32, `pad_value` after the end
    lengths: jax.Array  # [b] int32


def ctc_greedy_decode(logits: jax.Array, seq_lengths: jax.Array | None = None, blank_id: int = 0,
                      pad_value: int | None = None) -> CTCDecoded:
    """Best-path decoding: argmax per frame, merge repeats, drop blanks (jit-friendly, no loops).

    logits [b, t, k] (or log-probs, or one-hot frames) -> CTCDecoded(labels [b, t], lengths [b]);
    labels past each length are `pad_value` (default: the blank id).
    """
    if logits.ndim != 3:
        raise ValueError(f"ctc_greedy_decode needs logits [batch, time, classes], got {logits.shape}")
    b, t = logits.shape[:2]
    pad_value = blank_id if pad_value is None else pad_value
    best = jnp.argmax(logits, axis=-1).astype(jnp.int32)  # [b, t]
    prev = jnp.concatenate([jnp.full((b, 1), -1, jnp.int32), best[:, :-1]], axis=1)
    keep = sequence_mask(seq_lengths, b, t) & (best != blank_id) & (best != prev)
    position = jnp.where(keep, jnp.cumsum(keep.astype(jnp.int32), axis=1) - 1, t)  # t = out of range: dropped
    rows = jnp.broadcast_to(jnp.arange(b)[:, None], (b, t))
    labels = jnp.full((b, t), pad_value, jnp.int32).at[rows, position].set(best, mode="drop")
    return CTCDecoded(labels, jnp.sum(keep.astype(jnp.int32), axis=1))


class CTCModel(nnx.Module):
    """Recurrent encoder + per-frame linear layer over `num_classes` (blank included) for CTC.

    x [b, t, d] features (or [b, t] tokens with vocab_size) -> logits [b, t, num_classes].

    Example:
      model = CTCModel("lstm", 32, num_classes=5, input_size=13, rngs=nnx.Rngs(0))
      loss = model.loss(x, x_lengths, labels, label_lengths)     # mean over the batch
      decoded = model.decode(x, x_lengths)                       # CTCDecoded
    """

    def __init__(self, cell: str, hidden_size: int, num_classes: int, *, rngs: nnx.Rngs, blank_id: int = 0,
                 bidirectional: bool = True, dtype: Any = None, param_dtype: Any = None, **encoder_options: Any):
        check_positive("CTCModel.num_classes", num_classes)
        if num_classes < 2:
            raise ValueError(f"CTCModel.num_classes must count the blank and at least one label (>= 2), got {num_classes}")
        if not 0 <= blank_id < num_classes:
            raise ValueError(f"CTCModel.blank_id={blank_id} must lie in [0, num_classes={num_classes})")
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=resolve_param_dtype(param_dtype))
        self.encoder = SequenceEncoder(cell, hidden_size, bidirectional=bidirectional, **kw, **encoder_options)
        self.head = nnx.Linear(self.encoder.output_size, num_classes, **kw)
        self.blank_id = blank_id

    def __call__(self, x, seq_lengths=None) -> jax.Array:
        outputs, _ = self.encoder(x, seq_lengths)
        return self.head(outputs)

    def loss(self, x, seq_lengths, labels, label_lengths, *, zero_infinity: bool = False) -> jax.Array:
        """Mean over the batch of -log p(labels | x) (in float32); inf when a sequence is too short for
        its labels, unless zero_infinity (see `gatedrnn.losses.ctc_loss`)."""
        logits = self(x, seq_lengths).astype(jnp.float32)
        return jnp.mean(ctc_loss(logits, seq_lengths, labels, label_lengths, self.blank_id,
                                 zero_infinity=zero_infinity))

    def decode(self, x, seq_lengths=None) -> CTCDecoded:
        return ctc_greedy_decode(self(x, seq_lengths), seq_lengths, self.blank_id)
