"""Many-to-one pooling and heads, and the per-step tagger.

Glossary: b batch, t time, h features, c classes/outputs.

Pooling reduces encoder outputs [b, t, h] with lengths [b] to [b, h], looking only at valid
steps, so padding a batch never changes a pooled vector:

  last:      x_{L-1}                                   (the last valid step)
  mean:      (1/L) sum_{t<L} x_t
  max:       max_{t<L} x_t                              (per feature)
  attention: sum_{t<L} a_t x_t,  a = softmax_{t<L}(v^T tanh(W x_t + b))   (Yang et al. 2016)

Every module takes `param_dtype` (None: float32, float64 under jax_enable_x64) and `dtype`
(the compute dtype, None: the inputs'), passed to its encoder and linear layers.

An empty sequence (L = 0) pools to zeros. With a bidirectional encoder, "last" takes the
output at L-1, whose backward half has seen only that one step: prefer mean, max or attention.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from gatedrnn.losses import sequence_mask
from gatedrnn.nn.attention import masked_softmax
from gatedrnn.nn.encoder import SequenceEncoder
from gatedrnn.nn.params import cast, resolve_param_dtype
from gatedrnn.validation import check_choice, check_positive


def _lengths(x: jax.Array, seq_lengths) -> jax.Array:
    if x.ndim != 3:
        raise ValueError(f"pooling needs outputs of shape [batch, time, features], got {x.shape}")
    if seq_lengths is None:
        return jnp.full((x.shape[0],), x.shape[1], jnp.int32)
    return jnp.asarray(seq_lengths, jnp.int32)


def last_pool(x: jax.Array, seq_lengths: jax.Array | None = None) -> jax.Array:
    """x [b, t, h] -> `x[i, L_i - 1]`, [b, h] (zeros where L_i = 0)."""
    lengths = _lengths(x, seq_lengths)
    idx = jnp.maximum(lengths - 1, 0)[:, None, None]
    last = jnp.take_along_axis(x, idx, axis=1)[:, 0]
    return jnp.where((lengths > 0)[:, None], last, jnp.zeros_like(last))


def mean_pool(x: jax.Array, seq_lengths: jax.Array | None = None) -> jax.Array:
    """x [b, t, h] -> mean over valid steps [b, h]."""
    lengths = _lengths(x, seq_lengths)
    mask = sequence_mask(lengths, *x.shape[:2])
    total = jnp.sum(jnp.where(mask[:, :, None], x, jnp.zeros_like(x)), axis=1)
    return total / jnp.maximum(lengths, 1).astype(x.dtype)[:, None]


def max_pool(x: jax.Array, seq_lengths: jax.Array | None = None) -> jax.Array:
    """x [b, t, h] -> per-feature max over valid steps [b, h]."""
    lengths = _lengths(x, seq_lengths)
    mask = sequence_mask(lengths, *x.shape[:2])
    peak = jnp.max(jnp.where(mask[:, :, None], x, jnp.asarray(-jnp.inf, x.dtype)), axis=1)
    return jnp.where((lengths > 0)[:, None], peak, jnp.zeros_like(peak))


POOLINGS: dict[str, Callable[[jax.Array, Any], jax.Array]] = {"last": last_pool, "mean": mean_pool, "max": max_pool}
POOLING_CHOICES = (*POOLINGS, "attention")


class AttentionPool(nnx.Module):
    """Attention pooling: a_t = softmax over valid t of v^T tanh(W x_t + b); pooled = sum_t a_t x_t."""

    def __init__(self, size: int, attention_size: int | None = None, *, rngs: nnx.Rngs, dtype: Any = None,
                 param_dtype: Any = None):
        check_positive("AttentionPool.size", size)
        a = attention_size or size
        kw = dict(dtype=dtype, param_dtype=resolve_param_dtype(param_dtype), rngs=rngs)
        self.proj = nnx.Linear(size, a, **kw)
        self.v = nnx.Linear(a, 1, use_bias=False, **kw)
        self.dtype = dtype

    def weights(self, x: jax.Array, seq_lengths: jax.Array | None = None) -> jax.Array:
        """x [b, t, h] -> attention weights [b, t] (exactly 0 on padding)."""
        lengths = _lengths(x, seq_lengths)
        scores = self.v(jnp.tanh(self.proj(x)))[..., 0]
        return masked_softmax(scores, sequence_mask(lengths, *x.shape[:2]))

    def __call__(self, x, seq_lengths=None):
        x = cast(x, self.dtype)
        return jnp.einsum("bt,bth->bh", self.weights(x, seq_lengths), x)


class Pool(nnx.Module):
    """Pooling by name ("last", "mean", "max", "attention"): [b, t, h] + lengths -> [b, h]."""

    def __init__(self, kind: str, size: int, *, rngs: nnx.Rngs, dtype: Any = None, param_dtype: Any = None):
        check_choice("model.pooling", kind, POOLING_CHOICES)
        self.kind = kind
        self.attention = (AttentionPool(size, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
                          if kind == "attention" else None)

    def __call__(self, x, seq_lengths=None):
        if self.attention is not None:
            return self.attention(x, seq_lengths)
        return POOLINGS[self.kind](x, seq_lengths)


class SequenceClassifier(nnx.Module):
    """Many-to-one classifier: encoder -> pooling -> linear head.

    x [b, t] tokens (with vocab_size) or [b, t, d] features -> logits [b, num_classes].

    Example:
      model = SequenceClassifier("lstm", 32, num_classes=3, vocab_size=50, pooling="attention",
                                 bidirectional=True, rngs=nnx.Rngs(0))
      logits = model(tokens, seq_lengths=lengths)
    """

    def __init__(self, cell: str, hidden_size: int, num_classes: int, *, rngs: nnx.Rngs, pooling: str = "last",
                 dtype: Any = None, param_dtype: Any = None, **encoder_options: Any):
        check_positive("SequenceClassifier.num_classes", num_classes)
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=resolve_param_dtype(param_dtype))
        self.encoder = SequenceEncoder(cell, hidden_size, **kw, **encoder_options)
        self.pool = Pool(pooling, self.encoder.output_size, **kw)
        self.head = nnx.Linear(self.encoder.output_size, num_classes, **kw)

    def features(self, x, seq_lengths=None) -> jax.Array:
        """The pooled representation [b, h]."""
        outputs, _ = self.encoder(x, seq_lengths)
        return self.pool(outputs, seq_lengths)

    def __call__(self, x, seq_lengths=None) -> jax.Array:
        return self.head(self.features(x, seq_lengths))


class SequenceRegressor(SequenceClassifier):
    """Many-to-one regressor: encoder -> pooling -> linear head; x -> predictions [b, num_outputs]."""

    def __init__(self, cell: str, hidden_size: int, num_outputs: int = 1, *, rngs: nnx.Rngs, pooling: str = "last",
                 dtype: Any = None, param_dtype: Any = None, **encoder_options: Any):
        super().__init__(cell, hidden_size, num_outputs, rngs=rngs, pooling=pooling, dtype=dtype,
                         param_dtype=param_dtype, **encoder_options)


class Tagger(nnx.Module):
    """Many-to-many of equal length: a bidirectional stack and a per-step linear head.

    x [b, t] tokens or [b, t, d] features -> logits [b, t, num_tags]; logits at padded steps are
    those of a zero encoder output (ignore them; `sequence_cross_entropy` masks them out).
    """

    def __init__(self, cell: str, hidden_size: int, num_tags: int, *, rngs: nnx.Rngs, bidirectional: bool = True,
                 dtype: Any = None, param_dtype: Any = None, **encoder_options: Any):
        check_positive("Tagger.num_tags", num_tags)
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=resolve_param_dtype(param_dtype))
        self.encoder = SequenceEncoder(cell, hidden_size, bidirectional=bidirectional, **kw, **encoder_options)
        self.head = nnx.Linear(self.encoder.output_size, num_tags, **kw)

    def __call__(self, x, seq_lengths=None) -> jax.Array:
        outputs, _ = self.encoder(x, seq_lengths)
        return self.head(outputs)
