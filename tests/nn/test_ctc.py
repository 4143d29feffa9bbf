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


# --- infeasible alignments: inf as torch, zero_infinity -------------------------------------------

def test_min_frames_counts_a_blank_between_repeats():
    from gatedrnn.nn.ctc import ctc_min_frames

    labels = jnp.array([[1, 1, 2, 0], [1, 1, 1, 1], [2, 3, 3, 3], [0, 0, 0, 0]])
    np.testing.assert_array_equal(ctc_min_frames(labels, jnp.array([3, 4, 2, 0])), [4, 7, 2, 0])


def _torch_ctc_case():
    """A batch with feasible rows, rows one frame short (repeats need blanks), and padding."""
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(6, 7, 5)).astype(np.float32)
    labels = np.array([[1, 2, 3, 4], [1, 1, 2, 0], [1, 1, 2, 0], [2, 2, 2, 2], [3, 0, 0, 0], [4, 3, 0, 0]], np.int32)
    label_lengths = np.array([4, 3, 3, 4, 1, 2])
    lengths = np.array([7, 4, 3, 7, 1, 1])  # row 2: "aab" in 3 frames; row 3: 7 >= 4 + 3; row 5: 2 labels in 1 frame
    logits[:, 6:][lengths[:, None] < 7] = np.nan  # padding content never matters
    return logits, labels, label_lengths, lengths


@pytest.mark.torch
@pytest.mark.parametrize("zero_infinity", [False, True])
def test_loss_and_gradient_equal_torch_on_infeasible_rows(zero_infinity):
    torch = pytest.importorskip("torch")
    logits, labels, label_lengths, lengths = _torch_ctc_case()
    clean = np.where(np.arange(7)[None, :, None] < lengths[:, None, None], logits, 0.0).astype(np.float32)
    x = torch.tensor(clean, requires_grad=True)
    want = torch.nn.functional.ctc_loss(torch.log_softmax(x, -1).transpose(0, 1), torch.tensor(labels).long(),
                                        torch.tensor(lengths), torch.tensor(label_lengths), reduction="none",
                                        zero_infinity=zero_infinity)

    def loss(z):
        return ctc_loss(z, jnp.asarray(lengths), jnp.asarray(labels), jnp.asarray(label_lengths),
                        zero_infinity=zero_infinity)

    got = np.asarray(loss(jnp.asarray(logits)))
    infeasible = np.array([False, False, True, False, False, True])
    assert np.all(np.isinf(want.detach().numpy()[infeasible])) != zero_infinity  # the case is what it claims
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-5)  # inf == inf, 0 == 0
    if zero_infinity:
        want.sum().backward()
        grad = np.asarray(jax.grad(lambda z: jnp.sum(loss(z)))(jnp.asarray(logits)))
        assert np.all(np.isfinite(grad)) and np.all(grad[infeasible] == 0.0)
        np.testing.assert_allclose(grad, x.grad.numpy(), atol=1e-5)


@pytest.mark.slow
def test_zero_infinity_model_loss_is_finite_with_gradient_from_the_feasible_rows():
    model = CTCModel("gru", 4, num_classes=3, input_size=2, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 3, 2))
    labels, label_lengths, lengths = jnp.array([[1, 1], [1, 2]]), jnp.array([2, 2]), jnp.array([2, 3])
    assert np.isinf(float(model.loss(x, lengths, labels, label_lengths)))  # row 0: "aa" in 2 frames
    loss, grads = nnx.value_and_grad(lambda m: m.loss(x, lengths, labels, label_lengths, zero_infinity=True))(model)
    alone = model.loss(x[1:], lengths[1:], labels[1:], label_lengths[1:])
    np.testing.assert_allclose(float(loss), float(alone) / 2, rtol=1e-6)  # the mean over 2 rows, one of them 0
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
