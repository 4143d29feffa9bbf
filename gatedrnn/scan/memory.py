"""Parallel and chunkwise modes of a matrix-memory cell (the mLSTM): one span of steps at once.

For a `MatrixMemoryCell` the state (C, n) follows a linear recurrence with scalar gates per
head, so a span of L steps (leaves [L, b, ...]) starting from the stabilised carry
(C~_0, n~_0, m_0) solves in closed form. With B_t = sum_{u<=t} log f_u over the span,

  log D_ts = B_t - B_s + log i_s      (s <= t, same segment)          decay matrix [L, L]
  log w_t  = B_t + m_0                                                   the carry's weight at t
  m_t      = max(log w_t, max_s log D_ts)                                stabiliser (= the recurrent m_t)
  h_t = (sum_s e^{log D_ts - m_t} (q_t.k_s) v_s + e^{log w_t - m_t} C~_0^T q_t)
        / (max(|sum_s e^{log D_ts - m_t} (q_t.k_s) + e^{log w_t - m_t} n~_0.q_t|, e^{-m_t}) + eps)

and the span's last state is the same sums at t = L - 1. Over the whole sequence this is the
paper's parallel form (mode="parallel", O(L^2) memory); the engine's chunked scan applies it to
chunks of `parallel_chunk` steps (64 by default), passing (C~, n~, m) from chunk to chunk: the
chunkwise form (mode="chunkwise"), O(L^2 + dk dv) per chunk.

Padded steps (mask False) have f = 1 and i = 0: the state and m stay as they were. A reset at
step r (a new segment) drops the carry from step r on: its weight becomes that of a zero state
with m = 0 (log w_t = B_t - B_{r-1}), exactly what the recurrent step sees after the engine
zeroes its carry, so all three forms give the same m_t as well as the same h_t.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gatedrnn.cells.base import MemoryCarry, accumulation_dtype


def memory_run(cell, params, carry: MemoryCarry, inputs):
    """One span (xs [L, b, d], mask [L, b] or None, resets [L, b] or None) -> (carry, ys [L, b, out]).

    The memory arithmetic runs in the carry's dtype (float32 under bfloat16 compute); ys in the
    input's dtype.
    """
    xs, mask, resets = inputs
    xp = cell.project(params, xs)
    mi = cell.memory_inputs(params, xp)
    acc = carry.m.dtype
    q, k, v = (a.astype(acc) for a in (mi.q, mi.k, mi.v))  # [L, b, H, d]
    log_i, log_f = mi.log_i.astype(acc), mi.log_f.astype(acc)  # [L, b, H]
    time = xs.shape[0]
    if mask is not None:
        valid = mask[:, :, None]
        log_i, log_f = jnp.where(valid, log_i, -jnp.inf), jnp.where(valid, log_f, 0)
        if resets is not None:
            resets = resets & mask
    b_cum = jnp.cumsum(log_f, axis=0)  # B_t
    causal = jnp.tril(jnp.ones((time, time), bool))[:, :, None, None]  # [t, s, 1, 1]
    log_w = b_cum + carry.m[None]
    carried = None  # [L, b, 1] whether the initial carry still reaches step t
    if resets is not None:
        t_idx = jnp.arange(time, dtype=jnp.int32)[:, None]
        start = jax.lax.cummax(jnp.where(resets, t_idx, -1), axis=0)  # [L, b] last reset <= t, -1: none
        b_before = jnp.take_along_axis(b_cum - log_f, jnp.maximum(start, 0)[:, :, None], axis=0)  # B_{r-1}
        carried = (start < 0)[:, :, None]
        log_w = jnp.where(carried, log_w, b_cum - b_before)
        causal = causal & (start[:, None] == start[None, :])[..., None]
    log_d = jnp.where(causal, b_cum[:, None] - b_cum[None, :] + log_i[None, :], -jnp.inf)  # [t, s, b, H]
    m = jnp.maximum(log_w, jnp.max(log_d, axis=1))  # [L, b, H]
    d = jnp.exp(log_d - m[:, None])
    w = jnp.exp(log_w - m)
    if carried is not None:
        w = jnp.where(carried, w, 0)
    p = jnp.einsum("tbhk,sbhk->tsbh", q, k) * d
    num = jnp.einsum("tsbh,sbhv->tbhv", p, v) + w[..., None] * jnp.einsum("tbhk,bhkv->tbhv", q, carry.c)
    den = jnp.sum(p, axis=1) + w * jnp.einsum("tbhk,bhk->tbh", q, carry.n)
    h = num / (jnp.maximum(jnp.abs(den), jnp.exp(-m)) + jnp.asarray(cell.eps, acc))[..., None]
    last = d[-1]  # [s, b, H]: each step's weight in the span's last state
    c = w[-1][..., None, None] * carry.c + jnp.einsum("sbh,sbhk,sbhv->bhkv", last, k, v)
    n = w[-1][..., None] * carry.n + jnp.einsum("sbh,sbhk->bhk", last, k)
    ys = cell.readout(params, h.astype(xs.dtype), xp)
    if mask is not None:
        ys = jnp.where(mask[:, :, None], ys, 0)
    return MemoryCarry(c, n, m[-1]), ys


def memory_dtype(dtype):
    """The dtype of the memory arithmetic for a compute dtype: float32 for bfloat16."""
    return accumulation_dtype(dtype)
