"""The xLSTM suite (issue 15): gatedrnn's mLSTM forms vs NX-AI's native JAX kernels, and the sLSTM vs LSTMs.

    python -m experiments.benchmark --suite=xlstm --repeats=3   # M256, M1k32, M1k, M4k; S1, S2
    python -m experiments.benchmark --suite=xlstm --quick       # sizes MQ, SQ; seconds, nearly all compiling

Glossary: b batch, t time, H heads, d the head size (dk = dv = d), h = H d hidden units.

mLSTM rows (`MLSTM_SIZES`: b = 8, H = 4, d = 32 or 64, t = 256, 1024, 4096). Why these: on a 2-core
CPU one fwd+bwd of the chunkwise forms takes ~0.05-2 s there, so a size costs about a minute of calls
and compiles; t = 1024 is the largest at which the quadratic parallel forms still fit comfortably in
memory (their [t, t, b, H] matrices, kept for the backward pass), and t = 4096 shows the chunkwise and
recurrent forms where the parallel one cannot run; d = 64 is the official kernels' smallest usual head
size, d = 32 shows the layout overheads at a smaller one. Every contestant maps the same
xs = concat(q, k, v) [b, t, 3h] (q, k, v ~ N(0, 1)) to the memory's output h~ [b, t, h]:

  mlstm chunkwise[K]   `scan_cell(MLSTM(3h, h, num_heads=H, inputs="qkv", output_gate=False), params, xs,
                       mode="chunkwise", parallel_chunk=K)`: the cell's gate projection Linear(xs) -> [H]
                       (input and forget gates), then `gatedrnn.scan.memory.memory_run` chunk by chunk
  mlstm parallel       the same, mode="parallel" (the quadratic form over all t at once); skipped for
                       t > `PARALLEL_MAX_T` (its [t, t, b, H] decay matrix and the matrices beside it, kept
                       for the backward pass, would need several GiB)
  mlstm sequential     the same, mode="sequential" (the recurrent step in a lax.scan, the engine's default
                       fused VJP: each step replayed in a reverse scan)
  official chunkwise[K]  NX-AI's `mlstm_kernels.jax` `mlstm_chunkwise__native_autograd(q, k, v, i, f,
                       chunk_size=K)` on the same q, k, v (heads first: [b, H, t, d]) and the same gate
                       pre-activations (our cell's `project`: the identical tiny Linear), JAX autodiff
  official parallel    `mlstm_parallel__native_autograd(q, k, v, i, f)`, skipped as ours for t > PARALLEL_MAX_T

So both sides run the same end-to-end function of (params, xs): the gate projection (one [3h, 2H]
matmul, ~1% of the work), the memory, and the layout changes each needs ([b, t] -> [t, b] inside
scan_cell; [b, t, H, d] <-> [b, H, t, d] around the official kernels). Both scale q by d^-0.5 inside.
Each is timed forward+backward (the VJP of a fixed random cotangent g [b, t, h] into params and xs)
and forward alone, jitted. Before timing, every row's outputs and input gradients must equal the
reference row's (`official chunkwise[K]` for the first K) within float32 tolerance: max |diff| <=
`MLSTM_FORWARD_TOL` (outputs) / `MLSTM_GRAD_TOL` (d xs) times max(1, max |reference|); `OutputMismatch`
otherwise. The issue's target: `mlstm chunkwise[K]` at least as fast as `official chunkwise[K]`.

sLSTM rows (the classic suite's sizes `SIZES`, S1 and S2 by default: x [b, t, d] -> y [b, t, h]):

  slstm                `scan_cell(SLSTM(d, h, num_heads=4), params, x)` (sequential, the fused VJP)
  lstm                 `scan_cell(LSTM(d, h), params, x)` on the torch LSTM's weights (`from_torch`)
  official sLSTM (torch vanilla)
                       NX-AI's pure-PyTorch `xlstm` sLSTMCell (backend "vanilla") on our sLSTM's weights,
                       its gate inputs x @ W computed by torch
  torch LSTM           `torch.nn.LSTM(d, h, batch_first=True)`
  ...[1 thread]        the two torch rows at 1 thread too, where torch has more: on a loaded 2-core machine
                       torch's 2 threads can run 10-30x slower than one (they wait on each other)

fwd+bwd only; `slstm` must give the official sLSTM's outputs and input gradients and `lstm` torch's
(the same tolerances as the linear suite) before timing.

Timing: contestants interleaved (A, B, C, A, B, C, ...), medians of `repeats`; each gets about
`budget_s` seconds of calls per size and mode (`linear._time_rounds`), and a row whose call is
predicted (from the previous size, scaled by b t h d, or b t^2 h for the parallel rows) to exceed the
budget is skipped with a note. Memory: XLA's temp + output bytes of the compiled fwd+bwd.
"""

from __future__ import annotations

import dataclasses
import gc
import statistics
import sys
import time
import types
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from gatedrnn.cells import CELLS
from gatedrnn.lab.benchmark.contestants import jax_compile
from gatedrnn.lab.benchmark.linear import Timed, _time_rounds, _warm_torch, jax_train_timed, usable_cpus
from gatedrnn.lab.benchmark.official import load_mlstm_kernels
from gatedrnn.lab.benchmark.sizes import SIZES, Size
from gatedrnn.lab.benchmark.timing import OutputMismatch
from gatedrnn.scan import scan_cell


@dataclasses.dataclass(frozen=True)
class MSize:
    """An mLSTM size: b, t, H heads of size d (dk = dv = d)."""

    name: str
    batch: int
    time: int
    num_heads: int
    head_size: int

    @property
    def hidden_size(self) -> int:
        return self.num_heads * self.head_size

    def __str__(self) -> str:
        return f"B{self.batch} T{self.time} H{self.num_heads} d{self.head_size}"


MLSTM_SIZES = {
    "M256": MSize("M256", 8, 256, 4, 64),
    "M1k32": MSize("M1k32", 8, 1024, 4, 32),
    "M1k": MSize("M1k", 8, 1024, 4, 64),
    "M4k": MSize("M4k", 8, 4096, 4, 64),
    "MQ": MSize("MQ", 2, 32, 2, 4),  # --quick
}
SLSTM_SIZES = {**{k: SIZES[k] for k in ("S1", "S2", "S3", "S4")}, "SQ": Size("SQ", 2, 12, 3, 8)}  # SQ: --quick
SLSTM_HEADS = 4
CHUNKS = (64, 128)
PARALLEL_MAX_T = 1024
MLSTM_FORWARD_TOL = 1e-4  # max |row - reference| on outputs, relative to max(1, max |reference|)
MLSTM_GRAD_TOL = 1e-3  # the same on the input gradients
SLSTM_FORWARD_TOL, SLSTM_GRAD_TOL = 1e-4, 1e-3
MODES = ("train", "forward")


# ----------------------------------------------------------------------------- names


def ours_name(mode: str, chunk: int | None = None) -> str:
    """"mlstm chunkwise[64]", "mlstm parallel", "mlstm sequential"."""
    return f"mlstm {mode}[{chunk}]" if mode == "chunkwise" else f"mlstm {mode}"


def official_name(form: str, chunk: int | None = None) -> str:
    """"official chunkwise[64]", "official parallel"."""
    return f"official {form}[{chunk}]" if form == "chunkwise" else f"official {form}"


def mlstm_names(chunks: tuple[int, ...]) -> list[str]:
    """The mLSTM rows in table order."""
    return [*(ours_name("chunkwise", k) for k in chunks), ours_name("parallel"), ours_name("sequential"),
            *(official_name("chunkwise", k) for k in chunks), official_name("parallel")]


SLSTM_NAMES = ("slstm", "lstm", "official sLSTM (torch vanilla)", "torch LSTM")
OFFICIAL_SLSTM, TORCH_LSTM = SLSTM_NAMES[2:]


def one_thread(name: str) -> str:
    """"torch LSTM[1 thread]": a torch row run at 1 thread."""
    return f"{name}[1 thread]"


def slstm_names(single_thread: bool) -> list[str]:
    """The sLSTM rows in table order (`single_thread`: the torch rows at 1 thread too)."""
    return [*SLSTM_NAMES, *((one_thread(OFFICIAL_SLSTM), one_thread(TORCH_LSTM)) if single_thread else ())]


def reference_name(chunks: tuple[int, ...]) -> str:
    return official_name("chunkwise", chunks[0])


# ----------------------------------------------------------------------------- mLSTM contestants


def mlstm_cell(size: MSize):
    """The mLSTM on concat(q, k, v): MLSTM(3h, h, num_heads=H, inputs="qkv", output_gate=False)."""
    h = size.hidden_size
    return CELLS["mlstm"](3 * h, h, num_heads=size.num_heads, inputs="qkv", output_gate=False)


def mlstm_params(cell, seed: int = 0) -> dict:
    """The cell's init with random gate weights N(0, 0.01^2) (init has zeros) so the gates depend on xs."""
    params = dict(cell.init(jax.random.key(seed)))
    for k, name in enumerate(("w_i", "w_f")):
        params[name] = 0.01 * jax.random.normal(jax.random.key(seed + 1 + k), params[name].shape)
    return params


def ours_apply(cell, mode: str, chunk: int | None = None) -> Callable:
    """apply(params, xs [b, t, 3h]) -> h~ [b, t, h] with `scan_cell` in `mode` (chunkwise: parallel_chunk=chunk)."""
    kwargs = {} if chunk is None else {"parallel_chunk": chunk}

    def apply(params, xs):
        return scan_cell(cell, params, xs, mode=mode, **kwargs)[0]

    return apply


def official_apply(cell, kernel: Callable, **kwargs) -> Callable:
    """apply(params, xs) -> h~ [b, t, h]: our cell's gate projection, then an official kernel on
    q, k, v [b, H, t, d] and i, f [b, H, t] (heads first, as the kernels take them)."""
    n, d, h = cell.num_heads, cell.key_size, cell.hidden_size

    def apply(params, xs):
        b, t = xs.shape[:2]
        xp = cell.project(params, xs)
        heads = lambda a: jnp.transpose(a.reshape(b, t, n, d), (0, 2, 1, 3))  # noqa: E731
        gates = lambda a: jnp.transpose(a, (0, 2, 1))  # noqa: E731
        with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):  # the kernels broadcast
            out = kernel(heads(xp.q), heads(xp.k), heads(xp.v), gates(xp.i), gates(xp.f), **kwargs)
        return jnp.transpose(out, (0, 2, 1, 3)).reshape(b, t, h)

    return apply


def jax_forward_timed(name: str, apply: Callable, params: Any, x: jax.Array) -> Timed:
    """Compiles the forward of apply and runs it once."""
    compiled, compile_s, memory = jax_compile(apply, params, x)
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(params, x))
    first_s = time.perf_counter() - t0
    memory_bytes = memory["temp"] + memory["output"] if memory else None
    return Timed(name, lambda: jax.block_until_ready(compiled(params, x)), compile_s, memory_bytes, "xla", first_s)


def agreement(name: str, reference_name_: str, reference: tuple, other: tuple, *, forward_tol: float,
              grad_tol: float) -> dict:
    """Max abs differences of (y, d x) to the reference's; OutputMismatch beyond tol * max(1, max |reference|)."""
    scale_y, scale_g = (max(1.0, float(np.max(np.abs(r)))) for r in reference)
    if other[0].shape != reference[0].shape or other[1].shape != reference[1].shape:
        raise OutputMismatch(f"{name}: output shapes {other[0].shape}, {other[1].shape} differ from "
                             f"{reference_name_}'s {reference[0].shape}, {reference[1].shape}")
    fwd = float(np.max(np.abs(other[0] - reference[0])))
    grad = float(np.max(np.abs(other[1] - reference[1])))
    passed = bool(fwd <= forward_tol * scale_y and grad <= grad_tol * scale_g)  # False for NaN too
    if not passed:
        raise OutputMismatch(f"{name} disagrees with {reference_name_}: outputs by {fwd:.3g} "
                             f"(tol {forward_tol * scale_y:.3g}), input grads by {grad:.3g} "
                             f"(tol {grad_tol * scale_g:.3g})")
    return {"forward_max_abs_diff": fwd, "input_grad_max_abs_diff": grad, "passed": passed,
            "tolerance": {"forward": forward_tol * scale_y, "input_grad": grad_tol * scale_g}}


def _log(name: str) -> None:
    print(f"[benchmark]   {name}", file=sys.stderr, flush=True)


def _mlstm_work(size: dict, name: str) -> float:
    """What a call's time is scaled by from one size to the next: b t h d (b t^2 h for the parallel forms)."""
    per_step = size["time"] if name.endswith("parallel") else size["head_size"]
    return size["batch"] * size["time"] * size["num_heads"] * size["head_size"] * per_step


def run_mlstm_size(
    size: MSize,
    *,
    chunks: tuple[int, ...] = CHUNKS,
    repeats: int,
    min_time: float,
    budget_s: float,
    kernels: types.SimpleNamespace | None,
    previous: dict | None = None,
    seed: int = 0,
    rows: tuple[str, ...] | None = None,
    contestants: dict[str, Callable] | None = None,
) -> dict:
    """Builds, checks and times every mLSTM row at one size; a JSON-ready dict.

    kernels: `load_mlstm_kernels()` (None: the official rows are skipped with a note, and the first
    of ours is the agreement reference). previous: the previous size's result, to predict and skip
    rows over budget. rows: the names to run (None: all of `mlstm_names(chunks)`), the first of them
    that runs being the reference when the official one does not. contestants: name -> apply(params, xs)
    replacing the built ones (tests).
    """
    gc.collect()
    cell = mlstm_cell(size)
    params = mlstm_params(cell, seed)
    b, t, h = size.batch, size.time, size.hidden_size
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(rng.standard_normal((b, t, 3 * h), dtype=np.float32))
    g = jnp.asarray(rng.standard_normal((b, t, h), dtype=np.float32))

    applies: dict[str, Callable] = {}
    skipped: dict[str, str] = {}
    for k in chunks:
        applies[ours_name("chunkwise", k)] = ours_apply(cell, "chunkwise", k)
    applies[ours_name("parallel")] = ours_apply(cell, "parallel")
    applies[ours_name("sequential")] = ours_apply(cell, "sequential")
    for k in chunks:
        name = official_name("chunkwise", k)
        if kernels is None:
            skipped[name] = "skipped: mlstm_kernels is not installed (pip install -e '.[dev]')"
        elif t % k:
            skipped[name] = f"skipped: the official kernel needs chunk {k} to divide T={t}"
        else:
            applies[name] = official_apply(cell, kernels.chunkwise, chunk_size=k)
    if kernels is None:
        skipped[official_name("parallel")] = "skipped: mlstm_kernels is not installed (pip install -e '.[dev]')"
    else:
        applies[official_name("parallel")] = official_apply(cell, kernels.parallel)
    applies.update(contestants or {})
    if rows is not None:
        applies = {n: applies[n] for n in rows if n in applies}
        skipped = {n: note for n, note in skipped.items() if n in rows}
    if t > PARALLEL_MAX_T:
        gib = 4 * t * t * b * size.num_heads / 2**30
        for name in (ours_name("parallel"), official_name("parallel")):
            if name in applies:
                del applies[name]
                skipped[name] = (f"skipped: quadratic form, T={t} > {PARALLEL_MAX_T} (one [T, T, b, H] float32 "
                                 f"matrix is {gib:.1f} GiB)")
    if previous:
        for name in list(applies):
            before = previous["contestants"].get(name, {}).get("train", {}).get("median_s")
            if before:
                predicted = before * _mlstm_work(dataclasses.asdict(size), name) / _mlstm_work(previous["size"], name)
                if predicted > budget_s:
                    del applies[name]
                    skipped[name] = f"skipped: ~{predicted:.0f} s per call predicted > budget {budget_s:g} s"

    reference = reference_name(chunks) if reference_name(chunks) in applies else next(iter(applies), None)
    order = [reference, *(n for n in applies if n != reference)] if applies else []
    timed: dict[str, dict[str, Timed]] = {}
    outputs: dict[str, tuple] = {}
    finite: dict[str, bool] = {}
    checks: dict[str, dict] = {}
    for name in order:
        _log(name)
        train, outputs[name] = jax_train_timed(name, applies[name], params, xs, g)
        finite[name] = bool(np.isfinite(outputs[name][0]).all() and np.isfinite(outputs[name][1]).all())
        if name != reference:
            checks[name] = agreement(name, reference, outputs[reference], outputs[name],
                                     forward_tol=MLSTM_FORWARD_TOL, grad_tol=MLSTM_GRAD_TOL)
            del outputs[name]
        timed[name] = {"train": train}
    del outputs
    for name in order:  # once every row agrees
        timed[name]["forward"] = jax_forward_timed(name, applies[name], params, xs)
    results = _time_modes(timed, repeats=repeats, min_time=min_time, budget_s=budget_s, tokens=b * t)
    for name, note in skipped.items():
        results[name] = {"skipped": note}
    names = [n for n in mlstm_names(chunks) if n in results] + [n for n in results if n not in mlstm_names(chunks)]
    results = {n: results[n] for n in names}
    return {"name": size.name, "size": dataclasses.asdict(size), "tokens": b * t, "reference": reference,
            "contestants": results, "ratios": _ratios(results, reference), "agreement": checks,
            "finite": finite}


def _time_modes(timed: dict[str, dict[str, Timed]], *, repeats: int, min_time: float, budget_s: float,
                tokens: int) -> dict[str, dict]:
    """Interleaved timing of every contestant, one mode after the other: {name: {mode: {...}, compile, memory}}."""
    results: dict[str, dict] = {name: {} for name in timed}
    for mode in MODES:
        entries = [modes[mode] for modes in timed.values() if mode in modes]
        seconds = _time_rounds(entries, repeats=repeats, min_time=min_time, budget_s=budget_s)
        for entry in entries:
            median = statistics.median(seconds[entry.name])
            results[entry.name][mode] = {
                "seconds": seconds[entry.name], "median_s": median, "tokens_per_s": tokens / median,
                "first_call_s": entry.first_s, "compile_s": entry.compile_s, "memory_bytes": entry.memory_bytes,
                "memory_kind": entry.memory_kind,
            }
    return results


def _ratios(results: dict[str, dict], reference: str) -> dict[str, dict[str, float | None]]:
    """{name: {mode: tokens/s over the reference's (None where either is missing)}}."""

    def tps(name, mode):
        return results.get(name, {}).get(mode, {}).get("tokens_per_s")

    out = {}
    for name in results:
        out[name] = {}
        for mode in MODES:
            a, b = tps(name, mode), tps(reference, mode)
            out[name][mode] = a / b if a and b else None
    return out


# ----------------------------------------------------------------------------- sLSTM contestants


def _official_slstm(cell, params: dict):
    """NX-AI's vanilla PyTorch sLSTMCell holding our sLSTM's r and b (the official layouts are ours)."""
    import torch
    from xlstm.blocks.slstm.cell import sLSTMCell, sLSTMCellConfig

    official = sLSTMCell(sLSTMCellConfig(hidden_size=cell.hidden_size, num_heads=cell.num_heads, backend="vanilla",
                                         dtype="float32", output_shape="BSH"))
    with torch.no_grad():
        official.recurrent_kernel[:] = torch.tensor(np.asarray(params["r"]))
        official.bias[:] = torch.tensor(np.asarray(params["b"]))
    return official


def _torch_train_timed(name: str, forward: Callable, params: list, x: np.ndarray, g: np.ndarray,
                       threads: int | None = None) -> tuple[Timed, tuple]:
    """A torch fwd+bwd: forward(x) -> y, backward of g into params and x, at `threads` (None: the process's
    torch thread count); (Timed, (y, d x) numpy)."""
    import torch

    xt, gt = torch.from_numpy(x), torch.from_numpy(g)

    def call():
        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)
        try:
            for p in params:
                p.grad = None
            xr = xt.detach().requires_grad_(True)
            y = forward(xr)
            y.backward(gt)
            return y.detach(), xr.grad
        finally:
            torch.set_num_threads(before)

    t0 = time.perf_counter()
    y, d_x = call()
    first_s = time.perf_counter() - t0
    return Timed(name, call, None, None, "-", first_s), (y.numpy().astype(np.float32), d_x.numpy().astype(np.float32))


def run_slstm_size(size: Size, *, repeats: int, min_time: float, budget_s: float, previous: dict | None = None,
                   seed: int = 0, contestants: dict[str, Callable] | None = None) -> dict:
    """Builds, checks and times the sLSTM rows at one size (fwd+bwd); a JSON-ready dict.

    contestants: name -> apply(params, x) replacing our sLSTM or LSTM row (tests)."""
    import torch

    from gatedrnn.nn.interop import from_torch
    from gatedrnn.nn.params import param_values

    gc.collect()
    b, t, d, h = size.batch, size.time, size.input_size, size.hidden_size
    rng = np.random.default_rng(seed)
    x_np = rng.standard_normal((b, t, d), dtype=np.float32)
    g_np = rng.standard_normal((b, t, h), dtype=np.float32)
    x, g = jnp.asarray(x_np), jnp.asarray(g_np)
    skipped: dict[str, str] = {}
    timed: dict[str, dict[str, Timed]] = {}
    outputs: dict[str, tuple] = {}
    checks: dict[str, dict] = {}

    def over_budget(name: str, scale: float) -> bool:
        before = (previous or {}).get("contestants", {}).get(name, {}).get("train", {}).get("median_s")
        if before and before * scale > budget_s:
            skipped[name] = f"skipped: ~{before * scale:.0f} s per call predicted > budget {budget_s:g} s"
            return True
        return False

    scale = 1.0
    if previous:
        p = previous["size"]
        scale = b * t * h * (d + h) / (p["batch"] * p["time"] * p["hidden_size"] * (p["input_size"] + p["hidden_size"]))

    heads = SLSTM_HEADS if h % SLSTM_HEADS == 0 else 1
    slstm = CELLS["slstm"](d, h, num_heads=heads)
    slstm_params = dict(slstm.init(jax.random.key(seed)))
    # random R and b (init has R = 0): the recurrence does real work and the check sees it
    slstm_params["r"] = 0.2 * jax.random.normal(jax.random.key(seed + 1), slstm_params["r"].shape) / np.sqrt(h / heads)
    torch.manual_seed(seed)
    lstm_module = torch.nn.LSTM(d, h, batch_first=True)
    rnn = from_torch(lstm_module).layers[0]
    lstm_cell, lstm_params = rnn.cell, jax.tree.map(jnp.asarray, param_values(rnn.params))
    apply = {"slstm": lambda p, x: scan_cell(slstm, p, x)[0], "lstm": lambda p, x: scan_cell(lstm_cell, p, x)[0]}
    apply.update(contestants or {})
    for name, params in (("slstm", slstm_params), ("lstm", lstm_params)):
        if not over_budget(name, scale):
            _log(name)
            train, outputs[name] = jax_train_timed(name, apply[name], params, x, g)
            timed[name] = {"train": train}

    official = OFFICIAL_SLSTM
    single_thread = torch.get_num_threads() > 1  # torch at its thread count, and at 1 thread
    torch_rows = []
    try:
        cell_torch = _official_slstm(slstm, slstm_params)
    except ImportError as e:
        skipped[official] = f"skipped: {e} (pip install -e '.[dev]')"
    else:
        w = torch.tensor(np.asarray(slstm_params["w"]).reshape(d, 4 * h))
        torch_rows.append((official, lambda xr: cell_torch(xr @ w)[0], [w, *cell_torch.parameters()]))
    torch_rows.append((TORCH_LSTM, lambda xr: lstm_module(xr)[0], list(lstm_module.parameters())))
    for threads in (None, 1) if single_thread else (None,):
        for name, forward, weights in torch_rows:
            label = name if threads is None else one_thread(name)
            if not over_budget(label, scale):
                _log(label)
                train, out = _torch_train_timed(label, forward, weights, x_np, g_np, threads)
                timed[label] = {"train": train}
                outputs.setdefault(name, out)
    finite = {n: bool(np.isfinite(o[0]).all() and np.isfinite(o[1]).all()) for n, o in outputs.items()}
    for ours, theirs in (("slstm", official), ("lstm", "torch LSTM")):
        if ours in outputs and theirs in outputs:
            checks[ours] = agreement(ours, theirs, outputs[theirs], outputs[ours], forward_tol=SLSTM_FORWARD_TOL,
                                     grad_tol=SLSTM_GRAD_TOL)
    del outputs
    results = _time_modes(timed, repeats=repeats, min_time=min_time, budget_s=budget_s, tokens=b * t)
    for name, note in skipped.items():
        results[name] = {"skipped": note}
    results = {n: results[n] for n in slstm_names(single_thread) if n in results}

    def ratio(num, den):
        a, b = (results.get(n, {}).get("train", {}).get("tokens_per_s") for n in (num, den))
        return a / b if a and b else None

    ratios = {n: {"lstm": ratio(n, "lstm"), "torch_lstm": ratio(n, TORCH_LSTM),
                  "torch_lstm_1thread": ratio(n, one_thread(TORCH_LSTM))} for n in results}
    return {"name": size.name, "size": dataclasses.asdict(size), "tokens": b * t, "num_heads": heads,
            "contestants": results, "ratios": ratios, "agreement": checks, "finite": finite}


# ----------------------------------------------------------------------------- the suite


def run_xlstm(
    mlstm_sizes: list[MSize],
    slstm_sizes: list[Size],
    *,
    chunks: tuple[int, ...] = CHUNKS,
    repeats: int = 3,
    min_time: float = 0.2,
    budget_s: float = 30.0,
    seed: int = 0,
) -> dict:
    """The whole suite: the mLSTM sizes in order, then the sLSTM sizes, and the issue's target."""
    try:
        kernels = load_mlstm_kernels()
    except ImportError as e:
        print(f"[benchmark] xlstm: no official kernels ({e}); their rows are skipped", file=sys.stderr, flush=True)
        kernels = None
    mlstm: list[dict] = []
    for size in mlstm_sizes:
        print(f"[benchmark] xlstm mLSTM {size.name} ({size})", file=sys.stderr, flush=True)
        mlstm.append(run_mlstm_size(size, chunks=chunks, repeats=repeats, min_time=min_time, budget_s=budget_s,
                                    kernels=kernels, previous=mlstm[-1] if mlstm else None, seed=seed))
    slstm: list[dict] = []
    if slstm_sizes:
        _warm_torch()  # torch's one-time set-up (thread pools, oneDNN) out of the first timed call
    for size in slstm_sizes:
        print(f"[benchmark] xlstm sLSTM {size.name} ({size})", file=sys.stderr, flush=True)
        slstm.append(run_slstm_size(size, repeats=repeats, min_time=min_time, budget_s=budget_s,
                                    previous=slstm[-1] if slstm else None, seed=seed))
    return {"mlstm": mlstm, "slstm": slstm, "chunks": list(chunks), "targets": xlstm_targets(mlstm, chunks),
            "budget_s": budget_s, "jax_cpu_threads": usable_cpus(), "parallel_max_t": PARALLEL_MAX_T}


def xlstm_targets(results: list[dict], chunks: tuple[int, ...]) -> list[dict]:
    """The issue's target at every size and chunk: mlstm chunkwise[K] / official chunkwise[K] fwd+bwd >= 1
    (value None where either did not run)."""
    out = []
    for r in results:
        for k in chunks:
            ours, theirs = (r["contestants"].get(n, {}).get("train", {}).get("tokens_per_s")
                            for n in (ours_name("chunkwise", k), official_name("chunkwise", k)))
            value = ours / theirs if ours and theirs else None
            out.append({"target": f"{ours_name('chunkwise', k)} / {official_name('chunkwise', k)} fwd+bwd at "
                                  f"{r['name']} ({MSize(**r['size'])})",
                        "goal": 1.0, "value": value, "met": None if value is None else value >= 1.0})
    return out
