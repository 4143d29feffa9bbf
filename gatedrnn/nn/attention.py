"""Attention over a padded memory: additive (Bahdanau), multiplicative (Luong) and multi-head.

Glossary: b batch, q query steps, s memory (source) steps, d features, n heads, k head size.

The math is in pure functions over explicit arrays; the NNX modules own the parameters and
call them. Every attention takes a padding mask `mask [batch, source]` (True = valid) and
returns `(context, weights)`; weights are exactly 0 at padded positions and sum to 1 over
the valid ones (a row with no valid position gets all-zero weights and a zero context).

Shapes of what they return, for a query [b, d_q] or queries [b, q, d_q]:

  additive, dot, general, concat:  context [b, (q,) d_v],       weights [b, (q,) s]
  multihead:                       context [b, (q,) out_size],  weights [b, n, (q,) s]  (heads second)

Every module takes `param_dtype` (None: float32, float64 under jax_enable_x64) and `dtype`
(the compute dtype: None promotes the inputs and params as flax.nnx.Linear does; e.g.
jnp.bfloat16 casts the inputs and computes, and returns, in bfloat16).

Each module splits its work in two so that a decoder does the memory-side work once:

    memory = attn.prepare(keys, values, mask)     # once per source sequence
    context, weights = attn.attend(memory, query) # once per decoder step; query [b, d_q]
                                                  # or [b, q, d_q] for many queries at once
    context, weights = attn(query, keys, values, mask)   # both in one call
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from gatedrnn.losses import sequence_mask
from gatedrnn.nn.params import cast, resolve_param_dtype
from gatedrnn.validation import ConfigError, check_choice, check_positive


class Memory(NamedTuple):
    """What a decoder attends to: `keys` as the scorer needs them (projected where it projects
    once per source), `values [b, s, d_v]` and `mask [b, s]` (bool, True = valid)."""

    keys: jax.Array
    values: jax.Array
    mask: jax.Array


lengths_to_mask = sequence_mask  # the old name of `gatedrnn.losses.sequence_mask`, kept for outside scripts


def masked_softmax(scores: jax.Array, mask: jax.Array, axis: int = -1) -> jax.Array:
    """Softmax of `scores` over `axis` restricted to `mask` (same shape, bool).

    weights = exp(s - max_valid s) * mask / sum(...): exactly 0 where mask is False, and an
    all-masked row gives all zeros (never NaN).
    """
    neg = jnp.asarray(-jnp.inf, scores.dtype)
    masked = jnp.where(mask, scores, neg)
    peak = jnp.max(masked, axis=axis, keepdims=True)
    peak = jnp.where(jnp.isfinite(peak), peak, jnp.zeros_like(peak))
    e = jnp.where(mask, jnp.exp(masked - peak), jnp.zeros_like(scores))
    total = jnp.sum(e, axis=axis, keepdims=True)
    return e / jnp.where(total > 0, total, jnp.ones_like(total))


def _check_memory(keys: jax.Array, values: jax.Array, mask: jax.Array | None) -> jax.Array:
    if keys.ndim != 3 or values.ndim != 3 or keys.shape[:2] != values.shape[:2]:
        raise ValueError(
            f"keys and values must be [batch, source, features] with equal batch and source, got {keys.shape} and {values.shape}"
        )
    if mask is None:
        return sequence_mask(None, *keys.shape[:2])
    if mask.shape != keys.shape[:2] or mask.dtype != jnp.bool_:
        raise ValueError(f"mask must be bool of shape [batch, source]={keys.shape[:2]}, got {mask.shape} {mask.dtype}")
    return mask


def _queries(query: jax.Array) -> tuple[jax.Array, bool]:
    """[b, d] -> ([b, 1, d], True); [b, q, d] -> (same, False)."""
    if query.ndim == 2:
        return query[:, None, :], True
    if query.ndim == 3:
        return query, False
    raise ValueError(f"query must be [batch, features] or [batch, queries, features], got shape {query.shape}")


def weighted_sum(weights: jax.Array, values: jax.Array) -> jax.Array:
    """weights [b, q, s], values [b, s, d_v] -> context [b, q, d_v] = sum_s w * v."""
    return jnp.einsum("bqs,bsd->bqd", weights, values.astype(weights.dtype))


# ----------------------------------------------------------------------------- score functions


def additive_scores(query_proj: jax.Array, keys_proj: jax.Array, v: jax.Array) -> jax.Array:
    """Bahdanau et al. 2015: score(q, k_s) = v^T tanh(W_q q + W_k k_s).

    query_proj [b, q, a] (= W_q q), keys_proj [b, s, a] (= W_k k + bias), v [a] -> [b, q, s].
    """
    hidden = jnp.tanh(query_proj[:, :, None, :] + keys_proj[:, None, :, :])
    return jnp.einsum("bqsa,a->bqs", hidden, v.astype(hidden.dtype))


def dot_scores(query: jax.Array, keys: jax.Array) -> jax.Array:
    """Luong et al. 2015 "dot": score(q, k_s) = q^T k_s. query [b, q, d], keys [b, s, d] -> [b, q, s].

    "general" is dot_scores(query, keys @ W_a^T), i.e. q^T W_a k_s, with W_a applied to the keys once.
    """
    return jnp.einsum("bqd,bsd->bqs", query, keys.astype(query.dtype))


def concat_scores(query: jax.Array, keys_proj: jax.Array, w_q: jax.Array, v: jax.Array) -> jax.Array:
    """Luong et al. 2015 "concat": score(q, k_s) = v^T tanh(W_a [q; k_s]) = v^T tanh(W_q q + W_k k_s).

    query [b, q, d_q], keys_proj [b, s, a] (= W_k k_s), w_q [d_q, a], v [a] -> [b, q, s].
    """
    return additive_scores(query @ w_q.astype(query.dtype), keys_proj, v)


def scaled_dot_product(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Vaswani et al. 2017, per head: softmax(q k^T / sqrt(k_dim)) v.

    q [b, q, n, k], k [b, s, n, k], v [b, s, n, k_v], mask [b, s]
    -> (context [b, q, n, k_v], weights [b, n, q, s]).
    """
    scores = jnp.einsum("bqnk,bsnk->bnqs", q, k) / jnp.asarray(math.sqrt(q.shape[-1]), q.dtype)
    weights = masked_softmax(scores, jnp.broadcast_to(mask[:, None, None, :], scores.shape))
    return jnp.einsum("bnqs,bsnk->bqnk", weights, v), weights


# ----------------------------------------------------------------------------- modules


class _Attention(nnx.Module):
    """Shared prepare/attend/__call__ plumbing for the single-head attentions."""

    dtype: Any = None  # the compute dtype (None: promote inputs and params)

    def prepare(self, keys: jax.Array, values: jax.Array | None = None, mask: jax.Array | None = None) -> Memory:
        """keys [b, s, d_k], values [b, s, d_v] (default: keys), mask [b, s] -> Memory."""
        values = keys if values is None else values
        mask = _check_memory(keys, values, mask)
        keys, values = cast(keys, self.dtype), cast(values, self.dtype)
        return Memory(self._project_keys(keys), values, mask)

    def _project_keys(self, keys):
        return keys

    def _scores(self, memory: Memory, query: jax.Array) -> jax.Array:
        raise NotImplementedError

    def attend(self, memory: Memory, query: jax.Array) -> tuple[jax.Array, jax.Array]:
        """query [b, d_q] -> (context [b, d_v], weights [b, s]); or [b, q, d_q] -> ([b, q, d_v], [b, q, s])."""
        queries, single = _queries(cast(query, self.dtype))
        scores = self._scores(memory, queries)
        weights = masked_softmax(scores, jnp.broadcast_to(memory.mask[:, None, :], scores.shape))
        context = weighted_sum(weights, memory.values)
        return (context[:, 0], weights[:, 0]) if single else (context, weights)

    def __call__(self, query, keys, values=None, mask=None):
        return self.attend(self.prepare(keys, values, mask), query)


class AdditiveAttention(_Attention):
    """Bahdanau attention: e_s = v^T tanh(W_q q + W_k k_s + b), a = softmax(e) over valid s,
    context = sum_s a_s v_s. Sizes: query_size d_q, key_size d_k, attention_size a.
    Params: query_proj (W_q [d_q, a], no bias), key_proj (W_k [d_k, a], b [a]), v [a]."""

    def __init__(self, query_size: int, key_size: int, attention_size: int, *, rngs: nnx.Rngs,
                 dtype: Any = None, param_dtype: Any = None):
        for name, value in (("query_size", query_size), ("key_size", key_size), ("attention_size", attention_size)):
            check_positive(f"AdditiveAttention.{name}", value)
        param_dtype = resolve_param_dtype(param_dtype)
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.dtype = dtype
        self.query_proj = nnx.Linear(query_size, attention_size, use_bias=False, **kw)
        self.key_proj = nnx.Linear(key_size, attention_size, **kw)
        self.v = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (attention_size, 1), param_dtype)[:, 0])

    def _project_keys(self, keys):
        return self.key_proj(keys)

    def _scores(self, memory, query):
        return additive_scores(self.query_proj(query), memory.keys, self.v[...])


LUONG_SCORES = ("dot", "general", "concat")


class LuongAttention(_Attention):
    """Luong et al. 2015 multiplicative attention; `score` picks e_s:

      dot:     e_s = q^T k_s                  (needs query_size == key_size)
      general: e_s = q^T W_a k_s
      concat:  e_s = v^T tanh(W_a [q; k_s])

    then a = softmax(e) over valid s and context = sum_s a_s v_s. No biases (Luong's have none).
    """

    def __init__(self, query_size: int, key_size: int, score: str = "general", *, attention_size: int | None = None,
                 rngs: nnx.Rngs, dtype: Any = None, param_dtype: Any = None):
        check_choice("LuongAttention.score", score, LUONG_SCORES)
        check_positive("LuongAttention.query_size", query_size)
        check_positive("LuongAttention.key_size", key_size)
        if score == "dot" and query_size != key_size:
            raise ValueError(f"LuongAttention score='dot' needs query_size == key_size, got {query_size} and {key_size}")
        self.score, self.dtype = score, dtype
        param_dtype = resolve_param_dtype(param_dtype)
        kw = dict(use_bias=False, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        if score == "general":
            self.key_proj = nnx.Linear(key_size, query_size, **kw)
        elif score == "concat":
            a = attention_size or query_size
            self.key_proj = nnx.Linear(key_size, a, **kw)
            init = nnx.initializers.lecun_normal()
            self.w_q = nnx.Param(init(rngs.params(), (query_size, a), param_dtype))
            self.v = nnx.Param(init(rngs.params(), (a, 1), param_dtype)[:, 0])

    def _project_keys(self, keys):
        return keys if self.score == "dot" else self.key_proj(keys)

    def _scores(self, memory, query):
        if self.score == "concat":
            return concat_scores(query, memory.keys, self.w_q[...], self.v[...])
        return dot_scores(query, memory.keys)


class MultiHeadAttention(nnx.Module):
    """Scaled dot-product attention with `num_heads` heads (Vaswani et al. 2017), as
    torch.nn.MultiheadAttention computes it:

      head_i = softmax((q W_q^i + b_q^i)(K W_k^i + b_k^i)^T / sqrt(k)) (V W_v^i + b_v^i)
      out    = concat_i(head_i) W_o + b_o

    query [b, d_q] or [b, q, d_q]; keys [b, s, d_k]; values [b, s, d_v] (default keys).
    Returns (context [b, (q,) out_size], weights [b, n, (q,) s]): the weights have the heads
    second, as torch's `need_weights=True, average_attn_weights=False`.

    Params: q_proj, k_proj, v_proj (kernel [d, n, k], bias [n, k]) and out_proj (kernel
    [n, k, out_size], bias [out_size]). `bias=True` (the default, torch's) gives q/k/v their
    biases b_q, b_k, b_v (torch's `in_proj_bias`); `bias=False` drops them and leaves the param
    tree as it was before the option existed (out_proj keeps its bias either way: port a
    torch module built with bias=False by zeroing it). `gatedrnn.nn.interop.from_torch` copies
    a torch.nn.MultiheadAttention's weights in.
    """

    def __init__(self, query_size: int, key_size: int, num_heads: int, head_size: int, *,
                 value_size: int | None = None, out_size: int | None = None, bias: bool = True,
                 rngs: nnx.Rngs, dtype: Any = None, param_dtype: Any = None):
        for name, value in (("query_size", query_size), ("key_size", key_size), ("num_heads", num_heads),
                            ("head_size", head_size)):
            check_positive(f"MultiHeadAttention.{name}", value)
        if not isinstance(bias, bool):
            raise ConfigError(f"MultiHeadAttention.bias must be True or False, got {bias!r}")
        value_size = value_size or key_size
        out_size = out_size or query_size
        self.num_heads, self.head_size, self.bias, self.dtype = num_heads, head_size, bias, dtype
        kw = dict(dtype=dtype, param_dtype=resolve_param_dtype(param_dtype), rngs=rngs)
        heads = (num_heads, head_size)
        self.q_proj = nnx.LinearGeneral(query_size, heads, use_bias=bias, **kw)
        self.k_proj = nnx.LinearGeneral(key_size, heads, use_bias=bias, **kw)
        self.v_proj = nnx.LinearGeneral(value_size, heads, use_bias=bias, **kw)
        self.out_proj = nnx.LinearGeneral(heads, out_size, axis=(-2, -1), **kw)

    def prepare(self, keys, values=None, mask=None) -> Memory:
        values = keys if values is None else values
        mask = _check_memory(keys, values, mask)
        return Memory(self.k_proj(cast(keys, self.dtype)), self.v_proj(cast(values, self.dtype)), mask)

    def attend(self, memory: Memory, query):
        queries, single = _queries(cast(query, self.dtype))
        context, weights = scaled_dot_product(self.q_proj(queries), memory.keys, memory.values, memory.mask)
        out = self.out_proj(context)
        return (out[:, 0], weights[:, :, 0]) if single else (out, weights)

    def __call__(self, query, keys, values=None, mask=None):
        return self.attend(self.prepare(keys, values, mask), query)


ATTENTIONS = ("additive", "dot", "general", "concat", "multihead")


def make_attention(kind: str, query_size: int, key_size: int, *, rngs: nnx.Rngs, attention_size: int | None = None,
                   num_heads: int | None = None, bias: bool = True, dtype: Any = None, param_dtype: Any = None):
    """Builds an attention by name: "additive" (Bahdanau), "dot"/"general"/"concat" (Luong), "multihead".

    Every result has prepare/attend/__call__; its context has key_size features when the values
    are the keys (multihead projects its output back to key_size). Weights are [b, (q,) s],
    multihead's [b, n, (q,) s].

    attention_size (None: query_size) is the additive/concat hidden size and multihead's total
    width n * k, split into `num_heads` heads of attention_size // num_heads; num_heads None
    takes the largest of 4, 2, 1 that divides attention_size (so the defaults always build).
    `bias` is multihead's q/k/v projection bias (see `MultiHeadAttention`); `dtype` and
    `param_dtype` go to the module.
    """
    check_choice("model.attention", kind, ATTENTIONS)
    size = attention_size or query_size
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    if kind == "additive":
        return AdditiveAttention(query_size, key_size, size, **kw)
    if kind == "multihead":
        check_positive("attention_size", size)
        if num_heads is None:
            num_heads = math.gcd(size, 4)
        check_positive("num_heads", num_heads)
        if size % num_heads:
            divisors = [n for n in range(1, size + 1) if size % n == 0]
            raise ConfigError(f"attention_size={size} must be divisible by num_heads={num_heads}: use num_heads in "
                              f"{divisors}, or an attention_size that is a multiple of {num_heads}")
        return MultiHeadAttention(query_size, key_size, num_heads, size // num_heads, out_size=key_size, bias=bias,
                                  **kw)
    return LuongAttention(query_size, key_size, kind, attention_size=attention_size, **kw)
