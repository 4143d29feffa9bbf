"""S6, Mamba's selective state space (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with
Selective State Spaces", Sec. 3.2 and Algorithm 2), as a linear cell.

Equations (D = hidden_size channels, N = ssm_state_size, R = dt_rank; x_t [D] after the optional
input projection; every channel c has its own N-dimensional state h_t[c] [N]):

  x_t     <- W_in x_t                           (only with an input projection, see S6)
  Delta_t  = softplus(W_dt (W_x_dt x_t) + b_dt)  [D]   (a rank-R projection, Mamba's dt_proj)
  B_t      = W_B x_t,  C_t = W_C x_t             [N]   (input-dependent: the selection)
  A        = -exp(A_log)                         [D, N] real diagonal
  h_t[c]   = exp(Delta_t[c] A[c]) * h_{t-1}[c] + Bbar_t[c] x_t[c]                  [N]
  y_t[c]   = sum_n h_t[c, n] C_t[n] + D[c] x_t[c]

  Bbar_t[c] = Delta_t[c] B_t                                     (discretization="euler")
            = (Delta A)^-1 (exp(Delta A) - 1) Delta B_t           (discretization="zoh")
            = expm1(Delta_t[c] A[c]) / A[c] * B_t                 (as computed: A < 0, no 0/0)

"euler" is what the official reference `selective_scan_ref` (state-spaces/mamba,
mamba_ssm/ops/selective_scan_interface.py) and the CUDA kernel compute; "zoh" is the paper's
zero-order hold (its eq. 4), under which Theorem 1 holds: with N = 1, A = -1, B = 1 the
recurrence is the gated one g_t = sigmoid(s(x_t)), h_t = (1 - g_t) h_{t-1} + g_t x_t.

The cell's state is h_t flattened to [*batch, D * N] (channel-major: h[..., c * N + n]), so
`state_size` = D * N. A reset (the engine's a_t = 0) makes h_t = Bbar_t x_t, as the official
reference does at a `cu_seqlens` boundary. Mamba's block around S6 (the causal conv, the SiLU
gate z, the output projection) is not part of the cell.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gatedrnn.cells.base import LinearCell, Params, expand, projects_input, uniform
from gatedrnn.validation import ConfigError, check_choice, check_positive

DISCRETIZATIONS = ("euler", "zoh")
DT_INIT_FLOOR = 1e-4  # the official dt_init_floor: softplus(b_dt) is at least this at init


def inverse_softplus(y: jax.Array) -> jax.Array:
    """softplus^-1(y) = y + log(-expm1(-y)) for y > 0, as the official dt_init computes it."""
    return y + jnp.log(-jnp.expm1(-y))


class S6Inputs(NamedTuple):
    """What `S6.project` returns (leaves [*leading, ...]): everything input-only."""

    x: jax.Array  # [..., D] the (projected) input
    delta: jax.Array  # [..., D] Delta_t = softplus(W_dt (W_x_dt x_t) + b_dt)
    B: jax.Array  # [..., N]
    C: jax.Array  # [..., N]


@dataclasses.dataclass(frozen=True)
class S6(LinearCell):
    """Mamba's selective SSM S6 (Gu & Dao 2023) as a linear cell; equations in the module docstring.

    Args:
      input_size: d. hidden_size: D, the channels (x and y are both [D]).
      ssm_state_size: N, the state per channel (Mamba's d_state, 16); the cell's `state_size`
        is D * N.
      dt_rank: R, the rank of Delta's projection; None: ceil(D / 16), as Mamba's "auto".
      dt_min, dt_max: Delta's init range, 0 < dt_min <= dt_max: softplus(b_dt) is log-uniform in
        [dt_min, dt_max] (floored at 1e-4), as the official dt_init.
      discretization: "zoh" (default; the paper's eq. 4) or "euler" (Bbar = Delta B, the official
        selective_scan_ref and kernel).
      input_projection: None: a dense projection x <- W_in x (no bias, as Mamba's in_proj) only
        when input_size != hidden_size; True / False force it (False needs d == D).

    Params (Mamba's names):
      A_log        [D, N]       A = -exp(A_log)
      D            [D]          the skip
      x_proj/w     [D, R + 2N]  x -> (W_x_dt x, B, C), no bias (Mamba's x_proj)
      dt_proj/w    [R, D]       dt_proj/b [D]: Delta = softplus(dt_proj(W_x_dt x))
      input/w      [d, D]       only with the input projection
    Init (the official Mamba): A_log = log(1..N) per channel (S4D-real, A = -(1..N)); D = 1;
    x_proj/w and input/w U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's Linear); dt_proj/w
    U(-R^-0.5, R^-0.5) (dt_init="random"); dt_proj/b = softplus^-1(dt), dt log-uniform in
    [dt_min, dt_max] clamped to >= 1e-4.

    >>> cell = S6(3, 4, ssm_state_size=2)
    >>> params = cell.init(jax.random.key(0))
    >>> h, y = cell.step(params, cell.initial_carry((5,)), cell.project(params, jnp.ones((5, 3))))
    >>> h.shape, y.shape, cell.effective_dt_rank
    ((5, 8), (5, 4), 1)
    """

    ssm_state_size: int = 16
    dt_rank: int | None = None
    dt_min: float = 0.001
    dt_max: float = 0.1
    discretization: str = "zoh"
    input_projection: bool | None = None

    def __post_init__(self):
        super().__post_init__()
        check_positive("S6.ssm_state_size", self.ssm_state_size)
        if self.dt_rank is not None:
            check_positive("S6.dt_rank", self.dt_rank)
        check_positive("S6.dt_min", self.dt_min, integer=False)
        check_positive("S6.dt_max", self.dt_max, integer=False)
        if self.dt_min > self.dt_max:
            raise ConfigError(f"S6 needs dt_min <= dt_max, got dt_min={self.dt_min!r}, dt_max={self.dt_max!r}")
        check_choice("S6.discretization", self.discretization, DISCRETIZATIONS)
        projects_input("S6", self.input_projection, self.input_size, self.hidden_size)  # validates

    @property
    def state_size(self) -> int:
        """D * N: the per-channel states h_t [D, N], flattened."""
        return self.hidden_size * self.ssm_state_size

    @property
    def effective_dt_rank(self) -> int:
        """R: dt_rank, or ceil(D / 16) when it is None."""
        return self.dt_rank if self.dt_rank is not None else math.ceil(self.hidden_size / 16)

    @property
    def projects_input(self) -> bool:
        """Whether x passes through the dense input projection first."""
        return projects_input("S6", self.input_projection, self.input_size, self.hidden_size)

    def init(self, key, dtype=jnp.float32) -> Params:
        k_x, k_dtw, k_dt, k_in = jax.random.split(key, 4)
        d, n, r = self.hidden_size, self.ssm_state_size, self.effective_dt_rank
        log_dt = jax.random.uniform(k_dt, (d,), jnp.float32, math.log(self.dt_min), math.log(self.dt_max))
        dt = jnp.maximum(jnp.exp(log_dt), DT_INIT_FLOOR)
        params = {
            "A_log": jnp.log(jnp.tile(jnp.arange(1, n + 1, dtype=jnp.float32), (d, 1))).astype(dtype),
            "D": jnp.ones((d,), dtype),
            "x_proj": {"w": uniform(k_x, (d, r + 2 * n), 1.0 / math.sqrt(d), dtype)},
            "dt_proj": {"w": uniform(k_dtw, (r, d), r**-0.5, dtype), "b": inverse_softplus(dt).astype(dtype)},
        }
        if self.projects_input:
            params["input"] = {"w": uniform(k_in, (self.input_size, d), 1.0 / math.sqrt(self.input_size), dtype)}
        return params

    def project(self, params, xs) -> S6Inputs:
        """xs [..., d] -> S6Inputs(x [..., D], delta [..., D], B [..., N], C [..., N])."""
        if self.projects_input:
            xs = xs @ params["input"]["w"].astype(xs.dtype)
        r, n = self.effective_dt_rank, self.ssm_state_size
        x_dbl = xs @ params["x_proj"]["w"].astype(xs.dtype)
        dt, b, c = x_dbl[..., :r], x_dbl[..., r:r + n], x_dbl[..., r + n:]
        dt = dt @ params["dt_proj"]["w"].astype(xs.dtype)
        delta = jax.nn.softplus(dt + expand(params["dt_proj"]["b"], dt))
        return S6Inputs(xs, delta, b, c)

    def _flat(self, v: jax.Array) -> jax.Array:
        return v.reshape(*v.shape[:-2], self.state_size)

    def linear_recurrence(self, params, xp: S6Inputs, reset=None):
        """(a, b), each [..., D * N]: a = exp(Delta A), b = Bbar x (flattened channel-major).

        A reset needs nothing here: the engine's a_t = 0 gives h_t = Bbar_t x_t, the official
        reference's restart at a cu_seqlens boundary.
        """
        a_mat = -jnp.exp(params["A_log"].astype(xp.x.dtype))  # [D, N]
        a_mat = a_mat.reshape((1,) * (xp.delta.ndim - 1) + a_mat.shape)
        delta_a = xp.delta[..., None] * a_mat  # [..., D, N]
        if self.discretization == "euler":
            b_bar = xp.delta[..., None] * xp.B[..., None, :]
        else:  # (Delta A)^-1 (exp(Delta A) - 1) Delta B = expm1(Delta A) / A * B
            b_bar = jnp.expm1(delta_a) / a_mat * xp.B[..., None, :]
        return self._flat(jnp.exp(delta_a)), self._flat(b_bar * xp.x[..., None])

    def readout(self, params, h, xp: S6Inputs):
        """y [..., D] = sum_n h[..., D, n] C[..., n] + D * x."""
        h = h.reshape(*h.shape[:-1], self.hidden_size, self.ssm_state_size)
        y = jnp.einsum("...dn,...n->...d", h, xp.C.astype(h.dtype))
        return y + expand(params["D"], y) * xp.x.astype(y.dtype)
