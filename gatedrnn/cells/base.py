"""The cell contract and the small helpers every cell shares.

Glossary of dimension letters used in docstrings:
  b batch, t time, d input features, h hidden units, g gates, p projection size.

A cell is a frozen dataclass of hyper-parameters plus four pure functions:

  init(key, dtype)                 -> params           (a pytree of arrays)
  initial_carry(batch_shape, dtype) -> carry            (zeros)
  project(params, xs)              -> xp               ([..., d] -> pytree of [..., h]; time-parallel)
  step(params, carry, xp_t)        -> (carry, y_t)      (one time step; a `lax.scan` body)

`step` takes an optional `matmul=gate_matmul` and routes every product of a state with a
weight matrix through it (`matmul(h, params["r"])`), so that the engine can replay the step
and compute each weight's gradient over all steps as one matmul.

A cell may also give the engine an analytic backward for its step (the LSTM and GRU do):
`analytic_backward` is True and

  step_residuals(params, carry, xp_t)                -> (carry, y_t, residuals)
  step_backward(params, residuals, d_carry, d_y_t)   -> StepGrads(d_carry, d_xp, d_weights, d_others)

with d_carry = d carry_{t-1}; d_xp = d xp_t (xp's tree, or one flat [b, sum of xp's widths]
array); d_weights = {weight: (lhs [b, k], d_out [b, g*h])} for each recurrent product
lhs @ weight, whose gradient the engine computes as one matmul sum_t lhs_t^T d_out_t over all
steps (d_out = D_XP says "the same array as d_xp", which is then stacked once, not twice); and
d_others = {param: d param_t} for the step's other params (summed over the batch in
`accumulation_dtype`). The fused VJP then saves the residuals (gate activations) in the
forward pass instead of replaying the step backwards.

A cell whose recurrence is linear in the state (its gates see the input only) subclasses
`LinearCell` and gives the engine its coefficients instead of a step:

  linear_recurrence(params, xp, reset=None) -> (a, b)       h_t = a_t * h_{t-1} + b_t
  log_recurrence(params, xp, reset=None)    -> (log a, log b)  (`log_space` cells: a, b > 0)
  readout(params, h, xp)                    -> y              (element-wise over leading axes)

on every step at once (leaves [t, b, ...]), so the engine (`gatedrnn.scan`) can solve the whole
sequence with an associative scan (mode="parallel") as well as step by step. The carry is the
state h alone ([*batch, state_size], complex for the LRU); `step` is derived from these and
agrees with them by construction.

A cell with a matrix memory (the mLSTM: per head, C_t = f_t C_{t-1} + i_t k_t v_t^T with scalar
gates from the input) subclasses `MatrixMemoryCell` and declares, for every step at once,

  memory_inputs(params, xp) -> MemoryInputs(q, k, v, log_i, log_f)   (leaves [*leading, heads, ...])
  readout(params, h, xp)    -> y     (h = C_t q_t / max(|n_t^T q_t|, 1), the normalised memory read)

so the engine can run the recurrent step, the parallel (quadratic, decay-matrix) form or the
chunkwise form (`gatedrnn.scan.memory`); its carry is `MemoryCarry(c, n, m)` with the stabiliser m.

`project` holds every computation that depends on the input only (one matmul for all
steps), so the sequential `step` does just the recurrent work. `project` is
element-wise over leading axes: the scan engine calls it on `[time, batch, d]`.
Cells never see padding, lengths or direction: the engine (`gatedrnn.scan`) owns those.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gatedrnn.validation import ConfigError, check_positive

Params = dict[str, Any]
Carry = Any


class _SameAsDxp:
    def __repr__(self) -> str:
        return "D_XP"


D_XP = _SameAsDxp()  # a d_weights entry's d_out that is the step's d_xp itself (see StepGrads)


class StepGrads(NamedTuple):
    """What `step_backward` returns for one step (see the module docstring)."""

    d_carry: Carry  # d carry_{t-1}, the carry's tree
    d_xp: Any  # d xp_t: xp's tree, or one flat [b, sum of xp's widths] array
    d_weights: dict[str, tuple[jax.Array, Any]]  # weight -> (lhs [b, k], d_out [b, g*h] or D_XP)
    d_others: dict[str, jax.Array]  # param -> d param_t, summed over the batch


def accumulation_dtype(dtype) -> Any:
    """The dtype sums are taken in: the wider of `dtype` and float32 (bfloat16 sums in float32)."""
    dtype = jnp.dtype(dtype)
    return jnp.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else dtype  # not promote_types: strict mode refuses it


def uniform(key: jax.Array, shape: tuple[int, ...], scale: float, dtype) -> jax.Array:
    """U(-scale, scale), PyTorch's default RNN init with scale = 1/sqrt(hidden)."""
    return jax.random.uniform(key, shape, dtype, -scale, scale)


def small_init_std(dim: int) -> float:
    """sqrt(2 / (5 dim)): the std of xLSTM's official `small_init_init_` (Nguyen & Salazar 2019)."""
    return math.sqrt(2 / (5 * dim))


def expand(v: jax.Array, like: jax.Array) -> jax.Array:
    """v [...] with leading singleton axes up to like's rank and like's dtype (explicit broadcasting)."""
    return v.astype(like.dtype).reshape((1,) * (like.ndim - v.ndim) + v.shape)


def gate_matmul(x: jax.Array, w: jax.Array) -> jax.Array | tuple[jax.Array, ...]:
    """x [..., k] @ w: w [k, h] -> [..., h]; w [k, g, h] -> a tuple of g gates [..., h].

    The gates come from one [k, g*h] matmul split along its last axis (the layout XLA runs
    fastest on CPU). w is cast to x's dtype. This is also the default `matmul` of every
    cell's `step`: the scan engine passes its own (same values) to compute the weight
    gradients of all steps as one matmul.
    """
    w = w.astype(x.dtype)
    if w.ndim == 2:
        return x @ w
    k, g, h = w.shape
    return tuple(jnp.split(x @ w.reshape(k, g * h), g, axis=-1))


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float = 1e-5) -> jax.Array:
    """LayerNorm over the last axis; statistics in at least float32 whatever the compute dtype."""
    x32 = x.astype(accumulation_dtype(x.dtype))
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + eps)
    return (y * expand(scale, y) + expand(bias, y)).astype(x.dtype)


def projects_input(name: str, option: Any, input_size: int, hidden_size: int) -> bool:
    """Validates a width-preserving cell's `input_projection` option (None, True or False) and
    says whether x passes through a dense projection to hidden_size first: None -> only when
    input_size != hidden_size. One-line ConfigError for a bad value."""
    if not isinstance(option, bool) and option is not None:
        raise ConfigError(f"{name}.input_projection must be None, True or False, got {option!r}")
    if option is False and input_size != hidden_size:
        raise ConfigError(f"{name}.input_projection=False needs input_size == hidden_size, "
                          f"got {input_size} != {hidden_size}")
    return input_size != hidden_size if option is None else option


@dataclasses.dataclass(frozen=True)
class Cell:
    """Base of every cell: sizes, validation, zero carry of shape [*batch, hidden]."""

    input_size: int
    hidden_size: int

    linear = False  # True for `LinearCell`s: the recurrence is linear in the state
    matrix_memory = False  # True for `MatrixMemoryCell`s (the mLSTM): parallel and chunkwise forms

    def __post_init__(self):
        name = type(self).__name__
        check_positive(f"{name}.input_size", self.input_size)
        check_positive(f"{name}.hidden_size", self.hidden_size)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    @property
    def init_scale(self) -> float:
        return 1.0 / math.sqrt(self.hidden_size)

    def initial_carry(self, batch_shape: tuple[int, ...], dtype=jnp.float32) -> Carry:
        return jnp.zeros((*batch_shape, self.hidden_size), dtype)

    def init(self, key: jax.Array, dtype=jnp.float32) -> Params:
        raise NotImplementedError

    def project(self, params: Params, xs: jax.Array):
        raise NotImplementedError

    def step(self, params: Params, carry: Carry, xp, matmul=gate_matmul) -> tuple[Carry, jax.Array]:
        raise NotImplementedError

    @property
    def analytic_backward(self) -> bool:
        """Whether `step_residuals` and `step_backward` cover this configuration."""
        return False

    def step_residuals(self, params: Params, carry: Carry, xp) -> tuple[Carry, jax.Array, Any]:
        raise NotImplementedError(f"{type(self).__name__} has no analytic backward")

    def step_backward(self, params: Params, residuals, d_carry: Carry, d_y: jax.Array):
        raise NotImplementedError(f"{type(self).__name__} has no analytic backward")


@dataclasses.dataclass(frozen=True)
class WrappedCell(Cell):
    """Base of cells that wrap another cell (`inner`) and keep its carry and output."""

    inner: Cell = None

    @property
    def output_size(self) -> int:
        return self.inner.output_size

    def initial_carry(self, batch_shape: tuple[int, ...], dtype=jnp.float32) -> Carry:
        return self.inner.initial_carry(batch_shape, dtype)


@dataclasses.dataclass(frozen=True)
class LinearCell(Cell):
    """Base of cells whose recurrence is linear in the state: h_t = a_t * h_{t-1} + b_t.

    a_t and b_t come from the projected inputs only (`linear_recurrence`), so the engine may
    solve all steps at once with an associative scan; the output is y_t = readout(h_t, xp_t).
    Subclasses define `init`, `project`, `linear_recurrence` (and `log_recurrence` with
    `log_space = True` when a, b > 0) and, if y is not h, `readout` and `output_size`.

    reset: None, or bool [*leading] (e.g. [t, b]) True where the step starts a new segment.
    The engine already makes the state before such a step zero (a_t = 0); a cell may also
    change b_t there (the RG-LRU drops its sqrt(1 - a^2) normalisation at a reset, as
    RecurrentGemma does).
    """

    linear = True
    log_space = False  # True: the parallel engine scans (log a, log b) from `log_recurrence`

    @property
    def state_size(self) -> int:
        return self.hidden_size

    @property
    def state_dtype(self):
        """None: the state has the compute dtype; a complex cell returns e.g. jnp.complex64."""
        return None

    def initial_carry(self, batch_shape: tuple[int, ...], dtype=jnp.float32) -> Carry:
        return jnp.zeros((*batch_shape, self.state_size), self.state_dtype or dtype)

    def linear_recurrence(self, params: Params, xp, reset: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """(a, b), each [*leading, state_size] (a may broadcast against b)."""
        if self.log_space:
            log_a, log_b = self.log_recurrence(params, xp, reset)
            return jnp.exp(log_a), jnp.exp(log_b)
        raise NotImplementedError

    def log_recurrence(self, params: Params, xp, reset: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """(log a, log b) for `log_space` cells, whose a and b are positive."""
        raise NotImplementedError(f"{type(self).__name__} has no log-space recurrence")

    def readout(self, params: Params, h: jax.Array, xp) -> jax.Array:
        """y [*leading, output_size] from the state h [*leading, state_size]; default y = h."""
        return h

    def step(self, params: Params, carry: Carry, xp, matmul=gate_matmul, reset: jax.Array | None = None):
        """One step from the coefficients: h = a * h + b; y = readout(h). reset [b] bool or None."""
        a, b = self.linear_recurrence(params, xp, reset)
        if reset is not None:
            a = jnp.where(reset[..., None], 0, a)
        h = (a * carry + b).astype(carry.dtype)
        return h, self.readout(params, h, xp)


class MemoryInputs(NamedTuple):
    """What a `MatrixMemoryCell` gives the engine per step (leaves [*leading, heads, ...]).

    q is already scaled (the mLSTM's 1/sqrt(d_k)); log_i is the log of the exponential input
    gate (its pre-activation i~), log_f the log forget gate (log sigmoid(f~), or f~ itself).
    """

    q: jax.Array  # [*leading, H, dk]
    k: jax.Array  # [*leading, H, dk]
    v: jax.Array  # [*leading, H, dv]
    log_i: jax.Array  # [*leading, H]
    log_f: jax.Array  # [*leading, H]   (<= 0 for a sigmoid forget gate)


class MemoryCarry(NamedTuple):
    """The stabilised state of a matrix memory: the true C_t, n_t are c * exp(m), n * exp(m)."""

    c: jax.Array  # [*batch, H, dk, dv]
    n: jax.Array  # [*batch, H, dk]
    m: jax.Array  # [*batch, H]   the stabiliser (a running max of log gate products)


@dataclasses.dataclass(frozen=True)
class MatrixMemoryCell(Cell):
    """Base of cells with a per-head matrix memory updated by a covariance rule (the mLSTM):

      m_t = max(log f_t + m_{t-1}, log i_t)                          stabiliser
      C_t = exp(log f_t + m_{t-1} - m_t) C_{t-1} + exp(log i_t - m_t) k_t v_t^T
      n_t = exp(log f_t + m_{t-1} - m_t) n_{t-1} + exp(log i_t - m_t) k_t
      h_t = C_t^T q_t / (max(|n_t^T q_t|, exp(-m_t)) + eps)          [H, dv]
      y_t = readout(h_t, xp_t)

    (C, n kept divided by exp(m_t); h is the same for any m up to eps: it is the unstabilised
    C^T q / max(|n^T q|, 1).) The recurrence is linear in (C, n) with scalar gates that see the
    input only, so the engine also solves it in parallel (mode "parallel": the quadratic form
    with the decay matrix D_ts = exp(sum_{s<r<=t} log f_r + log i_s - m_t)) or chunk by chunk
    (mode "chunkwise"); `step` below is the recurrent form, and all three agree (tested).
    Subclasses define `init`, `project`, `memory_inputs`, `readout` and the sizes below.
    """

    matrix_memory = True
    eps = 1e-6  # a subclass may make it a field

    @property
    def num_heads(self) -> int:
        raise NotImplementedError

    @property
    def key_size(self) -> int:
        """dk, the per-head width of q and k."""
        raise NotImplementedError

    @property
    def value_size(self) -> int:
        """dv, the per-head width of v and of h."""
        raise NotImplementedError

    def initial_carry(self, batch_shape: tuple[int, ...], dtype=jnp.float32) -> MemoryCarry:
        h, dk, dv = self.num_heads, self.key_size, self.value_size
        return MemoryCarry(c=jnp.zeros((*batch_shape, h, dk, dv), dtype), n=jnp.zeros((*batch_shape, h, dk), dtype),
                           m=jnp.zeros((*batch_shape, h), dtype))

    def memory_inputs(self, params: Params, xp) -> MemoryInputs:
        raise NotImplementedError

    def readout(self, params: Params, h: jax.Array, xp) -> jax.Array:
        """y [*leading, output_size] from h [*leading, H, dv]; default: the heads concatenated."""
        return h.reshape(*h.shape[:-2], -1)

    def step(self, params: Params, carry: MemoryCarry, xp, matmul=gate_matmul) -> tuple[MemoryCarry, jax.Array]:
        """The recurrent form (equations above), in the carry's dtype (float32 for a float32 carry)."""
        mi = self.memory_inputs(params, xp)
        dt = carry.m.dtype
        q, k, v = (a.astype(dt) for a in (mi.q, mi.k, mi.v))
        log_i, log_f = mi.log_i.astype(dt), mi.log_f.astype(dt)
        m = jnp.maximum(log_f + carry.m, log_i)
        f = jnp.exp(log_f + carry.m - m)
        i = jnp.exp(log_i - m)
        c = f[..., None, None] * carry.c + i[..., None, None] * (k[..., :, None] * v[..., None, :])
        n = f[..., None] * carry.n + i[..., None] * k
        num = jnp.einsum("...k,...kv->...v", q, c)
        den = jnp.einsum("...k,...k->...", q, n)
        h = num / (jnp.maximum(jnp.abs(den), jnp.exp(-m)) + self.eps)[..., None]
        return MemoryCarry(c, n, m), self.readout(params, h.astype(mi.v.dtype), xp)
