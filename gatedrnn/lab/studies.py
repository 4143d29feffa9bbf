"""What the notebooks import, in one namespace (the study scripts import from the modules below).

The code lives in one module per job; this module re-exports it so that `gatedrnn.lab.studies.<name>`
(and `gatedrnn.studies.<name>`) keep working:

- `gatedrnn.lab.gradients`: `input_gradient_norms`, `time_lags`, `model_loss_fn`;
- `gatedrnn.lab.gates`: `lstm_gates`, `gru_gates`, `first_layer_cell`;
- `gatedrnn.lab.runs`: `with_overrides`, `shrink_for_quick_run`, `train_runs`, `load_params`
  (a run's params come from `gatedrnn.train.runs.load_run`);
- `gatedrnn.lab.tables`: `markdown_table`, `write_csv`, `write_table`;
- `gatedrnn.lab.plots`: `pyplot`, `draw_gradient_norms`, `plot_gradient_norms`, `draw_gates`, `plot_points`;
- the studies: `gatedrnn.lab.vanishing_gradients`, `gatedrnn.lab.lstm_ablation` (and its
  `GREFF_VARIANTS`), `gatedrnn.lab.cell_comparison`.
"""

from gatedrnn.lab.cell_comparison import cell_comparison_study, first_step_below
from gatedrnn.lab.gates import first_layer_cell, gru_gates, lstm_gates
from gatedrnn.lab.gradients import input_gradient_norms, model_loss_fn, time_lags
from gatedrnn.lab.lstm_ablation import GREFF_VARIANTS, lstm_ablation_study
from gatedrnn.lab.plots import draw_gates, draw_gradient_norms, plot_gradient_norms, plot_points, pyplot
from gatedrnn.lab.runs import load_params, shrink_for_quick_run, train_runs, with_overrides
from gatedrnn.lab.tables import markdown_table, write_csv, write_table
from gatedrnn.lab.vanishing_gradients import gradient_norm_curves, vanishing_gradients_study
from gatedrnn.train.runs import Run, load_run

__all__ = [
    "GREFF_VARIANTS", "Run", "cell_comparison_study", "draw_gates", "draw_gradient_norms", "first_layer_cell",
    "first_step_below", "gradient_norm_curves", "gru_gates", "input_gradient_norms", "load_params", "load_run",
    "lstm_ablation_study", "lstm_gates", "markdown_table", "model_loss_fn", "plot_gradient_norms", "plot_points",
    "pyplot", "shrink_for_quick_run", "time_lags", "train_runs", "vanishing_gradients_study", "with_overrides",
    "write_csv", "write_table",
]
