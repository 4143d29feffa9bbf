"""Losses and metrics as reusable pure functions.

Each `*_metrics` function returns `(loss, sums)`: the scalar loss to differentiate (a mean)
and a dict of metric sums, `name -> [sum, count]` (float32 [2]), that add across steps,
devices and batches; `normalize` turns them into means on the host (metrics as sums plus
counts, so that a padded or a partial batch weighs right). Shapes: b batch, t time,
c classes, v vocabulary, l label length.

Padding: an entry of mask 0 is set to 0 before any arithmetic, so NaN or an out-of-range id
there reaches neither a sum nor a gradient, and a row with no valid entry counts in no
denominator. `sequence_mask` (lengths -> mask) lives here, on the bottom floor, for every
floor above.
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


def sequence_mask(seq_lengths: jax.Array | None, batch: int, time: int) -> jax.Array:
    """[b] lengths -> bool [b, t] with mask[i, j] = j < seq_lengths[i] (all True for None)."""
    if seq_lengths is None:
        return jnp.ones((batch, time), bool)
    return jnp.arange(time, dtype=jnp.int32)[None, :] < jnp.asarray(seq_lengths, jnp.int32)[:, None]


def _weights(mask: jax.Array | None, like: jax.Array) -> jax.Array:
    return jnp.ones(like.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)


def _keep(x: jax.Array, w: jax.Array) -> jax.Array:
    """x [*w.shape, ...] with the entries of weight 0 set to 0 before any arithmetic, so that what
    fills the padding (NaN, inf, an id outside the classes) reaches neither a sum nor a gradient."""
    valid = (w > 0).reshape(w.shape + (1,) * (x.ndim - w.ndim))
    return jnp.where(valid, x, jnp.zeros_like(x))


def regression_metrics(preds: jax.Array, targets: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, Sums]:
    """Mean squared error. preds, targets [b, ...]; mask [b, ...] of valid entries (or None)."""
    w = _weights(mask, preds)
    err = _keep(preds.astype(jnp.float32), w) - _keep(targets.astype(jnp.float32), w)
    total, count = jnp.sum(jnp.square(err) * w), jnp.sum(w)
    loss = total / jnp.maximum(count, 1.0)
    abs_err = jnp.sum(jnp.abs(err) * w)
    return loss, {"loss": pair(total, count), "mse": pair(total, count), "mae": pair(abs_err, count)}


def classification_metrics(logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, Sums]:
    """Softmax cross-entropy and accuracy. logits [b, c]; labels [b] int; mask [b] (or None)."""
    w = _weights(mask, labels)
    logits, labels = _keep(logits.astype(jnp.float32), w), _keep(labels, w)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    total, count = jnp.sum(ce * w), jnp.sum(w)
    return total / jnp.maximum(count, 1.0), {
        "loss": pair(total, count),
        "accuracy": pair(jnp.sum(correct * w), count),
    }


def constant_accuracy(labels: jax.Array, label: int, mask: jax.Array | None = None) -> jax.Array:
    """[sum, count] of the accuracy of always predicting `label` (e.g. the majority class). labels [b]."""
    w = _weights(mask, labels)
    return pair(jnp.sum((labels == label).astype(jnp.float32) * w), jnp.sum(w))


def bernoulli_nll_metrics(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> tuple[jax.Array, Sums]:
    """Negative log-likelihood per time step of independent Bernoulli pitches, in nats.

    logits, targets [b, t, p]; mask [b, t]. With q = sigmoid(logits):
      nll[b, t] = -sum_p (y log q + (1 - y) log(1 - q))   (optax's stable sigmoid BCE)
      loss = sum_{b,t} mask nll / sum_{b,t} mask
    `frame_accuracy` is Bay et al. 2009's TP / (TP + FP + FN) over all valid frames, with a
    pitch predicted on when q > 1/2.
    """
    w = mask.astype(jnp.float32)
    logits, y = _keep(logits.astype(jnp.float32), w), _keep(targets.astype(jnp.float32), w)
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
    loss, sums, _ = _token_metrics(logits, targets, mask)
    return loss, sums


def _token_metrics(logits: jax.Array, targets: jax.Array, mask: jax.Array | None) -> tuple[jax.Array, Sums, jax.Array]:
    """`language_model_metrics` and bool [b, t] `correct` (argmax == target), for `seq2seq_metrics`:
    one argmax over the logits for both."""
    w = _weights(mask, targets)
    logits, targets = _keep(logits.astype(jnp.float32), w), _keep(targets, w)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    total, count = jnp.sum(nll * w), jnp.sum(w)
    correct = jnp.argmax(logits, axis=-1) == targets
    return total / jnp.maximum(count, 1.0), {
        "loss": pair(total, count),
        "nll": pair(total, count),
        "accuracy": pair(jnp.sum(correct.astype(jnp.float32) * w), count),
    }, correct


def seq2seq_metrics(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> tuple[jax.Array, Sums]:
    """Teacher-forced token cross-entropy, token accuracy and whole-sequence accuracy.

    logits [b, t, v]; targets [b, t]; mask [b, t] (1 on real target tokens, 0 on padding).
    A sequence is correct when every valid token is; a row with no valid token (a padding row)
    counts neither as correct nor in the number of sequences.
    """
    loss, sums, correct = _token_metrics(logits, targets, mask)
    valid = mask.astype(jnp.float32) > 0
    wrong = jnp.sum(valid & ~correct, axis=-1)
    rows = jnp.any(valid, axis=-1)
    sums["sequence_accuracy"] = pair(jnp.sum(rows & (wrong == 0)), jnp.sum(rows))
    return loss, sums


def ctc_min_frames(labels: jax.Array, label_lengths: jax.Array) -> jax.Array:
    """The fewest frames any CTC alignment of each label sequence needs: its length plus one blank
    between every two equal neighbours ("aab" needs 4: a - a b). labels [b, n], label_lengths [b] -> [b]."""
    valid = sequence_mask(label_lengths, *labels.shape)
    repeats = valid[:, 1:] & (labels[:, 1:] == labels[:, :-1])
    return jnp.asarray(label_lengths, jnp.int32) + jnp.sum(repeats.astype(jnp.int32), axis=1)


def ctc_loss(logits: jax.Array, seq_lengths: jax.Array | None, labels: jax.Array, label_lengths: jax.Array,
             blank_id: int = 0, *, zero_infinity: bool = False) -> jax.Array:
    """-log p(labels | x) per sequence (`optax.ctc_loss`): logits [b, t, k], labels [b, n] int -> [b].

    Frames at t >= seq_lengths (all valid for None) and labels at n >= label_lengths are padding;
    their values never enter (padded frames are zeroed first, so a NaN there stays out).

    A sequence with no alignment at all (fewer frames than `ctc_min_frames`: its labels, plus a
    blank between repeats) has p = 0, and its loss is `inf`, as torch.nn.functional.ctc_loss
    reports it (optax alone returns about 1e5 there). `zero_infinity=True` (torch's option, its
    semantics) makes the loss of those sequences 0 and their gradient 0, so that a few
    too-short sequences cannot derail training; the other sequences are unchanged. With
    zero_infinity=False the gradient of an infinite loss is 0 too (torch's is NaN).
    """
    if logits.ndim != 3 or labels.ndim != 2 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"ctc_loss needs logits [batch, time, classes] and labels [batch, labels], "
                         f"got {logits.shape} and {labels.shape}")
    if not isinstance(zero_infinity, bool):
        raise ValueError(f"ctc_loss zero_infinity must be True or False, got {zero_infinity!r}")
    b, t = logits.shape[:2]
    frames = sequence_mask(seq_lengths, b, t)
    logits = jnp.where(frames[:, :, None], logits, jnp.zeros_like(logits))
    label_pad = (~sequence_mask(label_lengths, b, labels.shape[1])).astype(logits.dtype)
    loss = optax.ctc_loss(logits, (~frames).astype(logits.dtype), labels.astype(jnp.int32), label_pad,
                          blank_id=blank_id)
    num_frames = jnp.sum(frames.astype(jnp.int32), axis=1)
    infeasible = num_frames < ctc_min_frames(labels, label_lengths)
    fill = jnp.zeros_like(loss) if zero_infinity else jnp.full_like(loss, jnp.inf)
    return jnp.where(infeasible, fill, loss)  # where: no gradient reaches the replaced entries


def ctc_metrics(logits: jax.Array, seq_lengths: jax.Array | None, labels: jax.Array, label_lengths: jax.Array,
                blank_id: int = 0, *, zero_infinity: bool = False) -> tuple[jax.Array, Sums]:
    """CTC loss (`ctc_loss`, in float32) per label token and per sequence.

    logits [b, t, v]; seq_lengths [b] valid frames (None: all); labels [b, l]; label_lengths [b].
    A row with no valid frame (a padding row) enters neither sum nor count. A sequence too
    short for its labels makes the loss inf (zero_infinity=True: it adds 0, see `ctc_loss`).
    """
    b = logits.shape[0]
    rows = jnp.ones((b,), bool) if seq_lengths is None else jnp.asarray(seq_lengths) > 0
    per_seq = ctc_loss(logits.astype(jnp.float32), seq_lengths, labels, label_lengths, blank_id,
                       zero_infinity=zero_infinity)
    total = jnp.sum(jnp.where(rows, per_seq, jnp.zeros_like(per_seq)))
    num_labels = jnp.sum(sequence_mask(label_lengths, b, labels.shape[1]) & rows[:, None])
    return total / jnp.maximum(num_labels, 1).astype(jnp.float32), {
        "loss": pair(total, num_labels),
        "ctc_per_sequence": pair(total, jnp.sum(rows)),
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
