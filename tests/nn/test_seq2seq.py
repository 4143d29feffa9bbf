"""Seq2seq: teacher-forcing paths agree, greedy == beam 1, beam search is exact where exhaustive search is
possible, decoders return the chosen hypothesis's attention weights, and a reversal task trains."""

import itertools
import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gatedrnn.nn.encoder import sequence_cross_entropy, sequence_mask
from gatedrnn.nn.seq2seq import Seq2Seq, decode_beam, decode_greedy, length_penalty

from arch_training import fit

PAD, BOS, EOS = 0, 1, 2
# jitted once per shape (eager lax.scan would recompile its fresh closure on every call)
teacher = nnx.jit(lambda m, src, lengths, tgt, tgt_lengths: m(src, lengths, tgt, tgt_lengths))
stepwise = nnx.jit(lambda m, src, lengths, tgt: m.teacher_forcing_stepwise(src, lengths, tgt))


def _model(attention="general", input_feeding=True, vocab=6, cell="gru", seed=0, sharpen=1.0, style="luong"):
    model = Seq2Seq(cell, 8, vocab, source_vocab=vocab, embed_size=6, attention=attention, style=style,
                    input_feeding=input_feeding, bidirectional=attention != "dot", rngs=nnx.Rngs(seed))
    if sharpen != 1.0:  # peakier output distributions make the search problems less trivial
        model.out.kernel[...] = model.out.kernel[...] * sharpen
    return model


def _src(batch=3, time=5, vocab=6, seed=1):
    rng = np.random.default_rng(seed)
    src = jnp.asarray(rng.integers(3, vocab, size=(batch, time)), jnp.int32)
    lengths = jnp.asarray(rng.integers(2, time + 1, size=batch), jnp.int32).at[0].set(time)
    return src, lengths


@pytest.mark.slow
@pytest.mark.parametrize("attention", ["additive", "dot", "multihead"])
def test_parallel_teacher_forcing_equals_stepwise(attention):
    model = _model(attention, input_feeding=False)
    src, lengths = _src()
    tgt = jnp.asarray(np.random.default_rng(2).integers(3, 6, size=(3, 4)), jnp.int32)
    logits, weights = teacher(model, src, lengths, tgt, None)
    logits2, weights2 = stepwise(model, src, lengths, tgt)
    np.testing.assert_allclose(logits, logits2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(weights, weights2, rtol=1e-5, atol=1e-6)
    pad = ~np.asarray(sequence_mask(lengths, 3, 5))
    assert np.all(np.moveaxis(np.asarray(weights), -1, 1)[pad] == 0.0)  # never on padded source steps


def _teacher_forced_scores(model, src, lengths, tokens, alpha=0.0):
    """score / lp(length) of a [b, t] hypothesis (eos-terminated or truncated), by teacher forcing."""
    tgt_in = jnp.concatenate([jnp.full((tokens.shape[0], 1), BOS, jnp.int32), tokens[:, :-1]], axis=1)
    logits, weights = teacher(model, src, lengths, tgt_in, None)
    logp = np.asarray(model.generation_log_probs(logits))
    out = []
    for i, seq in enumerate(np.asarray(tokens)):
        n = (list(seq).index(EOS) + 1) if EOS in seq else len(seq)
        s = sum(logp[i, j, seq[j]] for j in range(n))
        out.append(s / float(length_penalty(jnp.asarray(n), alpha)))
    return np.array(out), weights


@pytest.mark.slow
@pytest.mark.parametrize("style,input_feeding", [("luong", True), ("luong", False), ("bahdanau", True)])
def test_beam_size_one_equals_greedy(style, input_feeding):
    model = _model("additive", input_feeding, sharpen=3.0, style=style, cell="lstm" if style == "bahdanau" else "gru")
    src, lengths = _src()
    g = decode_greedy(model, src, lengths, max_length=7)
    b = decode_beam(model, src, lengths, beam_size=1, max_length=7, alpha=0.6)
    for x, y in zip(g, b):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    # greedy tokens are the argmax of teacher-forced logits on its own output
    tgt_in = jnp.concatenate([jnp.full((3, 1), BOS, jnp.int32), g.tokens[:, :-1]], axis=1)
    logits, weights = teacher(model, src, lengths, tgt_in, g.lengths)
    logp = model.generation_log_probs(logits)
    valid = np.asarray(sequence_mask(g.lengths, 3, 7))
    np.testing.assert_array_equal(np.asarray(jnp.argmax(logp, -1))[valid], np.asarray(g.tokens)[valid])
    np.testing.assert_allclose(g.weights, weights, rtol=1e-5, atol=1e-6)  # the chosen hypothesis's weights
    np.testing.assert_allclose(g.scores, jnp.sum(jnp.where(valid, jnp.take_along_axis(
        logp, g.tokens[..., None], -1)[..., 0], 0.0), axis=1), rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("alpha,style", [(0.0, "luong"), (1.0, "bahdanau")])
def test_beam_search_is_exact_when_the_beam_covers_every_prefix(alpha, style):
    """Vocab {pad, bos, eos, a, b}; max_length 3 gives 15 hypotheses; beam 16 prunes nothing, so it
    must return the best of an exhaustive enumeration (scored independently by teacher forcing)."""
    vocab, max_len = 5, 3
    model = _model("general", True, vocab=vocab, sharpen=2.0, seed=3, style=style)
    src, lengths = _src(batch=2, vocab=vocab, seed=4)
    hyps = []
    for n in range(1, max_len + 1):
        for body in itertools.product([3, 4], repeat=n - 1):
            hyps.append(list(body) + [EOS] + [PAD] * (max_len - n))
    hyps += [list(body) for body in itertools.product([3, 4], repeat=max_len)]  # truncated, no eos
    assert len(hyps) == 15
    tokens = jnp.asarray(hyps, jnp.int32)
    out = decode_beam(model, src, lengths, beam_size=16, max_length=max_len, alpha=alpha)
    for i in range(2):
        rep = lambda a: jnp.repeat(a[i : i + 1], len(hyps), axis=0)
        scores, _ = _teacher_forced_scores(model, rep(src), rep(lengths), tokens, alpha)
        best = int(np.argmax(scores))
        np.testing.assert_array_equal(out.tokens[i], tokens[best])
        np.testing.assert_allclose(float(out.scores[i]) / float(length_penalty(out.lengths[i], alpha)),
                                   scores[best], rtol=1e-5)
    # and with a small beam the result is never better than the exact one
    small = decode_beam(model, src, lengths, beam_size=2, max_length=max_len, alpha=alpha)
    assert np.all(np.asarray(small.scores / length_penalty(small.lengths, alpha))
                  <= np.asarray(out.scores / length_penalty(out.lengths, alpha)) + 1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_beam_returns_the_chosen_hypothesis_weights(cell):
    model = _model("multihead", True, cell=cell, sharpen=3.0)
    src, lengths = _src()
    out = decode_beam(model, src, lengths, beam_size=3, max_length=6, alpha=0.5)
    tgt_in = jnp.concatenate([jnp.full((3, 1), BOS, jnp.int32), out.tokens[:, :-1]], axis=1)
    _, weights = teacher(model, src, lengths, tgt_in, out.lengths)
    np.testing.assert_allclose(out.weights, weights, rtol=1e-5, atol=1e-6)
    assert out.weights.shape == (3, 6, 2, 5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="style='attention'"):
        Seq2Seq("gru", 4, 5, source_vocab=5, style="attention", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="eos_id=9"):
        Seq2Seq("gru", 4, 5, source_vocab=5, eos_id=9, rngs=nnx.Rngs(0))
    model = _model()
    src, lengths = _src()
    with pytest.raises(ValueError, match="beam_size must be a positive integer, got 0"):
        model.beam_search(src, lengths, 0, 5)


@pytest.mark.slow
def test_reversal_task_trains_and_decodes():
    """Reverse a sequence of 2..5 tokens from {3..7}; baseline: entropy of the target-token marginal."""
    vocab, time = 8, 5

    def batches(step):
        rng = np.random.default_rng(step)
        lengths = rng.integers(2, time + 1, size=32)
        src = rng.integers(3, vocab, size=(32, time))
        src = np.where(np.arange(time)[None] < lengths[:, None], src, PAD)
        tgt_out = np.full((32, time + 1), PAD)
        for i, n in enumerate(lengths):
            tgt_out[i, :n] = src[i, :n][::-1]
            tgt_out[i, n] = EOS
        tgt_in = np.concatenate([np.full((32, 1), BOS), tgt_out[:, :-1]], axis=1)
        as32 = lambda a: jnp.asarray(a, jnp.int32)
        return as32(src), as32(lengths), as32(tgt_in), as32(tgt_out), as32(lengths + 1)

    def loss_fn(model, batch):
        src, lengths, tgt_in, tgt_out, tgt_lengths = batch
        logits, _ = model(src, lengths, tgt_in)
        return sequence_cross_entropy(logits, tgt_out, sequence_mask(tgt_lengths, *tgt_out.shape))

    model = Seq2Seq("gru", 32, vocab, source_vocab=vocab, embed_size=16, attention="general", rngs=nnx.Rngs(0))
    # marginal of target tokens: eos once per sequence, else uniform over 5 symbols
    mean_len = 3.5
    p_eos = 1 / (mean_len + 1)
    baseline = -(p_eos * math.log(p_eos) + (1 - p_eos) * math.log((1 - p_eos) / 5))
    loss = fit(model, loss_fn, batches, steps=120, lr=1e-2)
    print(f"seq2seq reversal loss {loss:.4f} vs baseline {baseline:.4f}")
    assert loss < 0.2 * baseline, (loss, baseline)
    src, lengths, _, tgt_out, _ = batches(10_000)
    out = decode_beam(model, src, lengths, beam_size=3, max_length=time + 1, alpha=0.6)
    exact = np.mean(np.all(np.asarray(out.tokens) == np.asarray(tgt_out), axis=1))
    print(f"seq2seq reversal exact-match (beam 3) {exact:.2f}")
    assert exact > 0.8


@pytest.mark.slow
@pytest.mark.parametrize("style", ["luong", "bahdanau"])
def test_dot_attention_works_with_the_default_bidirectional_encoder(style):
    """The encoder's 2h outputs are mapped to the decoder's h (memory_proj) before q^T e_s; a step trains it."""
    import optax

    from gatedrnn.nn.params import with_standard_promotion

    model = Seq2Seq("gru", 8, 6, source_vocab=6, embed_size=6, attention="dot", style=style, rngs=nnx.Rngs(0))
    assert model.memory_proj.kernel.shape == (16, 8)
    assert Seq2Seq("gru", 8, 6, source_vocab=6, attention="dot", bidirectional=False,
                   rngs=nnx.Rngs(0)).memory_proj is None  # sizes agree: no map, the param tree as before
    src, lengths = _src()
    tgt_in = jnp.asarray(np.random.default_rng(2).integers(3, 6, size=(3, 4)), jnp.int32)
    tgt_out = jnp.roll(tgt_in, -1, axis=1)
    mask = sequence_mask(jnp.array([4, 4, 4]), 3, 4)

    def loss_fn(m):
        logits, weights = m(src, lengths, tgt_in)
        assert logits.shape == (3, 4, 6) and weights.shape == (3, 4, 5)
        return sequence_cross_entropy(logits, tgt_out, mask)

    optimizer = nnx.Optimizer(model, with_standard_promotion(optax.sgd(0.5)), wrt=nnx.Param)
    before, grads = nnx.value_and_grad(loss_fn)(model)
    assert float(jnp.abs(grads.memory_proj.kernel[...]).max()) > 0
    optimizer.update(model, grads)
    assert float(loss_fn(model)) < float(before)
    _, weights = model(src, lengths, tgt_in)
    np.testing.assert_allclose(np.asarray(weights).sum(-1), 1.0, rtol=1e-5)


def test_multihead_attention_bias_option():
    build = lambda **kw: Seq2Seq("gru", 8, 6, source_vocab=6, attention="multihead", rngs=nnx.Rngs(0), **kw)  # noqa: E731
    assert build().attention.q_proj.bias is not None  # torch's in_proj_bias
    old = build(attention_bias=False).attention
    assert old.q_proj.bias is None and old.k_proj.bias is None and old.v_proj.bias is None
