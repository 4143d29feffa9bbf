"""The one scan engine: runs any cell over `[batch, time, features]`.

Lengths and padding, reversal, resets, unroll, chunking and rematerialization live here and
nowhere else. Two modes:

  sequential  `lax.scan` over the cell's step. The input projection runs outside the loop, one
              matmul per chunk of `projection_chunk` steps, so the loop does only recurrent work.
  parallel    for cells linear in the state (`LinearCell`: h_t = a_t * h_{t-1} + b_t), all steps
              at once from the coefficients (a, b): `lax.associative_scan` in O(log T) depth with
              the operator (a1, b1) . (a2, b2) = (a2 a1, a2 b1 + b2) (or its log-space form for
              positive states) on GPU/TPU, or one `lax.scan` of the FMA h = a h + b alone (the
              fast one on a few CPU cores: `parallel_scan`); optionally in chunks of
              `parallel_chunk` steps with the state passed between chunks.

How it runs is one hashable `ScanOptions` value that layers and configs pass along
(`model.scan.*` in every config).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np

from gatedrnn.cells import CELLS
from gatedrnn.cells.base import D_XP, Carry, Cell, Params, accumulation_dtype, gate_matmul
from gatedrnn.validation import ConfigError, check_choice

MODES = ("auto", "sequential", "parallel")
VJPS = ("fused", "replay", "autodiff")
DTYPES = ("bfloat16", "float32", "float64")  # by name; any floating jnp dtype is accepted too


def _normalised(prefix: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Validated ScanOptions fields in one canonical form (so equal options hash equal).

    remat "sqrt" -> True; unroll False -> 1; dtype -> a jnp dtype or None. `prefix` names the
    fields in the one-line ConfigError ("ScanOptions." or "model.scan.").
    """
    out = dict(fields)
    if "mode" in out:
        check_choice(f"{prefix}mode", out["mode"], MODES)
    if "vjp" in out:
        check_choice(f"{prefix}vjp", out["vjp"], VJPS)
    if "remat" in out:
        remat = out["remat"]
        if isinstance(remat, str) and remat == "sqrt":
            remat = True
        elif not isinstance(remat, (bool, int)) or (not isinstance(remat, bool) and remat <= 0):
            raise ConfigError(f"{prefix}remat must be False, True, 'sqrt' or a positive chunk length, got {remat!r}")
        out["remat"] = remat
    if "unroll" in out:
        unroll = out["unroll"]
        if not isinstance(unroll, (bool, int)) or (not isinstance(unroll, bool) and unroll <= 0):
            raise ConfigError(f"{prefix}unroll must be a positive integer or True (unroll fully), got {unroll!r}")
        out["unroll"] = 1 if unroll is False else unroll
    if "projection_chunk" in out:
        chunk = out["projection_chunk"]
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk <= 0):
            raise ConfigError(f"{prefix}projection_chunk must be None or a positive int, got {chunk!r}")
    if "parallel_scan" in out:
        check_choice(f"{prefix}parallel_scan", out["parallel_scan"], ALGORITHMS)
    if "parallel_chunk" in out:
        chunk = out["parallel_chunk"]
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk <= 0):
            raise ConfigError(f"{prefix}parallel_chunk must be None or a positive int, got {chunk!r}")
    if out.get("dtype") is not None:
        dtype = out["dtype"]
        try:
            out["dtype"] = jnp.dtype(dtype)
        except (TypeError, ValueError):
            out["dtype"] = None
        if out["dtype"] is None or not jnp.issubdtype(out["dtype"], jnp.floating):
            raise ConfigError(f"{prefix}dtype must be None or a floating dtype such as {list(DTYPES)}, got {dtype!r}")
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class ScanOptions:
    """How `scan_cell` runs a cell; one hashable value passed through layers and configs.

    mode: "auto" (default: "parallel" for cells linear in the state, else "sequential"),
      "sequential" (`lax.scan` over the steps) or "parallel" (associative scan; linear cells only).
    vjp: "fused" (default), "replay" or "autodiff" (sequential mode).
    remat: False; True ("sqrt" is the same) to checkpoint every ceil(sqrt(T)) steps; or a chunk length.
    unroll: the `lax.scan` unroll factor (True: fully; sequential mode).
    projection_chunk: project K = 32 steps at a time; None: the whole sequence at once (sequential).
    parallel_chunk: None (default): one scan over all T steps; K: chunks of K steps scanned in
      parallel, the state passed from chunk to chunk (parallel mode).
    parallel_scan: "auto" (default: "linear" on CPU, else "associative"), "associative"
      (`lax.associative_scan`, O(log T) depth) or "linear" (one FMA loop; parallel mode).
    dtype: compute dtype (e.g. "bfloat16" or jnp.bfloat16; stored as a jnp dtype); None keeps the input's.
    See `scan_cell` for what each choice does. Bad values raise a one-line ConfigError.

    Example:
      options = ScanOptions(remat=True, dtype="bfloat16")
      ys, carry = scan_cell(cell, params, xs, options=options)
      rnn = build_rnn("lstm", 8, 32, scan=options, rngs=nnx.Rngs(0))
    """

    mode: str = "auto"
    vjp: str = "fused"
    remat: bool | int = False
    unroll: int | bool = 1
    projection_chunk: int | None = 32
    dtype: Any = None
    parallel_chunk: int | None = None
    parallel_scan: str = "auto"

    def __post_init__(self):
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in _normalised("ScanOptions.", fields).items():
            object.__setattr__(self, name, value)

    def _key(self) -> tuple:
        # Each value with its type: remat=True (sqrt chunks) is not remat=1, nor unroll=True (fully)
        # unroll=1, though True == 1 in Python; as jit static arguments they must not share a trace.
        return tuple((type(v), v) for v in (getattr(self, f.name) for f in dataclasses.fields(self)))

    def __eq__(self, other: Any) -> bool:
        return self._key() == other._key() if isinstance(other, ScanOptions) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    @classmethod
    def from_config(cls, group: Any, *, name: str = "model.scan") -> "ScanOptions":
        """From a config group (a ConfigDict or dict) holding some of the fields; the others keep
        their defaults. Errors name the config field, e.g. `model.scan.vjp='fast' is not valid`."""
        group = dict(group)
        _check_names(name, group)
        return cls(**_normalised(f"{name}.", group))


SCAN_FIELDS = tuple(f.name for f in dataclasses.fields(ScanOptions))


def _check_names(prefix: str, fields: dict[str, Any]) -> None:
    for key in sorted(fields):
        if key not in SCAN_FIELDS:
            raise ConfigError(f"{prefix}.{key} is not a scan option; choose from {list(SCAN_FIELDS)}")


def with_overrides(options: ScanOptions | None = None, **fields: Any) -> ScanOptions:
    """`options` (None: `ScanOptions()`) with the given fields replaced, validated."""
    if options is None:
        options = ScanOptions()
    if not isinstance(options, ScanOptions):
        raise ConfigError(f"scan options must be a ScanOptions, got {type(options).__name__}")
    _check_names("ScanOptions", fields)
    return dataclasses.replace(options, **fields) if fields else options


class _Unset:
    def __repr__(self) -> str:
        return "<from options>"


_UNSET: Any = _Unset()  # a keyword of scan_cell that was not passed: the field comes from `options`


def flip_sequences(xs: jax.Array, seq_lengths: jax.Array | None) -> jax.Array:
    """Reverses each sequence within its own length; padding stays where it is.

    xs [batch, time, ...], seq_lengths [batch] or None (all full length).
    Position t < L maps to L - 1 - t; t >= L maps to itself, so flipping twice is the identity.
    """
    if seq_lengths is None:
        return jnp.flip(xs, axis=1)
    t = jnp.arange(xs.shape[1], dtype=seq_lengths.dtype)[None, :]
    lengths = seq_lengths[:, None]
    idx = jnp.where(t < lengths, lengths - 1 - t, t)
    idx = idx.reshape(idx.shape + (1,) * (xs.ndim - 2))
    return jnp.take_along_axis(xs, idx, axis=1)


def _check_lengths(seq_lengths, batch: int, time: int) -> jax.Array:
    lengths = jnp.asarray(seq_lengths)
    if lengths.shape != (batch,) or not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise ValueError(
            f"seq_lengths must be integers of shape [batch]=({batch},), got shape {lengths.shape} dtype {lengths.dtype}"
        )
    if not isinstance(lengths, jax.core.Tracer):
        concrete = np.asarray(lengths)
        if concrete.size and (concrete.min() < 0 or concrete.max() > time):
            raise ValueError(f"seq_lengths must lie in [0, time={time}], got min {concrete.min()} max {concrete.max()}")
    return lengths.astype(jnp.int32)


def _remat_chunk(remat: bool | int, time: int) -> int:
    """The chunk length of a (validated) remat option: True -> ceil(sqrt(T))."""
    return max(1, math.isqrt(max(time - 1, 0)) + 1) if remat is True else remat


def select(mask: jax.Array, new: Any, old: Any) -> Any:
    """Per-example select over pytrees (carries): mask [batch] True picks new, else old."""

    def pick(n, o):
        return jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - 1)), n, o)

    return jax.tree.map(pick, new, old)


def _cast_floats(tree: Any, dtype) -> Any:
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def linear_cells() -> list[str]:
    """The registered cells (`gatedrnn.CELLS`) whose recurrence is linear in the state."""
    return [name for name, cls in CELLS.items() if getattr(cls, "linear", False)]


def resolve_mode(cell: Cell, mode: str) -> str:
    """"auto" -> "parallel" for a linear cell, else "sequential"; "parallel" on a nonlinear cell
    raises a one-line ConfigError naming the cells that support it."""
    if mode == "auto":
        return "parallel" if cell.linear else "sequential"
    if mode == "parallel" and not cell.linear:
        raise ConfigError(f"mode='parallel' needs a cell whose recurrence is linear in the state "
                          f"({', '.join(linear_cells())}); {type(cell).__name__} is not: use 'sequential' or 'auto'")
    return mode


def scan_cell(
    cell: Cell,
    params: Params,
    xs: jax.Array,
    *,
    initial_carry: Carry | None = None,
    seq_lengths: jax.Array | None = None,
    reverse: bool = False,
    resets: jax.Array | None = None,
    options: ScanOptions | None = None,
    mode: str = _UNSET,
    vjp: str = _UNSET,
    remat: bool | int | str = _UNSET,
    unroll: int | bool = _UNSET,
    dtype: Any = _UNSET,
    projection_chunk: int | None = _UNSET,
    parallel_chunk: int | None = _UNSET,
    parallel_scan: str = _UNSET,
) -> tuple[jax.Array, Carry]:
    """Runs `cell` over a batch of sequences.

    Args:
      cell: any cell (see `gatedrnn.cells`).
      params: the cell's params pytree.
      xs: [batch, time, cell.input_size].
      initial_carry: the cell's carry for a [batch] of sequences; zeros by default.
      seq_lengths: [batch] int, valid steps per sequence. The carry stops at each
        sequence's end (the returned carry is its last valid one) and outputs at padded
        positions are exactly zero. Padded inputs reach no arithmetic (they are replaced by
        zeros before the projection), so NaN or inf there changes neither values nor
        gradients, and their input gradient is exactly zero. None means every sequence is
        full length.
      reverse: run each sequence from its last valid step to its first; outputs are
        returned in the original time order.
      resets: [batch, time] bool, True where a new segment (document, episode) starts: the
        carry before that step is the cell's zeros (a linear cell: a_t = 0). With `reverse`
        the segments are the same, run backwards: each restarts at its own last step (the
        sequence's last step only if step 0 is marked; see `reverse_resets`).
      options: a `ScanOptions` (default `ScanOptions()`) for the keywords below; a keyword
        that is passed overrides the same field of `options`.
      mode: "auto" (default): "parallel" for cells linear in the state (`cell.linear`), else
        "sequential". "sequential": `lax.scan` over the steps. "parallel": all steps at once
        from the cell's (a_t, b_t) (see `parallel_scan`), accumulated in
        `accumulation_dtype` (float32 under bfloat16 compute), with a custom VJP that runs
        the backward recurrence g_t = dh_t + a_{t+1} g_{t+1} as one more scan, in reverse.
        Same values and gradients as "sequential" (tested).
      unroll: `lax.scan` unroll factor (default 1; sequential mode).
      remat: False (default); True or "sqrt" to checkpoint every ceil(sqrt(T)) steps; or a chunk
        length. Backward memory for the step residuals grows as O(T / chunk + chunk). In
        parallel mode each chunk (`parallel_chunk`, else the remat chunk) is checkpointed.
      dtype: compute dtype (e.g. jnp.bfloat16 or "bfloat16"); params and inputs are cast to it.
        None (default) keeps the input's dtype.
      vjp: (sequential mode) "fused" (default): a custom VJP that computes every recurrent
        weight's gradient as one matmul over all steps, instead of one small matmul per step;
        reverse mode only. It uses the cell's analytic backward where the cell has one
        (`cell.analytic_backward`: the plain LSTM, the reset-after GRU), saving the gate
        activations in the forward pass; otherwise it is "replay". "replay": the same custom
        VJP for any cell, replaying each step backwards (jax.vjp of `cell.step`) with the
        saved products. "autodiff": plain `jax.grad` through `lax.scan`, which also supports
        forward mode (`jax.jvp`, `jax.jacfwd`). All give the same values and gradients
        (tested).
      projection_chunk: (sequential mode) K (default 32) projects K steps at a time, outside
        the step loop: an outer scan over chunks, each one matmul for its K steps, then the K
        steps. None projects the whole sequence with one matmul before the loop. Same values;
        chunks keep the projected buffer K/T the size, which measured 1.3-1.7x faster on CPU
        (buffers of tens of MiB are re-faulted from the OS on every call). Under remat the
        remat chunk is used.
      parallel_chunk: (parallel mode) None (default): one scan over all T steps.
        K: a sequential scan over chunks of K steps, each solved in parallel from the state
        the previous chunk ended in: memory O(K) per chunk's buffers, depth T/K * log K.
      parallel_scan: (parallel mode) "associative": `lax.associative_scan` (log-space
        operator for `cell.log_space` cells), O(log T) depth, for GPUs and TPUs. "linear":
        the gates and coefficients still for all steps at once, then one `lax.scan` of the
        FMA h = a h + b alone (O(T) depth, but the least work and memory traffic: the fast
        one on a few CPU cores, as recurrentgemma's LINEAR_NATIVE scan). "auto" (default):
        linear on CPU, else associative.

    Returns:
      (ys [batch, time, cell.output_size], final carry).
    """
    given = dict(mode=mode, vjp=vjp, remat=remat, unroll=unroll, dtype=dtype, projection_chunk=projection_chunk,
                 parallel_chunk=parallel_chunk, parallel_scan=parallel_scan)
    opts = with_overrides(options, **{k: v for k, v in given.items() if v is not _UNSET})
    run_mode = resolve_mode(cell, opts.mode)
    if xs.ndim != 3 or xs.shape[-1] != cell.input_size:
        raise ValueError(
            f"xs must have shape [batch, time, {cell.input_size}] for {type(cell).__name__}, got {tuple(xs.shape)}"
        )
    batch, time = xs.shape[:2]
    if opts.dtype is not None:
        params, xs = _cast_floats(params, opts.dtype), xs.astype(opts.dtype)
    if seq_lengths is not None:
        seq_lengths = _check_lengths(seq_lengths, batch, time)
    if resets is not None:
        resets = _check_resets(resets, batch, time)
    carry = cell.initial_carry((batch,), xs.dtype) if initial_carry is None else initial_carry
    carry = _cast_floats(carry, xs.dtype)

    if reverse:
        xs = flip_sequences(xs, seq_lengths)
        if resets is not None:
            resets = reverse_resets(resets, seq_lengths)
    xs = jnp.swapaxes(xs, 0, 1)  # [time, batch, d]
    if resets is not None:
        resets = jnp.swapaxes(resets, 0, 1)  # [time, batch]

    mask = None
    if seq_lengths is not None:
        mask = jnp.arange(time, dtype=jnp.int32)[:, None] < seq_lengths[None, :]  # [time, batch]
        # Padding never reaches the projection: a NaN there would make every gradient NaN
        # (0 * NaN), while `where` gives its input an exact zero cotangent.
        xs = jnp.where(mask[:, :, None], xs, 0)

    if run_mode == "parallel":
        chunk = opts.parallel_chunk or (_remat_chunk(opts.remat, time) if opts.remat else None)
        run = functools.partial(_parallel_run, cell, params, resolve_parallel_scan(opts.parallel_scan))
        out_dtype = carry.dtype
        carry = carry.astype(_scan_dtype(carry.dtype))
    else:
        chunk = _remat_chunk(opts.remat, time) if opts.remat else opts.projection_chunk
        if opts.vjp == "autodiff":
            steps = functools.partial(_scan_steps, cell, unroll=opts.unroll)
        elif opts.vjp == "fused" and cell.analytic_backward:
            steps = _analytic_steps(cell, opts.unroll)
        else:
            steps = _fused_steps(cell, opts.unroll)

        def run(carry, inputs):
            xs, mask, resets = inputs
            xp = cell.project(params, xs)  # every step at once: leaves [time, batch, ...]
            return steps(params, carry, xp, mask, resets)

    if chunk is not None and chunk >= time and not opts.remat:
        chunk = None
    if chunk is not None and time % chunk and mask is None:
        mask = jnp.ones((time, batch), bool)  # padded tail steps must not move the carry
    if chunk is None:
        carry, ys = (jax.checkpoint(run) if opts.remat else run)(carry, (xs, mask, resets))
    else:
        carry, ys = _chunked_scan(jax.checkpoint(run) if opts.remat else run, carry, (xs, mask, resets), time, chunk)
    if run_mode == "parallel":
        carry = carry.astype(out_dtype)

    ys = jnp.swapaxes(ys, 0, 1)
    if reverse:
        ys = flip_sequences(ys, seq_lengths)
    return ys, carry


def _check_resets(resets, batch: int, time: int) -> jax.Array:
    resets = jnp.asarray(resets)
    if resets.shape != (batch, time) or resets.dtype != jnp.bool_:
        raise ValueError(f"resets must be bool of shape [batch, time]=({batch}, {time}), "
                         f"got shape {resets.shape} dtype {resets.dtype}")
    return resets


def reverse_resets(resets: jax.Array, seq_lengths: jax.Array | None) -> jax.Array:
    """Segment starts [b, t] bool for running `flip_sequences(x, seq_lengths)` forwards.

    A segment [s, e] starts at s running forwards and at e running backwards: e is the step
    before the next start, or the sequence's last valid step. That last step is a start (the
    initial carry is not used) exactly when step 0 is one forwards, so a sequence that begins
    with a marked document start (RecurrentGemma's segment_pos == 0) treats every segment
    alike in both directions.
    """
    time = resets.shape[1]
    t = jnp.arange(time)[None, :]
    last = (time if seq_lengths is None else seq_lengths[:, None]) - 1
    starts = jnp.concatenate([resets[:, 1:], jnp.zeros_like(resets[:, :1])], axis=1)
    starts = jnp.where(t == last, resets[:, :1], starts & (t < last))
    return flip_sequences(starts, seq_lengths)


def _scan_dtype(dtype) -> Any:
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


ALGORITHMS = ("auto", "associative", "linear")  # ScanOptions.parallel_scan
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


def _parallel_run(cell, params, algorithm, h0, inputs):
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


def _scan_steps(cell, params, carry, xp, mask, resets, *, unroll):
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
def _fused_steps(cell, unroll):
    """`_scan_steps` with a custom VJP whose weight gradients are one matmul over all steps.

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
        return _scan_steps(cell, params, carry, xp, mask, resets, unroll=unroll)

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
def _analytic_steps(cell, unroll):
    """`_scan_steps` with a custom VJP from the cell's own `step_residuals`/`step_backward`.

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
        return _scan_steps(cell, params, carry, xp, mask, resets, unroll=unroll)

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


def _chunked_scan(run, carry, inputs, time: int, chunk: int):
    """`run` (projection + steps) over chunks of `chunk` steps, as an outer scan.

    With `run` checkpointed (remat), only the carry at chunk boundaries is saved and the
    backward pass recomputes each chunk's projection and steps: residual memory
    O(T / chunk + chunk) instead of O(T).
    """
    num_chunks = -(-time // chunk)
    pad = num_chunks * chunk - time

    def split(a):
        a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))  # padded steps are masked out
        return a.reshape((num_chunks, chunk) + a.shape[1:])

    carry, ys = jax.lax.scan(run, carry, jax.tree.map(split, inputs))
    ys = ys.reshape((num_chunks * chunk,) + ys.shape[2:])[:time]
    return carry, ys
