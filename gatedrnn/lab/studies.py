"""The library behind the studies in `experiments/study_*.py` and the notebooks.

Glossary: b batch, t time, d input features, h hidden units.

- `input_gradient_norms`: || d loss / d x_t || for every step t (the vanishing-gradient study).
- `lstm_gates`, `gru_gates`: the gate activations of a cell over a sequence, recomputed from the
  cell's own `project` and `step` (for plots; the cells do not return them).
- `load_params`, `model_loss_fn`: a training run's model at initialization or from its newest
  checkpoint, and its per-example loss as a function of the inputs.
- `GREFF_VARIANTS`: the LSTM variants of Greff et al. 2017 as `model.cell_options`.
- `first_layer_cell`: the (cell, cell params) of a trained `SequenceModel`'s first layer.
- `draw_gradient_norms`, `draw_gates`, `plot_*`: the studies' and notebooks' figures.
- `train_runs`: one `train_and_evaluate` per (name, config), each into its own workdir.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gatedrnn.cells import GRU, LSTM
from gatedrnn.cells.base import Params, expand, gate_matmul
from gatedrnn.train import distributed
from gatedrnn.train.checkpoint import Checkpointer
from gatedrnn.train.loop import Experiment, init_state, make_experiment, train_and_evaluate

# Greff, Srivastava, Koutnik, Steunebrink & Schmidhuber 2017, "LSTM: A Search Space Odyssey":
# every variant is the vanilla LSTM (with peepholes) with one change.
GREFF_VARIANTS: dict[str, dict[str, Any]] = {
    "V": {"peephole": True},
    "NP": {},
    "CIFG": {"peephole": True, "cifg": True},
    "NFG": {"peephole": True, "forget_gate": False},
    "NIG": {"peephole": True, "input_gate": False},
    "NOG": {"peephole": True, "output_gate": False},
    "NIAF": {"peephole": True, "input_activation": False},
    "NOAF": {"peephole": True, "output_activation": False},
}


# ---------------------------------------------------------------------------------- gradients


def input_gradient_norms(loss_fn: Callable[[jax.Array], jax.Array], xs: jax.Array) -> np.ndarray:
    """Mean over the batch of || d loss_b / d x_{b,t} ||_2, for every step t.

    loss_fn: xs [b, t, d] -> per-example losses [b] (example b's loss depends on x_b only, so
      the gradient of their sum w.r.t. x_{b,t} is d loss_b / d x_{b,t}).
    The gradient is computed in the inputs' dtype: in float32 it underflows to exactly 0 once it
    falls below ~1e-38 (~1e-45 with denormals), which the plots leave blank.
    Returns a float64 NumPy array [t]. Index t is the input step; the time lag from a loss read
    at the last step is `t_max - 1 - t` (see `time_lags`).
    """
    grads = np.asarray(jax.grad(lambda x: jnp.sum(loss_fn(x)))(xs), np.float64)  # [b, t, d]
    return np.mean(np.linalg.norm(grads, axis=-1), axis=0)  # in float64: squares of tiny float32 values do not underflow


def time_lags(time: int) -> np.ndarray:
    """[time] lags from the last step: step t is T - 1 - t steps before the readout."""
    return np.arange(time - 1, -1, -1)


def model_loss_fn(exp: Experiment, params: Any, targets: jax.Array) -> Callable[[jax.Array], jax.Array]:
    """Per-example squared error of a trained regression model (e.g. the adding problem):
    xs [b, t, d] -> [b], summed over the output features; the model in eval mode."""

    def loss(xs):
        model = exp.model(params, jax.random.key(0))
        model.eval()
        return jnp.sum(jnp.square(model(xs) - targets), axis=-1)

    return loss


def load_params(config: ml_collections.ConfigDict, workdir: str | None = None) -> tuple[Experiment, Any]:
    """(experiment, params): the run's initial params (workdir None) or those of the newest
    checkpoint in `workdir/checkpoints` (FileNotFoundError when there is none)."""
    exp = make_experiment(config)
    if workdir is None:
        return exp, init_state(exp).params
    repl = distributed.replicated(distributed.make_mesh())
    abstract = jax.eval_shape(lambda: init_state(exp))
    abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), abstract)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=1, keep_best=0)
    try:
        step, state = ckpt.restore_newest(abstract.as_dict(), report=lambda message: None)
    finally:
        ckpt.close()
    if state is None:
        raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints: train the run first")
    return exp, state["params"]


def first_layer_cell(exp: Experiment, params: Any) -> tuple[Any, Params]:
    """(cell, cell params) of the first recurrent layer of a training run's `SequenceModel`
    (a unidirectional stack), e.g. for `lstm_gates`."""
    model = exp.model(params, jax.random.key(0))
    layer = model.rnn.layers[0]
    if not hasattr(layer, "cell"):
        raise ValueError(f"the first layer is a {type(layer).__name__}, not an RNN over one cell")
    return layer.cell, params["rnn"]["layers"][0]["params"]


# ---------------------------------------------------------------------------------- gates


def _scan_with_previous(cell, params: Params, xs: jax.Array):
    """Runs the cell's own step over xs [b, t, d]; returns (xp time-major, previous carries, new carries)."""
    xp = cell.project(params, jnp.swapaxes(xs, 0, 1))

    def body(carry, xp_t):
        new, _ = cell.step(params, carry, xp_t)
        return new, (carry, new)

    _, (prev, new) = jax.lax.scan(body, cell.initial_carry((xs.shape[0],), xs.dtype), xp)
    return xp, prev, new


def _batch_major(tree: Mapping[str, jax.Array]) -> dict[str, np.ndarray]:
    return {k: np.asarray(jnp.swapaxes(v, 0, 1)) for k, v in tree.items()}


def lstm_gates(cell: LSTM, params: Params, xs: jax.Array) -> dict[str, np.ndarray]:
    """The gate activations of an LSTM over xs [b, t, d], each [b, t, h]:
    i (input gate), f (forget), z (block input), o (output), c (cell state), y (output).

    The states c and y come from the cell's own `step`; the gates are recomputed from its
    `project` and recurrent weights (equations in `gatedrnn.cells.LSTM`). A gate the variant
    does not have (input_gate=False, ...) is all ones; under cifg, i = 1 - f.
    """
    if cell.layer_norm or cell.proj_size:
        raise ValueError("lstm_gates supports LSTMs without layer_norm and proj_size")
    xp, prev, new = _scan_with_previous(cell, params, xs)
    pre = {g: x + r for g, x, r in zip(cell.gate_names, xp, gate_matmul(prev.h, params["r"]))}

    def gate(g, c):
        if g not in pre:
            return jnp.ones_like(c)
        peep = expand(params[f"p_{g}"], c) * c if cell.peephole else jnp.zeros_like(c)
        return jax.nn.sigmoid(pre[g] + peep)

    f = gate("f", prev.c)
    i = 1.0 - f if cell.cifg else gate("i", prev.c)
    z = jnp.tanh(pre["z"]) if cell.input_activation else pre["z"]
    o = gate("o", new.c)
    return _batch_major({"i": i, "f": f, "z": z, "o": o, "c": new.c, "y": new.h})


def gru_gates(cell: GRU, params: Params, xs: jax.Array) -> dict[str, np.ndarray]:
    """The gate activations of a GRU (reset_after=True) over xs [b, t, d], each [b, t, h]:
    r (reset gate), z (update gate), n (candidate), h (state; h_t = (1 - z) n + z h_{t-1})."""
    if not cell.reset_after:
        raise ValueError("gru_gates supports reset_after=True")
    xp, prev, new = _scan_with_previous(cell, params, xs)
    r, z, n, _ = cell.reset_after_gates(params, prev, xp, gate_matmul)
    return _batch_major({"r": r, "z": z, "n": n, "h": new})


# ---------------------------------------------------------------------------------- runs


def with_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """A copy of `config` with dotted fields set, e.g. {"model.cell": "gru", "data.seq_len": 200};
    a dict value for "model.cell_options" becomes a ConfigDict."""
    config = config.copy_and_resolve_references()
    for dotted, value in overrides.items():
        *groups, name = dotted.split(".")
        node = config
        for group in groups:
            node = node[group]
        node[name] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value
    return config


def shrink_for_quick_run(config: ml_collections.ConfigDict, num_steps: int = 30) -> ml_collections.ConfigDict:
    """A seconds-long version of a config for the studies' --quick mode and their tests."""
    return with_overrides(config, {
        "model.hidden_size": 8, "train.num_steps": num_steps, "train.batch_size": 16, "optim.warmup_steps": 0,
        "eval.every_steps": num_steps, "eval.batch_size": 32, "eval.num_batches": 1, "log.every_steps": num_steps,
        "log.progress": False, "log.plots": False, "log.tensorboard": False, "checkpoint.every_steps": num_steps,
    })


def train_runs(runs: Mapping[str, ml_collections.ConfigDict], out: str,
               report: Callable[[str], None] = print) -> dict[str, str]:
    """Trains each (name -> config) run into `out/name` (one at a time; a finished run resumes
    to a no-op) and appends the workdirs to `out/manifest.txt`. Returns name -> workdir."""
    os.makedirs(out, exist_ok=True)
    workdirs = {}
    for name, config in runs.items():
        workdir = os.path.join(out, name)
        report(f"training {name} in {workdir}")
        train_and_evaluate(config, workdir)
        workdirs[name] = workdir
    manifest = os.path.join(out, "manifest.txt")
    known = []
    if os.path.exists(manifest):
        with open(manifest) as f:
            known = f.read().split()
    with open(manifest, "a") as f:
        f.writelines(w + "\n" for w in workdirs.values() if w not in known)
    return workdirs


# ---------------------------------------------------------------------------------- output


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub markdown table; floats with 4 significant digits."""
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(path: str, header: list[str], rows: list[list[Any]]) -> None:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def write_table(out: str, stem: str, caption: str, header: list[str], rows: list[list[Any]]) -> str:
    """<out>/<stem>.md (caption, then the markdown table) and <out>/<stem>.csv; returns the table."""
    os.makedirs(out, exist_ok=True)
    table = markdown_table(header, rows)
    with open(os.path.join(out, f"{stem}.md"), "w") as f:
        f.write(f"{caption}\n\n{table}")
    write_csv(os.path.join(out, f"{stem}.csv"), header, rows)
    return table


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_gradient_norms(ax, curves: Mapping[str, np.ndarray], title: str = "") -> None:
    """curves: label -> norms [t] (input step order), drawn on a matplotlib Axes against the
    time lag, log scale; labels "<cell> (<stage>)" share a color per cell, "init" ones are dashed;
    exact zeros (float32 underflow) are left out."""
    colors = {}
    for label, norms in curves.items():
        norms = np.asarray(norms, np.float64)
        color = colors.setdefault(label.split(" (")[0], f"C{len(colors)}")  # one color per cell
        ax.plot(time_lags(len(norms)), np.where(norms > 0, norms, np.nan), label=label, color=color,
                linestyle="--" if "init" in label else "-")
    ax.set_yscale("log")
    ax.set_xlabel("time lag T - 1 - t (steps before the readout)")
    ax.set_ylabel("mean || d loss / d x_t ||")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def plot_gradient_norms(curves: Mapping[str, np.ndarray], path: str, title: str = "") -> None:
    """`draw_gradient_norms` into a PNG file."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    draw_gradient_norms(ax, curves, title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw_gates(axes, gates: Mapping[str, np.ndarray], names: list[str], example: int = 0,
               markers: np.ndarray | None = None) -> None:
    """One heatmap per gate (units x time) of one example, from `lstm_gates` / `gru_gates`;
    `markers` [t] (e.g. the adding problem's marker channel) draws a vertical line at each nonzero step."""
    for ax, name in zip(axes, names):
        values = np.asarray(gates[name][example]).T  # [h, t]
        bounded = name in ("i", "f", "o", "r", "z") and np.all(values >= 0)
        im = ax.imshow(values, aspect="auto", interpolation="nearest", cmap="viridis" if bounded else "coolwarm",
                       vmin=0.0 if bounded else None, vmax=1.0 if bounded else None)
        ax.set_ylabel(f"{name}\nunit")
        if markers is not None:
            for t in np.flatnonzero(np.asarray(markers)):
                ax.axvline(t, color="white" if bounded else "black", linewidth=1, linestyle=":")
        ax.figure.colorbar(im, ax=ax, pad=0.01)
    axes[-1].set_xlabel("time step")


def plot_points(groups: Mapping[str, list[float]], path: str, ylabel: str, baseline: float | None = None,
                title: str = "") -> None:
    """One column per group: every value as a dot and the median as a bar (log scale)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(groups) + 2), 4.5))
    for k, (name, values) in enumerate(groups.items()):
        values = np.maximum(np.asarray(values, np.float64), 1e-12)
        ax.scatter(np.full(len(values), k), values, color="C0", zorder=3)
        ax.hlines(np.median(values), k - 0.3, k + 0.3, color="C1", linewidth=2)
    if baseline is not None:
        ax.axhline(baseline, color="gray", linestyle=":", label=f"baseline {baseline:.3g}")
        ax.legend()
    ax.set_xticks(range(len(groups)), list(groups), rotation=30)
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
