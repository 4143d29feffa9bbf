"""Gate activations of a cell over a sequence, recomputed from the cell's own `project` and `step`
(the cells do not return them), for plots such as notebooks/cells_tour.ipynb.

Glossary: b batch, t time, d input features, h hidden units.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from gatedrnn.cells import GRU, LSTM
from gatedrnn.cells.base import Params, expand, gate_matmul
from gatedrnn.nn.params import param_values


def first_layer_cell(run: Any, params: Any) -> tuple[Any, Params]:
    """(cell, cell params) of the first recurrent layer of a training run's `SequenceModel`
    (a unidirectional stack), e.g. for `lstm_gates`; `run` as for `gatedrnn.lab.gradients.model_loss_fn`."""
    layer = run.model(params, jax.random.key(0)).rnn.layers[0]
    if not hasattr(layer, "cell"):
        raise ValueError(f"the first layer is a {type(layer).__name__}, not an RNN over one cell")
    return layer.cell, param_values(layer.params)


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
