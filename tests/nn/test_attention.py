"""Attention: masked softmax semantics, exact zeros on padding, padding invariance, multi-head = per-head math."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given
from hypothesis import strategies as st

from gatedrnn.losses import sequence_mask
from gatedrnn.nn.attention import (
    AdditiveAttention,
    LuongAttention,
    MultiHeadAttention,
    make_attention,
    masked_softmax,
)

KINDS = ["additive", "dot", "general", "concat", "multihead"]
_softmax_jit = jax.jit(masked_softmax)


def _make(kind, q=8, k=8):
    return make_attention(kind, q, k, rngs=nnx.Rngs(0), attention_size=8, num_heads=2)


def _weights_per_query(kind, weights):
    return weights.reshape((-1, weights.shape[-1]))  # fold heads / queries


@pytest.mark.parametrize("kind", KINDS)
def test_weights_sum_to_one_and_are_exactly_zero_on_padding(kind):
    attn = _make(kind)
    keys = jax.random.normal(jax.random.key(1), (3, 6, 8))
    query = jax.random.normal(jax.random.key(2), (3, 8))
    lengths = jnp.array([6, 2, 4])
    mask = sequence_mask(lengths, 3, 6)
    context, weights = attn(query, keys, mask=mask)
    assert context.shape == (3, 8)
    w = np.asarray(weights)
    m = np.broadcast_to(np.asarray(mask).reshape((3,) + (1,) * (w.ndim - 2) + (6,)), w.shape)
    assert np.all(w[~m] == 0.0)  # exactly zero, not just small
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
    assert np.all(w[m] > 0)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_padding_content_never_matters(kind):
    """Garbage (even huge values) in padded key/value rows changes nothing."""
    attn = _make(kind)
    keys = jax.random.normal(jax.random.key(1), (2, 5, 8))
    query = jax.random.normal(jax.random.key(2), (2, 3, 8))
    mask = sequence_mask(jnp.array([3, 5]), 2, 5)
    junk = jnp.where(mask[:, :, None], keys, 1e4 * jax.random.normal(jax.random.key(3), keys.shape))
    c1, w1 = attn(query, keys, mask=mask)
    c2, w2 = attn(query, junk, mask=mask)
    np.testing.assert_allclose(c1, c2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w1, w2, rtol=1e-5, atol=1e-7)
    # and the unpadded first sequence alone gives the same result
    c3, w3 = attn(query[:1], keys[:1, :3], mask=None)
    np.testing.assert_allclose(c1[:1], c3, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w1[:1, ..., :3], w3, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", KINDS)
def test_single_query_equals_batched_queries(kind):
    attn = _make(kind)
    keys = jax.random.normal(jax.random.key(1), (2, 5, 8))
    queries = jax.random.normal(jax.random.key(2), (2, 3, 8))
    memory = attn.prepare(keys)
    c_all, w_all = attn.attend(memory, queries)
    for j in range(3):
        c, w = attn.attend(memory, queries[:, j])
        np.testing.assert_allclose(c, c_all[:, j], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(w, w_all[..., j, :], rtol=1e-5, atol=1e-7)


def test_luong_dot_matches_numpy():
    attn = LuongAttention(4, 4, "dot", rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(1, 4)), rng.normal(size=(1, 3, 4))
    context, weights = attn(jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32),
                            mask=jnp.array([[True, True, False]]))
    e = k[0, :2] @ q[0]
    a = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
    np.testing.assert_allclose(weights[0], np.r_[a, 0.0], rtol=1e-5)
    np.testing.assert_allclose(context[0], a @ k[0, :2], rtol=1e-5)


def test_additive_matches_numpy():
    attn = AdditiveAttention(3, 4, 5, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(1, 3)).astype(np.float32), rng.normal(size=(1, 4, 4)).astype(np.float32)
    context, weights = attn(jnp.asarray(q), jnp.asarray(k))
    wq, wk, bk = (np.asarray(a, np.float64) for a in (attn.query_proj.kernel[...], attn.key_proj.kernel[...],
                                                      attn.key_proj.bias[...]))
    e = np.tanh(q[0] @ wq + k[0] @ wk + bk) @ np.asarray(attn.v[...], np.float64)
    a = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
    np.testing.assert_allclose(weights[0], a, rtol=1e-5)
    np.testing.assert_allclose(context[0], a @ k[0], rtol=1e-5)


def test_multihead_matches_per_head_numpy():
    attn = MultiHeadAttention(4, 4, num_heads=2, head_size=3, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(1, 2, 4)).astype(np.float32), rng.normal(size=(1, 5, 4)).astype(np.float32)
    context, weights = attn(jnp.asarray(q), jnp.asarray(k))
    wq, wk, wv = (np.asarray(m.kernel[...], np.float64) for m in (attn.q_proj, attn.k_proj, attn.v_proj))
    wo, bo = np.asarray(attn.out_proj.kernel[...], np.float64), np.asarray(attn.out_proj.bias[...], np.float64)
    out = np.zeros((2, 4)) + bo
    for n in range(2):
        qh, kh, vh = q[0] @ wq[:, n], k[0] @ wk[:, n], k[0] @ wv[:, n]
        e = qh @ kh.T / np.sqrt(3)
        a = np.exp(e - e.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        np.testing.assert_allclose(weights[0, n], a, rtol=1e-5)
        out += (a @ vh) @ wo[n]
    np.testing.assert_allclose(context[0], out, rtol=1e-4, atol=1e-5)


def test_all_masked_row_gives_zeros_not_nan():
    w = masked_softmax(jnp.array([[1.0, 2.0]]), jnp.array([[False, False]]))
    np.testing.assert_array_equal(w, 0.0)
    g = jax.grad(lambda s: masked_softmax(s, jnp.array([[True, False]])).sum())(jnp.array([[1.0, 2.0]]))
    assert np.all(np.isfinite(g))


@given(st.lists(st.integers(1, 6), min_size=4, max_size=4), st.integers(0, 1000))
def test_masked_softmax_property(lengths, seed):
    lengths = np.array(lengths)
    scores = jax.random.normal(jax.random.key(seed), (len(lengths), 6)) * 10
    w = np.asarray(_softmax_jit(scores, sequence_mask(jnp.asarray(lengths), len(lengths), 6)))
    for i, n in enumerate(lengths):
        assert np.all(w[i, n:] == 0.0)
        np.testing.assert_allclose(w[i, :n].sum(), 1.0, rtol=1e-6)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="attention='bahdanau'"):
        make_attention("bahdanau", 4, 4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="query_size == key_size"):
        LuongAttention(4, 5, "dot", rngs=nnx.Rngs(0))
    attn = _make("general")
    with pytest.raises(ValueError, match="mask must be bool"):
        attn(jnp.ones((2, 8)), jnp.ones((2, 3, 8)), mask=jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="query must be"):
        attn(jnp.ones((8,)), jnp.ones((2, 3, 8)))


# --- defaults that build, dtypes ------------------------------------------------------------------

@pytest.mark.parametrize("size, heads", [(8, 4), (6, 2), (10, 2), (7, 1)])
def test_multihead_defaults_build_for_any_size(size, heads):
    """num_heads=None takes the largest of 4, 2, 1 dividing attention_size (= query_size by default)."""
    attn = make_attention("multihead", size, 5, rngs=nnx.Rngs(0))
    assert (attn.num_heads, attn.head_size) == (heads, size // heads)
    context, weights = attn(jnp.ones((2, 3, size)), jnp.ones((2, 4, 5)))
    assert context.shape == (2, 3, 5) and weights.shape == (2, heads, 3, 4)  # [b, heads, q, s]
    np.testing.assert_allclose(np.asarray(weights).sum(-1), 1.0, rtol=1e-6)


def test_multihead_heads_that_do_not_divide_name_the_valid_values():
    with pytest.raises(ValueError, match=r"^attention_size=10 must be divisible by num_heads=4: use num_heads in "
                                         r"\[1, 2, 5, 10\], or an attention_size that is a multiple of 4$"):
        make_attention("multihead", 10, 12, num_heads=4, rngs=nnx.Rngs(0))


def test_multihead_bias_false_keeps_the_old_param_tree():
    names = lambda attn: {k: sorted(v) for k, v in nnx.to_pure_dict(nnx.state(attn, nnx.Param)).items()}  # noqa: E731
    old = {"q_proj": ["kernel"], "k_proj": ["kernel"], "v_proj": ["kernel"], "out_proj": ["bias", "kernel"]}
    assert names(MultiHeadAttention(4, 6, 2, 3, bias=False, rngs=nnx.Rngs(0))) == old
    with_bias = names(MultiHeadAttention(4, 6, 2, 3, rngs=nnx.Rngs(0)))
    assert with_bias == {k: ["bias", "kernel"] for k in old}


def _dtypes(module):
    return {leaf.dtype for leaf in jax.tree.leaves(nnx.state(module, nnx.Param))}


@pytest.mark.parametrize("kind", KINDS)
def test_bfloat16_compute_dtype_gives_bfloat16_outputs(kind):
    rng = np.random.default_rng(0)
    q, k = jnp.asarray(rng.normal(size=(2, 3, 8)), jnp.float32), jnp.asarray(rng.normal(size=(2, 5, 8)), jnp.float32)
    mask = sequence_mask(jnp.array([5, 2]), 2, 5)
    want = make_attention(kind, 8, 8, rngs=nnx.Rngs(0), attention_size=8, num_heads=2)
    attn = make_attention(kind, 8, 8, rngs=nnx.Rngs(0), attention_size=8, num_heads=2, dtype=jnp.bfloat16)
    assert _dtypes(attn) <= {jnp.dtype(jnp.float32)}  # params stay in param_dtype
    context, weights = attn(q, k, mask=mask)
    assert context.dtype == jnp.bfloat16 and weights.dtype == jnp.bfloat16
    c32, w32 = want(q, k, mask=mask)
    np.testing.assert_allclose(np.asarray(context, np.float32), c32, rtol=0.05, atol=0.05)
    np.testing.assert_allclose(np.asarray(weights, np.float32), w32, atol=0.02)


@pytest.mark.parametrize("kind", ["additive", "general", "concat", "multihead"])
def test_param_dtype_float64_under_x64(kind):
    assert _dtypes(_make(kind)) == {jnp.dtype(jnp.float32)}  # without x64: float32
    with jax.enable_x64():
        explicit = make_attention(kind, 8, 8, rngs=nnx.Rngs(0), attention_size=8, num_heads=2,
                                  param_dtype=jnp.float64)
        default = _make(kind)  # None follows jnp.zeros' default: float64 under x64
        assert _dtypes(explicit) == _dtypes(default) == {jnp.dtype(jnp.float64)}
        context, weights = explicit(jnp.ones((2, 8), jnp.float64), jnp.ones((2, 3, 8), jnp.float64))
        assert context.dtype == weights.dtype == jnp.float64
