"""Side-by-side speed of gatedrnn's LSTM/GRU layers, torch.nn.LSTM/GRU and Flax's nn.RNN (issue 5), and of the
linear cells' parallel mode (issue 13).

    python -m experiments.benchmark                       # S1-S4, LSTM and GRU, 2-layer bi-LSTM,
                                                          # bf16 at S1, remat report; ~15-30 min on 2 cores
    python -m experiments.benchmark --sizes=S1,S2 --cells=lstm --repeats=3 --remat_lengths=
    python -m experiments.benchmark --quick               # tiny sizes; ~1 min, nearly all compiling
    python -m experiments.benchmark --suite=linear --repeats=3   # mingru, minlstm, lru, rglru: parallel vs
                                                          # sequential vs recurrentgemma vs torch GRU/LSTM,
                                                          # T = 1k, 8k, 64k; ~10 min on 2 cores
    python -m experiments.benchmark --suite=linear --quick   # size LQ (B2 T16 H8); ~30 s
    python -m experiments.benchmark --suite=xlstm --repeats=3    # mLSTM chunkwise/parallel/sequential vs NX-AI's
                                                          # native JAX kernels at B8 T256-4096; sLSTM vs LSTM
                                                          # (ours, official, torch) at S1, S2; ~15 min on 2 cores
    python -m experiments.benchmark --suite=xlstm --quick    # sizes MQ, SQ; ~1 min

--suite=linear is `gatedrnn.lab.benchmark.linear` (its docstring defines the contestants, the loss, the
memory columns and the per-contestant time budget); --suite=xlstm is `gatedrnn.lab.benchmark.xlstm`;
--suite=all runs classic and linear (not xlstm).

All contestants run in this one process on the same weights (torch's, mapped into ours with
`gatedrnn.nn.interop.from_torch` and from ours into Flax's params), after a check that their outputs and
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

import dataclasses
import sys

from absl import app, flags

from gatedrnn.lab.benchmark import (
    LINEAR_CELLS,
    LINEAR_SIZES,
    MLSTM_SIZES,
    QUICK,
    SLSTM_SIZES,
    SIZES,
    Settings,
    run_benchmark,
    settings_from_flags,
)
from gatedrnn.lab.runtime import reexec_with_malloc_env
from gatedrnn.validation import ConfigError

FLAGS = flags.FLAGS
DEFAULT = Settings()  # the flags' defaults are the Settings' own
flags.DEFINE_string("suite", DEFAULT.suite, "classic (LSTM/GRU vs torch and Flax), linear (the linear cells: "
                    "parallel vs sequential vs recurrentgemma vs torch), xlstm (the mLSTM's forms vs NX-AI's "
                    "kernels, the sLSTM vs LSTMs) or all (classic and linear).")
flags.DEFINE_list("xlstm_sizes", list(DEFAULT.xlstm_sizes), "xlstm-suite mLSTM sizes, of "
                  + ",".join(k for k in MLSTM_SIZES if k != "MQ") + " ('' for none).")
flags.DEFINE_list("slstm_sizes", list(DEFAULT.slstm_sizes), "xlstm-suite sLSTM sizes, of "
                  + ",".join(k for k in SLSTM_SIZES if k != "SQ") + " ('' for none).")
flags.DEFINE_list("xlstm_chunks", [str(k) for k in DEFAULT.xlstm_chunks],
                  "Chunk lengths K of the 'mlstm chunkwise[K]' and 'official chunkwise[K]' rows; the first "
                  "official one is the agreement reference.")
flags.DEFINE_float("xlstm_budget_s", DEFAULT.xlstm_budget_s,
                   "Seconds of calls per xlstm contestant, size and mode (as --linear_budget_s).")
flags.DEFINE_list("linear_sizes", list(DEFAULT.linear_sizes), "Linear-suite sizes, of "
                  + ",".join(k for k in LINEAR_SIZES if k != "LQ") + " (run in this order).")
flags.DEFINE_list("linear_cells", list(DEFAULT.linear_cells), "Linear-suite cells, of " + ",".join(LINEAR_CELLS) + ".")
flags.DEFINE_list("linear_chunks", [str(k) for k in DEFAULT.linear_chunks],
                  "Extra linear-suite rows '<cell> parallel[chunk K]' (scan_cell parallel_chunk=K) for each K.")
flags.DEFINE_float("linear_budget_s", DEFAULT.linear_budget_s,
                   "Seconds of calls per linear contestant and size: fewer repeats past it, skipped when one "
                   "call predicted from the previous size exceeds it.")
flags.DEFINE_list("sizes", list(DEFAULT.sizes), "Sizes, of " + ",".join(k for k in SIZES if k != "Q") + ".")
flags.DEFINE_list("cells", list(DEFAULT.cells), "Cells, of lstm,gru.")
flags.DEFINE_list("bidir_sizes", list(DEFAULT.bidir_sizes),
                  "Sizes for the 2-layer bidirectional LSTM rows ('' for none).")
flags.DEFINE_list("bf16_sizes", list(DEFAULT.bf16_sizes),
                  "Sizes for bfloat16-compute rows, every --cells ('' for none).")
flags.DEFINE_list("remat_lengths", [str(t) for t in DEFAULT.remat_lengths],
                  "T for the remat memory report ('' for none).")
flags.DEFINE_integer("remat_time_max", DEFAULT.remat_time_max, "Also time remat rows with T <= this.")
flags.DEFINE_integer("repeats", DEFAULT.repeats, "Interleaved repeats per contestant (median reported).")
flags.DEFINE_float("min_time", DEFAULT.min_time, "Seconds one measurement averages over, at least.")
flags.DEFINE_integer("torch_threads", DEFAULT.torch_threads, "torch.set_num_threads (default: os.cpu_count()).")
flags.DEFINE_integer("unroll", DEFAULT.unroll, "lax.scan unroll of our layers (default: the layer's).")
flags.DEFINE_string("out", DEFAULT.out, "Directory for benchmark.json and benchmark.md.")
flags.DEFINE_bool("quick", False, "Tiny smoke run: size Q (B2 T12 I3 H5), remat T=16, linear size LQ, xlstm "
                  "sizes MQ, SQ (chunk 16), 2 repeats; flags given explicitly still win.")
flags.DEFINE_bool("no_malloc_tuning", False, "Do not re-exec with gatedrnn.lab.runtime.malloc_env().")
flags.DEFINE_alias("no-malloc-tuning", "no_malloc_tuning")
SETTINGS = [field.name for field in dataclasses.fields(Settings)]  # the flags that make a run's Settings


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.no_malloc_tuning:
        reexec_with_malloc_env()  # returns only when the variables are already set
    values = {name: FLAGS[name].value for name in SETTINGS}
    if FLAGS.quick:
        values.update({name: value for name, value in QUICK.items() if not FLAGS[name].present})
    try:
        run_benchmark(settings_from_flags(values), "python -m experiments.benchmark " + " ".join(sys.argv[1:]))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
