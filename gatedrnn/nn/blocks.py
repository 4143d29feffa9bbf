"""Flax NNX blocks around a recurrent cell: Griffin/Hawk's, the minGRU/minLSTM block and the LRU's.

Glossary: b batch, t time, d input features, w the block's width, l the cell's width (Hawk's
lru_width), e the MLP's expanded width, k the convolution's temporal width.

A block is used wherever an `RNN` layer is (in a `Stack`, a `Bidirectional`, a `SequenceModel`):

  y, carry = block(x, seq_lengths=None, initial_carry=None, resets=None)   # x [b, t, d] -> y [b, t, w]

with `input_size`, `output_size`, `initial_carry(batch_size, dtype)` and a `reverse` attribute.
Padded steps (t >= seq_lengths) are zeroed before any arithmetic and their outputs are exactly
zero; the carry is the last valid one. resets [b, t] bool marks the steps where a new segment
(a packed document) starts: neither the recurrence nor the convolution reads across it. With
`reverse=True` a block flips each sequence within its length (`flip_sequences`), runs forwards
and flips back, so the convolution stays causal in processing order and the segments are the
same, each restarting at its own last step.

  HawkBlock      Griffin/Hawk's recurrent block (recurrentgemma's `RecurrentBlock`):
                   y = W_out (RG-LRU(Conv1D(W_x x)) * GeLU(W_y x))
  ResidualBlock  Griffin/Hawk's residual block around a temporal block (recurrentgemma's
                 `ResidualBlock`, recurrent temporal mixing):
                   u = x + temporal(RMSNorm(x));  y = u + GatedMLP(RMSNorm(u))
  MinBlock       y = x + cell(RMSNorm(x))  (minGRU / minLSTM with their `expansion`)
  LRUBlock       y = x + GLU(GeLU(cell(LayerNorm(x))))  (Orvieto et al. 2023's LRU layer)

Every module here takes `param_dtype` (None: float32, float64 under jax_enable_x64) and `dtype`
(the compute dtype; a block's replaces its `scan.dtype`; None: the input's).

Each block takes its cell as an argument (any cell mapping width to width: `RGLRU` for Hawk,
`MinGRU` / `MinLSTM`, `LRU`, or a classic cell, run sequentially), run by `gatedrnn.scan.scan_cell`
with the block's `ScanOptions`. `make_block` builds one by name (`BLOCKS`), as `build_rnn(...,
block=)` and the `model.block` config field do; `load_recurrentgemma` copies recurrentgemma.jax's
params into a HawkBlock or ResidualBlock.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from gatedrnn.cells.base import Cell, accumulation_dtype, layer_norm
from gatedrnn.cells.rglru import RGLRU
from gatedrnn.losses import sequence_mask
from gatedrnn.nn.layers import RNN
from gatedrnn.nn.params import cast, resolve_param_dtype
from gatedrnn.scan import ScanOptions, flip_sequences, reverse_resets, with_overrides
from gatedrnn.validation import ConfigError, check_choice, check_positive


def _fan_in_normal(scale: float = 1.0):
    """N(0, scale / fan_in): recurrentgemma's `variance_scaling(scale, "fan_in", "normal")`."""
    return nnx.initializers.variance_scaling(scale, "fan_in", "normal")


def _linear(d_in: int, d_out: int, *, rngs: nnx.Rngs, dtype, param_dtype, scale: float = 1.0) -> nnx.Linear:
    return nnx.Linear(d_in, d_out, kernel_init=_fan_in_normal(scale), bias_init=nnx.initializers.zeros_init(),
                      dtype=dtype, param_dtype=param_dtype, rngs=rngs)


class RMSNorm(nnx.Module):
    """RMSNorm as recurrentgemma's: y = x / sqrt(mean(x^2) + eps) * (1 + scale), scale init 0.

    x [..., w]; statistics in at least float32, y in x's dtype. The param is `scale` [w].
    """

    def __init__(self, width: int, *, eps: float = 1e-6, dtype: Any = None, param_dtype: Any = None):
        check_positive("RMSNorm.width", width)
        self.eps, self.dtype = eps, dtype
        self.scale = nnx.Param(jnp.zeros((width,), resolve_param_dtype(param_dtype)))

    def __call__(self, x: jax.Array) -> jax.Array:
        x = cast(x, self.dtype)
        x32 = x.astype(accumulation_dtype(x.dtype))
        var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        scale = self.scale[...].astype(x32.dtype).reshape((1,) * (x.ndim - 1) + (-1,))
        return (x32 * jax.lax.rsqrt(var + self.eps) * (scale + 1)).astype(x.dtype)


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis (`gatedrnn.cells.base.layer_norm`): params `scale` [w]
    (init 1) and `bias` [w] (init 0); statistics in at least float32."""

    def __init__(self, width: int, *, eps: float = 1e-5, dtype: Any = None, param_dtype: Any = None):
        check_positive("LayerNorm.width", width)
        self.eps, self.dtype = eps, dtype
        param_dtype = resolve_param_dtype(param_dtype)
        self.scale = nnx.Param(jnp.ones((width,), param_dtype))
        self.bias = nnx.Param(jnp.zeros((width,), param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        return layer_norm(cast(x, self.dtype), self.scale[...], self.bias[...], self.eps)


class GatedMLP(nnx.Module):
    """Griffin's gated MLP (recurrentgemma's `MLPBlock`): x [..., w] -> [..., w],

      y = W_down (GeLU(W_gate x + b_gate) * (W_up x + b_up)) + b_down,   W_gate, W_up [w, e].

    recurrentgemma's `ffw_up` w [2, w, e] / b [2, 1, 1, e] are (gate, up) here.
    """

    def __init__(self, width: int, expanded_width: int, *, rngs: nnx.Rngs, dtype: Any = None,
                 param_dtype: Any = None, final_w_init_variance_scale: float = 1.0):
        check_positive("GatedMLP.expanded_width", expanded_width)
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=resolve_param_dtype(param_dtype))
        self.gate = _linear(width, expanded_width, **kw)
        self.up = _linear(width, expanded_width, **kw)
        self.down = _linear(expanded_width, width, scale=final_w_init_variance_scale, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down(jax.nn.gelu(self.gate(x)) * self.up(x))


class Conv1D(nnx.Module):
    """Short causal depthwise convolution over time (recurrentgemma's `Conv1D`):

      y_t = sum_{s < k} w[k - 1 - s] * x_{t-s} + b,     x [b, t, w], w [k, w], b [w]

    where a term x_{t-s} is dropped when a segment starts (resets) at any step in (t-s, t],
    so no output mixes two documents. Steps before the first come from `state` [b, k - 1, w]
    (the previous call's last k - 1 inputs; zeros by default). With seq_lengths, padded
    inputs are zeroed before use, padded outputs are zero, and the returned state holds the
    last k - 1 valid inputs (those before the last segment start zeroed), so running chunks
    one after another equals one pass. Init as recurrentgemma's: w ~ N(0, 0.01 / k), b = 0.
    """

    def __init__(self, width: int, temporal_width: int = 4, *, rngs: nnx.Rngs,
                 w_init_variance_scale: float = 0.01, dtype: Any = None, param_dtype: Any = None):
        check_positive("Conv1D.width", width)
        check_positive("Conv1D.temporal_width", temporal_width)
        self.width, self.temporal_width, self.dtype = width, temporal_width, dtype
        param_dtype = resolve_param_dtype(param_dtype)
        init = _fan_in_normal(w_init_variance_scale)
        self.w = nnx.Param(init(rngs.params(), (temporal_width, width), param_dtype))
        self.b = nnx.Param(jnp.zeros((width,), param_dtype))

    def initial_state(self, batch_size: int, dtype=jnp.float32) -> jax.Array:
        return jnp.zeros((batch_size, self.temporal_width - 1, self.width), dtype)

    def __call__(self, x: jax.Array, *, resets: jax.Array | None = None, seq_lengths: jax.Array | None = None,
                 state: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """x [b, t, w] -> (y [b, t, w], state [b, k - 1, w])."""
        x = cast(x, self.dtype)
        k = self.temporal_width
        batch, time, _ = x.shape
        w, bias = self.w[...].astype(x.dtype), self.b[...].astype(x.dtype)
        state = self.initial_state(batch, x.dtype) if state is None else state.astype(x.dtype)
        valid = None if seq_lengths is None else sequence_mask(seq_lengths, batch, time)
        if valid is not None:
            x = jnp.where(valid[..., None], x, 0)
        ext = jnp.concatenate([state, x], axis=1)  # ext[:, k - 1 + p] = x_p
        pos = jnp.arange(time, dtype=jnp.int32)
        start = None  # [b, t]: the last segment start at or before each step (-k: none)
        if resets is not None:
            start = jax.lax.cummax(jnp.where(resets, pos[None, :], -k), axis=1)
        y = jnp.zeros_like(x)
        for s in range(k):
            window = ext[:, k - 1 - s:k - 1 - s + time]  # x_{t-s}
            if start is not None:
                window = jnp.where((pos[None, :] - s >= start)[..., None], window, 0)
            y = y + window * w[k - 1 - s][None, None, :]
        y = y + bias[None, None, :]
        if valid is not None:
            y = jnp.where(valid[..., None], y, 0)
        lengths = jnp.full((batch,), time, jnp.int32) if seq_lengths is None else jnp.asarray(seq_lengths, jnp.int32)
        idx = lengths[:, None] + jnp.arange(k - 1, dtype=jnp.int32)[None, :]  # ext indices of steps L-k+1 .. L-1
        new_state = jnp.take_along_axis(ext, idx[..., None], axis=1)
        if start is not None:
            last = jnp.take_along_axis(start, jnp.maximum(lengths - 1, 0)[:, None], axis=1)[:, 0]
            last = jnp.where(lengths > 0, last, -k)
            new_state = jnp.where((idx - (k - 1) >= last[:, None])[..., None], new_state, 0)
        return y, new_state


class Block(nnx.Module):
    """What every block shares: the layer protocol around `forward`, which subclasses define.

    `__call__` zeroes padded inputs, casts to the compute dtype (`scan.dtype`, None: x's),
    flips each sequence within its length when `reverse`, calls
    `forward(x, seq_lengths, carry, resets) -> (y, carry)` in processing order, zeroes the
    padded outputs and flips back. Subclasses set `input_size`, `width` (= output_size),
    `reverse` and `scan`, and define `initial_carry`.
    """

    input_size: int
    width: int
    reverse: bool
    scan: ScanOptions

    @property
    def output_size(self) -> int:
        return self.width

    def initial_carry(self, batch_size: int, dtype=jnp.float32) -> Any:
        raise NotImplementedError

    def forward(self, x, seq_lengths, carry, resets) -> tuple[jax.Array, Any]:
        raise NotImplementedError

    def __call__(self, x: jax.Array, seq_lengths: jax.Array | None = None, initial_carry: Any = None,
                 resets: jax.Array | None = None) -> tuple[jax.Array, Any]:
        """x [b, t, input_size] -> (outputs [b, t, output_size], carry). resets [b, t] bool or None."""
        if x.ndim != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"x must have shape [batch, time, {self.input_size}] for {type(self).__name__}, "
                             f"got {tuple(x.shape)}")
        batch, time, _ = x.shape
        if resets is not None and (resets.shape != (batch, time) or resets.dtype != jnp.bool_):
            raise ValueError(f"resets must be bool of shape [batch, time]=({batch}, {time}), "
                             f"got shape {resets.shape} dtype {resets.dtype}")
        valid = None if seq_lengths is None else sequence_mask(seq_lengths, batch, time)[..., None]
        if valid is not None:
            x = jnp.where(valid, x, 0)  # padding reaches no arithmetic (NaN there is harmless)
        if self.scan.dtype is not None:
            x = x.astype(self.scan.dtype)
        if self.reverse:
            x = flip_sequences(x, seq_lengths)
            resets = None if resets is None else reverse_resets(resets, seq_lengths)
        carry = self.initial_carry(batch, x.dtype) if initial_carry is None else initial_carry
        y, carry = self.forward(x, seq_lengths, carry, resets)
        if valid is not None:
            y = jnp.where(valid, y, 0)
        if self.reverse:
            y = flip_sequences(y, seq_lengths)
        return y, carry


def _block_scan(scan: ScanOptions | None, dtype: Any) -> ScanOptions:
    """The block's ScanOptions: `scan` with its compute dtype replaced by `dtype` when given."""
    return with_overrides(scan) if dtype is None else with_overrides(scan, dtype=dtype)


def _inner_rnn(cell: Cell, width: int, block: str, *, rngs: nnx.Rngs, scan: ScanOptions, param_dtype) -> RNN:
    """The block's cell as a forward `RNN` layer (the block does the flipping), width -> width."""
    if cell.input_size != width or cell.output_size != width:
        raise ConfigError(f"{block} needs a cell of input and output size {width}, got {type(cell).__name__} "
                          f"with input_size={cell.input_size}, output_size={cell.output_size}")
    return RNN(cell, rngs=rngs, scan=scan, param_dtype=param_dtype)


def _input_projection(input_size: int, width: int, *, rngs, dtype, param_dtype) -> nnx.Linear | None:
    """A linear map to the block's width when the input's differs (the residual is taken after it)."""
    check_positive("block input_size", input_size)
    return None if input_size == width else _linear(input_size, width, rngs=rngs, dtype=dtype, param_dtype=param_dtype)


class HawkCarry(NamedTuple):
    conv: jax.Array  # [b, k - 1, l], the convolution's last inputs
    rnn: Any  # the cell's carry ([b, l] for the RG-LRU)


class HawkBlock(Block):
    """Griffin and Hawk's recurrent block (De et al. 2024; recurrentgemma's `RecurrentBlock`):

      y-branch  g = GeLU(W_y x + b_y)                                 [b, t, l]
      x-branch  u = cell(Conv1D(W_x x + b_x))                         [b, t, l]
      output    W_out (u * g) + b_out                                 [b, t, w]

    x [b, t, input_size]. `cell` maps l to l (default `RGLRU(width, width, num_heads)`, l = width);
    it runs through `scan_cell` with `scan` (the RG-LRU in parallel mode by default) and
    gets the resets. Param names are recurrentgemma's (linear_y, linear_x, linear_out, conv_1d;
    the RG-LRU's tree in `rnn.params`): see `load_recurrentgemma`. The carry is
    `HawkCarry(conv [b, k - 1, l], rnn)`. Init as recurrentgemma's: the linears N(0, 1 / fan_in)
    (linear_out N(0, final_w_init_variance_scale / l)), biases 0.

    Example:
      block = HawkBlock(8, 16, rngs=nnx.Rngs(0), num_heads=2)
      y, carry = block(x, seq_lengths=lengths)      # x [b, t, 8] -> y [b, t, 16]
    """

    def __init__(self, input_size: int, width: int, cell: Cell | None = None, *, rngs: nnx.Rngs,
                 num_heads: int = 1, conv_width: int = 4, reverse: bool = False, scan: ScanOptions | None = None,
                 dtype: Any = None, param_dtype: Any = None, final_w_init_variance_scale: float = 1.0):
        check_positive("HawkBlock.input_size", input_size)
        check_positive("HawkBlock.width", width)
        cell = RGLRU(width, width, num_heads=num_heads) if cell is None else cell
        lru = cell.input_size
        self.input_size, self.width, self.reverse = input_size, width, reverse
        self.scan = _block_scan(scan, dtype)
        param_dtype = resolve_param_dtype(param_dtype)
        kw = dict(rngs=rngs, dtype=self.scan.dtype, param_dtype=param_dtype)
        self.linear_y = _linear(input_size, lru, **kw)
        self.linear_x = _linear(input_size, lru, **kw)
        self.linear_out = _linear(lru, width, scale=final_w_init_variance_scale, **kw)
        self.conv_1d = Conv1D(lru, conv_width, rngs=rngs, param_dtype=param_dtype)
        self.rnn = _inner_rnn(cell, lru, "HawkBlock", rngs=rngs, scan=self.scan, param_dtype=param_dtype)

    def initial_carry(self, batch_size: int, dtype=jnp.float32) -> HawkCarry:
        return HawkCarry(self.conv_1d.initial_state(batch_size, dtype), self.rnn.initial_carry(batch_size, dtype))

    def forward(self, x, seq_lengths, carry, resets):
        g = jax.nn.gelu(self.linear_y(x))
        u, conv = self.conv_1d(self.linear_x(x), resets=resets, seq_lengths=seq_lengths, state=carry.conv)
        u, rnn = self.rnn(u, seq_lengths=seq_lengths, initial_carry=carry.rnn, resets=resets)
        return self.linear_out(u * g), HawkCarry(conv, rnn)


class ResidualBlock(Block):
    """Griffin and Hawk's residual block (recurrentgemma's `ResidualBlock`) around `temporal`:

      x <- W_in x + b_in                       (only when input_size != width)
      u = x + temporal(RMSNorm(x))             temporal: a Block of width -> width (HawkBlock)
      y = u + GatedMLP(RMSNorm(u))             (mlp_expansion = 0: y = u, RG's use_mlp=False)

    The carry is the temporal block's. Params: input_proj, temporal_pre_norm, temporal,
    channel_pre_norm, mlp (recurrentgemma's names, its `mlp_block` as `GatedMLP`).

    Example:
      block = ResidualBlock(16, HawkBlock(16, 16, rngs=nnx.Rngs(0)), input_size=8, rngs=nnx.Rngs(1))
    """

    def __init__(self, width: int, temporal: Block, *, rngs: nnx.Rngs, input_size: int | None = None,
                 mlp_expansion: float = 3.0, reverse: bool = False, scan: ScanOptions | None = None,
                 dtype: Any = None, param_dtype: Any = None, final_w_init_variance_scale: float = 1.0):
        check_positive("ResidualBlock.width", width)
        if temporal.input_size != width or temporal.output_size != width or temporal.reverse:
            raise ConfigError(f"ResidualBlock needs a forward temporal block of width {width}, got "
                              f"{type(temporal).__name__} {temporal.input_size} -> {temporal.output_size}"
                              f"{' with reverse=True' if temporal.reverse else ''}")
        if isinstance(mlp_expansion, bool) or not isinstance(mlp_expansion, (int, float)) or mlp_expansion < 0:
            raise ConfigError(f"ResidualBlock.mlp_expansion must be a number >= 0 (0: no MLP), got {mlp_expansion!r}")
        self.input_size = width if input_size is None else input_size
        self.width, self.reverse = width, reverse
        self.scan = _block_scan(scan, dtype)
        param_dtype = resolve_param_dtype(param_dtype)
        kw = dict(rngs=rngs, dtype=self.scan.dtype, param_dtype=param_dtype)
        self.input_proj = _input_projection(self.input_size, width, **kw)
        self.temporal_pre_norm = RMSNorm(width, param_dtype=param_dtype)
        self.temporal = temporal
        expanded = int(width * mlp_expansion)
        if mlp_expansion and expanded < 1:
            raise ConfigError(f"ResidualBlock.mlp_expansion={mlp_expansion!r} gives int({width} * {mlp_expansion!r}) = 0 units")
        self.channel_pre_norm = RMSNorm(width, param_dtype=param_dtype) if expanded else None
        self.mlp = GatedMLP(width, expanded, final_w_init_variance_scale=final_w_init_variance_scale,
                            **kw) if expanded else None

    def initial_carry(self, batch_size: int, dtype=jnp.float32) -> Any:
        return self.temporal.initial_carry(batch_size, dtype)

    def forward(self, x, seq_lengths, carry, resets):
        if self.input_proj is not None:
            x = self.input_proj(x)
        h, carry = self.temporal.forward(self.temporal_pre_norm(x), seq_lengths, carry, resets)
        u = x + h
        if self.mlp is None:
            return u, carry
        return u + self.mlp(self.channel_pre_norm(u)), carry


class MinBlock(Block):
    """The minGRU / minLSTM block: x <- W_in x + b_in (when input_size != width), then

      y = x + cell(RMSNorm(x))

    with `cell` a MinGRU / MinLSTM (any cell of width -> width; its `expansion` widens the
    state inside, its readout maps back to width). The carry is the cell's.
    """

    def __init__(self, width: int, cell: Cell, *, rngs: nnx.Rngs, input_size: int | None = None,
                 reverse: bool = False, scan: ScanOptions | None = None, dtype: Any = None,
                 param_dtype: Any = None):
        check_positive("MinBlock.width", width)
        self.input_size = width if input_size is None else input_size
        self.width, self.reverse = width, reverse
        self.scan = _block_scan(scan, dtype)
        param_dtype = resolve_param_dtype(param_dtype)
        kw = dict(rngs=rngs, dtype=self.scan.dtype, param_dtype=param_dtype)
        self.input_proj = _input_projection(self.input_size, width, **kw)
        self.norm = RMSNorm(width, param_dtype=param_dtype)
        self.rnn = _inner_rnn(cell, width, "MinBlock", rngs=rngs, scan=self.scan, param_dtype=param_dtype)

    def initial_carry(self, batch_size: int, dtype=jnp.float32) -> Any:
        return self.rnn.initial_carry(batch_size, dtype)

    def forward(self, x, seq_lengths, carry, resets):
        if self.input_proj is not None:
            x = self.input_proj(x)
        h, carry = self.rnn(self.norm(x), seq_lengths=seq_lengths, initial_carry=carry, resets=resets)
        return x + h, carry


class LRUBlock(Block):
    """The LRU's layer (Orvieto et al. 2023, Sec. 4 / App. D): x <- W_in x + b_in (when
    input_size != width), then

      u = GeLU(cell(LayerNorm(x)));   y = x + (W_v u + b_v) * sigmoid(W_g u + b_g)   (the GLU)

    with `cell` an LRU (any cell of width -> width). The carry is the cell's (complex for the LRU).
    """

    def __init__(self, width: int, cell: Cell, *, rngs: nnx.Rngs, input_size: int | None = None,
                 reverse: bool = False, scan: ScanOptions | None = None, dtype: Any = None,
                 param_dtype: Any = None):
        check_positive("LRUBlock.width", width)
        self.input_size = width if input_size is None else input_size
        self.width, self.reverse = width, reverse
        self.scan = _block_scan(scan, dtype)
        param_dtype = resolve_param_dtype(param_dtype)
        kw = dict(rngs=rngs, dtype=self.scan.dtype, param_dtype=param_dtype)
        self.input_proj = _input_projection(self.input_size, width, **kw)
        self.norm = LayerNorm(width, param_dtype=param_dtype)
        self.rnn = _inner_rnn(cell, width, "LRUBlock", rngs=rngs, scan=self.scan, param_dtype=param_dtype)
        self.glu_value = _linear(width, width, **kw)
        self.glu_gate = _linear(width, width, **kw)

    def initial_carry(self, batch_size: int, dtype=jnp.float32) -> Any:
        return self.rnn.initial_carry(batch_size, dtype)

    def forward(self, x, seq_lengths, carry, resets):
        if self.input_proj is not None:
            x = self.input_proj(x)
        h, carry = self.rnn(self.norm(x), seq_lengths=seq_lengths, initial_carry=carry, resets=resets)
        u = jax.nn.gelu(h)
        return x + self.glu_value(u) * jax.nn.sigmoid(self.glu_gate(u)), carry


# name -> the options `make_block` accepts (besides the cell and sizes); the residual ones
# carry their own skip connection, so `build_rnn(residual=True)` refuses them.
BLOCKS: dict[str, tuple[str, ...]] = {
    "hawk": ("conv_width",),
    "griffin": ("conv_width", "mlp_expansion"),
    "min": (),
    "lru": (),
    # xLSTM (gatedrnn.nn.xlstm): the mLSTM and sLSTM blocks, and the xLSTM[m:s] block stack
    "mlstm": ("num_heads", "proj_factor", "round_to", "conv_width", "qkv_blocksize", "bias"),
    "slstm": ("num_heads", "conv_width", "ff_proj_factor", "round_to", "ff_act"),
    "xlstm": ("num_blocks", "ratio", "slstm_at", "post_norm", "num_heads", "proj_factor", "round_to", "conv_width",
              "qkv_blocksize", "bias", "ff_proj_factor", "ff_act"),
}
RESIDUAL_BLOCKS = ("griffin", "min", "lru", "mlstm", "slstm", "xlstm")
# block="auto": the block a cell needs to be more than a linear map of its input (the bare LRU
# layer, y = Re(C h) + D x, is linear in x; its paper always runs it in the LRU block).
AUTO_BLOCKS: dict[str, str] = {"lru": "lru"}


def resolve_block(cell: str, block: str | None) -> str | None:
    """"auto" -> AUTO_BLOCKS.get(cell) (None: plain layers); any other value is returned as is."""
    return AUTO_BLOCKS.get(cell) if block == "auto" else block


def make_block(name: str, cell: Cell, input_size: int, width: int, *, rngs: nnx.Rngs, reverse: bool = False,
               scan: ScanOptions | None = None, dtype: Any = None, param_dtype: Any = None, **options) -> Block:
    """A block by name (`BLOCKS`) around `cell` (input and output size `width`):

      "hawk"     HawkBlock(input_size, width, cell)                 options: conv_width (4)
      "griffin"  ResidualBlock(width, HawkBlock(width, width, cell)) options: conv_width (4), mlp_expansion (3)
      "min"      MinBlock(width, cell)
      "lru"      LRUBlock(width, cell)
      "mlstm"    MLSTMBlock(input_size, width, cell)   (gatedrnn.nn.xlstm; the cell an MLSTM, re-sized)
      "slstm"    SLSTMBlock(input_size, width, cell)   (the cell an SLSTM, re-sized)
      "xlstm"    XLSTMStack(input_size, width, ...)    options: num_blocks, ratio or slstm_at, the blocks'

    ConfigError (one line) for an unknown name or option.
    """
    check_choice("model.block", name, BLOCKS)
    for option in options:
        if option not in BLOCKS[name]:
            raise ConfigError(f"model.block_options.{option} is not an option of the {name!r} block; "
                              f"choose from {sorted(BLOCKS[name])}")
    kw = dict(rngs=rngs, scan=scan, dtype=dtype, param_dtype=param_dtype)
    if name in ("mlstm", "slstm", "xlstm"):
        from gatedrnn.nn.xlstm import make_xlstm_block  # here: nn.xlstm builds on this module

        return make_xlstm_block(name, cell, input_size, width, reverse=reverse, **options, **kw)
    if name == "hawk":
        return HawkBlock(input_size, width, cell, reverse=reverse, **options, **kw)
    if name == "griffin":
        temporal = HawkBlock(width, width, cell, conv_width=options.pop("conv_width", 4), **kw)
        return ResidualBlock(width, temporal, input_size=input_size, reverse=reverse, **options, **kw)
    block = MinBlock if name == "min" else LRUBlock
    return block(width, cell, input_size=input_size, reverse=reverse, **kw)


def load_recurrentgemma(block: HawkBlock | ResidualBlock, params: dict) -> None:
    """Copies recurrentgemma.jax params into `block`, in place: a `RecurrentBlock`'s tree
    (linear_y, linear_x, linear_out, conv_1d, rg_lru) into a HawkBlock with an RGLRU cell, or
    a `ResidualBlock`'s (temporal_pre_norm, recurrent_block, channel_pre_norm, mlp_block) into
    a ResidualBlock around one."""
    if isinstance(block, ResidualBlock):
        block.temporal_pre_norm.scale[...] = params["temporal_pre_norm"]["scale"]
        load_recurrentgemma(block.temporal, params["recurrent_block"])
        if block.mlp is not None:
            block.channel_pre_norm.scale[...] = params["channel_pre_norm"]["scale"]
            up, down = params["mlp_block"]["ffw_up"], params["mlp_block"]["ffw_down"]
            for k, linear in enumerate((block.mlp.gate, block.mlp.up)):
                linear.kernel[...], linear.bias[...] = up["w"][k], up["b"][k].reshape(-1)
            block.mlp.down.kernel[...], block.mlp.down.bias[...] = down["kernel"], down["bias"]
        return
    for name in ("linear_y", "linear_x", "linear_out"):
        linear = getattr(block, name)
        linear.kernel[...], linear.bias[...] = params[name]["kernel"], params[name]["bias"]
    block.conv_1d.w[...], block.conv_1d.b[...] = params["conv_1d"]["w"], params["conv_1d"]["b"]
    mine = block.rnn.params
    for path, value in jax.tree_util.tree_flatten_with_path(params["rg_lru"])[0]:
        target = mine
        for key in path[:-1]:
            target = target[key.key]
        target[path[-1].key][...] = value
