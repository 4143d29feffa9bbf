"""Checking and timing the contestants: `run_config` (one config, every contestant) and `remat_report`.

`run_config` checks that ours and flax give torch's outputs within 1e-4 (and input gradients within
1e-3 of their scale; 0.1 for bfloat16) and raises `OutputMismatch` otherwise, then times every
contestant's forward and forward+backward interleaved: torch, ours..., flax, bound, torch, ours, ... .
JAX compile time is `lower` + `compile`; memory is the compiled executable's `memory_analysis()`.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import statistics
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gatedrnn.lab.benchmark.contestants import (
    Contestant,
    bound_contestant,
    configure_layers,
    contestant_name,
    flax_contestant,
    jax_compile,
    layer_apply,
    ours_contestant,
    ours_stack,
    torch_contestant,
    torch_module,
    vjp_loss,
)
from gatedrnn.lab.benchmark.sizes import Config
from gatedrnn.nn.layers import build_rnn

MODES = ("forward", "train")
FORWARD_TOL = 1e-4  # max |ours - torch| on outputs, float32
GRAD_TOL = 1e-3  # max |ours - torch| on input gradients, relative to max(1, max |torch|)
BF16_TOL = 0.1  # the same checks for a bfloat16 compute dtype (8 mantissa bits)


class OutputMismatch(AssertionError):
    """Raised when a contestant's outputs or gradients differ from torch's."""


def check_agreement(reference: Contestant, others: list[Contestant], *, bf16: bool = False) -> dict[str, dict]:
    """Max abs differences to `reference` (torch); raises OutputMismatch beyond tolerance."""
    fwd_tol = BF16_TOL if bf16 else FORWARD_TOL
    grad_tol = (BF16_TOL if bf16 else GRAD_TOL) * max(1.0, float(np.max(np.abs(reference.input_grad))))
    report, failures = {}, []
    for c in others:
        if c.outputs is None:
            continue
        fwd = float(np.max(np.abs(c.outputs - reference.outputs)))
        grad = float(np.max(np.abs(c.input_grad - reference.input_grad)))
        ok = bool(c.outputs.shape == reference.outputs.shape and fwd <= fwd_tol and grad <= grad_tol)
        report[c.name] = {"forward_max_abs_diff": fwd, "input_grad_max_abs_diff": grad, "passed": ok}
        if not ok:
            failures.append(
                f"{c.name}: outputs differ by {fwd:.3g} (tol {fwd_tol:g}), "
                f"input grads by {grad:.3g} (tol {grad_tol:.3g})"
            )
    report["tolerance"] = {"forward": fwd_tol, "input_grad": grad_tol}
    if failures:
        raise OutputMismatch("contestants disagree with torch: " + "; ".join(failures))
    return report


def time_interleaved(contestants: list[Contestant], *, repeats: int, min_time: float) -> dict[str, dict]:
    """Seconds per call of each contestant and mode, repeats interleaved A, B, C, A, B, C, ...

    One warm-up call each sets how many calls one measurement averages (enough for
    `min_time` seconds). Returns {name: {mode: [seconds per call, one per repeat]}}.
    """
    inner = {}
    for c in contestants:
        for mode in MODES:
            t0 = time.perf_counter()
            c.run[mode]()
            once = time.perf_counter() - t0
            inner[c.name, mode] = max(1, math.ceil(min_time / max(once, 1e-9)))
    times: dict[str, dict[str, list[float]]] = {c.name: {m: [] for m in MODES} for c in contestants}
    for _ in range(repeats):
        for mode in MODES:
            for c in contestants:
                n = inner[c.name, mode]
                fn = c.run[mode]
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                times[c.name][mode].append((time.perf_counter() - t0) / n)
    return times


def run_config(
    config: Config,
    *,
    vjps: tuple[str | None, ...],
    repeats: int,
    min_time: float,
    unroll: int | None = None,
    seed: int = 0,
) -> dict:
    """Builds, checks and times every contestant for one config; a JSON-ready dict.

    `unroll` sets our layers' scan unroll (None: the layer default); Flax's stays at 1.
    """
    gc.collect()
    s = config.size
    rng = np.random.default_rng(seed)
    x_np = rng.standard_normal((s.batch, s.time, s.input_size), dtype=np.float32)
    g_np = rng.standard_normal((s.batch, s.time, config.output_size), dtype=np.float32)
    x, g = jnp.asarray(x_np), jnp.asarray(g_np)

    module = torch_module(config, seed)
    torch_c = torch_contestant(module, x_np, g_np)
    errors: dict[str, str] = {}

    def attempt(name: str, build: Callable[[], Contestant]) -> list[Contestant]:
        """A contestant that fails to compile or run is reported in `errors`, not fatal."""
        try:
            return [build()]
        except Exception as e:  # noqa: BLE001 - recorded in the JSON and on stderr
            errors[name] = f"{type(e).__name__}: {e}"
            print(f"[benchmark] {config.name}: {name} failed: {errors[name][:300]}", file=sys.stderr, flush=True)
            return []

    contestants = [torch_c]
    for v in vjps:
        build = lambda v=v: ours_contestant(ours_stack(module, config, v, unroll=unroll), v, x, g)  # noqa: E731
        contestants += attempt(contestant_name(v), build)
    if config.dtype == "float32":  # Flax's cells keep a float32 carry: no like-for-like bf16 row
        contestants += attempt("flax", lambda: flax_contestant(ours_stack(module, config, None), config, x, g))
    agreement = check_agreement(torch_c, contestants[1:], bf16=config.dtype != "float32")
    contestants.append(bound_contestant(config, seed))

    times = time_interleaved(contestants, repeats=repeats, min_time=min_time)
    result: dict[str, Any] = {
        "name": config.name,
        "size": dataclasses.asdict(s),
        "cell": config.cell,
        "num_layers": config.num_layers,
        "bidirectional": config.bidirectional,
        "dtype": config.dtype,
        "tokens": config.tokens,
        "flops": {"forward": config.forward_flops(), "train": 3 * config.forward_flops()},
        "agreement": agreement,
        "errors": errors,
        "contestants": {},
    }
    for c in contestants:
        entry: dict[str, Any] = {"compile_s": c.compile_s, "memory": c.memory}
        for mode in MODES:
            median = statistics.median(times[c.name][mode])
            entry[mode] = {"seconds": times[c.name][mode], "median_s": median, "tokens_per_s": config.tokens / median}
        result["contestants"][c.name] = entry
    tps = {name: {m: e[m]["tokens_per_s"] for m in MODES} for name, e in result["contestants"].items()}
    result["ratio_to_torch"] = {m: {n: tps[n][m] / tps["torch"][m] for n in tps if n != "torch"} for m in MODES}
    result["fraction_of_bound"] = {m: {n: tps[n][m] / tps["bound"][m] for n in tps if n != "bound"} for m in MODES}
    return result


def remat_report(
    lengths: list[int],
    *,
    vjps: tuple[str | None, ...],
    time_max: int,
    repeats: int,
    unroll: int | None = None,
    batch: int = 8,
    input_size: int = 32,
    hidden_size: int = 128,
) -> list[dict]:
    """Training memory of an LSTM layer at each length, with and without remat.

    Compiles against abstract inputs (nothing of size T is allocated), so every length
    reports `memory_analysis()`; only lengths <= `time_max` are also run and timed.
    """
    rows = []
    for t in lengths:
        for remat in (False, True):
            for vjp in vjps:
                gc.collect()
                stack = build_rnn("lstm", input_size, hidden_size, rngs=nnx.Rngs(0), remat=remat)
                apply, state = layer_apply(configure_layers(stack, vjp=vjp, unroll=unroll))
                train = jax.grad(vjp_loss(apply), argnums=(0, 1))
                x_spec = jax.ShapeDtypeStruct((batch, t, input_size), jnp.float32)
                g_spec = jax.ShapeDtypeStruct((batch, t, hidden_size), jnp.float32)
                compiled, compile_s, memory = jax_compile(train, state, x_spec, g_spec)
                row: dict[str, Any] = {
                    "time": t, "batch": batch, "input_size": input_size, "hidden_size": hidden_size,
                    "remat": remat, "vjp": vjp, "compile_s": compile_s, "memory": memory,
                    "train_seconds": None, "train_tokens_per_s": None,
                }
                if t <= time_max:
                    x = jax.random.normal(jax.random.key(1), x_spec.shape, jnp.float32)
                    g = jax.random.normal(jax.random.key(2), g_spec.shape, jnp.float32)
                    jax.block_until_ready(compiled(state, x, g))  # warm-up
                    seconds = []
                    for _ in range(repeats):
                        t0 = time.perf_counter()
                        jax.block_until_ready(compiled(state, x, g))
                        seconds.append(time.perf_counter() - t0)
                    row["train_seconds"] = seconds
                    row["train_tokens_per_s"] = batch * t / statistics.median(seconds)
                rows.append(row)
    return rows
