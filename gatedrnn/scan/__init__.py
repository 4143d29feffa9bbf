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

  chunkwise   the parallel form on chunks of `parallel_chunk` steps (64 by default), the state
              passed from chunk to chunk: for long sequences, and the default of matrix-memory
              cells (the mLSTM, `gatedrnn.scan.memory`), whose parallel form is quadratic in T.

How it runs is one hashable `ScanOptions` value that layers and configs pass along
(`model.scan.*` in every config).

Modules: `options` (ScanOptions), `padding` (flip_sequences, select), `parallel` (linear_scan and
the parallel mode), `memory` (the parallel and chunkwise forms of matrix-memory cells), `sequential` (the step loop and its custom VJPs); this one is the entry point,
`scan_cell`, with what both modes share (lengths, reversal, resets, dtype, chunking, remat).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gatedrnn.cells import CELLS
from gatedrnn.cells.base import Carry, Cell, Params, accumulation_dtype
from gatedrnn.scan.memory import memory_run
from gatedrnn.scan.options import (
    ALGORITHMS,
    CHUNKWISE_CHUNK,
    DTYPES,
    MODES,
    SCAN_FIELDS,
    VJPS,
    ScanOptions,
    with_overrides,
)
from gatedrnn.scan.padding import flip_sequences, select
from gatedrnn.scan.parallel import linear_scan, log_linear_scan, parallel_run, resolve_parallel_scan, scan_dtype
from gatedrnn.scan.sequential import analytic_steps, fused_steps, scan_steps
from gatedrnn.validation import ConfigError

__all__ = [
    "ALGORITHMS", "DTYPES", "MODES", "SCAN_FIELDS", "VJPS", "ScanOptions", "flip_sequences", "linear_cells",
    "linear_scan", "log_linear_scan", "parallel_cells", "resolve_mode", "resolve_parallel_scan", "reverse_resets", "scan_cell",
    "select", "with_overrides",
]

class _Unset:
    def __repr__(self) -> str:
        return "<from options>"


_UNSET: Any = _Unset()  # a keyword of scan_cell that was not passed: the field comes from `options`


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


def _cast_floats(tree: Any, dtype) -> Any:
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def linear_cells() -> list[str]:
    """The registered `LinearCell`s (`gatedrnn.CELLS`): h_t = a_t h_{t-1} + b_t."""
    return [name for name, cls in CELLS.items() if getattr(cls, "linear", False)]


def parallel_cells() -> list[str]:
    """The registered cells that run in parallel and chunkwise modes: the `LinearCell`s and the
    matrix-memory cells (mLSTM), whose recurrences are linear in the state."""
    return [name for name, cls in CELLS.items()
            if getattr(cls, "linear", False) or getattr(cls, "matrix_memory", False)]


def resolve_mode(cell: Cell, mode: str) -> str:
    """"auto" -> "parallel" for a linear cell, "chunkwise" for a matrix-memory cell (mLSTM),
    else "sequential"; "parallel" or "chunkwise" on a nonlinear cell raises a one-line
    ConfigError naming the cells that support them."""
    if mode == "auto":
        return "parallel" if cell.linear else "chunkwise" if cell.matrix_memory else "sequential"
    if mode in ("parallel", "chunkwise") and not (cell.linear or cell.matrix_memory):
        raise ConfigError(f"mode={mode!r} needs a cell whose recurrence is linear in the state "
                          f"({', '.join(parallel_cells())}); {type(cell).__name__} is not: use 'sequential' or 'auto'")
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
      mode: "auto" (default): "parallel" for cells linear in the state (`cell.linear`),
        "chunkwise" for matrix-memory cells (`cell.matrix_memory`: the mLSTM), else
        "sequential". "sequential": `lax.scan` over the steps. "parallel": all steps at once
        from the cell's (a_t, b_t) (see `parallel_scan`), accumulated in
        `accumulation_dtype` (float32 under bfloat16 compute), with a custom VJP that runs
        the backward recurrence g_t = dh_t + a_{t+1} g_{t+1} as one more scan, in reverse.
        Same values and gradients as "sequential" (tested). A matrix-memory cell (mLSTM) runs
        its parallel form instead: the decay-matrix (quadratic) form over the whole sequence
        (`gatedrnn.scan.memory`), differentiated by JAX. "chunkwise": the parallel mode on
        chunks of `parallel_chunk` steps (None: 64), the state passed between chunks.
      unroll: `lax.scan` unroll factor (default 1; sequential mode).
      remat: False (default); True or "sqrt" to checkpoint every ceil(sqrt(T)) steps; or a chunk
        length. Backward memory for the step residuals grows as O(T / chunk + chunk). In
        parallel mode each chunk (`parallel_chunk`, else the remat chunk) is checkpointed.
      dtype: compute dtype (e.g. jnp.bfloat16 or "bfloat16"); params and inputs are cast to it.
        A matrix-memory cell's carry (the mLSTM's C, n, m) stays in float32 under bfloat16.
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
      parallel_chunk: (parallel and chunkwise modes) None (default): parallel mode solves all T
        steps at once, chunkwise mode uses chunks of 64. K: a sequential scan over chunks of K
        steps, each solved in parallel from the state the previous chunk ended in: memory O(K)
        per chunk's buffers (O(K^2) for the mLSTM), depth T/K * log K.
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
    # A matrix memory (mLSTM) sums many outer products: it is kept in float32 under bfloat16 compute.
    carry_dtype = accumulation_dtype(xs.dtype) if cell.matrix_memory else xs.dtype
    carry = cell.initial_carry((batch,), carry_dtype) if initial_carry is None else initial_carry
    carry = _cast_floats(carry, carry_dtype)

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

    parallel = run_mode in ("parallel", "chunkwise")
    if parallel:
        chunk = opts.parallel_chunk or (CHUNKWISE_CHUNK if run_mode == "chunkwise" else None)
        chunk = chunk or (_remat_chunk(opts.remat, time) if opts.remat else None)
        if cell.matrix_memory:
            run = functools.partial(memory_run, cell, params)
        else:
            run = functools.partial(parallel_run, cell, params, resolve_parallel_scan(opts.parallel_scan))
        out_dtypes = jax.tree.map(lambda a: a.dtype, carry)
        carry = jax.tree.map(lambda a: a.astype(scan_dtype(a.dtype)), carry)
    else:
        chunk = _remat_chunk(opts.remat, time) if opts.remat else opts.projection_chunk
        if opts.vjp == "autodiff":
            steps = functools.partial(scan_steps, cell, unroll=opts.unroll)
        elif opts.vjp == "fused" and cell.analytic_backward:
            steps = analytic_steps(cell, opts.unroll)
        else:
            steps = fused_steps(cell, opts.unroll)

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
    if parallel:
        carry = jax.tree.map(lambda a, dt: a.astype(dt), carry, out_dtypes)

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
