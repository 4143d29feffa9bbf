"""Side-by-side speed of gatedrnn's LSTM/GRU layers, torch.nn.LSTM/GRU and Flax's nn.RNN (issue 5).

    python -m experiments.benchmark                       # S1-S4, LSTM and GRU, 2-layer bi-LSTM,
                                                          # bf16 at S1, remat report; ~15-30 min on 2 cores
    python -m experiments.benchmark --sizes=S1,S2 --cells=lstm --repeats=3 --remat_lengths=
    python -m experiments.benchmark --quick               # tiny sizes; ~1 min, nearly all compiling

All contestants run in this one process on the same weights (torch's, mapped into ours with
`gatedrnn.nn.interop.from_torch` and into Flax's params), after a check that their outputs and
input gradients agree with torch's (the run raises `OutputMismatch` otherwise). Repeats are
interleaved (torch, ours, flax, bound, torch, ours, ...); the table reports medians. See
README.md (Performance) for the columns and `gatedrnn.lab.benchmark` for the definitions.

Writes DIR/benchmark.json (every raw time, compile time, memory analysis, the agreement
check and the machine: CPU model, cores, load, library versions) and DIR/benchmark.md, and
prints the tables. DIR is --out (default benchmarks/).

Allocator: glibc returns malloc'd buffers over 32 MiB to the OS on every free, and XLA
re-faults its large temporaries on every call (up to 4x slower on a large matmul). The
remedy, `gatedrnn.lab.runtime.malloc_env()` (MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_),
only takes effect if set before the process starts, so unless --no_malloc_tuning is given
this script re-executes itself once with those variables added (an environment marker
prevents a loop; already-set variables are kept as they are).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from gatedrnn.lab import benchmark as bm
from gatedrnn.lab.runtime import malloc_env_active, reexec_with_malloc_env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="S1,S2,S3,S4", help="comma list of " + ",".join(k for k in bm.SIZES if k != "Q"))
    p.add_argument("--cells", default="lstm,gru", help="comma list of lstm,gru")
    p.add_argument("--bidir_sizes", default="S1", help="sizes for the 2-layer bidirectional LSTM rows ('' for none)")
    p.add_argument("--bf16_sizes", default="S1", help="sizes for bfloat16-compute rows, every --cells ('' for none)")
    p.add_argument("--remat_lengths", default="4096,16384,65536", help="T for the remat memory report ('' for none)")
    p.add_argument("--remat_time_max", type=int, default=4096, help="also time remat rows with T <= this")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats per contestant (median reported)")
    p.add_argument("--min_time", type=float, default=0.2, help="seconds one measurement averages over, at least")
    p.add_argument("--torch_threads", type=int, default=None, help="torch.set_num_threads (default: os.cpu_count())")
    p.add_argument("--unroll", type=int, default=None, help="lax.scan unroll of our layers (default: the layer's)")
    p.add_argument("--out", default="benchmarks", help="directory for benchmark.json and benchmark.md")
    p.add_argument("--quick", action="store_true", help="tiny smoke run: size Q (B2 T12 I3 H5), remat T=16, 2 repeats")
    p.add_argument(
        "--no_malloc_tuning", "--no-malloc-tuning", action="store_true", help="do not re-exec with malloc_env()"
    )
    if p.parse_known_args(argv)[0].quick:  # tiny defaults; flags given explicitly still win
        p.set_defaults(
            sizes="Q", bidir_sizes="Q", bf16_sizes="Q", remat_lengths="16", remat_time_max=16, repeats=2, min_time=0.0
        )
    return p.parse_args(argv)


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def build_configs(args: argparse.Namespace) -> list[bm.Config]:
    sizes = lambda text: [bm.SIZES[s] for s in _list(text)]  # noqa: E731
    cells = _list(args.cells)
    for name in cells:
        if name not in bm.GATES:
            raise SystemExit(f"--cells: {name!r} is not one of {sorted(bm.GATES)}")
    for text in (args.sizes, args.bidir_sizes, args.bf16_sizes):
        for s in _list(text):
            if s not in bm.SIZES:
                raise SystemExit(f"unknown size {s!r}; choose from {sorted(bm.SIZES)}")
    configs = [bm.Config(size, cell) for size in sizes(args.sizes) for cell in cells]
    configs += [bm.Config(size, "lstm", num_layers=2, bidirectional=True) for size in sizes(args.bidir_sizes)]
    configs += [bm.Config(size, cell, dtype="bfloat16") for size in sizes(args.bf16_sizes) for cell in cells]
    return configs


def main(argv: list[str] | None = None, *, allow_reexec: bool = False) -> dict:
    """Runs the benchmark; returns what it writes to benchmark.json."""
    args = parse_args(argv)
    if allow_reexec and not args.no_malloc_tuning:
        reexec_with_malloc_env()  # returns only when the variables are already set

    import torch

    torch.set_num_threads(args.torch_threads or os.cpu_count() or 1)
    start = time.perf_counter()
    vjps = bm.engine_vjp_variants()
    report: dict = {"machine": bm.machine_info(), "settings": vars(args), "configs": [], "remat": []}
    report["machine"]["torch_threads"] = torch.get_num_threads()
    report["machine"]["malloc_tuned"] = malloc_env_active()

    for config in build_configs(args):
        print(f"[benchmark] {config.name} ({config.size})", file=sys.stderr, flush=True)
        result = bm.run_config(config, vjps=vjps, repeats=args.repeats, min_time=args.min_time, unroll=args.unroll)
        report["configs"].append(result)
    lengths = [int(t) for t in _list(args.remat_lengths)]
    if lengths:
        print(f"[benchmark] remat report T={lengths}", file=sys.stderr, flush=True)
        report["remat"] = bm.remat_report(
            lengths, vjps=vjps, time_max=args.remat_time_max, repeats=args.repeats, unroll=args.unroll
        )
    report["wall_s"] = time.perf_counter() - start
    report["machine"]["loadavg_1_5_15_end"] = list(os.getloadavg())

    markdown = format_report(report, vjps, argv)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "benchmark.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out, "benchmark.md"), "w") as f:
        f.write(markdown)
    print(markdown)
    return report


def format_report(report: dict, vjps, argv: list[str] | None) -> str:
    m = report["machine"]
    command = "python -m experiments.benchmark " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        f"`{command.strip()}`",
        "",
        f"{m['cpu_model']}, {m['cpu_count']} cores, load {m['loadavg_1_5_15'][0]:.1f} at start; "
        f"jax {m['jax']}, flax {m['flax']}, torch {m['torch']}; malloc tuned: {m['malloc_tuned']}; "
        f"float32 unless named; wall {report['wall_s']:.0f} s.",
        "",
    ]
    if report["configs"]:
        lines += [bm.markdown_table(report["configs"], vjps), ""]
    if report["remat"]:
        lines += ["Remat (LSTM, B8 I32 H128, fwd+bwd):", "", bm.remat_table(report["remat"]), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main(allow_reexec=True)
