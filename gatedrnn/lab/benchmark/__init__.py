"""gatedrnn vs PyTorch vs Flax on the same weights: the harness behind `experiments/benchmark.py`.

Glossary: b batch, t time, d input features, h hidden units, g gates.

For one `Config` (sizes, cell, layers, direction, compute dtype), `run_config` builds the
contestants (torch; ours = `gatedrnn.nn.interop.from_torch(torch_module)`, one row per engine VJP
variant; Flax's `nn.RNN` with our layer's weights; a matmul bound of the same FLOPs), checks that
ours and Flax agree with torch and times them all interleaved. The rooms:

  sizes.py        `Size`, `SIZES`, `Config`: what is measured, and its FLOPs
  contestants.py  the contestants and the ours -> Flax-linen weight mapping (`flax_params`)
  timing.py       the agreement check (`OutputMismatch`), interleaved timing, `run_config`, `remat_report`
  report.py       the machine description and the markdown tables
  run.py          `Settings` (the script's flags), `build_configs`, `run_benchmark`: one whole run and its files
  linear.py       the linear-cell suite (--suite=linear): each linear cell's parallel vs sequential mode,
                  recurrentgemma's RG-LRU and torch's GRU/LSTM, fwd+bwd tokens/s, memory, the issue's targets
  xlstm.py        the xLSTM suite (--suite=xlstm): the mLSTM's chunkwise, parallel and sequential forms vs NX-AI's
                  native JAX kernels (`official.load_mlstm_kernels`), the sLSTM vs our LSTM, the official sLSTM and torch's
"""

from gatedrnn.lab.benchmark.contestants import (
    Contestant,
    bound_contestant,
    configure_layers,
    contestant_name,
    engine_vjp_variants,
    flax_contestant,
    flax_params,
    jax_compile,
    jax_contestant,
    layer_apply,
    memory_stats,
    ours_contestant,
    ours_stack,
    torch_contestant,
    torch_module,
)
from gatedrnn.lab.benchmark.linear import (
    LINEAR_CELLS,
    LINEAR_SIZES,
    contestant_names,
    linear_targets,
    run_linear,
    run_linear_size,
)
from gatedrnn.lab.benchmark.official import load_mlstm_kernels
from gatedrnn.lab.benchmark.report import (
    linear_table,
    machine_info,
    mlstm_table,
    remat_table,
    report_markdown,
    slstm_table,
    speed_table,
)
from gatedrnn.lab.benchmark.run import (
    QUICK,
    SUITES,
    Settings,
    build_configs,
    check_linear,
    check_xlstm,
    run_benchmark,
    settings_from_flags,
)
from gatedrnn.lab.benchmark.sizes import GATES, SIZES, Config, Size
from gatedrnn.lab.benchmark.timing import (
    BF16_TOL,
    FORWARD_TOL,
    GRAD_TOL,
    MODES,
    OutputMismatch,
    check_agreement,
    remat_report,
    run_config,
    time_interleaved,
)
from gatedrnn.lab.benchmark.xlstm import (
    MLSTM_SIZES,
    SLSTM_SIZES,
    MSize,
    run_mlstm_size,
    run_slstm_size,
    run_xlstm,
    xlstm_targets,
)

__all__ = [
    "BF16_TOL", "FORWARD_TOL", "GATES", "GRAD_TOL", "LINEAR_CELLS", "LINEAR_SIZES", "MODES", "QUICK", "SIZES",
    "SUITES", "Config", "Contestant", "check_linear", "contestant_names", "linear_table", "linear_targets",
    "run_linear", "run_linear_size",
    "OutputMismatch", "Settings", "Size", "bound_contestant", "build_configs", "check_agreement", "configure_layers",
    "contestant_name", "engine_vjp_variants", "flax_contestant", "flax_params", "jax_compile", "jax_contestant",
    "layer_apply", "machine_info", "memory_stats", "ours_contestant", "ours_stack", "remat_report", "remat_table",
    "report_markdown", "run_benchmark", "run_config", "settings_from_flags", "speed_table", "time_interleaved",
    "torch_contestant", "torch_module",
    "MLSTM_SIZES", "SLSTM_SIZES", "MSize", "check_xlstm", "load_mlstm_kernels", "mlstm_table", "run_mlstm_size",
    "run_slstm_size", "run_xlstm", "slstm_table", "xlstm_targets",
]
