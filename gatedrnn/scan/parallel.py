"""Parallel mode: the linear recurrence h_t = a_t h_{t-1} + b_t solved for all steps at once.

`linear_scan` / `log_linear_scan` (associative or linear-loop algorithm, each with a custom VJP
that runs the backward recurrence as one more scan in reverse) and `parallel_run`, the engine's
parallel mode over one span of steps of a `LinearCell`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from gatedrnn.cells.base import accumulation_dtype
from gatedrnn.scan.options import ALGORITHMS
from gatedrnn.validation import check_choice


def scan_dtype(dtype) -> Any:
    """The dtype the parallel scan accumulates in: float32 for bfloat16; complex stays complex."""
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        return dtype
    return accumulation_dtype(dtype)


def _linear_op(earlier, later):
    """The associative operator of h_t = a_t h_{t-1} + b_t: (a1, b1) . (a2, b2) = (a2 a1, a2 b1 + b2)."""
    a1, b1 = earlier
    a2, b2 = later
    return a2 * a1, a2 * b1 + b2


def _log_op(earlier, later):
    """The same operator on (log a, log b), for positive a and b."""
    la1, lb1 = earlier
    la2, lb2 = later
    return la1 + la2, jnp.logaddexp(la2 + lb1, lb2)


_UNROLL = 1  # of the linear loop


def resolve_parallel_scan(name: str) -> str:
    """"auto" -> "linear" on CPU (a few cores stream one FMA loop faster than a tree of partial
    products: measured in experiments/benchmark.py --suite=linear), else "associative"
    (GPU/TPU: O(log T) depth)."""
    if name == "auto":
        return "linear" if jax.default_backend() == "cpu" else "associative"
    return name


def _linear_loop(a: jax.Array, b: jax.Array, h0: jax.Array) -> jax.Array:
    """h_t = a_t h_{t-1} + b_t for all t (leaves [t, ...]) by one `lax.scan` of the FMA alone:
    the least work and memory traffic there is (one read of a and b, one write of h), which a
    few CPU cores stream faster than any tree of partial products."""
    def fma(h, ab):
        h = ab[0] * h + ab[1]
        return h, h

    return jax.lax.scan(fma, h0, (a, b), unroll=_UNROLL)[1]


def _solve(a: jax.Array, b: jax.Array, h0: jax.Array, algorithm: str) -> jax.Array:
    if algorithm == "linear":
        return _linear_loop(a, b, h0)
    b = b.at[0].add(a[0] * h0)
    return jax.lax.associative_scan(_linear_op, (a, b), axis=0)[1]


def _reverse_grad(a: jax.Array, h: jax.Array, h0: jax.Array, g: jax.Array, algorithm: str):
    """Backward of h_t = a_t h_{t-1} + b_t (leaves [t, ...]): g_t = dh_t + a_{t+1} g_{t+1},
    solved by the same scan in reverse; returns (g = d b, d a = g_t h_{t-1}, d h0 = a_0 g_0).
    No conjugates: JAX's VJP of a complex product is its transpose."""
    if algorithm == "linear":
        def step(future, a_dh):  # future = a_{t+1} g_{t+1}
            g_t = a_dh[1] + future
            return a_dh[0] * g_t, g_t

        d_h0, g = jax.lax.scan(step, jnp.zeros_like(h0), (a, g), reverse=True, unroll=_UNROLL)
    else:
        a_next = jnp.concatenate([a[1:], jnp.zeros_like(a[:1])], axis=0)
        _, g = jax.lax.associative_scan(_linear_op, (a_next, g), axis=0, reverse=True)
        d_h0 = a[0] * g[0]
    h_prev = jnp.concatenate([h0[None], h[:-1]], axis=0)
    return g, g * h_prev, d_h0


def linear_scan(a: jax.Array, b: jax.Array, h0: jax.Array, algorithm: str = "auto") -> jax.Array:
    """All states of h_t = a_t h_{t-1} + b_t at once: a, b [t, ...] (a broadcast to b), h0 [...].

    algorithm: "associative" (`lax.associative_scan`, O(log t) depth, for GPUs and TPUs),
    "linear" (one `lax.scan` of the FMA over precomputed a, b: O(t) depth, the least work, the
    fast one on CPUs) or "auto" (linear on CPU, else associative). The VJP is the same scan in
    reverse. Real or complex; runs in b's dtype.
    """
    check_choice("linear_scan algorithm", algorithm, ALGORITHMS)
    b, h0 = jnp.asarray(b), jnp.asarray(h0)
    a = jnp.broadcast_to(jnp.asarray(a), b.shape)
    if b.ndim < 1 or h0.shape != b.shape[1:]:
        raise ValueError(f"linear_scan needs b [t, ...] and h0 of b's trailing shape, got {b.shape} and {h0.shape}")
    return _linear_scan(a, b, h0, resolve_parallel_scan(algorithm))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _linear_scan(a, b, h0, algorithm):
    return _solve(a, b, h0, algorithm)


def _linear_scan_fwd(a, b, h0, algorithm):
    h = _linear_scan(a, b, h0, algorithm)
    return h, (a, h, h0)


def _linear_scan_bwd(algorithm, saved, dh):
    a, h, h0 = saved
    d_b, d_a, d_h0 = _reverse_grad(a, h, h0, dh, algorithm)
    return d_a, d_b, d_h0


_linear_scan.defvjp(_linear_scan_fwd, _linear_scan_bwd)


def log_linear_scan(log_a: jax.Array, log_b: jax.Array, h0: jax.Array, algorithm: str = "auto") -> jax.Array:
    """`linear_scan` for positive coefficients given as logs (minGRU's log-space form).
    "associative": (log A_t, log B_t) by the log-space operator, then h_t = A_t h0 + B_t (h0 of
    any sign); "linear" runs on a = exp(log a), b = exp(log b) (it forms no products of many
    a's, so nothing needs the logs). log a = -inf is a reset (a = 0), log b = -inf is
    b = 0. Leaves [t, ...], h0 [...]."""
    check_choice("log_linear_scan algorithm", algorithm, ALGORITHMS)
    log_b, h0 = jnp.asarray(log_b), jnp.asarray(h0)
    log_a = jnp.broadcast_to(jnp.asarray(log_a), log_b.shape)
    if log_b.ndim < 1 or h0.shape != log_b.shape[1:]:
        raise ValueError(f"log_linear_scan needs log_b [t, ...] and h0 of its trailing shape, "
                         f"got {log_b.shape} and {h0.shape}")
    return _log_linear_scan(log_a, log_b, h0, resolve_parallel_scan(algorithm))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _log_linear_scan(log_a, log_b, h0, algorithm):
    if algorithm == "linear":
        return _linear_loop(jnp.exp(log_a), jnp.exp(log_b), h0)
    log_a_cum, log_b_cum = jax.lax.associative_scan(_log_op, (log_a, log_b), axis=0)
    return jnp.exp(log_a_cum) * h0[None] + jnp.exp(log_b_cum)


def _log_linear_scan_fwd(log_a, log_b, h0, algorithm):
    h = _log_linear_scan(log_a, log_b, h0, algorithm)
    return h, (log_a, log_b, h, h0)


def _log_linear_scan_bwd(algorithm, saved, dh):
    log_a, log_b, h, h0 = saved
    a = jnp.exp(log_a)
    d_b, d_a, d_h0 = _reverse_grad(a, h, h0, dh, algorithm)
    return d_a * a, d_b * jnp.exp(log_b), d_h0  # d log x = x d x


_log_linear_scan.defvjp(_log_linear_scan_fwd, _log_linear_scan_bwd)


def parallel_run(cell, params, algorithm, h0, inputs):
    """Parallel mode over one span of steps (leaves [t, b, ...]) -> (last state, ys [t, b, out]).

    Padded steps (mask False) become identities (a = 1, b = 0: the state stops at each
    sequence's end); a reset makes a = 0. The scan runs in h0's dtype (float32 or complex).
    """
    xs, mask, resets = inputs
    xp = cell.project(params, xs)
    acc = h0.dtype
    m = None if mask is None else mask[:, :, None]
    r = None if resets is None else resets[:, :, None]
    if cell.log_space and algorithm == "associative":  # the linear loop forms no long products: no logs needed
        log_a, log_b = cell.log_recurrence(params, xp, resets)
        log_b = log_b.astype(acc)
        log_a = jnp.broadcast_to(log_a.astype(acc), log_b.shape)
        if r is not None:
            log_a = jnp.where(r, -jnp.inf, log_a)
        if m is not None:
            log_a, log_b = jnp.where(m, log_a, 0), jnp.where(m, log_b, -jnp.inf)
        h = _log_linear_scan(log_a, log_b, h0, algorithm)
    else:
        a, b = cell.linear_recurrence(params, xp, resets)
        b = b.astype(acc)
        a = jnp.broadcast_to(a.astype(acc), b.shape)
        if r is not None:
            a = jnp.where(r, 0, a)
        if m is not None:
            a, b = jnp.where(m, a, 1), jnp.where(m, b, 0)
        h = _linear_scan(a, b, h0, algorithm)
    compute = xs.dtype if not jnp.issubdtype(acc, jnp.complexfloating) else acc
    ys = cell.readout(params, h.astype(compute), xp)
    if m is not None:
        ys = jnp.where(m, ys, 0)
    return h[-1], ys
