"""Flax NNX layers: thin owners of parameters that call the cells and the scan engine.

Every layer is called as `outputs, carry = layer(x, seq_lengths=None, initial_carry=None)`
with x [batch, time, input_size] and outputs [batch, time, output_size]; `resets=` [batch, time]
bool (segment starts, see `scan_cell`) is passed on to every layer when given. The blocks of
`gatedrnn.nn.blocks` (Hawk, Griffin, minGRU/minLSTM, LRU) are layers too (`build_rnn(block=)`).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from gatedrnn.cells import Cell, make_cell
from gatedrnn.cells.base import Params
from gatedrnn.losses import sequence_mask
from gatedrnn.nn.params import param_values, resolve_param_dtype
from gatedrnn.scan import SCAN_FIELDS, ScanOptions, scan_cell, with_overrides
from gatedrnn.validation import ConfigError, check_choice, check_positive


class RNN(nnx.Module):
    """One recurrent layer over any cell.

    `params` overrides the cell's own init (used by `gatedrnn.nn.interop`); otherwise
    `rngs.params()` seeds `cell.init`. `scan` (a `ScanOptions`: mode, vjp, remat, unroll,
    projection_chunk, compute dtype) says how `gatedrnn.scan.scan_cell` runs the cell; keywords
    named like its fields (`unroll=2`, `dtype=jnp.bfloat16`, ...) override them; `dtype` is
    the compute dtype (None: the input's). Parameters stay in `param_dtype` (None: float32,
    float64 under jax_enable_x64) whatever the compute dtype. `reverse` and `scan` are plain
    attributes, so they can be changed after construction.
    """

    def __init__(
        self,
        cell: Cell,
        *,
        rngs: nnx.Rngs | None = None,
        params: Params | None = None,
        reverse: bool = False,
        scan: ScanOptions | None = None,
        param_dtype: Any = None,
        **scan_fields: Any,
    ):
        if params is None:
            if rngs is None:
                raise ValueError("RNN needs rngs (to initialise parameters) or params")
            params = cell.init(rngs.params(), resolve_param_dtype(param_dtype))
        self.cell = cell
        self.reverse = reverse
        self.scan = with_overrides(scan, **scan_fields)
        self.params = nnx.data(jax.tree.map(nnx.Param, params))

    @property
    def input_size(self) -> int:
        return self.cell.input_size

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    def initial_carry(self, batch_size: int, dtype=jnp.float32):
        return self.cell.initial_carry((batch_size,), dtype)

    def __call__(self, x, seq_lengths=None, initial_carry=None, resets=None):
        """x [batch, time, input_size] -> (outputs [batch, time, output_size], carry).
        resets [batch, time] bool: segment starts (see `scan_cell`)."""
        return scan_cell(
            self.cell,
            param_values(self.params),
            x,
            initial_carry=initial_carry,
            seq_lengths=seq_lengths,
            reverse=self.reverse,
            resets=resets,
            options=self.scan,
        )


MERGES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "concat": lambda a, b: jnp.concatenate([a, b], axis=-1),
    "sum": lambda a, b: a + b,
    "mean": lambda a, b: (a + b) * 0.5,
    "product": lambda a, b: a * b,
}


class Bidirectional(nnx.Module):
    """A forward and a backward RNN over the same input, merged per step.

    The backward layer reads each sequence in reverse within its own length. The carry is
    (forward_carry, backward_carry); `initial_carry`, if given, is such a pair.
    """

    def __init__(self, forward: RNN, backward: RNN, merge: str = "concat"):
        check_choice("Bidirectional.merge", merge, MERGES)
        if forward.reverse or not backward.reverse:
            raise ValueError("Bidirectional needs forward.reverse=False and backward.reverse=True")
        if forward.input_size != backward.input_size or forward.output_size != backward.output_size:
            raise ValueError("Bidirectional needs forward and backward layers of the same sizes")
        self.forward = forward
        self.backward = backward
        self.merge = merge

    @property
    def input_size(self) -> int:
        return self.forward.input_size

    @property
    def output_size(self) -> int:
        return self.forward.output_size * (2 if self.merge == "concat" else 1)

    def initial_carry(self, batch_size: int, dtype=jnp.float32):
        return (self.forward.initial_carry(batch_size, dtype), self.backward.initial_carry(batch_size, dtype))

    def __call__(self, x, seq_lengths=None, initial_carry=None, resets=None):
        carry_f, carry_b = (None, None) if initial_carry is None else initial_carry
        y_f, carry_f = self.forward(x, seq_lengths=seq_lengths, initial_carry=carry_f, resets=resets)
        y_b, carry_b = self.backward(x, seq_lengths=seq_lengths, initial_carry=carry_b, resets=resets)
        return MERGES[self.merge](y_f, y_b), (carry_f, carry_b)


class Stack(nnx.Module):
    """Layers applied in turn, with dropout between layers and optional residual connections.

    The carry is a list with one entry per layer. Residual connections (x + layer(x)) apply
    to every layer whose input and output sizes agree. Dropout (between layers, not after
    the last, as in PyTorch) is active in `train()` mode and off after `.eval()`.
    """

    def __init__(self, layers, *, dropout: float = 0.0, residual: bool = False, rngs: nnx.Rngs | None = None):
        layers = list(layers)
        if not layers:
            raise ValueError("Stack needs at least one layer")
        for below, above in zip(layers, layers[1:]):
            if below.output_size != above.input_size:
                raise ValueError(f"Stack: a layer of output size {below.output_size} feeds one of input size {above.input_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Stack.dropout must lie in [0, 1), got {dropout!r}")
        self.layers = nnx.List(layers)
        self.residual = residual
        self.dropout_rate = dropout
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None

    @property
    def input_size(self) -> int:
        return self.layers[0].input_size

    @property
    def output_size(self) -> int:
        return self.layers[-1].output_size

    def initial_carry(self, batch_size: int, dtype=jnp.float32):
        return [layer.initial_carry(batch_size, dtype) for layer in self.layers]

    def __call__(self, x, seq_lengths=None, initial_carry=None, resets=None):
        carries = []
        extra = {} if resets is None else {"resets": resets}  # segment starts, for every layer
        for k, layer in enumerate(self.layers):
            if k > 0 and self.dropout is not None:
                x = self.dropout(x)
            y, carry = layer(x, seq_lengths=seq_lengths, initial_carry=None if initial_carry is None else initial_carry[k],
                             **extra)
            x = self.connect(layer, x, y, seq_lengths)
            carries.append(carry)
        return x, carries

    def connect(self, layer, x: jax.Array, y: jax.Array, seq_lengths: jax.Array | None) -> jax.Array:
        """What `layer` passes on: its outputs y, or x + y (residual, where sizes agree) with x's
        padded steps zeroed, so the stack's outputs are exactly zero past each length like every
        layer's and padded inputs (NaN, inf) reach no arithmetic. x, y [b, t, d]."""
        if not (self.residual and layer.input_size == layer.output_size):
            return y
        if seq_lengths is not None:
            x = jnp.where(sequence_mask(seq_lengths, *x.shape[:2])[..., None], x, 0)
        return x + y


def build_rnn(
    cell: str,
    input_size: int,
    hidden_size: int,
    *,
    rngs: nnx.Rngs,
    num_layers: int = 1,
    bidirectional: bool = False,
    merge: str = "concat",
    dropout: float = 0.0,
    residual: bool = False,
    scan: ScanOptions | None = None,
    block: str | None = None,
    block_options: dict[str, Any] | None = None,
    param_dtype: Any = None,
    **cell_options,
) -> Stack:
    """A `Stack` of `num_layers` layers of a registered cell, optionally bidirectional.

    `scan` (a `ScanOptions`) is how every layer runs; keyword options named like its fields
    (`unroll=`, `remat=`, `dtype=`, `vjp=`, `projection_chunk=`, `mode=`, `parallel_chunk=`, `parallel_scan=`)
    override them, and the other keyword options go to the cell. `param_dtype` (None: float32,
    float64 under jax_enable_x64) is every layer's parameter dtype; `dtype=` the compute dtype.

    `block` (None: plain `RNN` layers) makes every layer a block of `gatedrnn.nn.blocks` around
    the cell, the cell then of width hidden_size -> hidden_size: "hawk" (Griffin/Hawk's
    recurrent block), "griffin" (their residual block: RMSNorm, the recurrent block, gated
    MLP), "min" (RMSNorm, cell, residual) or "lru" (LayerNorm, cell, GeLU, GLU, residual);
    `block_options` go to `make_block` (e.g. {"conv_width": 4, "mlp_expansion": 3}). A layer
    whose input size differs from hidden_size projects its input first (the residual blocks) or
    reads it directly (hawk's linear maps). The residual blocks refuse `residual=True` (they
    have their own skip connection). The xLSTM blocks (`gatedrnn.nn.xlstm`): "mlstm" and "slstm"
    (cell "mlstm" / "slstm"), and "xlstm", one layer holding the xLSTM block stack of num_layers
    mLSTM and sLSTM blocks (block_options {"ratio": "7:1"} or {"slstm_at": [...]}; cell "mlstm"
    or "slstm", the stack builds both).

    Example:
      rnn = build_rnn("lstm", 8, 32, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0),
                      scan=ScanOptions(remat=True))
      outputs, carries = rnn(x, seq_lengths=lengths)   # x [b, t, 8] -> outputs [b, t, 64]
      griffin = build_rnn("rglru", 8, 32, num_layers=2, block="griffin", rngs=nnx.Rngs(0), num_heads=4)
    """
    check_positive("model.num_layers", num_layers)
    scan = with_overrides(scan, **{k: cell_options.pop(k) for k in SCAN_FIELDS if k in cell_options})
    if block is not None:
        from gatedrnn.nn.blocks import BLOCKS, RESIDUAL_BLOCKS, make_block  # here: the blocks build on RNN

        check_choice("model.block", block, BLOCKS)
        if residual and block in RESIDUAL_BLOCKS:
            raise ConfigError(f"model.residual=True is not valid with model.block={block!r}, which has its own "
                              "residual connection; use model.residual=False")
        if block == "xlstm":  # one layer: the xLSTM block stack, num_layers blocks deep
            from gatedrnn.nn.xlstm import build_xlstm

            return build_xlstm(cell, input_size, hidden_size, rngs=rngs, num_layers=num_layers,
                               bidirectional=bidirectional, merge=merge, dropout=dropout, scan=scan,
                               block_options=block_options, param_dtype=param_dtype, **cell_options)
    layers = []
    size = input_size
    kw = dict(rngs=rngs, scan=scan, param_dtype=param_dtype)
    for _ in range(num_layers):
        if block is None:
            cell_def = make_cell(cell, size, hidden_size, **cell_options)
        else:
            cell_def = make_cell(cell, hidden_size, hidden_size, **cell_options)

        def make(reverse: bool, cell_def=cell_def, size=size):
            if block is None:
                return RNN(cell_def, reverse=reverse, **kw)
            return make_block(block, cell_def, size, hidden_size, reverse=reverse, **kw, **(block_options or {}))

        layer = Bidirectional(make(False), make(True), merge=merge) if bidirectional else make(False)
        layers.append(layer)
        size = layer.output_size
    return Stack(layers, dropout=dropout, residual=residual, rngs=rngs)
