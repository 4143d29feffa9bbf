"""CTC: greedy decoding on hand-made frames, loss against a brute-force sum over alignments, a tiny training run."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gatedrnn.nn.ctc import CTCModel, ctc_greedy_decode, ctc_loss

from arch_training import fit


def _frames(paths, k=4):
    """Hand-made per-frame one-hot 'logits' from strings like 'aa-ab--b' ('-' blank = 0, a = 1, ...)."""
    t = max(len(p) for p in paths)
    x = np.full((len(paths), t, k), -5.0, np.float32)
    for i, p in enumerate(paths):
        for j, ch in enumerate(p):
            x[i, j, 0 if ch == "-" else ord(ch) - ord("a") + 1] = 5.0
    return jnp.asarray(x)


def test_greedy_decoding_hand_made():
    paths = ["aa-ab--b", "-c-cc-", "----", "abcabc"]
    lengths = jnp.array([8, 6, 4, 5])  # the last one stops before its final 'c'
    out = ctc_greedy_decode(_frames(paths), lengths)
    want = [[1, 1, 2, 2], [3, 3], [], [1, 2, 3, 1, 2]]
    np.testing.assert_array_equal(out.lengths, [len(w) for w in want])
    for i, w in enumerate(want):
        np.testing.assert_array_equal(out.labels[i, : len(w)], w)
        assert np.all(np.asarray(out.labels[i, len(w):]) == 0)
    jitted = jax.jit(ctc_greedy_decode)(_frames(paths), lengths)
    np.testing.assert_array_equal(jitted.labels, out.labels)


def test_loss_equals_brute_force_over_alignments():
    """-log sum over every alignment of length T that collapses to the labels, on random logits."""
    rng = np.random.default_rng(0)
    t, k = 5, 3
    logits = rng.normal(size=(1, t, k)).astype(np.float32)
    labels = [1, 1]
    logp = logits[0] - np.log(np.exp(logits[0]).sum(-1, keepdims=True))
    total = 0.0
    for a in itertools.product(range(k), repeat=t):
        collapsed = [c for j, c in enumerate(a) if c != 0 and (j == 0 or a[j - 1] != c)]
        if collapsed == labels:
            total += math.exp(sum(logp[j, c] for j, c in enumerate(a)))
    loss = ctc_loss(jnp.asarray(logits), jnp.array([t]), jnp.array([labels + [0]]), jnp.array([2]))
    np.testing.assert_allclose(float(loss[0]), -math.log(total), rtol=1e-4)


def test_loss_of_a_padded_batch_equals_each_sequence_alone():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(2, 7, 4)), jnp.float32)
    labels = jnp.array([[1, 2, 2], [3, 0, 0]])
    lengths, label_lengths = jnp.array([7, 4]), jnp.array([3, 1])
    batch = ctc_loss(logits, lengths, labels, label_lengths)
    alone = ctc_loss(logits[1:, :4], None, labels[1:, :1], jnp.array([1]))
    np.testing.assert_allclose(batch[1], alone[0], rtol=1e-5)
    # garbage in the padded frames changes nothing
    junk = logits.at[1, 4:].set(100.0)
    np.testing.assert_allclose(ctc_loss(junk, lengths, labels, label_lengths), batch, rtol=1e-5)


def _batch(step, batch=32, time=12, num_labels=3):
    """Each label l in 1..3 shows as 1-2 frames of a noisy one-hot, with blank (all-zero) frames between."""
    rng = np.random.default_rng(step)
    x = 0.3 * rng.normal(size=(batch, time, num_labels)).astype(np.float32)
    labels = np.zeros((batch, 3), np.int32)
    label_lengths = rng.integers(1, 4, size=batch)
    lengths = np.zeros(batch, np.int32)
    for i in range(batch):
        j = int(rng.integers(0, 2))
        for n in range(label_lengths[i]):
            l = int(rng.integers(1, num_labels + 1))
            labels[i, n] = l
            for _ in range(int(rng.integers(1, 3))):
                x[i, j, l - 1] += 1.0
                j += 1
            j += 1  # a gap frame after each label (separates repeats)
        lengths[i] = j
    x = np.where(np.arange(time)[None, :, None] < lengths[:, None, None], x, 0.0).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(lengths), jnp.asarray(labels), jnp.asarray(label_lengths, jnp.int32)


@pytest.mark.slow
def test_ctc_model_trains():
    model = CTCModel("gru", 16, num_classes=4, input_size=3, rngs=nnx.Rngs(0))
    x, lengths, labels, label_lengths = _batch(10_000)
    # trivial baseline: a model that outputs uniform frames (zero logits)
    baseline = float(jnp.mean(ctc_loss(jnp.zeros(x.shape[:2] + (4,)), lengths, labels, label_lengths)))
    loss = fit(model, lambda m, b: m.loss(*b), _batch, steps=120, lr=2e-2)
    print(f"ctc loss {loss:.4f} vs uniform baseline {baseline:.4f}")
    assert loss < 0.1 * baseline, (loss, baseline)
    out = model.decode(x, lengths)
    exact = np.mean([
        list(np.asarray(out.labels[i, : out.lengths[i]])) == list(np.asarray(labels[i, : label_lengths[i]]))
        for i in range(x.shape[0])
    ])
    print(f"ctc greedy exact-match {exact:.2f}")
    assert exact > 0.9


def test_bad_arguments():
    with pytest.raises(ValueError, match="blank_id=5"):
        CTCModel("gru", 4, 3, input_size=2, blank_id=5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="logits"):
        ctc_greedy_decode(jnp.zeros((2, 3)))
