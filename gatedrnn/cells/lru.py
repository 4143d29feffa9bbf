"""The Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long Sequences")."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from gatedrnn.cells.base import LinearCell, Params, accumulation_dtype, expand
from gatedrnn.validation import ConfigError, check_non_negative, check_positive


def complex_dtype(dtype):
    """The complex dtype of a state computed in `dtype`: complex128 for float64, else complex64."""
    return jnp.dtype(jnp.complex128) if accumulation_dtype(dtype) == jnp.float64 else jnp.dtype(jnp.complex64)


@dataclasses.dataclass(frozen=True)
class LRU(LinearCell):
    """Linear Recurrent Unit: a complex diagonal linear recurrence with a real readout.

      lambda = exp(-exp(nu_log) + i exp(theta_log))          [n] complex, |lambda| < 1
      gamma  = exp(gamma_log)                                [n], init sqrt(1 - |lambda|^2)
      h_t = lambda * h_{t-1} + gamma * ((B_re + i B_im) x_t)  complex state [n]
      y_t = Re((C_re + i C_im) h_t) + D x_t                  [h]

    Params (all real, so optax and dtype casting treat them as any other float leaves):
      nu_log, theta_log, gamma_log [n]; B_re, B_im [n, d]; C_re, C_im [h, n]; D [h] when
      d == h (the paper's element-wise skip D * x), else D [d, h] (a dense skip x @ D, an
      extension: the paper's D is diagonal because its LRU maps h features to h).

    Init as the paper's Appendix A code: |lambda| uniform on the ring [r_min, r_max] in the
    complex plane (u1, u2 ~ U[0, 1): nu = -log(u1 (r_max^2 - r_min^2) + r_min^2) / 2,
    theta = max_phase u2); B_re, B_im ~ N(0, 1 / (2 d)); C_re, C_im ~ N(0, 1 / n);
    diagonal D ~ N(0, 1) (dense D ~ N(0, 1 / d), the same output variance). u1 and u2 are
    kept >= the smallest normal float so that no log is -inf, and gamma_log is computed as
    log(-expm1(-2 nu)) / 2 (the same value, finite when |lambda| rounds to 1).

    The state is complex: complex64 for float32 and bfloat16 compute (lambda, gamma and the
    scan in float32 whatever the compute dtype), complex128 for float64. The matmuls with
    B, C and D run in the compute dtype. The output is real, in the compute dtype.

      cell = LRU(input_size=8, hidden_size=16, r_min=0.9, r_max=0.999, max_phase=math.pi / 10)
      ys, h = gatedrnn.scan_cell(cell, cell.init(jax.random.key(0)), xs)  # h complex64 [b, 16]

    state_size: n, the number of complex state units (default hidden_size).
    r_min, r_max: the ring's radii, 0 <= r_min < r_max <= 1. max_phase: > 0 (paper: 2 pi;
    pi / 10 for its long-range tasks).
    """

    state_size: int | None = None
    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 2 * math.pi

    def __post_init__(self):
        super().__post_init__()
        if self.state_size is None:
            object.__setattr__(self, "state_size", self.hidden_size)  # LRU(d, h) == LRU(d, h, state_size=h)
        check_positive("LRU.state_size", self.state_size)
        check_non_negative("LRU.r_min", self.r_min)
        check_positive("LRU.max_phase", self.max_phase, integer=False)
        if not isinstance(self.r_max, (int, float)) or isinstance(self.r_max, bool) or not self.r_min < self.r_max <= 1:
            raise ConfigError(f"LRU.r_max must be a number with r_min={self.r_min!r} < r_max <= 1, got {self.r_max!r}")

    @property
    def state_dtype(self):
        """complex64 (float32 and bfloat16 compute); `initial_carry` gives complex128 for float64."""
        return jnp.dtype(jnp.complex64)

    @property
    def diagonal_skip(self) -> bool:
        """Whether D is the paper's diagonal [h] (input_size == hidden_size) or a dense [d, h]."""
        return self.input_size == self.hidden_size

    def initial_carry(self, batch_shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jnp.zeros((*batch_shape, self.state_size), complex_dtype(dtype))

    def init(self, key, dtype=jnp.float32) -> Params:
        d, h, n = self.input_size, self.hidden_size, self.state_size
        k1, k2, kbr, kbi, kcr, kci, kd = jax.random.split(key, 7)
        tiny = jnp.finfo(dtype).tiny
        u1 = jnp.maximum(jax.random.uniform(k1, (n,), dtype), tiny)
        u2 = jnp.maximum(jax.random.uniform(k2, (n,), dtype), tiny)
        nu = -0.5 * jnp.log(u1 * (self.r_max**2 - self.r_min**2) + self.r_min**2)
        normal = lambda k, shape, var: jax.random.normal(k, shape, dtype) * math.sqrt(var)  # noqa: E731
        return {
            "nu_log": jnp.log(nu),
            "theta_log": jnp.log(self.max_phase * u2),
            "gamma_log": 0.5 * jnp.log(-jnp.expm1(-2 * nu)),  # log sqrt(1 - |lambda|^2)
            "B_re": normal(kbr, (n, d), 1 / (2 * d)),
            "B_im": normal(kbi, (n, d), 1 / (2 * d)),
            "C_re": normal(kcr, (h, n), 1 / n),
            "C_im": normal(kci, (h, n), 1 / n),
            "D": normal(kd, (h,), 1.0) if self.diagonal_skip else normal(kd, (d, h), 1 / d),
        }

    def diag_lambda(self, params: Params) -> jax.Array:
        """lambda [n], complex, computed in at least float32 from the (possibly bfloat16) params."""
        acc = accumulation_dtype(params["nu_log"].dtype)
        nu, theta = jnp.exp(params["nu_log"].astype(acc)), jnp.exp(params["theta_log"].astype(acc))
        return jnp.exp(jax.lax.complex(-nu, theta))

    def project(self, params: Params, xs: jax.Array):
        """xs [..., d] -> (gamma * B x complex [..., n], x [..., d]), the input-only terms."""
        n = self.state_size
        w = jnp.concatenate([params["B_re"], params["B_im"]], axis=0).astype(xs.dtype)  # [2n, d]
        bx = (xs @ w.T).astype(accumulation_dtype(xs.dtype))  # [..., 2n]
        gamma = expand(jnp.exp(params["gamma_log"].astype(bx.dtype)), bx[..., :n])
        return jax.lax.complex(gamma * bx[..., :n], gamma * bx[..., n:]), xs

    def linear_recurrence(self, params: Params, xp, reset=None):
        """(lambda [1, ..., 1, n], gamma * B x [..., n]): h_t = lambda * h_{t-1} + gamma * B x_t."""
        bx, _ = xp
        return expand(self.diag_lambda(params), bx), bx

    def readout(self, params: Params, h: jax.Array, xp) -> jax.Array:
        """y = Re(C h) + D x = h_re @ C_re^T - h_im @ C_im^T + D x, [..., hidden] in x's dtype."""
        _, x = xp
        c_re, c_im = params["C_re"].astype(x.dtype), params["C_im"].astype(x.dtype)
        y = jnp.real(h).astype(x.dtype) @ c_re.T - jnp.imag(h).astype(x.dtype) @ c_im.T
        d = params["D"].astype(x.dtype)
        return y + (x * expand(d, x) if self.diagonal_skip else x @ d)
