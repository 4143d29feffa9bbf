"""Sequential mode: `lax.scan` over a cell's step, with the fused and analytic custom VJPs."""

from __future__ import annotations

import functools

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np

from gatedrnn.cells.base import D_XP, accumulation_dtype, gate_matmul
from gatedrnn.scan.padding import select


def _masked_step(cell, params, carry, xp_t, mask_t, reset_t=None, matmul=gate_matmul):
    """One step; where mask_t [batch] is False the carry is kept and the output is zero; where
    reset_t [batch] is True the step starts from the cell's zeros."""
    if reset_t is None:
        new_carry, y = cell.step(params, carry, xp_t, matmul=matmul)
    else:
        start = select(reset_t, jax.tree.map(jnp.zeros_like, carry), carry)
        extra = {"reset": reset_t} if cell.linear else {}
        new_carry, y = cell.step(params, start, xp_t, matmul=matmul, **extra)
    return _apply_mask(mask_t, new_carry, carry, y)


def _apply_mask(mask_t, new_carry, carry, y):
    """Where mask_t [batch] is False (padding): the old carry and a zero output."""
    if mask_t is None:
        return new_carry, y
    return select(mask_t, new_carry, carry), select(mask_t, y, jnp.zeros_like(y))


def scan_steps(cell, params, carry, xp, mask, resets, *, unroll):
    """The recurrence over projected inputs xp (leaves [time, batch, ...]) -> (carry, ys [time, ...])."""
    return jax.lax.scan(lambda c, inp: _masked_step(cell, params, c, *inp), carry, (xp, mask, resets), unroll=unroll)


@jax.custom_vjp
def _replayed(lhs, out, w):
    """Returns the saved product `out` (= lhs @ w); backward gives d lhs and d out, not d w."""
    del lhs, w
    return out


def _replayed_fwd(lhs, out, w):
    return out, w


def _replayed_bwd(w, g):
    flat = w.reshape(w.shape[0], -1)
    d_lhs = (g if w.ndim == 2 else jnp.concatenate(g, axis=-1)) @ flat.T
    return d_lhs, g, jnp.zeros_like(w)


_replayed.defvjp(_replayed_fwd, _replayed_bwd)


def _weight_grad(lhs: jax.Array, d_out, w: jax.Array) -> jax.Array:
    """sum over steps and batch of lhs^T d_out as one matmul.

    lhs [t, b, k]; d_out [t, b, g*h] or a tuple of g gates [t, b, h] for w [k, g, h] (g = 1:
    w [k, h]).
    """
    acc = accumulation_dtype(lhs.dtype)
    d_out = jnp.concatenate(d_out, axis=-1) if isinstance(d_out, (tuple, list)) else d_out
    lhs = lhs.reshape(-1, lhs.shape[-1]).astype(acc)
    grad = lhs.T @ d_out.reshape(lhs.shape[0], -1).astype(acc)
    return grad.reshape(w.shape).astype(w.dtype)


@functools.lru_cache(maxsize=None, typed=True)  # typed: unroll=True is not unroll=1
def fused_steps(cell, unroll):
    """`scan_steps` with a custom VJP whose weight gradients are one matmul over all steps.

    Forward saves, per step, the previous carry and every (state, state @ W) product the step
    makes through `matmul`. Backward scans in reverse, replaying each step with the saved
    products (so no recurrent matmul is recomputed) to get d carry, d xp_t, the gradients of
    the element-wise params, and d(state @ W); after the loop, d W = sum_t state_t^T d(...)_t
    is one matmul per weight, pulled back to the params pytree.
    """

    def weights_used(params, carry, xp):
        """The weights the step multiplies by, as functions of params (the rest is dead code)."""
        used = []

        def record(lhs, w):
            used.append(w.astype(lhs.dtype))
            return gate_matmul(lhs, w)

        _masked_step(cell, params, carry, jax.tree.map(lambda a: a[0], xp), None, None, matmul=record)
        return used

    def forward(params, carry, xp, mask, resets):
        def body(c, inp):
            xp_t, mask_t, reset_t = inp
            products = []

            def record(lhs, w):
                out = gate_matmul(lhs, w)
                products.append((lhs, out))
                return out

            new_c, y = _masked_step(cell, params, c, xp_t, mask_t, reset_t, matmul=record)
            return new_c, (y, c, products)

        carry, (ys, carries, products) = jax.lax.scan(body, carry, (xp, mask, resets), unroll=unroll)
        return (carry, ys), (params, carry, xp, mask, resets, carries, products)

    @jax.custom_vjp
    def steps(params, carry, xp, mask, resets):
        return scan_steps(cell, params, carry, xp, mask, resets, unroll=unroll)

    def steps_bwd(saved, cotangents):
        params, final_carry, xp, mask, resets, carries, products = saved
        d_carry, d_ys = cotangents
        outs = [out for _, out in products]
        leaves, treedef = jax.tree.flatten(params)
        first = lambda tree: jax.tree.map(lambda a: a[0], tree)  # noqa: E731
        # Only the leaves the step uses outside `matmul` (biases, peepholes, norms) get their
        # gradient inside the loop; the weights get theirs from one matmul after it.
        looped = _leaves_used_outside_matmul(cell, params, first(carries), first(xp), first(outs))

        def replay(c, xp_t, looped_leaves, outs_t, mask_t, reset_t):
            full = list(leaves)
            for i, leaf in zip(looped, looped_leaves):
                full[i] = leaf
            saved_outs = iter(outs_t)
            matmul = lambda lhs, w: _replayed(lhs, next(saved_outs), w.astype(lhs.dtype))  # noqa: E731
            return _masked_step(cell, jax.tree.unflatten(treedef, full), c, xp_t, mask_t, reset_t, matmul=matmul)

        def body(acc, inp):
            d_c, d_p = acc
            c, xp_t, mask_t, reset_t, outs_t, d_y = inp
            _, pullback = jax.vjp(lambda c, x, p, o: replay(c, x, p, o, mask_t, reset_t), c, xp_t,
                                  [leaves[i] for i in looped], outs_t)
            d_c, d_x, d_p_t, d_outs = pullback((d_c, d_y))
            return (d_c, [a + b for a, b in zip(d_p, d_p_t)]), (d_x, d_outs)

        zeros = [jnp.zeros_like(leaves[i]) for i in looped]
        (d_carry0, d_looped), (d_xp, d_outs) = jax.lax.scan(
            body, (d_carry, zeros), (carries, xp, mask, resets, outs, d_ys), reverse=True, unroll=unroll
        )
        used, pullback = jax.vjp(lambda p: weights_used(p, final_carry, xp), params)
        d_used = [_weight_grad(lhs, d_out, w) for (lhs, _), d_out, w in zip(products, d_outs, used)]
        (d_weights,) = pullback(d_used)
        d_leaves = jax.tree.leaves(d_weights)
        for i, d in zip(looped, d_looped):
            d_leaves[i] = d_leaves[i] + d
        return jax.tree.unflatten(treedef, d_leaves), d_carry0, d_xp, None, None

    steps.defvjp(forward, steps_bwd)
    return steps


@functools.lru_cache(maxsize=None, typed=True)
def analytic_steps(cell, unroll):
    """`scan_steps` with a custom VJP from the cell's own `step_residuals`/`step_backward`.

    Forward saves each step's residuals (gate activations and the recurrent matmuls' left
    operands); backward scans in reverse through `step_backward` with no recomputation, and
    each recurrent weight's gradient is one matmul over all steps after the loop. A masked
    step (padding) passes d carry through unchanged and gets zero cotangents; a reset step
    started from zeros, so nothing flows to the carry before it.
    """

    def forward(params, carry, xp, mask, resets):
        def body(c, inp):
            xp_t, mask_t, reset_t = inp
            start = c if reset_t is None else select(reset_t, jax.tree.map(jnp.zeros_like, c), c)
            new_c, y, res = cell.step_residuals(params, start, xp_t)
            new_c, y = _apply_mask(mask_t, new_c, c, y)
            return new_c, (y, res)

        carry, (ys, residuals) = jax.lax.scan(body, carry, (xp, mask, resets), unroll=unroll)
        return (carry, ys), (params, residuals, mask, resets)

    @jax.custom_vjp
    def steps(params, carry, xp, mask, resets):
        return scan_steps(cell, params, carry, xp, mask, resets, unroll=unroll)

    def steps_bwd(saved, cotangents):
        params, residuals, mask, resets = saved
        d_carry, d_ys = cotangents

        def body(d_c, inp):
            res_t, mask_t, reset_t, d_y = inp
            # Padded steps (mask False) passed the carry through and output zero.
            zeros = jax.tree.map(jnp.zeros_like, d_c)
            d_new, d_y = (d_c, d_y) if mask_t is None else _apply_mask(mask_t, d_c, zeros, d_y)
            grads = cell.step_backward(params, res_t, d_new, d_y)
            d_prev = grads.d_carry
            if reset_t is not None:
                d_prev = select(reset_t, zeros, d_prev)
            if mask_t is not None:
                d_prev = jax.tree.map(jnp.add, d_prev, select(mask_t, zeros, d_c))
            # A weight whose d_out is D_XP (the step's d xp itself) is stacked once, as d xp: None here.
            d_weights = {name: (lhs, None if d_out is D_XP else d_out) for name, (lhs, d_out) in grads.d_weights.items()}
            return d_prev, (grads.d_xp, d_weights, grads.d_others)

        d_carry0, (d_xp, d_weights, d_others) = jax.lax.scan(
            body, d_carry, (residuals, mask, resets, d_ys), reverse=True, unroll=unroll
        )
        d_params = jax.tree.map(jnp.zeros_like, params)
        for name, (lhs, d_out) in d_weights.items():
            d_params[name] = _weight_grad(lhs, d_xp if d_out is None else d_out, params[name])
        for name, d in d_others.items():
            total = jnp.sum(d.astype(accumulation_dtype(d.dtype)), axis=0)
            d_params[name] = d_params[name] + total.astype(params[name].dtype)
        xp = jax.eval_shape(lambda p: cell.project(p, jnp.zeros((1, cell.input_size), d_ys.dtype)), params)
        widths = [a.shape[-1] for a in jax.tree.leaves(xp)]
        if isinstance(d_xp, jax.Array) and len(widths) > 1:  # flat: split like xp
            parts = jnp.split(d_xp, np.cumsum(widths)[:-1].tolist(), axis=-1)
            d_xp = jax.tree.unflatten(jax.tree.structure(xp), parts)
        return d_params, d_carry0, d_xp, None, None

    steps.defvjp(forward, steps_bwd)
    return steps


def _leaves_used_outside_matmul(cell, params, carry, xp_t, outs_t) -> list[int]:
    """Indices of the params leaves one step's outputs depend on when every `matmul` returns
    its saved product, depending on its left operand but not on the weight: a forward
    data-flow walk over the step's jaxpr (traced only, never run)."""
    leaves, treedef = jax.tree.flatten(params)

    def step(*leaves):
        saved = iter(outs_t)
        matmul = lambda lhs, w: jax.tree.map(lambda o: o + jnp.sum(lhs).astype(o.dtype), next(saved))  # noqa: E731
        return cell.step(jax.tree.unflatten(treedef, list(leaves)), carry, xp_t, matmul=matmul)

    jaxpr = jax.make_jaxpr(step)(*leaves).jaxpr
    sources = {v: {i} for i, v in enumerate(jaxpr.invars)}
    for eqn in jaxpr.eqns:  # a nested call counts as depending on all its inputs (conservative)
        deps = set().union(*(sources.get(v, set()) for v in eqn.invars if not isinstance(v, jax.extend.core.Literal)))
        for v in eqn.outvars:
            sources[v] = deps
    reached = set().union(*(sources.get(v, set()) for v in jaxpr.outvars if not isinstance(v, jax.extend.core.Literal)))
    return sorted(reached)
