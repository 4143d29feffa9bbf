"""`ScanOptions`: how the engine runs a cell, one hashable value that layers and configs pass along."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from gatedrnn.validation import ConfigError, check_choice

MODES = ("auto", "sequential", "parallel", "chunkwise")
CHUNKWISE_CHUNK = 64  # mode="chunkwise" with parallel_chunk=None: chunks of 64 steps (the official mLSTM kernels')
VJPS = ("fused", "replay", "autodiff")
ALGORITHMS = ("auto", "associative", "linear")  # ScanOptions.parallel_scan
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

    mode: "auto" (default: "parallel" for cells linear in the state, "chunkwise" for the mLSTM,
      else "sequential"), "sequential" (`lax.scan` over the steps), "parallel" (associative scan,
      or the mLSTM's quadratic form; linear cells only) or "chunkwise" (parallel within chunks of
      `parallel_chunk` steps, default 64, sequential between them).
    vjp: "fused" (default), "replay" or "autodiff" (sequential mode).
    remat: False; True ("sqrt" is the same) to checkpoint every ceil(sqrt(T)) steps; or a chunk length.
    unroll: the `lax.scan` unroll factor (True: fully; sequential mode).
    projection_chunk: project K = 32 steps at a time; None: the whole sequence at once (sequential).
    parallel_chunk: None (default): one scan over all T steps (chunkwise mode: 64); K: chunks of
      K steps scanned in parallel, the state passed from chunk to chunk (parallel and chunkwise modes).
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
