"""Losses and metrics as reusable pure functions.

Each `*_metrics` function returns `(loss, sums)`: the scalar loss to differentiate (a mean)
and a dict of metric sums, `name -> [sum, count]` (float32 [2]), that add across steps,
devices and batches; `normalize` turns them into means on the host (metrics as sums plus
counts, so that a padded or a partial batch weighs right). Shapes: b batch, t time,
c classes, v vocabulary, l label length.
"""

from __future__ import annotations

import math
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

Sums = dict[str, jax.Array]


def pair(total: jax.Array, count: jax.Array) -> jax.Array:
    """[sum, count] as float32 [2]: what every metric in `Sums` holds."""
    return jnp.stack([jnp.asarray(total, jnp.float32), jnp.asarray(count, jnp.float32)])


def _weights(mask: jax.Array | None, like: jax.Array) -> jax.Array:
    return jnp.ones(like.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)


def regression_metrics(preds: jax.Array, targets: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, Sums]:
    """Mean squared error. preds, targets [b, ...]; mask [b, ...] of valid entries (or None)."""
    err = jnp.square(preds.astype(jnp.float32) - targets.astype(jnp.float32))
    w = _weights(mask, err)
    total, count = jnp.sum(err * w), jnp.sum(w)
    loss = total / jnp.maximum(count, 1.0)
    abs_err = jnp.sum(jnp.abs(preds.astype(jnp.float32) - targets.astype(jnp.float32)) * w)
    return loss, {"loss": pair(total, count), "mse": pair(total, count), "mae": pair(abs_err, count)}


def classification_metrics(logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, Sums]:
    """Softmax cross-entropy and accuracy. logits [b, c]; labels [b] int; mask [b] (or None)."""
    logits = logits.astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    w = _weights(mask, ce)
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    total, count = jnp.sum(ce * w), jnp.sum(w)
    return total / jnp.maximum(count, 1.0), {
        "loss": pair(total, count),
        "accuracy": pair(jnp.sum(correct * w), count),
    }


def constant_accuracy(labels: jax.Array, label: int, mask: jax.Array | None = None) -> jax.Array:
    """[sum, count] of the accuracy of always predicting `label` (e.g. the majority class). labels [b]."""
    w = _weights(mask, labels.astype(jnp.float32))
    return pair(jnp.sum((labels == label).astype(jnp.float32) * w), jnp.sum(w))


def bernoulli_nll_metrics(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> tuple[jax.Array, Sums]:
    """Negative log-likelihood per time step of independent Bernoulli pitches, in nats.

    logits, targets [b, t, p]; mask [b, t]. With q = sigmoid(logits):
      nll[b, t] = -sum_p (y log q + (1 - y) log(1 - q))   (optax's stable sigmoid BCE)
      loss = sum_{b,t} mask nll / sum_{b,t} mask
    `frame_accuracy` is Bay et al. 2009's TP / (TP + FP + FN) over all valid frames, with a
    pitch predicted on when q > 1/2.
    """
    logits, y, w = logits.astype(jnp.float32), targets.astype(jnp.float32), mask.astype(jnp.float32)
    nll = jnp.sum(optax.sigmoid_binary_cross_entropy(logits, y), axis=-1)
    total, count = jnp.sum(nll * w), jnp.sum(w)
    on = (logits > 0.0).astype(jnp.float32)
    tp = jnp.sum(jnp.sum(on * y, axis=-1) * w)
    wrong = jnp.sum(jnp.sum(jnp.abs(on - y), axis=-1) * w)  # FP + FN
    return total / jnp.maximum(count, 1.0), {
        "loss": pair(total, count),
        "nll_per_step": pair(total, count),
        "frame_accuracy": pair(tp, tp + wrong),
    }


def language_model_metrics(logits: jax.Array, targets: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, Sums]:
    """Next-token cross-entropy in nats per token. logits [b, t, v]; targets [b, t]; mask [b, t].

    `normalize` adds `perplexity` = exp(nll) and `bits_per_char` = nll / ln 2 (per token, so
    bits per character for a character-level model).
    """
    logits = logits.astype(jnp.float32)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    w = _weights(mask, nll)
    total, count = jnp.sum(nll * w), jnp.sum(w)
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    return total / jnp.maximum(count, 1.0), {
        "loss": pair(total, count),
        "nll": pair(total, count),
        "accuracy": pair(jnp.sum(correct * w), count),
    }


def seq2seq_metrics(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> tuple[jax.Array, Sums]:
    """Teacher-forced token cross-entropy, token accuracy and whole-sequence accuracy.

    logits [b, t, v]; targets [b, t]; mask [b, t] (1 on real target tokens, 0 on padding).
    """
    loss, sums = language_model_metrics(logits, targets, mask)
    w = mask.astype(jnp.float32)
    wrong = ((jnp.argmax(logits, axis=-1) != targets).astype(jnp.float32) * w).sum(axis=-1)
    sums["sequence_accuracy"] = pair(jnp.sum((wrong == 0.0).astype(jnp.float32)), wrong.shape[0])
    return loss, sums


def ctc_metrics(
    logits: jax.Array, logit_paddings: jax.Array, labels: jax.Array, label_paddings: jax.Array, blank_id: int = 0
) -> tuple[jax.Array, Sums]:
    """CTC loss (optax.ctc_loss) per label token and per sequence.

    logits [b, t, v]; logit_paddings [b, t] (1.0 on padding); labels [b, l]; label_paddings [b, l].
    """
    per_seq = optax.ctc_loss(logits.astype(jnp.float32), logit_paddings.astype(jnp.float32), labels,
                             label_paddings.astype(jnp.float32), blank_id=blank_id)
    num_labels = jnp.sum(1.0 - label_paddings.astype(jnp.float32))
    total = jnp.sum(per_seq)
    return total / jnp.maximum(num_labels, 1.0), {
        "loss": pair(total, num_labels),
        "ctc_per_sequence": pair(total, per_seq.shape[0]),
    }


def add_sums(a: Sums, b: Sums) -> Sums:
    return jax.tree.map(lambda x, y: x + y, a, b)


def normalize(sums: Mapping[str, np.ndarray]) -> dict[str, float]:
    """{name: [sum, count]} -> {name: sum / count}, plus perplexity and bits_per_char from `nll`."""
    out = {}
    for name, pair in sums.items():
        total, count = (float(v) for v in np.asarray(pair, np.float64))
        out[name] = total / count if count > 0 else float("nan")
    if "nll" in out:
        out["perplexity"] = math.exp(min(out["nll"], 700.0))
        out["bits_per_char"] = out["nll"] / math.log(2.0)
    return out
