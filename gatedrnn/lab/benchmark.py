"""The pieces of `experiments/benchmark.py`: gatedrnn vs PyTorch vs Flax on the same weights.

Glossary: b batch, t time, d input features, h hidden units, g gates.

For one `Config` (sizes, cell, layers, direction, compute dtype), `run_config` builds

  torch        `torch.nn.LSTM`/`GRU` (batch_first), the speed bar on the CPU;
  ours[v]      `gatedrnn.nn.interop.from_torch(torch_module)`, one row per engine VJP variant
               `v` ("autodiff", "replay", "fused") when the engine has the `vjp` option, else `ours`;
  flax         `flax.linen.RNN` over `OptimizedLSTMCell` / `GRUCell` (Flax's own GRU has the
               reset-after convention and b_hn, so it matches torch exactly), with the torch
               weights mapped into its params;
  bound        `jnp.dot` of [m, d + h] x [d + h, g h] with the FLOPs of the RNN
               (forward 2 b t (d + h) g h per layer and direction; forward+backward 3x that);

checks that ours and flax give torch's outputs within 1e-4 (and input gradients within
1e-3 of their scale) and raises `OutputMismatch` otherwise, then times every contestant's
forward and forward+backward ("train": the VJP of the outputs with a fixed random
cotangent, i.e. the gradient of sum(y * cotangent) w.r.t. params and inputs) interleaved:
torch, ours..., flax, bound, torch, ours, ... . JAX compile time is `lower` + `compile`;
memory is the compiled executable's `memory_analysis()`.
"""

from __future__ import annotations

import dataclasses
import gc
import inspect
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gatedrnn.nn.layers import RNN, Bidirectional, Stack, build_rnn
from gatedrnn.scan import scan_cell

GATES = {"lstm": 4, "gru": 3}
MODES = ("forward", "train")
FORWARD_TOL = 1e-4  # max |ours - torch| on outputs, float32
GRAD_TOL = 1e-3  # max |ours - torch| on input gradients, relative to max(1, max |torch|)
BF16_TOL = 0.1  # the same checks for a bfloat16 compute dtype (8 mantissa bits)


class OutputMismatch(AssertionError):
    """Raised when a contestant's outputs or gradients differ from torch's."""


@dataclasses.dataclass(frozen=True)
class Size:
    name: str
    batch: int
    time: int
    input_size: int
    hidden_size: int

    def __str__(self) -> str:
        return f"B{self.batch} T{self.time} I{self.input_size} H{self.hidden_size}"


SIZES = {
    "S1": Size("S1", 32, 256, 128, 256),
    "S2": Size("S2", 16, 1024, 64, 128),
    "S3": Size("S3", 64, 128, 512, 512),
    "S4": Size("S4", 4, 8192, 32, 64),
    "Q": Size("Q", 2, 12, 3, 5),  # --quick
}


@dataclasses.dataclass(frozen=True)
class Config:
    size: Size
    cell: str  # "lstm" | "gru"
    num_layers: int = 1
    bidirectional: bool = False
    dtype: str = "float32"  # compute dtype of ours and flax; torch stays float32

    @property
    def name(self) -> str:
        layout = f"{self.num_layers}x{'bi' if self.bidirectional else 'uni'}"
        suffix = "" if self.dtype == "float32" else f" {self.dtype}"
        return f"{self.size.name} {self.cell} {layout}{suffix}"

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        return self.size.hidden_size * self.directions

    @property
    def tokens(self) -> int:
        return self.size.batch * self.size.time

    def forward_flops(self) -> int:
        """2 b t (d + h) g h per layer and direction (the two matmuls; element-wise ops left out)."""
        s, g = self.size, GATES[self.cell]
        total, d = 0, s.input_size
        for _ in range(self.num_layers):
            total += self.directions * 2 * s.batch * s.time * (d + s.hidden_size) * g * s.hidden_size
            d = self.output_size
        return total


# ----------------------------------------------------------------------------- environment


def machine_info() -> dict[str, Any]:
    """CPU model, cores, load and library versions, for the JSON next to the numbers."""
    import flax

    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "loadavg_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "jax": jax.__version__,
        "jaxlib": getattr(jax.lib, "__version__", None) or _dist_version("jaxlib"),
        "flax": flax.__version__,
        "torch": _dist_version("torch"),
        "jax_devices": [str(d) for d in jax.devices()],
        "malloc_env": {k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")},
        "git_commit": _git_commit(),
        "engine_vjp_variants": list(engine_vjp_variants()),
    }
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def engine_vjp_variants() -> tuple[str | None, ...]:
    """("autodiff", "replay", "fused") when the engine and `RNN` take `vjp=`, else (None,) (the only engine)."""
    has = lambda fn: "vjp" in inspect.signature(fn).parameters  # noqa: E731
    return ("autodiff", "replay", "fused") if has(scan_cell) and has(RNN.__init__) else (None,)


def contestant_name(vjp: str | None) -> str:
    return "ours" if vjp is None else f"ours[{vjp}]"


def configure_layers(stack: Stack, *, vjp: str | None = None, dtype: Any = None, unroll: int | None = None) -> Stack:
    """Sets the engine VJP variant, compute dtype and scan unroll on every `RNN` in `stack`, in place.

    None leaves a setting as the layer has it.
    """
    for layer in stack.layers:
        for rnn in (layer.forward, layer.backward) if isinstance(layer, Bidirectional) else (layer,):
            if vjp is not None:
                if not hasattr(rnn, "vjp"):
                    raise AttributeError("this gatedrnn RNN has no `vjp` attribute; cannot select a VJP variant")
                rnn.vjp = vjp
            if dtype is not None:
                rnn.dtype = dtype
            if unroll is not None:
                rnn.unroll = unroll
    return stack


# ----------------------------------------------------------------------------- contestants


@dataclasses.dataclass
class Contestant:
    """Zero-argument callables that run one forward / one forward+backward and block."""

    name: str
    run: dict[str, Callable[[], Any]]
    compile_s: dict[str, float] | None = None
    memory: dict[str, dict[str, int]] | None = None
    outputs: np.ndarray | None = None  # forward outputs [b, t, out], float32
    input_grad: np.ndarray | None = None  # d loss / d x [b, t, d], float32


def jax_compile(fn: Callable, *args) -> tuple[Callable, float, dict[str, int]]:
    """jit(fn) lowered and compiled for args: (compiled, seconds, memory_analysis as a dict)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    seconds = time.perf_counter() - t0
    return compiled, seconds, memory_stats(compiled)


def memory_stats(compiled) -> dict[str, int]:
    stats = compiled.memory_analysis()
    if stats is None:  # some backends have none
        return {}
    out = {
        key: int(getattr(stats, f"{key}_size_in_bytes", 0) or 0)
        for key in ("temp", "argument", "output", "alias", "generated_code")
    }
    out["total"] = out["temp"] + out["argument"] + out["output"]
    peak = getattr(stats, "peak_memory_in_bytes", None)
    if peak:
        out["peak"] = int(peak)
    return out


def _blocking(fn: Callable, *args) -> Callable[[], Any]:
    return lambda: jax.block_until_ready(fn(*args))


def _vjp_loss(apply: Callable) -> Callable:
    """(params, x, cotangent) -> sum(apply(params, x) * cotangent) in float32."""

    def loss(params, x, cotangent):
        return jnp.sum(apply(params, x).astype(jnp.float32) * cotangent)

    return loss


def jax_contestant(name: str, apply: Callable, params: Any, x: jax.Array, cotangent: jax.Array) -> Contestant:
    """Compiles apply(params, x) -> y and its gradient w.r.t. (params, x); records outputs."""
    train = jax.grad(_vjp_loss(apply), argnums=(0, 1))
    fwd, fwd_s, fwd_mem = jax_compile(apply, params, x)
    bwd, bwd_s, bwd_mem = jax_compile(train, params, x, cotangent)
    outputs = np.asarray(jax.block_until_ready(fwd(params, x)), np.float32)
    input_grad = np.asarray(jax.block_until_ready(bwd(params, x, cotangent))[1], np.float32)
    return Contestant(
        name,
        run={"forward": _blocking(fwd, params, x), "train": _blocking(bwd, params, x, cotangent)},
        compile_s={"forward": fwd_s, "train": bwd_s},
        memory={"forward": fwd_mem, "train": bwd_mem},
        outputs=outputs,
        input_grad=input_grad,
    )


def torch_module(config: Config, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[config.cell]
    s = config.size
    return cls(
        s.input_size, s.hidden_size, num_layers=config.num_layers, bidirectional=config.bidirectional, batch_first=True
    )


def torch_contestant(module, x: np.ndarray, cotangent: np.ndarray) -> Contestant:
    import torch

    xt, gt = torch.from_numpy(x), torch.from_numpy(cotangent)
    params = list(module.parameters())

    def forward():
        with torch.no_grad():
            return module(xt)[0]

    def train():
        for p in params:
            p.grad = None
        xr = xt.detach().requires_grad_(True)
        module(xr)[0].backward(gt)
        return xr.grad

    return Contestant(
        "torch",
        run={"forward": forward, "train": train},
        outputs=forward().numpy().astype(np.float32),
        input_grad=train().numpy().astype(np.float32),
    )


def ours_contestant(
    module, config: Config, vjp: str | None, x: jax.Array, cotangent: jax.Array, *, unroll: int | None = None
) -> Contestant:
    from gatedrnn.nn.interop import from_torch

    stack = configure_layers(from_torch(module), vjp=vjp, dtype=_dtype(config), unroll=unroll)
    graphdef, state = nnx.split(stack)
    state = jax.tree.map(jnp.asarray, state)

    def apply(state, x):
        y, _ = nnx.merge(graphdef, state)(x)
        return y

    return jax_contestant(contestant_name(vjp), apply, state, x, cotangent)


def flax_contestant(module, config: Config, x: jax.Array, cotangent: jax.Array) -> Contestant:
    import flax.linen as nn

    dtype = _dtype(config)
    cell_cls = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}[config.cell]
    h = config.size.hidden_size

    def rnn():
        return nn.RNN(cell_cls(h, dtype=dtype))

    layers = [nn.Bidirectional(rnn(), rnn()) if config.bidirectional else rnn() for _ in range(config.num_layers)]
    model = layers[0] if len(layers) == 1 else nn.Sequential(layers)
    params = jax.tree.map(jnp.asarray, flax_params_from_torch(module, config))

    def apply(params, x):
        return model.apply({"params": params}, x)

    return jax_contestant("flax", apply, params, x, cotangent)


def flax_params_from_torch(module, config: Config) -> dict:
    """The params of `flax_contestant`'s model holding `module`'s weights.

    torch rows are gates (LSTM i, f, g, o; GRU r, z, n) of h each; Flax keeps one Dense per
    gate with kernel [in, h]. LSTM: input kernels have no bias, the recurrent ones carry
    b_ih + b_hh. GRU: b_hr and b_hz fold into the input biases; b_hn stays on `hn`.
    """
    h = config.size.hidden_size
    get = lambda name: module.get_parameter(name).detach().numpy().astype(np.float32)  # noqa: E731

    def cell(layer: int, suffix: str) -> dict:
        w_ih, w_hh = get(f"weight_ih_l{layer}{suffix}"), get(f"weight_hh_l{layer}{suffix}")
        b_ih, b_hh = get(f"bias_ih_l{layer}{suffix}"), get(f"bias_hh_l{layer}{suffix}")
        rows = lambda a, k: a[k * h : (k + 1) * h]  # noqa: E731
        p = {}
        if config.cell == "lstm":
            for k, gate in enumerate("ifgo"):
                p[f"i{gate}"] = {"kernel": rows(w_ih, k).T}
                p[f"h{gate}"] = {"kernel": rows(w_hh, k).T, "bias": rows(b_ih, k) + rows(b_hh, k)}
        else:
            for k, gate in enumerate("rz"):
                p[f"i{gate}"] = {"kernel": rows(w_ih, k).T, "bias": rows(b_ih, k) + rows(b_hh, k)}
                p[f"h{gate}"] = {"kernel": rows(w_hh, k).T}
            p["in"] = {"kernel": rows(w_ih, 2).T, "bias": rows(b_ih, 2)}
            p["hn"] = {"kernel": rows(w_hh, 2).T, "bias": rows(b_hh, 2)}
        return {"cell": jax.tree.map(np.ascontiguousarray, p)}

    layers = []
    for k in range(config.num_layers):
        if config.bidirectional:
            layers.append({"forward_rnn": cell(k, ""), "backward_rnn": cell(k, "_reverse")})
        else:
            layers.append(cell(k, ""))
    return layers[0] if len(layers) == 1 else {f"layers_{k}": p for k, p in enumerate(layers)}


def bound_contestant(config: Config, seed: int = 0) -> Contestant:
    """`jnp.dot` [m, d + h] x [d + h, g h] with the RNN's forward FLOPs, and 3x them for train."""
    s = config.size
    k, n = s.input_size + s.hidden_size, GATES[config.cell] * s.hidden_size
    rng = np.random.default_rng(seed)
    w = jnp.asarray(rng.standard_normal((k, n), dtype=np.float32))
    run, compile_s, memory = {}, {}, {}
    for mode, factor in (("forward", 1), ("train", 3)):
        m = max(1, round(factor * config.forward_flops() / (2 * k * n)))
        a = jnp.asarray(rng.standard_normal((m, k), dtype=np.float32))
        fn, compile_s[mode], memory[mode] = jax_compile(jnp.dot, a, w)
        run[mode] = _blocking(fn, a, w)
    return Contestant("bound", run=run, compile_s=compile_s, memory=memory)


def _dtype(config: Config):
    return None if config.dtype == "float32" else jnp.dtype(config.dtype)


# ----------------------------------------------------------------------------- check and time


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
        build = lambda v=v: ours_contestant(module, config, v, x, g, unroll=unroll)  # noqa: E731
        contestants += attempt(contestant_name(v), build)
    if config.dtype == "float32":  # Flax's cells keep a float32 carry: no like-for-like bf16 row
        contestants += attempt("flax", lambda: flax_contestant(module, config, x, g))
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


# ----------------------------------------------------------------------------- remat report


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
                graphdef, state = nnx.split(configure_layers(stack, vjp=vjp, unroll=unroll))

                def apply(state, x, graphdef=graphdef):
                    y, _ = nnx.merge(graphdef, state)(x)
                    return y

                train = jax.grad(_vjp_loss(apply), argnums=(0, 1))
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


# ----------------------------------------------------------------------------- tables


def _mb(nbytes: int | None) -> str:
    return "-" if nbytes is None else f"{nbytes / 2**20:.1f}"


def _join(values: list[str]) -> str:
    return " / ".join(values)


def markdown_table(results: list[dict], vjps: tuple[str | None, ...]) -> str:
    """One row per config; "ours" columns hold one value per VJP variant, joined by " / "."""
    ours = [contestant_name(v) for v in vjps]
    label = "ours" if vjps == (None,) else f"ours ({' / '.join(str(v) for v in vjps)})"
    header = [
        "config", "torch fwd+bwd tok/s", f"{label} fwd+bwd ×torch", "flax fwd+bwd ×torch",
        "bound ×torch", f"{label} of bound", f"{label} compile s", f"{label} memory MB",
        "torch fwd tok/s", f"{label} fwd ×torch", "flax fwd ×torch",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        ratio, frac, cs, errors = r["ratio_to_torch"], r["fraction_of_bound"], r["contestants"], r["errors"]
        ratio_of = lambda mode, n: _fmt(ratio[mode].get(n), "{:.2f}x", n in errors)  # noqa: E731
        row = [
            f"{r['name']} ({_size_str(r['size'])})",
            f"{cs['torch']['train']['tokens_per_s']:,.0f}",
            _join([ratio_of("train", n) for n in ours]),
            ratio_of("train", "flax"),
            ratio_of("train", "bound"),
            _join([_fmt(frac["train"].get(n), "{:.2f}", n in errors) for n in ours]),
            _join([_fmt(cs[n]["compile_s"]["train"] if n in cs else None, "{:.2f}", n in errors) for n in ours]),
            _join([_mb(cs[n]["memory"]["train"].get("total")) if n in cs else "err" for n in ours]),
            f"{cs['torch']['forward']['tokens_per_s']:,.0f}",
            _join([ratio_of("forward", n) for n in ours]),
            ratio_of("forward", "flax"),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _fmt(value: float | None, spec: str, failed: bool) -> str:
    """`value` in `spec`; "err" for a contestant that failed (the JSON's `errors`), "-" for none."""
    return spec.format(value) if value is not None else "err" if failed else "-"


def _size_str(size: dict) -> str:
    return f"B{size['batch']} T{size['time']} I{size['input_size']} H{size['hidden_size']}"


def remat_table(rows: list[dict]) -> str:
    header = ["T", "remat", "vjp", "temp MB", "temp+arg+out MB", "compile s", "fwd+bwd tok/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        tps = r["train_tokens_per_s"]
        lines.append("| " + " | ".join([
            str(r["time"]), str(r["remat"]), str(r["vjp"] or "-"), _mb(r["memory"].get("temp")),
            _mb(r["memory"].get("total")), f"{r['compile_s']:.2f}", "-" if tps is None else f"{tps:,.0f}",
        ]) + " |")
    return "\n".join(lines)
