"""What the benchmark writes: the machine it ran on and its markdown tables.

`speed_table` has one row per config; the "ours" columns hold one value per VJP variant, joined
by " / ". `remat_table` one row per (T, remat, vjp). Columns are explained in README.md (Performance).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import Any

import jax
import numpy as np

from gatedrnn.lab.benchmark.contestants import contestant_name, engine_vjp_variants
from gatedrnn.lab.benchmark.linear import own_sequential
from gatedrnn.lab.benchmark.sizes import Size
from gatedrnn.lab.benchmark.xlstm import MSize
from gatedrnn.lab.tables import markdown_table

# ----------------------------------------------------------------------------- the machine


def machine_info() -> dict[str, Any]:
    """CPU model, cores, load and library versions, for the JSON next to the numbers."""
    import flax

    return {
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


# ----------------------------------------------------------------------------- tables


def _mb(nbytes: int | None) -> str:
    return "-" if nbytes is None else f"{nbytes / 2**20:.1f}"


def _fmt(value: float | None, spec: str, failed: bool) -> str:
    """`value` in `spec`; "err" for a contestant that failed (the JSON's `errors`), "-" for none."""
    return spec.format(value) if value is not None else "err" if failed else "-"


def speed_table(results: list[dict], vjps: tuple[str | None, ...]) -> str:
    """One row per config (`run_config` results); "ours" columns hold one value per VJP variant."""
    ours = [contestant_name(v) for v in vjps]
    label = "ours" if vjps == (None,) else f"ours ({' / '.join(str(v) for v in vjps)})"
    header = [
        "config", "torch fwd+bwd tok/s", f"{label} fwd+bwd ×torch", "flax fwd+bwd ×torch",
        "bound ×torch", f"{label} of bound", f"{label} compile s", f"{label} memory MB",
        "torch fwd tok/s", f"{label} fwd ×torch", "flax fwd ×torch",
    ]
    join = " / ".join
    rows = []
    for r in results:
        ratio, frac, cs, errors = r["ratio_to_torch"], r["fraction_of_bound"], r["contestants"], r["errors"]
        ratio_of = lambda mode, n: _fmt(ratio[mode].get(n), "{:.2f}x", n in errors)  # noqa: E731
        rows.append([
            f"{r['name']} ({Size(**r['size'])})",
            f"{cs['torch']['train']['tokens_per_s']:,.0f}",
            join([ratio_of("train", n) for n in ours]),
            ratio_of("train", "flax"),
            ratio_of("train", "bound"),
            join([_fmt(frac["train"].get(n), "{:.2f}", n in errors) for n in ours]),
            join([_fmt(cs[n]["compile_s"]["train"] if n in cs else None, "{:.2f}", n in errors) for n in ours]),
            join([_mb(cs[n]["memory"]["train"].get("total")) if n in cs else "err" for n in ours]),
            f"{cs['torch']['forward']['tokens_per_s']:,.0f}",
            join([ratio_of("forward", n) for n in ours]),
            ratio_of("forward", "flax"),
        ])
    return markdown_table(header, rows)


def remat_table(rows: list[dict]) -> str:
    header = ["T", "remat", "vjp", "temp MB", "temp+arg+out MB", "compile s", "fwd+bwd tok/s"]
    cells = []
    for r in rows:
        tps = r["train_tokens_per_s"]
        cells.append([
            str(r["time"]), str(r["remat"]), str(r["vjp"] or "-"), _mb(r["memory"].get("temp")),
            _mb(r["memory"].get("total")), f"{r['compile_s']:.2f}", "-" if tps is None else f"{tps:,.0f}",
        ])
    return markdown_table(header, cells)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def linear_table(linear: dict) -> str:
    """The linear suite (`run_linear`): one row per (size, contestant), fwd+bwd tokens/s and ratios."""
    header = ["size", "contestant", "fwd+bwd tok/s", "× own sequential", "× torch GRU", "× torch GRU[1 thread]",
              "× torch LSTM", "memory MB (kind)", "compile s", "timed calls", "note"]
    rows = []
    for r in linear["sizes"]:
        size = f"{r['name']} ({Size(**r['size'])})"
        for name, c in r["contestants"].items():
            if c.get("skipped"):
                rows.append([size, name, "-", "-", "-", "-", "-", "-", "-", "0", c["skipped"]])
                continue
            ratios = r["ratios"][name]
            mem = "-" if c["memory_bytes"] is None else f"{_mb(c['memory_bytes'])} ({c['memory_kind']})"
            own = own_sequential(name)
            notes = [f"vs {own}"] if own and ratios["own_sequential"] is not None else []
            if not c["finite"]:
                notes.append("NON-FINITE outputs")
            rows.append([
                size, name, f"{c['tokens_per_s']:,.0f}", _ratio(ratios["own_sequential"]), _ratio(ratios["torch_gru"]),
                _ratio(ratios["torch_gru_1thread"]), _ratio(ratios["torch_lstm"]), mem, "-" if c["compile_s"] is None else f"{c['compile_s']:.1f}",
                str(len(c["seconds"])), "; ".join(notes),
            ])
    return markdown_table(header, rows)


def linear_targets_lines(linear: dict) -> list[str]:
    """One line per target of the issue: the measured ratio and whether it is met."""
    lines = []
    for t in linear["targets"]:
        if t["value"] is None:
            lines.append(f"- {t['target']}: not measured in this run (goal >= {t['goal']:g}x)")
        else:
            lines.append(f"- {t['target']}: {t['value']:.2f}x (goal >= {t['goal']:g}x: {'met' if t['met'] else 'NOT met'})")
    return lines


def _tps(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def mlstm_table(xlstm: dict) -> str:
    """The xlstm suite's mLSTM rows (`run_xlstm`): one per (size, contestant), tokens/s and ratios to the reference."""
    reference = xlstm["mlstm"][0]["reference"] if xlstm["mlstm"] else "reference"
    header = ["size", "contestant", "fwd+bwd tok/s", f"fwd+bwd × {reference}", "fwd tok/s", f"fwd × {reference}",
              "compile s (fwd+bwd)", "memory MB (fwd+bwd)", "timed calls", "note"]
    rows = []
    for r in xlstm["mlstm"]:
        size = f"{r['name']} ({MSize(**r['size'])})"
        for name, c in r["contestants"].items():
            if c.get("skipped"):
                rows.append([size, name, "-", "-", "-", "-", "-", "-", "0", c["skipped"]])
                continue
            train, fwd, ratios = c["train"], c["forward"], r["ratios"][name]
            note = "reference" if name == r["reference"] else ""
            if not r["finite"].get(name, True):
                note = "NON-FINITE outputs"
            rows.append([size, name, _tps(train["tokens_per_s"]), _ratio(ratios["train"]), _tps(fwd["tokens_per_s"]),
                         _ratio(ratios["forward"]), f"{train['compile_s']:.1f}", _mb(train["memory_bytes"]),
                         f"{len(train['seconds'])} / {len(fwd['seconds'])}", note])
    return markdown_table(header, rows)


def slstm_table(xlstm: dict) -> str:
    """The xlstm suite's sLSTM rows: fwd+bwd tokens/s, × our LSTM and × torch's nn.LSTM."""
    header = ["size", "contestant", "fwd+bwd tok/s", "× lstm (ours)", "× torch LSTM", "× torch LSTM[1 thread]",
              "compile s", "memory MB", "timed calls", "note"]
    rows = []
    for r in xlstm["slstm"]:
        size = f"{r['name']} ({Size(**r['size'])}, sLSTM {r['num_heads']} heads)"
        for name, c in r["contestants"].items():
            if c.get("skipped"):
                rows.append([size, name, "-", "-", "-", "-", "-", "-", "0", c["skipped"]])
                continue
            train, ratios = c["train"], r["ratios"][name]
            note = "NON-FINITE outputs" if not r["finite"].get(name, True) else ""
            rows.append([size, name, _tps(train["tokens_per_s"]), _ratio(ratios["lstm"]), _ratio(ratios["torch_lstm"]),
                         _ratio(ratios["torch_lstm_1thread"]),
                         "-" if train["compile_s"] is None else f"{train['compile_s']:.1f}", _mb(train["memory_bytes"]),
                         str(len(train["seconds"])), note])
    return markdown_table(header, rows)


def report_markdown(report: dict, vjps: tuple[str | None, ...], command: str) -> str:
    """benchmark.md: the command, the machine, the speed table and the remat table."""
    m = report["machine"]
    lines = [
        f"`{command.strip()}`",
        "",
        f"{m['cpu_model']}, {m['cpu_count']} cores, load {m['loadavg_1_5_15'][0]:.1f} at start; "
        f"jax {m['jax']}, flax {m['flax']}, torch {m['torch']}; malloc tuned: {m['malloc_tuned']}; "
        f"float32 unless named; wall {report['wall_s']:.0f} s.",
        "",
    ]
    if report["configs"]:
        lines += [speed_table(report["configs"], vjps)]
    if report["remat"]:
        lines += ["Remat (LSTM, B8 I32 H128, fwd+bwd):", "", remat_table(report["remat"])]
    if report.get("linear"):
        lin = report["linear"]
        lines += [
            f"Linear cells, fwd+bwd (grad of sum(y * g) w.r.t. params and x; input size = H), float32; "
            f"torch on {m['torch_threads']} threads (and [1 thread]), XLA on {lin['jax_cpu_threads']} cores; "
            f"budget {lin['budget_s']:g} s of calls per contestant and size. \"parallel (auto: X)\" = "
            "parallel_scan=\"auto\", which is X on this backend (linear: one lax.scan of the FMA over precomputed "
            "coefficients); \"parallel[associative]\" = lax.associative_scan; both × own sequential are to "
            "<cell> sequential, the targets use auto. Memory: xla = temp + output bytes "
            "of the compiled call (memory_analysis), rss = peak RSS growth during one torch call.",
            "",
            linear_table(lin),
            "Targets:",
            "",
            *linear_targets_lines(lin),
            "",
        ]
    x = report.get("xlstm")
    if x and x["mlstm"]:
        lines += [
            f"mLSTM (xLSTM's matrix memory), float32: every row maps xs = concat(q, k, v) [b, t, 3h] to h~ [b, t, h] "
            f"(the same gate projection, then the memory); fwd+bwd = the VJP of a fixed cotangent into params and xs. "
            f"\"official\" = NX-AI's mlstm_kernels.jax native kernels (JAX autodiff) on the same q, k, v and gates; "
            f"each row's outputs and input gradients were checked against the reference row before timing. "
            f"XLA on {x['jax_cpu_threads']} cores; budget {x['budget_s']:g} s of calls per contestant, size and mode; "
            f"memory: XLA temp + output bytes of the compiled fwd+bwd.",
            "",
            mlstm_table(x),
            "Target (gatedrnn's chunkwise mLSTM at least as fast as the official native chunkwise kernel):",
            "",
            *linear_targets_lines(x),
            "",
        ]
    if x and x["slstm"]:
        lines += [
            f"sLSTM vs LSTM, fwd+bwd, float32; torch on {m['torch_threads']} threads (and [1 thread]). slstm and "
            "lstm are ours (scan_cell, sequential, the fused VJP); slstm was checked against the official sLSTM "
            "and lstm against torch's on the same weights before timing.",
            "",
            slstm_table(x),
        ]
    return "\n".join(lines)
