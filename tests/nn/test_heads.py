"""Pooling (padded == unpadded), classifier / regressor / tagger tiny training runs."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from gatedrnn.nn.encoder import sequence_cross_entropy, sequence_mask
from gatedrnn.nn.heads import POOLING_CHOICES, AttentionPool, Pool, SequenceClassifier, SequenceRegressor, Tagger

from arch_training import fit


@pytest.mark.slow
@settings(max_examples=8)
@given(st.lists(st.integers(1, 7), min_size=1, max_size=4), st.sampled_from(POOLING_CHOICES), st.integers(0, 99))
def test_pooling_padded_batch_equals_unpadded(lengths, kind, seed):
    pool = Pool(kind, 3, rngs=nnx.Rngs(0))
    lengths = lengths + [7] * (4 - len(lengths))  # one batch shape for every example
    x = jax.random.normal(jax.random.key(seed), (len(lengths), 7, 3))
    # padding is garbage: pooling must not look at it
    mask = sequence_mask(jnp.asarray(lengths), len(lengths), 7)
    x = jnp.where(mask[:, :, None], x, 1e3)
    pooled = pool(x, jnp.asarray(lengths))
    for i, n in enumerate(lengths):
        alone = pool(x[i : i + 1, :n], None)
        np.testing.assert_allclose(pooled[i : i + 1], alone, rtol=1e-5, atol=1e-6)


def test_pooling_values():
    x = jnp.array([[[1.0], [5.0], [3.0], [9.0]]])
    lengths = jnp.array([3])
    assert float(Pool("last", 1, rngs=nnx.Rngs(0))(x, lengths)[0, 0]) == 3.0
    assert float(Pool("mean", 1, rngs=nnx.Rngs(0))(x, lengths)[0, 0]) == 3.0
    assert float(Pool("max", 1, rngs=nnx.Rngs(0))(x, lengths)[0, 0]) == 5.0
    w = AttentionPool(1, rngs=nnx.Rngs(0)).weights(x, lengths)
    assert float(w[0, 3]) == 0.0 and abs(float(w[0].sum()) - 1) < 1e-6
    # empty sequences pool to zeros
    for kind in POOLING_CHOICES:
        np.testing.assert_array_equal(Pool(kind, 1, rngs=nnx.Rngs(0))(x, jnp.array([0])), 0.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="pooling='sum'"):
        Pool("sum", 3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="exactly one of input_size"):
        SequenceClassifier("gru", 4, 2, input_size=3, vocab_size=5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_classes must be a positive integer, got 0"):
        SequenceClassifier("gru", 4, 0, input_size=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="cell='lstmm'"):
        Tagger("lstmm", 4, 2, vocab_size=5, rngs=nnx.Rngs(0))
    model = SequenceClassifier("gru", 4, 2, vocab_size=5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="integer token ids"):
        model(jnp.zeros((2, 3)))


def _token_batch(step, batch=32, time=8, vocab=5):
    rng = np.random.default_rng(step)
    tokens = rng.integers(1, vocab, size=(batch, time))
    lengths = rng.integers(2, time + 1, size=batch)
    tokens = np.where(np.arange(time)[None] < lengths[:, None], tokens, 0)
    return jnp.asarray(tokens, jnp.int32), jnp.asarray(lengths, jnp.int32)


@pytest.mark.slow
def test_classifier_learns_first_token():
    """Label = the first token (1..4) of a variable-length sequence: a memory task for the last state."""

    def batches(step):
        tokens, lengths = _token_batch(step)
        return tokens, lengths, tokens[:, 0] - 1

    def loss_fn(model, batch):
        tokens, lengths, labels = batch
        return optax.softmax_cross_entropy_with_integer_labels(model(tokens, lengths), labels).mean()

    model = SequenceClassifier("gru", 16, 4, vocab_size=5, embed_size=8, pooling="attention", rngs=nnx.Rngs(0))
    baseline = math.log(4)  # uniform prior over 4 balanced classes
    loss = fit(model, loss_fn, batches, steps=80)
    print(f"loss {loss:.4f} vs baseline {baseline:.4f}")
    assert loss < 0.2 * baseline, (loss, baseline)


@pytest.mark.slow
def test_regressor_learns_masked_mean():
    """Target = mean over valid steps of x0 * x1 (two features): baseline = Var(target)."""

    def batches(step):
        rng = np.random.default_rng(step)
        x = rng.normal(size=(32, 8, 2)).astype(np.float32)
        lengths = rng.integers(2, 9, size=32)
        mask = np.arange(8)[None] < lengths[:, None]
        y = (x[..., 0] * x[..., 1] * mask).sum(1) / lengths
        return jnp.asarray(x), jnp.asarray(lengths, jnp.int32), jnp.asarray(y[:, None], jnp.float32)

    def loss_fn(model, batch):
        x, lengths, y = batch
        return jnp.mean(jnp.square(model(x, lengths) - y))

    model = SequenceRegressor("lstm", 16, 1, input_size=2, pooling="mean", rngs=nnx.Rngs(0))
    baseline = float(np.mean([np.var(np.asarray(batches(s)[2])) for s in range(1000, 1010)]))
    loss = fit(model, loss_fn, batches, steps=200)
    print(f"loss {loss:.4f} vs baseline {baseline:.4f}")
    assert loss < 0.2 * baseline, (loss, baseline)


@pytest.mark.slow
def test_tagger_learns_next_token():
    """Tag_t = token_{t+1} (or 0 at the last step): needs the backward direction."""

    def batches(step):
        tokens, lengths = _token_batch(step)
        nxt = jnp.concatenate([tokens[:, 1:], jnp.zeros_like(tokens[:, :1])], axis=1)
        tags = jnp.where(jnp.arange(8)[None, :] < (lengths - 1)[:, None], nxt, 0)
        return tokens, lengths, tags

    def loss_fn(model, batch):
        tokens, lengths, tags = batch
        return sequence_cross_entropy(model(tokens, lengths), tags, sequence_mask(lengths, *tokens.shape))

    model = Tagger("gru", 16, 5, vocab_size=5, embed_size=8, rngs=nnx.Rngs(0))
    tags = np.concatenate([np.asarray(batches(s)[2])[np.asarray(sequence_mask(batches(s)[1], 32, 8))] for s in range(5)])
    p = np.bincount(tags, minlength=5) / len(tags)
    baseline = float(-(p[p > 0] * np.log(p[p > 0])).sum())  # best context-free prediction: the tag marginal
    loss = fit(model, loss_fn, batches, steps=100)
    print(f"loss {loss:.4f} vs baseline {baseline:.4f}")
    assert loss < 0.2 * baseline, (loss, baseline)
