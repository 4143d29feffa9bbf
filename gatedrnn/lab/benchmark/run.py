"""One benchmark run, as `experiments/benchmark.py` starts it: the configs, their results, the files.

  report = run_benchmark(Settings(sizes=("Q",), bidir_sizes=(), bf16_sizes=(), remat_lengths=(16,)),
                         command="python -m experiments.benchmark --quick")

writes <out>/benchmark.json (every raw time, compile time, memory analysis, the agreement check
and the machine) and <out>/benchmark.md (the tables), prints the tables and returns the JSON's dict.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

from gatedrnn.lab.benchmark.contestants import engine_vjp_variants
from gatedrnn.lab.benchmark.linear import LINEAR_CELLS, LINEAR_SIZES, run_linear, usable_cpus
from gatedrnn.lab.benchmark.report import machine_info, report_markdown
from gatedrnn.lab.benchmark.sizes import GATES, SIZES, Config
from gatedrnn.lab.benchmark.timing import remat_report, run_config
from gatedrnn.lab.benchmark.xlstm import CHUNKS, MLSTM_SIZES, SLSTM_SIZES, run_xlstm
from gatedrnn.lab.runtime import malloc_env_active
from gatedrnn.lab.tables import write_text
from gatedrnn.validation import ConfigError, check_choice, check_positive


@dataclasses.dataclass(frozen=True)
class Settings:
    """The benchmark's flags (see experiments/benchmark.py); sizes are keys of `SIZES`, linear_sizes of
    `LINEAR_SIZES`. `suite`: "classic" (LSTM/GRU vs torch and Flax, the remat report), "linear" (the
    linear cells' parallel vs sequential modes, recurrentgemma and torch: `gatedrnn.lab.benchmark.linear`),
    "xlstm" (the mLSTM's forms vs NX-AI's kernels, the sLSTM vs LSTMs: `gatedrnn.lab.benchmark.xlstm`;
    xlstm_sizes are keys of `MLSTM_SIZES`, slstm_sizes of `SLSTM_SIZES`) or "all" (classic and linear;
    not xlstm, which takes ~10 min more)."""

    suite: str = "classic"
    sizes: tuple[str, ...] = ("S1", "S2", "S3", "S4")
    cells: tuple[str, ...] = ("lstm", "gru")
    bidir_sizes: tuple[str, ...] = ("S1",)  # 2-layer bidirectional LSTM rows
    bf16_sizes: tuple[str, ...] = ("S1",)  # bfloat16-compute rows, every cell
    remat_lengths: tuple[int, ...] = (4096, 16384, 65536)
    remat_time_max: int = 4096  # remat rows up to this T are also timed
    repeats: int = 5
    min_time: float = 0.2
    torch_threads: int | None = None  # default: os.cpu_count()
    unroll: int | None = None  # our layers' lax.scan unroll; default: the layer's
    out: str = "benchmarks"
    linear_sizes: tuple[str, ...] = ("L1k", "L8k", "L64k")
    linear_cells: tuple[str, ...] = LINEAR_CELLS
    linear_chunks: tuple[int, ...] = ()  # extra "<cell> parallel[chunk K]" rows (parallel_chunk=K)
    linear_budget_s: float = 30.0  # seconds of calls per linear contestant and size (at least one call)
    xlstm_sizes: tuple[str, ...] = ("M256", "M1k32", "M1k", "M4k")
    slstm_sizes: tuple[str, ...] = ("S1", "S2")
    xlstm_chunks: tuple[int, ...] = CHUNKS  # "mlstm chunkwise[K]" / "official chunkwise[K]" rows
    xlstm_budget_s: float = 30.0  # seconds of calls per xlstm contestant, size and mode


# --quick: tiny sizes, a smoke run of about a minute (as flag values; flags given explicitly still win)
QUICK = {"sizes": ["Q"], "bidir_sizes": ["Q"], "bf16_sizes": ["Q"], "remat_lengths": ["16"], "remat_time_max": 16,
         "repeats": 2, "min_time": 0.0, "linear_sizes": ["LQ"], "xlstm_sizes": ["MQ"], "slstm_sizes": ["SQ"],
         "xlstm_chunks": ["16"]}
SUITES = ("classic", "linear", "xlstm", "all")


def settings_from_flags(values: dict) -> Settings:
    """`Settings` from flag values (lists of strings for the sizes, cells and remat lengths)."""
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    ints = {}
    for field in ("remat_lengths", "linear_chunks", "xlstm_chunks"):
        if field not in values:
            continue
        lengths = values[field]
        bad = [t for t in lengths if not str(t).isdigit() or int(t) <= 0]
        if bad:
            raise ConfigError(f"--{field}={','.join(map(str, lengths))}: {bad[0]!r} is not a positive integer")
        ints[field] = tuple(int(t) for t in lengths)
    return Settings(**{**values, **ints})


def check_linear(settings: Settings) -> list:
    """The linear suite's sizes (`LINEAR_SIZES` values); ConfigError names a bad suite, size, cell or budget."""
    check_choice("--suite", settings.suite, SUITES)
    for size in settings.linear_sizes:
        check_choice("--linear_sizes", size, LINEAR_SIZES)
    for cell in settings.linear_cells:
        check_choice("--linear_cells", cell, LINEAR_CELLS)
    check_positive("--linear_budget_s", settings.linear_budget_s, integer=False)
    return [LINEAR_SIZES[s] for s in settings.linear_sizes]


def check_xlstm(settings: Settings) -> tuple[list, list]:
    """The xlstm suite's (mLSTM, sLSTM) sizes; ConfigError names a bad size, chunk list or budget."""
    for size in settings.xlstm_sizes:
        check_choice("--xlstm_sizes", size, MLSTM_SIZES)
    for size in settings.slstm_sizes:
        check_choice("--slstm_sizes", size, SLSTM_SIZES)
    if not settings.xlstm_chunks:
        raise ConfigError("--xlstm_chunks is empty: give at least one chunk length (the first is the reference)")
    for chunk in settings.xlstm_chunks:
        check_positive("--xlstm_chunks", chunk)
    check_positive("--xlstm_budget_s", settings.xlstm_budget_s, integer=False)
    return [MLSTM_SIZES[s] for s in settings.xlstm_sizes], [SLSTM_SIZES[s] for s in settings.slstm_sizes]


def build_configs(settings: Settings) -> list[Config]:
    """Every size x cell, then the bidirectional and bfloat16 rows; ConfigError names a bad size or cell."""
    for cell in settings.cells:
        check_choice("--cells", cell, GATES)
    for field in ("sizes", "bidir_sizes", "bf16_sizes"):
        for size in getattr(settings, field):
            check_choice(f"--{field}", size, SIZES)
    configs = [Config(SIZES[s], cell) for s in settings.sizes for cell in settings.cells]
    configs += [Config(SIZES[s], "lstm", num_layers=2, bidirectional=True) for s in settings.bidir_sizes]
    configs += [Config(SIZES[s], cell, dtype="bfloat16") for s in settings.bf16_sizes for cell in settings.cells]
    return configs


def run_benchmark(settings: Settings, command: str) -> dict:
    """Runs every config and the remat report; writes benchmark.json and benchmark.md under settings.out.

    `command` (the command line that started the run) heads benchmark.md.
    """
    import torch

    linear_sizes = check_linear(settings)
    xlstm_sizes = check_xlstm(settings) if settings.suite == "xlstm" else None
    classic = settings.suite in ("classic", "all")
    configs = build_configs(settings) if classic else []
    torch.set_num_threads(settings.torch_threads or usable_cpus())
    start = time.perf_counter()
    vjps = engine_vjp_variants()
    report: dict = {"machine": machine_info(), "settings": dataclasses.asdict(settings), "configs": [], "remat": []}
    report["machine"]["torch_threads"] = torch.get_num_threads()
    report["machine"]["malloc_tuned"] = malloc_env_active()

    for config in configs:
        print(f"[benchmark] {config.name} ({config.size})", file=sys.stderr, flush=True)
        report["configs"].append(run_config(config, vjps=vjps, repeats=settings.repeats, min_time=settings.min_time,
                                            unroll=settings.unroll))
    if classic and settings.remat_lengths:
        print(f"[benchmark] remat report T={list(settings.remat_lengths)}", file=sys.stderr, flush=True)
        report["remat"] = remat_report(list(settings.remat_lengths), vjps=vjps, time_max=settings.remat_time_max,
                                       repeats=settings.repeats, unroll=settings.unroll)
    if settings.suite in ("linear", "all"):
        report["linear"] = run_linear(linear_sizes, cells=settings.linear_cells, chunks=settings.linear_chunks,
                                      repeats=settings.repeats, min_time=settings.min_time,
                                      budget_s=settings.linear_budget_s)
    if xlstm_sizes is not None:
        report["xlstm"] = run_xlstm(*xlstm_sizes, chunks=settings.xlstm_chunks, repeats=settings.repeats,
                                    min_time=settings.min_time, budget_s=settings.xlstm_budget_s)
    report["wall_s"] = time.perf_counter() - start
    report["machine"]["loadavg_1_5_15_end"] = list(os.getloadavg())

    markdown = report_markdown(report, vjps, command)
    write_text(os.path.join(settings.out, "benchmark.json"), json.dumps(report, indent=1))
    write_text(os.path.join(settings.out, "benchmark.md"), markdown)
    print(markdown)
    return report
