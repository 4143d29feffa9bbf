"""Language model and one-to-many generation: sampling filters, step == full pass, tiny training runs."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gatedrnn.nn.encoder import sequence_cross_entropy
from gatedrnn.nn.lm import LanguageModel, OneToMany, filter_logits, sample_lm, sample_logits, sample_one_to_many

from arch_training import counting_batch, fit, next_token_loss


def test_filter_logits_top_k_and_top_p():
    logits = jnp.log(jnp.array([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    kept = lambda f: np.isfinite(np.asarray(f))[0].tolist()
    assert kept(filter_logits(logits, top_k=2)) == [True, True, False, False, False]
    assert kept(filter_logits(logits, top_p=0.5)) == [True, False, False, False, False]
    assert kept(filter_logits(logits, top_p=0.6)) == [True, True, False, False, False]
    assert kept(filter_logits(logits, top_p=0.86)) == [True, True, True, True, False]
    assert kept(filter_logits(logits, top_k=3, top_p=0.99)) == [True, True, True, False, False]


def test_sampling_frequencies_match_the_filtered_distribution():
    probs = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
    logits = jnp.broadcast_to(jnp.log(jnp.asarray(probs, jnp.float32)), (20_000, 5))
    draws = np.asarray(jax.jit(sample_logits, static_argnames="top_k")(jax.random.key(0), logits, 1.0, 3, None))
    freq = np.bincount(draws, minlength=5) / len(draws)
    want = np.r_[probs[:3] / probs[:3].sum(), 0, 0]
    np.testing.assert_allclose(freq, want, atol=0.015)
    # temperature 0.5 squares the probabilities (then renormalizes)
    draws = np.asarray(sample_logits(jax.random.key(1), logits, 0.5))
    want = probs**2 / (probs**2).sum()
    np.testing.assert_allclose(np.bincount(draws, minlength=5) / len(draws), want, atol=0.015)


def test_bad_sampling_arguments():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        sample_logits(jax.random.key(0), jnp.zeros((1, 3)), 0.0)
    with pytest.raises(ValueError, match="top_p must lie in"):
        sample_logits(jax.random.key(0), jnp.zeros((1, 3)), top_p=1.5)
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        sample_logits(jax.random.key(0), jnp.zeros((1, 3)), top_k=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_step_by_step_equals_full_pass(cell):
    lm = LanguageModel(cell, 8, 7, num_layers=2, rngs=nnx.Rngs(0))
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 7, size=(2, 6)), jnp.int32)
    logits, carry = nnx.jit(lambda m, x: m(x))(lm, tokens)
    c = lm.initial_carry(2)
    step = nnx.jit(lambda m, tok, c: m.step(tok, c))
    for t in range(6):
        step_logits, c = step(lm, tokens[:, t], c)
        np.testing.assert_allclose(step_logits, logits[:, t], rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), c, carry)


def test_greedy_generation_matches_teacher_forced_argmax():
    lm = LanguageModel("gru", 8, 7, rngs=nnx.Rngs(0))
    lm.head.kernel[...] = 3 * lm.head.kernel[...]
    prompt = jnp.array([[3, 4, 5], [6, 2, 0]], jnp.int32)
    lengths = jnp.array([3, 2], jnp.int32)
    out = sample_lm(lm, jax.random.key(0), prompt, lengths, num_steps=4, top_k=1)
    for i in range(2):
        seq = jnp.concatenate([prompt[i, : lengths[i]], out[i]])[None]
        logits, _ = nnx.jit(lambda m, x: m(x))(lm, seq)
        np.testing.assert_array_equal(jnp.argmax(logits[0, int(lengths[i]) - 1 : -1], -1), out[i])


@pytest.mark.slow
def test_language_model_trains_and_samples():
    lm = LanguageModel("lstm", 32, 8, embed_size=8, rngs=nnx.Rngs(0))
    # trivial baseline: the unigram distribution (uniform here), log 8; the first transition is
    # unpredictable (stride unknown: log 2), all later ones are determined
    baseline = math.log(8)
    loss = fit(lm, next_token_loss, counting_batch, steps=100, lr=1e-2)
    print(f"lm loss {loss:.4f} vs unigram baseline {baseline:.4f} (floor {math.log(2) / 9:.4f})")
    assert loss < 0.2 * baseline, (loss, baseline)
    tokens = counting_batch(10_000)
    out = sample_lm(lm, jax.random.key(0), tokens[:, :3], num_steps=7, temperature=0.5, top_p=0.9)
    accuracy = float(jnp.mean(out == tokens[:, 3:]))
    print(f"lm sampled continuation accuracy {accuracy:.2f}")
    assert accuracy > 0.9


@pytest.mark.slow
def test_one_to_many_trains_and_generates():
    """v = one-hot class c (+ noise) -> tokens [c+3, c+4, c+5, c+6] mod 7 + 3, then eos (2)."""
    eos, bos = 2, 1

    def batches(step):
        rng = np.random.default_rng(step)
        c = rng.integers(0, 4, size=32)
        v = np.eye(4, dtype=np.float32)[c] + 0.1 * rng.normal(size=(32, 4)).astype(np.float32)
        seq = (c[:, None] + np.arange(4)[None]) % 7 + 3
        tgt_out = np.concatenate([seq, np.full((32, 1), eos)], axis=1)
        tgt_in = np.concatenate([np.full((32, 1), bos), seq], axis=1)
        return jnp.asarray(v), jnp.asarray(tgt_in, jnp.int32), jnp.asarray(tgt_out, jnp.int32)

    def loss_fn(model, batch):
        v, tgt_in, tgt_out = batch
        return sequence_cross_entropy(model(v, tgt_in), tgt_out, jnp.ones(tgt_out.shape, bool))

    model = OneToMany("gru", 16, 10, condition_size=4, embed_size=8, rngs=nnx.Rngs(0))
    # the best model that ignores v: the first token is one of 4 equally likely, the rest follow: log(4) / 5
    baseline = math.log(4) / 5
    loss = fit(model, loss_fn, batches, steps=100, lr=1e-2)
    print(f"one-to-many loss {loss:.4f} vs unconditional baseline {baseline:.4f}")
    assert loss < 0.2 * baseline, (loss, baseline)
    v, _, tgt_out = batches(10_000)
    out = sample_one_to_many(model, jax.random.key(0), v, num_steps=6, top_k=1, eos_id=eos, pad_id=0)
    np.testing.assert_array_equal(out[:, :5], tgt_out)
    np.testing.assert_array_equal(out[:, 5], 0)  # pad after eos
