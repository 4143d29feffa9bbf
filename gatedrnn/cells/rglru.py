"""RG-LRU, the real-gated linear recurrent unit of Griffin and Hawk (De et al. 2024).

Equations (h the hidden size, n heads, x_t after the optional input projection, all [h]):

  x_t   <- W_in x_t + b_in                      (only with an input projection, see RGLRU)
  r_t    = sigmoid(W_a x_t + b_a)                recurrence gate  (block-diagonal W_a)
  i_t    = sigmoid(W_x x_t + b_x)                input gate       (block-diagonal W_x)
  log a_t = -c * r_t * softplus(Lambda)          i.e. a_t = sigmoid(-Lambda)^(c r_t), c = 8
  h_t    = a_t * h_{t-1} + sqrt(1 - a_t^2) * (i_t * x_t)
  y_t    = h_t

At a reset (a document boundary; RecurrentGemma's segment_pos == 0) the engine sets a_t = 0
and the multiplier sqrt(1 - a_t^2) becomes 1, so h_t = i_t * x_t there. The square root's
derivative is bounded by `max_sqrt_gradient` (`sqrt_bound_derivative`), so that a_t = 1 (in
bfloat16, r_t * softplus(Lambda) near 0) gives a finite gradient instead of inf/NaN.

This follows RecurrentGemma's `recurrentgemma.jax.layers.RGLRU` (only_real=True) and equals
it with copied params (tests/cells/test_rglru.py); its params are RecurrentGemma's tree.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gatedrnn.cells.base import LinearCell, Params, expand, projects_input
from gatedrnn.validation import ConfigError, check_positive


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def sqrt_bound_derivative(x: jax.Array, max_gradient: float) -> jax.Array:
    """sqrt(x), whose derivative 1 / (2 sqrt(x)) is capped at `max_gradient`.

    The backward evaluates sqrt's derivative at max(x, 1 / (4 max_gradient^2)), as
    RecurrentGemma's `sqrt_bound_derivative` does; where x is above that it is sqrt's own.
    """
    del max_gradient
    return jnp.sqrt(x)


def _sqrt_fwd(x, max_gradient):
    return jnp.sqrt(x), x


def _sqrt_bwd(max_gradient, x, g):
    x_pre = jnp.maximum(x, 1 / (4 * max_gradient**2))
    return (g / (2 * jnp.sqrt(x_pre)),)


sqrt_bound_derivative.defvjp(_sqrt_fwd, _sqrt_bwd)


def block_diagonal(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """x [..., n * k] -> [..., n * k]: head j of x (contiguous features j*k..(j+1)*k) times
    w[j] [k, k] plus b[j] [k], as RecurrentGemma's `BlockDiagonalLinear`."""
    n, k, _ = w.shape
    xh = x.reshape(*x.shape[:-1], n, k)
    y = jnp.einsum("...hi,hij->...hj", xh, w.astype(x.dtype)) + expand(b, xh)
    return y.reshape(x.shape)


def rnn_real_param_init(key: jax.Array, shape: tuple[int, ...], min_rad: float, max_rad: float,
                        dtype=jnp.float32, eps: float = 1e-8) -> jax.Array:
    """Lambda with exp(-softplus(Lambda))^2 ~ U(min_rad^2, max_rad^2) (+ eps): uniform in the
    ring's area, as RecurrentGemma's `rnn_real_param_init` (softplus transform)."""
    unif = jax.random.uniform(key, shape)
    a_real = 0.5 * jnp.log(unif * (max_rad**2 - min_rad**2) + min_rad**2 + eps)  # log |a| at r = 1, c = 1
    return jnp.log(jnp.exp(-a_real) - 1.0).astype(dtype)  # softplus^-1(-a_real)


class RGLRUInputs(NamedTuple):
    """What `RGLRU.project` returns (leaves [*leading, h]): everything input-only."""

    x: jax.Array  # i_t * x_t, the gated input (before the sqrt(1 - a^2) normalisation)
    log_a: jax.Array  # log a_t = -c * r_t * softplus(Lambda)  (<= 0)


@dataclasses.dataclass(frozen=True)
class RGLRU(LinearCell):
    """The RG-LRU (De et al. 2024) as a linear cell; equations in the module docstring.

    Args:
      input_size: d. hidden_size: h (the recurrence is width-preserving: x and h both [h]).
      num_heads: n, the diagonal blocks of the gate weights; must divide h.
      c: the gate temperature (8 in the paper and RecurrentGemma); > 0.
      min_rad, max_rad: Lambda's init ring, 0 < min_rad < max_rad < 1: at r_t = 1,
        a_t^(1/c) = exp(-softplus(Lambda)) has its square uniform in [min_rad^2, max_rad^2],
        so a_t lies in [min_rad^c, max_rad^c].
      input_projection: None: a dense projection x <- W_in x + b_in only when
        input_size != hidden_size; True / False force it (False needs d == h).
      max_sqrt_gradient: the bound on d sqrt(u) / du in the normalisation (1000 as RecurrentGemma).
      w_init_variance_scale: the gate weights' init variance scale (RecurrentGemma's).

    Params (RecurrentGemma's RGLRU param tree, plus the optional projection):
      a_param          [h]            Lambda: log a_t = -c * r_t * softplus(a_param)
      a_gate/w         [n, h/n, h/n]  r_t's block-diagonal weight (head j maps x[j*k:(j+1)*k])
      a_gate/b         [n, h/n]
      input_gate/w     [n, h/n, h/n]  i_t's block-diagonal weight
      input_gate/b     [n, h/n]
      input/w          [d, h]         only with the input projection
      input/b          [h]
    Init: gate weights N(0, w_init_variance_scale / h) (flax's variance_scaling fan_in on the
    [n, k, k] kernel counts n * k = h inputs, as recurrentgemma.jax does; recurrentgemma.torch
    uses / k), gate biases 0, a_param by `rnn_real_param_init`, input/w N(0, 1 / d), input/b 0.

    Example:
      cell = RGLRU(8, 8, num_heads=2)
      ys, h = gatedrnn.scan_cell(cell, cell.init(jax.random.key(0)), xs)   # xs [b, t, 8]
    """

    num_heads: int = 1
    c: float = 8.0
    min_rad: float = 0.9
    max_rad: float = 0.999
    input_projection: bool | None = None
    max_sqrt_gradient: float = 1000.0
    w_init_variance_scale: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        check_positive("RGLRU.num_heads", self.num_heads)
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"RGLRU.num_heads={self.num_heads} must divide hidden_size={self.hidden_size}")
        check_positive("RGLRU.c", self.c, integer=False)
        check_positive("RGLRU.max_sqrt_gradient", self.max_sqrt_gradient, integer=False)
        check_positive("RGLRU.w_init_variance_scale", self.w_init_variance_scale, integer=False)
        rads = (self.min_rad, self.max_rad)
        if not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in rads) or not 0 < self.min_rad < self.max_rad < 1:
            raise ConfigError(f"RGLRU needs 0 < min_rad < max_rad < 1, got min_rad={self.min_rad!r}, max_rad={self.max_rad!r}")
        projects_input("RGLRU", self.input_projection, self.input_size, self.hidden_size)  # validates

    @property
    def projects_input(self) -> bool:
        """Whether x passes through the dense input projection first."""
        return projects_input("RGLRU", self.input_projection, self.input_size, self.hidden_size)

    def init(self, key, dtype=jnp.float32) -> Params:
        k_lambda, k_a, k_x, k_in = jax.random.split(key, 4)
        h, n = self.hidden_size, self.num_heads
        k = h // n
        std = math.sqrt(self.w_init_variance_scale / h)
        params = {
            "a_param": rnn_real_param_init(k_lambda, (h,), self.min_rad, self.max_rad, dtype),
            "a_gate": {"w": std * jax.random.normal(k_a, (n, k, k), dtype), "b": jnp.zeros((n, k), dtype)},
            "input_gate": {"w": std * jax.random.normal(k_x, (n, k, k), dtype), "b": jnp.zeros((n, k), dtype)},
        }
        if self.projects_input:
            d = self.input_size
            params["input"] = {"w": jax.random.normal(k_in, (d, h), dtype) / math.sqrt(d), "b": jnp.zeros((h,), dtype)}
        return params

    def project(self, params, xs) -> RGLRUInputs:
        """xs [..., d] -> RGLRUInputs(x = i * x, log_a), each [..., h]."""
        if self.projects_input:
            xs = xs @ params["input"]["w"].astype(xs.dtype)
            xs = xs + expand(params["input"]["b"], xs)
        gate_x = jax.nn.sigmoid(block_diagonal(xs, params["input_gate"]["w"], params["input_gate"]["b"]))
        gate_a = jax.nn.sigmoid(block_diagonal(xs, params["a_gate"]["w"], params["a_gate"]["b"]))
        softplus = jax.nn.softplus(params["a_param"].astype(xs.dtype))
        log_a = -self.c * gate_a * expand(softplus, gate_a)
        return RGLRUInputs(xs * gate_x, log_a)

    def linear_recurrence(self, params, xp: RGLRUInputs, reset=None):
        """a = exp(log_a); b = sqrt(1 - a^2) * (i x), with multiplier 1 where reset [*leading] is True."""
        a = jnp.exp(xp.log_a)
        multiplier = sqrt_bound_derivative(1 - jnp.exp(2 * xp.log_a), self.max_sqrt_gradient)
        if reset is not None:
            multiplier = jnp.where(reset[..., None], jnp.ones_like(multiplier), multiplier)
        return a, xp.x * multiplier.astype(xp.x.dtype)
