"""The linear-cell suite (issue 13): each linear cell in parallel vs sequential mode, vs recurrentgemma, vs torch.

    python -m experiments.benchmark --suite=linear          # T = 1k, 8k, 64k (LINEAR_SIZES)
    python -m experiments.benchmark --suite=linear --quick  # size LQ; seconds, nearly all compiling

Glossary: b batch, t time, h hidden units (the input size d = h, so the RG-LRU has no input projection).
For each size it times one forward+backward: the gradient of sum(y * g) (g [b, t, h] a fixed random
cotangent) w.r.t. params and inputs, jitted for the JAX contestants:

  <cell> parallel (auto: linear)
                       `scan_cell(cell, params, x, mode="parallel")`, cell in mingru, minlstm, lru, rglru, with
                       the engine's default `parallel_scan="auto"`; the label names what auto resolves to on
                       this backend ("linear" on CPU: the coefficients for all steps at once, then one
                       `lax.scan` of the FMA h = a h + b; "associative" on GPU/TPU)
  <cell> parallel[associative]
                       the same with `parallel_scan="associative"` (`lax.associative_scan`)
  <cell> parallel[chunk K]  (--linear_chunks) the auto row with `parallel_chunk=K`
  <cell> sequential    the same cell and params, `mode="sequential"` (its own default VJP)
  rglru recurrentgemma[associative] / [linear]
                       `recurrentgemma.jax.RGLRU` (the whole layer: gates, normalisation and its
                       `scan.linear_scan`) with scan_type ASSOCIATIVE_NATIVE / LINEAR_NATIVE, on our
                       rglru's params (the two param trees are the same), positions 1..t (no document start)
  torch GRU / LSTM     `torch.nn.GRU` / `LSTM(h, h, batch_first=True)`, CPU, the same b, t, h

Before timing, each cell's other rows (associative, chunks, sequential) and recurrentgemma's RG-LRU must
give the auto parallel row's outputs and input gradients (`OutputMismatch` otherwise). The "own
sequential" ratio of every parallel row is to `<cell> sequential`; the targets use the auto row. Memory: the JAX contestants report XLA's temp +
output bytes of the compiled call (`memory_analysis()`, kind "xla"); torch the peak RSS growth during one
call (VmHWM after a reset and `malloc_trim`, kind "rss"; "maxrss" where /proc cannot reset it).

Budget: at each size a contestant gets about `budget_s` seconds of calls: fewer timed repeats when one call
is slow, and none (a "skipped" note) when the call predicted from its previous size would not fit.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import math
import os
import resource
import statistics
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from gatedrnn.cells import CELLS
from gatedrnn.lab.benchmark.contestants import jax_compile
from gatedrnn.lab.benchmark.sizes import Size
from gatedrnn.lab.benchmark.timing import OutputMismatch
from gatedrnn.scan import resolve_parallel_scan, scan_cell

LINEAR_CELLS = ("mingru", "minlstm", "lru", "rglru")
LINEAR_SIZES = {
    "L1k": Size("L1k", 32, 1024, 256, 256),
    "L8k": Size("L8k", 4, 8192, 64, 64),  # the target size
    "L64k": Size("L64k", 4, 65536, 64, 64),
    "LQ": Size("LQ", 2, 16, 8, 8),  # --quick
}
TORCH_CELLS = ("gru", "lstm")
RG_SCANS = ("associative", "linear")  # recurrentgemma.common.ScanType ASSOCIATIVE_NATIVE / LINEAR_NATIVE
PARALLEL_SCANS = ("auto", "associative")  # the parallel rows' ScanOptions.parallel_scan (chunk rows: auto)
LINEAR_FORWARD_TOL = 1e-4  # max |other - parallel| on outputs, relative to max(1, max |parallel|)
LINEAR_GRAD_TOL = 1e-3  # the same on input gradients
TARGET_SIZE = (4, 8192, 64)  # (b, t, h) of the torch target
TARGETS = {"vs_torch_gru": 20.0, "vs_sequential": 5.0}  # mingru parallel / torch GRU; parallel / own sequential


def parallel_name(cell: str, chunk: int | None = None, scan: str = "auto") -> str:
    """"mingru parallel (auto: linear)" (auto names what it resolves to here), "mingru parallel[associative]",
    "mingru parallel[chunk 64]" (chunk rows run auto)."""
    if chunk is not None:
        return f"{cell} parallel[chunk {chunk}]"
    return f"{cell} parallel (auto: {resolve_parallel_scan('auto')})" if scan == "auto" else f"{cell} parallel[{scan}]"


def sequential_name(cell: str) -> str:
    return f"{cell} sequential"


def rg_name(scan: str) -> str:
    return f"rglru recurrentgemma[{scan}]"


def torch_name(cell: str, threads: int | None = None) -> str:
    """"torch GRU": at the process's torch thread count (XLA's cores); "torch GRU[1 thread]": at `threads`."""
    if threads is None:
        return f"torch {cell.upper()}"
    return f"torch {cell.upper()}[{threads} thread{'' if threads == 1 else 's'}]"


def own_sequential(name: str) -> str | None:
    """The contestant `name` is compared with as "its own sequential mode", if any."""
    cell, _, mode = name.partition(" ")
    if mode.startswith("parallel"):
        return sequential_name(cell)
    if name == rg_name("associative"):
        return rg_name("linear")
    return None


def contestant_names(cells: tuple[str, ...], chunks: tuple[int, ...] = (), single_thread: bool = False) -> list[str]:
    """Every contestant of the suite, in table order (`single_thread`: the torch[1 thread] rows too)."""
    names = []
    for c in cells:
        names += [*(parallel_name(c, scan=s) for s in PARALLEL_SCANS), *(parallel_name(c, k) for k in chunks),
                  sequential_name(c)]
    if "rglru" in cells:
        names += [rg_name(s) for s in RG_SCANS]
    names += [torch_name(c) for c in TORCH_CELLS]
    return names + ([torch_name(c, 1) for c in TORCH_CELLS] if single_thread else [])


@dataclasses.dataclass
class Timed:
    """One contestant at one size: `call()` runs one forward+backward and blocks."""

    name: str
    call: Callable[[], Any]
    compile_s: float | None
    memory_bytes: int | None
    memory_kind: str
    first_s: float  # the first (warm-up) call


# ----------------------------------------------------------------------------- building


def _train(apply: Callable) -> Callable:
    """(params, x, g) -> (y, d params, d x) of sum(apply(params, x) * g)."""

    def train(params, x, g):
        y, vjp = jax.vjp(apply, params, x)
        d_params, d_x = vjp(g.astype(y.dtype))
        return y, d_params, d_x

    return train


def jax_train_timed(name: str, apply: Callable, params: Any, x: jax.Array, g: jax.Array) -> tuple[Timed, tuple]:
    """Compiles the forward+backward of apply; runs it once; (Timed, (y, d x) as float32 numpy)."""
    compiled, compile_s, memory = jax_compile(_train(apply), params, x, g)
    t0 = time.perf_counter()
    y, _, d_x = jax.block_until_ready(compiled(params, x, g))
    first_s = time.perf_counter() - t0
    memory_bytes = memory["temp"] + memory["output"] if memory else None
    timed = Timed(name, lambda: jax.block_until_ready(compiled(params, x, g)), compile_s, memory_bytes, "xla", first_s)
    return timed, (np.asarray(y, np.float32), np.asarray(d_x, np.float32))


def cell_apply(cell, mode: str, parallel_chunk: int | None = None, parallel_scan: str = "auto") -> Callable:
    """apply(params, x [b, t, d]) -> y [b, t, h] in the engine's `mode` (and `parallel_chunk`, `parallel_scan`)."""
    kwargs = {} if parallel_chunk is None else {"parallel_chunk": parallel_chunk}
    if mode == "parallel":
        kwargs["parallel_scan"] = parallel_scan

    def apply(params, x):
        return scan_cell(cell, params, x, mode=mode, **kwargs)[0]

    return apply


def rg_apply(size: Size, scan: str) -> Callable:
    """apply(params, x) -> y of `recurrentgemma.jax.RGLRU(width=h, num_heads=1)` with the named scan."""
    import recurrentgemma.jax as rg
    from recurrentgemma.common import ScanType

    scan_type = {"associative": ScanType.ASSOCIATIVE_NATIVE, "linear": ScanType.LINEAR_NATIVE}[scan]
    module = rg.RGLRU(width=size.hidden_size, num_heads=1, scan_type=scan_type)
    # positions from 1: no document start (position 0 drops the sqrt(1 - a^2) normalisation), as ours without resets
    segment_pos = jnp.broadcast_to(jnp.arange(1, size.time + 1, dtype=jnp.int32), (size.batch, size.time))

    def apply(params, x):
        # recurrentgemma broadcasts implicitly; allow it whatever the process's promotion settings
        with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
            return module.apply({"params": params}, x, segment_pos, return_cache=False)[0]

    return apply


def peak_rss_growth(fn: Callable[[], Any]) -> tuple[int, str]:
    """(bytes, kind): how far this process's peak RSS rises above its RSS during `fn()`.

    kind "rss": VmHWM reset through /proc/self/clear_refs (after `malloc_trim`, so freed heap pages
    do not hide the growth); "maxrss": the `getrusage` peak's growth where that reset is refused
    (0 while below an earlier peak).
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _proc_status_kb("VmRSS")
        fn()
        return max(0, _proc_status_kb("VmHWM") - before) * 1024, "rss"
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fn()
        return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024, "maxrss"


def _proc_status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"no {key} in /proc/self/status")


def torch_timed(cell: str, size: Size, x: np.ndarray, g: np.ndarray, *, threads: int | None = None,
                seed: int = 0) -> Timed:
    """`torch.nn.GRU`/`LSTM(h, h)`: forward, then backward of the cotangent g into params and x.

    threads: None runs at the process's `torch.get_num_threads()`; n sets n threads for each call.
    """
    import torch

    torch.manual_seed(seed)
    module = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell](size.input_size, size.hidden_size, batch_first=True)
    xt, gt = torch.from_numpy(x), torch.from_numpy(g)
    params = list(module.parameters())

    def run():
        for p in params:
            p.grad = None
        xr = xt.detach().requires_grad_(True)
        y = module(xr)[0]
        y.backward(gt)
        return y.detach(), xr.grad

    def call():
        if threads is None:
            return run()
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return run()
        finally:
            torch.set_num_threads(before)

    t0 = time.perf_counter()
    memory_bytes, kind = peak_rss_growth(call)
    first_s = time.perf_counter() - t0
    return Timed(torch_name(cell, threads), call, None, memory_bytes, kind, first_s)


def _agreement(name: str, reference: tuple, other: tuple) -> dict:
    """Max abs differences of (y, d x) to the auto parallel row's, and whether both are within tolerance."""
    scale_y, scale_g = (max(1.0, float(np.max(np.abs(r)))) for r in reference)
    fwd = float(np.max(np.abs(other[0] - reference[0])))
    grad = float(np.max(np.abs(other[1] - reference[1])))
    passed = bool(fwd <= LINEAR_FORWARD_TOL * scale_y and grad <= LINEAR_GRAD_TOL * scale_g)
    if not passed:
        raise OutputMismatch(f"{name} disagrees with the parallel mode: outputs by {fwd:.3g} "
                             f"(tol {LINEAR_FORWARD_TOL * scale_y:.3g}), input grads by {grad:.3g} "
                             f"(tol {LINEAR_GRAD_TOL * scale_g:.3g})")
    return {"forward_max_abs_diff": fwd, "input_grad_max_abs_diff": grad, "passed": passed}


# ----------------------------------------------------------------------------- timing


def _time_rounds(timed: list[Timed], *, repeats: int, min_time: float, budget_s: float) -> dict[str, list[float]]:
    """Seconds per call, `repeats` rounds interleaved (A, B, C, A, B, C, ...).

    A call shorter than `min_time` is averaged over enough calls to last that long; a contestant whose
    calls would overrun `budget_s` (counting its first call) gets fewer rounds, at least one.
    """
    plan = {}
    for t in timed:
        inner = max(1, math.ceil(min_time / max(t.first_s, 1e-9)))
        rounds = math.floor(max(0.0, budget_s - t.first_s) / (inner * max(t.first_s, 1e-9)))
        plan[t.name] = inner, max(1, min(repeats, rounds))
    seconds: dict[str, list[float]] = {t.name: [] for t in timed}
    for k in range(repeats):
        for t in timed:
            inner, rounds = plan[t.name]
            if k >= rounds:
                continue
            t0 = time.perf_counter()
            for _ in range(inner):
                t.call()
            seconds[t.name].append((time.perf_counter() - t0) / inner)
    return seconds


def run_linear_size(
    size: Size,
    *,
    cells: tuple[str, ...],
    repeats: int,
    min_time: float,
    budget_s: float,
    chunks: tuple[int, ...] = (),
    predicted_s: dict[str, float] | None = None,
    seed: int = 0,
) -> dict:
    """Builds, checks and times every contestant at one size; a JSON-ready dict.

    `chunks`: extra parallel rows with `parallel_chunk=K`. The torch rows run at the process's
    torch thread count and, when that is above 1, at 1 thread too. `predicted_s` (name -> seconds
    per call expected at this size): contestants predicted over `budget_s` are skipped with a note.
    """
    import torch

    gc.collect()
    predicted_s = predicted_s or {}
    b, t, h = size.batch, size.time, size.hidden_size
    rng = np.random.default_rng(seed)
    x_np = rng.standard_normal((b, t, size.input_size), dtype=np.float32)
    g_np = rng.standard_normal((b, t, h), dtype=np.float32)
    x, g = jnp.asarray(x_np), jnp.asarray(g_np)
    timed: list[Timed] = []
    skipped: dict[str, str] = {}
    agreement: dict[str, dict] = {}
    finite: dict[str, bool] = {}

    def over_budget(name: str) -> bool:
        if predicted_s.get(name, 0.0) > budget_s:
            skipped[name] = f"skipped: ~{predicted_s[name]:.0f} s per call predicted > budget {budget_s:g} s"
            return True
        return False

    def log(name: str) -> None:
        print(f"[benchmark]   {name}", file=sys.stderr, flush=True)

    for name in cells:
        cell = CELLS[name](size.input_size, h)
        params = cell.init(jax.random.key(seed))
        reference = None
        variants = [*(("parallel", None, s) for s in PARALLEL_SCANS), *(("parallel", k, "auto") for k in chunks),
                    ("sequential", None, "auto")]
        for mode, chunk, scan in variants:
            label = parallel_name(name, chunk, scan) if mode == "parallel" else sequential_name(name)
            if over_budget(label):
                continue
            log(label)
            entry, outputs = jax_train_timed(label, cell_apply(cell, mode, chunk, scan), params, x, g)
            timed.append(entry)
            finite[label] = bool(np.isfinite(outputs[0]).all() and np.isfinite(outputs[1]).all())
            if reference is None:
                reference = outputs
            else:
                agreement[label] = _agreement(label, reference, outputs)
        if name == "rglru":
            for scan in RG_SCANS:
                label = rg_name(scan)
                if over_budget(label):
                    continue
                try:
                    apply = rg_apply(size, scan)
                except ImportError as e:
                    skipped[label] = f"skipped: {e}"
                    continue
                log(label)
                entry, outputs = jax_train_timed(label, apply, params, x, g)
                timed.append(entry)
                finite[label] = bool(np.isfinite(outputs[0]).all() and np.isfinite(outputs[1]).all())
                if reference is not None:
                    agreement[label] = _agreement(label, reference, outputs)
        del reference
    single_thread = torch.get_num_threads() > 1
    for threads in (None, 1) if single_thread else (None,):
        for cell in TORCH_CELLS:
            label = torch_name(cell, threads)
            if over_budget(label):
                continue
            log(label)
            timed.append(torch_timed(cell, size, x_np, g_np, threads=threads, seed=seed))

    seconds = _time_rounds(timed, repeats=repeats, min_time=min_time, budget_s=budget_s)
    contestants: dict[str, dict] = {}
    for entry in timed:
        median = statistics.median(seconds[entry.name])
        contestants[entry.name] = {
            "seconds": seconds[entry.name], "median_s": median, "tokens_per_s": b * t / median,
            "first_call_s": entry.first_s, "compile_s": entry.compile_s,
            "memory_bytes": entry.memory_bytes, "memory_kind": entry.memory_kind,
            "finite": finite.get(entry.name, True),
        }
    for name, note in skipped.items():
        contestants[name] = {"skipped": note, "tokens_per_s": None}
    return {
        "name": size.name, "size": dataclasses.asdict(size), "tokens": b * t,
        "torch_threads": torch.get_num_threads(),
        "contestants": {n: contestants[n] for n in contestant_names(cells, chunks, single_thread) if n in contestants},
        "ratios": _ratios(contestants), "agreement": agreement,
    }


def _ratios(contestants: dict[str, dict]) -> dict[str, dict[str, float | None]]:
    """{name: {"own_sequential", "torch_gru", "torch_lstm": tokens/s ratios (None where one is missing)}};
    torch here is torch at the process's thread count, "torch_gru_1thread" the GRU at 1 thread."""

    def ratio(num: str, den: str | None) -> float | None:
        a = contestants.get(num, {}).get("tokens_per_s")
        b = contestants.get(den, {}).get("tokens_per_s") if den else None
        return a / b if a and b else None

    return {
        n: {"own_sequential": ratio(n, own_sequential(n)), "torch_gru": ratio(n, torch_name("gru")),
            "torch_lstm": ratio(n, torch_name("lstm")), "torch_gru_1thread": ratio(n, torch_name("gru", 1))}
        for n in contestants
    }


def predict(previous: dict, size: Size) -> dict[str, float]:
    """Seconds per call at `size` from a previous size's results, scaled by b * t * h."""
    work = lambda s: s["batch"] * s["time"] * s["hidden_size"]  # noqa: E731
    scale = work(dataclasses.asdict(size)) / work(previous["size"])
    return {n: c["median_s"] * scale for n, c in previous["contestants"].items() if c.get("median_s")}


def run_linear(
    sizes: list[Size],
    *,
    cells: tuple[str, ...] = LINEAR_CELLS,
    chunks: tuple[int, ...] = (),
    repeats: int = 3,
    min_time: float = 0.2,
    budget_s: float = 30.0,
    seed: int = 0,
) -> dict:
    """The whole suite: every size in order (each predicts the next one's calls for the budget) and the targets."""
    results: list[dict] = []
    if sizes:
        _warm_torch()
    for size in sizes:
        print(f"[benchmark] linear {size.name} ({size})", file=sys.stderr, flush=True)
        predicted = predict(results[-1], size) if results else None
        results.append(run_linear_size(size, cells=cells, repeats=repeats, min_time=min_time, budget_s=budget_s,
                                       chunks=chunks, predicted_s=predicted, seed=seed))
    return {"sizes": results, "targets": linear_targets(results, cells), "budget_s": budget_s,
            "jax_cpu_threads": usable_cpus()}


def _warm_torch() -> None:
    """One tiny GRU and LSTM call at each thread count, so that torch's one-time set-up (thread pools,
    oneDNN) is not counted in the first measured call's time or memory."""
    tiny = Size("warm-up", 1, 2, 2, 2)
    x = np.zeros((1, 2, 2), np.float32)
    for threads in {None, 1}:
        for cell in TORCH_CELLS:
            torch_timed(cell, tiny, x, x, threads=threads).call()


def usable_cpus() -> int:
    """The cores this process may run on (what XLA's CPU thread pool uses)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def linear_targets(results: list[dict], cells: tuple[str, ...]) -> list[dict]:
    """The issue's targets as measured (value None where that size or contestant did not run):
    mingru / torch GRU at B4 T8192 H64 (>= 20x; parallel (auto) and sequential mode, torch at the core
    count and at 1 thread) and each cell's parallel (auto) / own sequential at T = 8192 (>= 5x)."""

    def target(text: str, goal: float, value: float | None) -> dict:
        return {"target": text, "goal": goal, "value": value, "met": None if value is None else value >= goal}

    sizes = lambda r: (r["size"]["batch"], r["size"]["time"], r["size"]["hidden_size"])  # noqa: E731
    at_target = next((r for r in results if sizes(r) == TARGET_SIZE), None)
    at_8k = next((r for r in results if r["size"]["time"] == 8192), None)
    out = []
    if "mingru" in cells:
        for name in (parallel_name("mingru"), sequential_name("mingru")):
            ratios = at_target["ratios"].get(name, {}) if at_target else {}
            threads = at_target["torch_threads"] if at_target else 0
            at = f" ({threads} threads)" if threads > 1 else ""
            out.append(target(f"{name} / torch GRU{at} at B4 T8192 H64", TARGETS["vs_torch_gru"],
                              ratios.get("torch_gru")))
            if threads > 1:
                out.append(target(f"{name} / torch GRU[1 thread] at B4 T8192 H64", TARGETS["vs_torch_gru"],
                                  ratios.get("torch_gru_1thread")))
    for cell in cells:
        value = at_8k["ratios"].get(parallel_name(cell), {}).get("own_sequential") if at_8k else None
        out.append(target(f"{parallel_name(cell)} / {cell} sequential at T=8192", TARGETS["vs_sequential"], value))
    return out
