"""Flax NNX xLSTM blocks (Beck et al. 2024) and the xLSTM[m:s] block stack, as NX-AI's official code.

Glossary: b batch, t time, w the block's width (embedding_dim), i the mLSTM block's inner width
(proj_factor * w rounded up to a multiple of `round_to`), e the feed-forward's width, H heads,
k the convolution's width.

  MLSTMBlock   the mLSTM block (pre up-projection; official `mLSTMBlock` / `mLSTMLayer`):
                 u = LN(x);  [x_m, z] = W_up u                       [b, t, i] each
                 c = SiLU(Conv1D(x_m));  q = Q c,  k = K c,  v = V x_m (headwise, blocks of 4)
                 h = MultiHeadLN(mLSTM(q, k, v)) + skip * c
                 y = x + W_down (h * SiLU(z))
  SLSTMBlock   the sLSTM block (post up-projection; official `sLSTMBlock` / `sLSTMLayer`):
                 u = LN(x);  c = SiLU(Conv1D(u))  (conv_width 0: c = u)
                 i~ = W_i c,  f~ = W_f c,  z~ = W_z u,  o~ = W_o u     (headwise, H heads)
                 x' = x + GroupNorm(sLSTM(i~, f~, z~, o~))
                 y = x' + GatedFeedForward(LN(x'))
  XLSTMStack   blocks in the m:s ratio (official `xLSTMBlockStack`: sLSTM blocks at `slstm_at`),
               then a final LayerNorm (`post_blocks_norm`).

LN is the official weight-only LayerNorm (y = norm(x) * (1 + weight), no bias, eps 1e-5); the
GroupNorm / MultiHeadLN normalises each head on its own (`MultiHeadLayerNorm`). The cells are
gatedrnn's `MLSTM(inputs="qkv", output_gate=False)` and `SLSTM(inputs="gates")`, run by
`gatedrnn.scan.scan_cell` with the block's `ScanOptions` (the mLSTM: modes "sequential",
"parallel", "chunkwise"; "auto" = chunkwise), so lengths, resets and reverse come from the engine
and from `Block` (gatedrnn.nn.blocks). `gatedrnn.nn.interop.load_official` copies an official module's weights.

Every block is a layer (`y, carry = block(x, seq_lengths=None, initial_carry=None, resets=None)`);
`make_block("mlstm" | "slstm" | "xlstm", ...)` and `build_rnn(..., block="xlstm")` build them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gatedrnn.cells.base import Cell, accumulation_dtype, small_init_std
from gatedrnn.cells.mlstm import MLSTM
from gatedrnn.losses import sequence_mask
from gatedrnn.nn.blocks import BLOCKS, Block, Conv1D, _block_scan, _input_projection
from gatedrnn.nn.layers import RNN
from gatedrnn.nn.params import cast, resolve_param_dtype
from gatedrnn.scan import ScanOptions, with_overrides
from gatedrnn.validation import ConfigError, check_choice, check_positive


def _slstm_class():
    from gatedrnn.cells.slstm import SLSTM  # written alongside; imported when an sLSTM block is built

    return SLSTM


def small_init(dim: int):
    """N(0, 2 / (5 dim)): the official `small_init_init_` (Nguyen & Salazar 2019)."""
    return nnx.initializers.normal(small_init_std(dim))


def wang_init(dim: int, num_blocks: int):
    """N(0, (2 / (num_blocks sqrt(dim)))^2): the official `wang_init_` of the output projections."""
    return nnx.initializers.normal(2 / num_blocks / math.sqrt(dim))


def up_projection_size(width: int, factor: float, multiple: int = 64) -> int:
    """ceil(factor * width / multiple) * multiple: the official `UpProjConfigMixin` (rounded up)."""
    return int(math.ceil(factor * width / multiple) * multiple)


def _torch_uniform(key, shape, bound, dtype):
    return jax.random.uniform(key, shape, dtype, -bound, bound)


class HeadwiseLinear(nnx.Module):
    """A block-diagonal linear map (official `LinearHeadwiseExpand`): x [..., H * d] -> [..., H * o],

      y[..., h, :] = W[h] x[..., h, :] (+ b),      W [H, o, d] (the official layout), b [H * o]

    head h reading the contiguous features h*d..(h+1)*d. Init N(0, 2 / (5 init_dim)) (the
    official small init; init_dim None: d, the official layers pass their embedding width), b = 0.
    """

    def __init__(self, in_features: int, num_heads: int, out_features: int | None = None, *, rngs: nnx.Rngs,
                 bias: bool = False, init_dim: int | None = None, dtype: Any = None, param_dtype: Any = None):
        check_positive("HeadwiseLinear.num_heads", num_heads)
        out_features = in_features if out_features is None else out_features
        for name, size in (("in_features", in_features), ("out_features", out_features)):
            check_positive(f"HeadwiseLinear.{name}", size)
            if size % num_heads:
                raise ConfigError(f"HeadwiseLinear: num_heads={num_heads} must divide {name}={size}")
        self.num_heads, self.dtype = num_heads, dtype
        param_dtype = resolve_param_dtype(param_dtype)
        d, o = in_features // num_heads, out_features // num_heads
        init = small_init(d if init_dim is None else init_dim)
        self.weight = nnx.Param(init(rngs.params(), (num_heads, o, d), param_dtype))
        self.bias = nnx.Param(jnp.zeros((out_features,), param_dtype)) if bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        x = cast(x, self.dtype)
        xh = x.reshape(*x.shape[:-1], self.num_heads, -1)
        y = jnp.einsum("...hd,hod->...ho", xh, self.weight[...].astype(x.dtype))
        y = y.reshape(*x.shape[:-1], -1)
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype).reshape((1,) * (y.ndim - 1) + (-1,))
        return y


class MultiHeadLayerNorm(nnx.Module):
    """The official weight-only LayerNorm, per head (`MultiHeadLayerNorm`; num_heads=1: `LayerNorm`):

      y[..., h, :] = (x_h - mean(x_h)) / sqrt(var(x_h) + eps) * (1 + weight_h),   x [..., H * d]

    statistics over each head's d features, in at least float32; `weight` [H * d] init 0 (the
    official `residual_weight`), no bias. y in x's dtype (or `dtype`).
    """

    def __init__(self, width: int, num_heads: int = 1, *, eps: float = 1e-5, dtype: Any = None,
                 param_dtype: Any = None):
        check_positive("MultiHeadLayerNorm.width", width)
        check_positive("MultiHeadLayerNorm.num_heads", num_heads)
        if width % num_heads:
            raise ConfigError(f"MultiHeadLayerNorm: num_heads={num_heads} must divide width={width}")
        self.num_heads, self.eps, self.dtype = num_heads, eps, dtype
        self.weight = nnx.Param(jnp.zeros((width,), resolve_param_dtype(param_dtype)))

    def __call__(self, x: jax.Array) -> jax.Array:
        x = cast(x, self.dtype)
        x32 = x.astype(accumulation_dtype(x.dtype))
        xh = x32.reshape(*x.shape[:-1], self.num_heads, -1)
        mean = jnp.mean(xh, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(xh - mean), axis=-1, keepdims=True)
        y = ((xh - mean) * jax.lax.rsqrt(var + self.eps)).reshape(x.shape)
        scale = 1 + self.weight[...].astype(y.dtype).reshape((1,) * (x.ndim - 1) + (-1,))
        return (y * scale).astype(x.dtype)


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {  # the official feed-forward's `act_fn`
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # torch's exact GeLU
    "relu": jax.nn.relu,
    "relu^2": lambda x: jnp.square(jax.nn.relu(x)),
    "sigmoid": jax.nn.sigmoid,
    "swish": jax.nn.silu,
    "selu": jax.nn.selu,
}


class GatedFeedForward(nnx.Module):
    """The official `GatedFeedForward`: x [..., w] -> [..., w],

      [g, u] = W_up x  ([..., e] each),   y = W_down (act(g) * u)

    e = proj_factor * w rounded up to a multiple of `round_to` (1.3 and 64 as the official code);
    act the exact GeLU by default. Params: proj_up (kernel [w, 2e], the gate first), proj_down;
    no biases unless `bias`. Init: proj_up small init (dim w), proj_down wang init (w, num_blocks).
    """

    def __init__(self, width: int, *, rngs: nnx.Rngs, proj_factor: float = 1.3, round_to: int = 64,
                 act: str = "gelu", bias: bool = False, num_blocks: int = 1, dtype: Any = None,
                 param_dtype: Any = None):
        check_positive("GatedFeedForward.width", width)
        check_positive("GatedFeedForward.proj_factor", proj_factor, integer=False)
        check_positive("GatedFeedForward.round_to", round_to)
        check_choice("GatedFeedForward.act", act, ACTIVATIONS)
        self.act = act
        self.expanded = up_projection_size(width, proj_factor, round_to)
        param_dtype = resolve_param_dtype(param_dtype)
        kw = dict(use_bias=bias, bias_init=nnx.initializers.zeros_init(), dtype=dtype, param_dtype=param_dtype,
                  rngs=rngs)
        self.proj_up = nnx.Linear(width, 2 * self.expanded, kernel_init=small_init(width), **kw)
        self.proj_down = nnx.Linear(self.expanded, width, kernel_init=wang_init(width, num_blocks), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        g, u = jnp.split(self.proj_up(x), 2, axis=-1)
        return self.proj_down(ACTIVATIONS[self.act](g) * u)


class XLSTMCarry(NamedTuple):
    conv: jax.Array  # [b, k - 1, channels]: the convolution's last inputs ([b, 0, .] without one)
    cell: Any  # the cell's carry (MLSTMCarry / SLSTMCarry)


def _causal_conv(width: int, conv_width: int, *, rngs: nnx.Rngs, param_dtype) -> Conv1D | None:
    """The official `CausalConv1d` (a depthwise causal conv with bias) as gatedrnn's Conv1D, with
    torch's default Conv1d init: w, b ~ U(-1/sqrt(k), 1/sqrt(k)). None for conv_width 0."""
    if isinstance(conv_width, bool) or not isinstance(conv_width, int) or conv_width < 0:
        raise ConfigError(f"conv_width must be an int >= 0 (0: no convolution), got {conv_width!r}")
    if conv_width == 0:
        return None
    conv = Conv1D(width, conv_width, rngs=rngs, param_dtype=param_dtype)
    bound = 1 / math.sqrt(conv_width)
    conv.w[...] = _torch_uniform(rngs.params(), conv.w.shape, bound, conv.w.dtype)
    conv.b[...] = _torch_uniform(rngs.params(), conv.b.shape, bound, conv.b.dtype)
    return conv


def _run_conv(conv: Conv1D | None, x, seq_lengths, state, resets):
    if conv is None:
        return x, state
    return conv(x, resets=resets, seq_lengths=seq_lengths, state=state)


def _conv_state(conv: Conv1D | None, width: int, batch_size: int, dtype) -> jax.Array:
    return jnp.zeros((batch_size, 0, width), dtype) if conv is None else conv.initial_state(batch_size, dtype)


def _heads(num_heads: int | None, cell: Cell | None) -> int:
    heads = getattr(cell, "num_heads", 4) if num_heads is None else num_heads
    check_positive("num_heads", heads)
    return heads


class MLSTMBlock(Block):
    """The mLSTM block of xLSTM (official `mLSTMBlock`; equations in the module docstring).

    x [b, t, input_size] -> y [b, t, width]; when input_size != width a linear `input_proj`
    maps x to the width first (the residual is taken after it). The inner width is
    i = up_projection_size(width, proj_factor, round_to) (official: 2 and 64); q and k read the
    convolved branch, v the unconvolved one, each a `HeadwiseLinear` of blocks of `qkv_blocksize`.
    The cell is `cell` (an `MLSTM`, e.g. with forget_gate="exp" or eps) re-sized to
    `MLSTM(3 i, i, num_heads, inputs="qkv", output_gate=False)`; num_heads None: the cell's (4
    without one). Params (official names): xlstm_norm, proj_up (kernel [w, 2 i]: x_m then z),
    conv1d, q_proj, k_proj, v_proj, rnn (the cell's w_i, b_i, w_f, b_f), outnorm, learnable_skip
    [i], proj_down; no biases unless `bias`. Init as the official code (num_blocks: the stack's
    depth, for proj_down's wang init). Carry: XLSTMCarry(conv [b, k - 1, i], MLSTMCarry).

    Example:
      block = MLSTMBlock(16, 16, rngs=nnx.Rngs(0), num_heads=2)
      y, carry = block(x, seq_lengths=lengths)       # x [b, t, 16] -> y [b, t, 16]
    """

    def __init__(self, input_size: int, width: int, cell: MLSTM | None = None, *, rngs: nnx.Rngs,
                 num_heads: int | None = None, proj_factor: float = 2.0, round_to: int = 64, conv_width: int = 4,
                 qkv_blocksize: int = 4, bias: bool = False, num_blocks: int = 1, reverse: bool = False,
                 scan: ScanOptions | None = None, dtype: Any = None, param_dtype: Any = None):
        check_positive("MLSTMBlock.width", width)
        check_positive("MLSTMBlock.proj_factor", proj_factor, integer=False)
        check_positive("MLSTMBlock.round_to", round_to)
        check_positive("MLSTMBlock.qkv_blocksize", qkv_blocksize)
        check_positive("MLSTMBlock.num_blocks", num_blocks)
        if cell is not None and not isinstance(cell, MLSTM):
            raise ConfigError(f"the mlstm block needs an MLSTM cell (model.cell='mlstm'), got {type(cell).__name__}")
        inner = up_projection_size(width, proj_factor, round_to)
        if inner % qkv_blocksize:
            raise ConfigError(f"MLSTMBlock: qkv_blocksize={qkv_blocksize} must divide the inner width {inner}")
        heads = _heads(num_heads, cell)
        base = MLSTM(3 * inner, inner, num_heads=heads, inputs="qkv", output_gate=False) if cell is None else cell
        cell = dataclasses.replace(base, input_size=3 * inner, hidden_size=inner, num_heads=heads, qk_size=None,
                                   inputs="qkv", output_gate=False)
        self.input_size = width if input_size is None else input_size
        self.width, self.inner, self.num_heads, self.reverse = width, inner, heads, reverse
        self.scan = _block_scan(scan, dtype)
        param_dtype = resolve_param_dtype(param_dtype)
        kw = dict(rngs=rngs, dtype=self.scan.dtype, param_dtype=param_dtype)
        lin = dict(use_bias=bias, bias_init=nnx.initializers.zeros_init(), **kw)
        self.input_proj = _input_projection(self.input_size, width, **kw)
        self.xlstm_norm = MultiHeadLayerNorm(width, param_dtype=param_dtype)
        self.proj_up = nnx.Linear(width, 2 * inner, kernel_init=small_init(width), **lin)
        self.conv1d = _causal_conv(inner, conv_width, rngs=rngs, param_dtype=param_dtype)
        proj = dict(bias=bias, init_dim=width, **kw)
        self.q_proj = HeadwiseLinear(inner, inner // qkv_blocksize, **proj)
        self.k_proj = HeadwiseLinear(inner, inner // qkv_blocksize, **proj)
        self.v_proj = HeadwiseLinear(inner, inner // qkv_blocksize, **proj)
        self.rnn = RNN(cell, rngs=rngs, scan=self.scan, param_dtype=param_dtype)
        self.outnorm = MultiHeadLayerNorm(inner, heads, param_dtype=param_dtype)
        self.learnable_skip = nnx.Param(jnp.ones((inner,), param_dtype))
        self.proj_down = nnx.Linear(inner, width, kernel_init=wang_init(width, num_blocks), **lin)

    def initial_carry(self, batch_size: int, dtype=jnp.float32) -> XLSTMCarry:
        return XLSTMCarry(_conv_state(self.conv1d, self.inner, batch_size, dtype),
                          self.rnn.initial_carry(batch_size, dtype))

    def forward(self, x, seq_lengths, carry, resets):
        if self.input_proj is not None:
            x = self.input_proj(x)
        x_m, z = jnp.split(self.proj_up(self.xlstm_norm(x)), 2, axis=-1)
        c, conv = _run_conv(self.conv1d, x_m, seq_lengths, carry.conv, resets)
        c = jax.nn.silu(c)
        qkv = jnp.concatenate([self.q_proj(c), self.k_proj(c), self.v_proj(x_m)], axis=-1)
        h, cell = self.rnn(qkv, seq_lengths=seq_lengths, initial_carry=carry.cell, resets=resets)
        h = self.outnorm(h) + self.learnable_skip[...].astype(c.dtype).reshape(1, 1, -1) * c
        return x + self.proj_down(h * jax.nn.silu(z)), XLSTMCarry(conv, cell)


class SLSTMBlock(Block):
    """The sLSTM block of xLSTM (official `sLSTMBlock`; equations in the module docstring).

    x [b, t, input_size] -> y [b, t, width] (an `input_proj` first when input_size != width).
    The gates' inputs are `HeadwiseLinear`s of num_heads heads (i, f from the convolved branch,
    z, o from the normed input), concatenated as (i, f, z, o) for `cell` re-sized to
    `SLSTM(4 w, w, num_heads, inputs="gates")` (the cell adds R h_{t-1} + b); num_heads None:
    the cell's (4 without one). conv_width 0: no convolution (the gates read the normed input).
    ff_proj_factor 0: no feed-forward. Params (official names): xlstm_norm, conv1d, igate, fgate,
    zgate, ogate, rnn (the cell's r, b), group_norm, ffn_norm, ffn. block_index, num_blocks: the
    block's place in the stack (the cell's forget-bias ramp, the ffn's wang init). NB: the official layer computes
    its input gate with its module named `fgate` and its forget gate with `igate`;
    `load_official` maps them by role. Carry: XLSTMCarry(conv [b, k - 1, w], SLSTMCarry).

    Example:
      block = SLSTMBlock(16, 16, rngs=nnx.Rngs(0), num_heads=2)
      y, carry = block(x, seq_lengths=lengths)       # x [b, t, 16] -> y [b, t, 16]
    """

    def __init__(self, input_size: int, width: int, cell: Cell | None = None, *, rngs: nnx.Rngs,
                 num_heads: int | None = None, conv_width: int = 4, ff_proj_factor: float = 1.3, round_to: int = 64,
                 ff_act: str = "gelu", num_blocks: int = 1, block_index: int = 0, reverse: bool = False,
                 scan: ScanOptions | None = None,
                 dtype: Any = None, param_dtype: Any = None):
        SLSTM = _slstm_class()
        check_positive("SLSTMBlock.width", width)
        check_positive("SLSTMBlock.num_blocks", num_blocks)
        if cell is not None and not isinstance(cell, SLSTM):
            raise ConfigError(f"the slstm block needs an SLSTM cell (model.cell='slstm'), got {type(cell).__name__}")
        if isinstance(ff_proj_factor, bool) or not isinstance(ff_proj_factor, (int, float)) or ff_proj_factor < 0:
            raise ConfigError(f"SLSTMBlock.ff_proj_factor must be a number >= 0 (0: no feed-forward), "
                              f"got {ff_proj_factor!r}")
        heads = _heads(num_heads, cell)
        base = SLSTM(4 * width, width, num_heads=heads, inputs="gates") if cell is None else cell
        cell = dataclasses.replace(base, input_size=4 * width, hidden_size=width, num_heads=heads, inputs="gates",
                                   block_index=block_index, num_blocks=num_blocks)
        self.input_size = width if input_size is None else input_size
        self.width, self.num_heads, self.reverse = width, heads, reverse
        self.scan = _block_scan(scan, dtype)
        param_dtype = resolve_param_dtype(param_dtype)
        kw = dict(rngs=rngs, dtype=self.scan.dtype, param_dtype=param_dtype)
        self.input_proj = _input_projection(self.input_size, width, **kw)
        self.xlstm_norm = MultiHeadLayerNorm(width, param_dtype=param_dtype)
        self.conv1d = _causal_conv(width, conv_width, rngs=rngs, param_dtype=param_dtype)
        gate = dict(init_dim=width, **kw)
        self.igate = HeadwiseLinear(width, heads, **gate)
        self.fgate = HeadwiseLinear(width, heads, **gate)
        self.zgate = HeadwiseLinear(width, heads, **gate)
        self.ogate = HeadwiseLinear(width, heads, **gate)
        self.rnn = RNN(cell, rngs=rngs, scan=self.scan, param_dtype=param_dtype)
        self.group_norm = MultiHeadLayerNorm(width, heads, param_dtype=param_dtype)
        if ff_proj_factor:
            self.ffn_norm = MultiHeadLayerNorm(width, param_dtype=param_dtype)
            self.ffn = GatedFeedForward(width, proj_factor=ff_proj_factor, round_to=round_to, act=ff_act,
                                        num_blocks=num_blocks, **kw)
        else:
            self.ffn_norm, self.ffn = None, None

    def initial_carry(self, batch_size: int, dtype=jnp.float32) -> XLSTMCarry:
        return XLSTMCarry(_conv_state(self.conv1d, self.width, batch_size, dtype),
                          self.rnn.initial_carry(batch_size, dtype))

    def forward(self, x, seq_lengths, carry, resets):
        if self.input_proj is not None:
            x = self.input_proj(x)
        u = self.xlstm_norm(x)
        c, conv = _run_conv(self.conv1d, u, seq_lengths, carry.conv, resets)
        if self.conv1d is not None:
            c = jax.nn.silu(c)
        gates = jnp.concatenate([self.igate(c), self.fgate(c), self.zgate(u), self.ogate(u)], axis=-1)
        h, cell = self.rnn(gates, seq_lengths=seq_lengths, initial_carry=carry.cell, resets=resets)
        x = x + self.group_norm(h)
        if self.ffn is not None:
            x = x + self.ffn(self.ffn_norm(x))
        return x, XLSTMCarry(conv, cell)


def slstm_positions(num_blocks: int, ratio: str | None = None, slstm_at: Sequence[int] | str | None = None) -> tuple[int, ...]:
    """Where the sLSTM blocks go among `num_blocks` (0-based), as the official `slstm_at`.

    slstm_at: the positions themselves (or "all"); ratio "m:s": n = num_blocks * s / (m + s)
    sLSTM blocks (an integer, else ConfigError), placed evenly: the last block of each of n
    equal groups, position floor((j + 1) num_blocks / n) - 1 for j < n (so "7:1" of 8 blocks:
    [7]; "1:1" of 4: [1, 3]; "3:1" of 8: [3, 7]). Neither: [] (all mLSTM, the official default).
    """
    if ratio is not None and slstm_at is not None:
        raise ConfigError("give model.block_options.ratio or model.block_options.slstm_at, not both")
    if ratio is not None:
        parts = str(ratio).split(":")
        try:
            m, s = (int(p) for p in parts)
        except ValueError:
            m = s = -1
        if len(parts) != 2 or m < 0 or s < 0 or m + s == 0:
            raise ConfigError(f"model.block_options.ratio must be 'm:s' with integers m, s >= 0 (e.g. '7:1'), "
                              f"got {ratio!r}")
        if (num_blocks * s) % (m + s):
            raise ConfigError(f"model.block_options.ratio={ratio!r} needs model.num_layers (the number of blocks) "
                              f"to be a multiple of {(m + s) // math.gcd(m + s, s)}, got {num_blocks}")
        n = num_blocks * s // (m + s)
        return tuple((j + 1) * num_blocks // n - 1 for j in range(n))
    if slstm_at is None:
        return ()
    if isinstance(slstm_at, str):
        if slstm_at != "all":
            raise ConfigError(f"model.block_options.slstm_at must be a list of block indices or 'all', got {slstm_at!r}")
        return tuple(range(num_blocks))
    positions = tuple(slstm_at)
    for p in positions:
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < num_blocks:
            raise ConfigError(f"model.block_options.slstm_at must hold block indices in [0, {num_blocks}), got "
                              f"{list(positions)!r}")
    return tuple(sorted(set(positions)))


MLSTM_OPTIONS = BLOCKS["mlstm"]  # what each block takes (gatedrnn.nn.blocks.BLOCKS)
SLSTM_OPTIONS = BLOCKS["slstm"]


class XLSTMStack(Block):
    """The xLSTM block stack (official `xLSTMBlockStack`): `num_blocks` blocks, sLSTM blocks at
    `slstm_positions(num_blocks, ratio, slstm_at)` and mLSTM blocks elsewhere, then a final
    weight-only LayerNorm `post_blocks_norm` (post_norm=False: none). x [b, t, input_size] ->
    [b, t, width]; the first block projects x to the width when they differ.

    `mlstm_cell` / `slstm_cell` (None: defaults) are re-sized by each block; `options` go to the
    blocks that take them (MLSTM_OPTIONS, SLSTM_OPTIONS; num_heads and conv_width to both,
    round_to to the mLSTM up-projection and the sLSTM feed-forward). The sLSTM blocks have no
    parallel form: under scan mode "parallel" or "chunkwise" they run with mode "auto"
    (sequential). The carry is a tuple of the blocks' carries. Params: blocks (a list), post_blocks_norm.

    Example:
      stack = XLSTMStack(16, 16, rngs=nnx.Rngs(0), num_blocks=4, ratio="3:1", num_heads=2)
      y, carry = stack(x, seq_lengths=lengths)      # x [b, t, 16] -> y [b, t, 16]; sLSTM at block 3
    """

    def __init__(self, input_size: int, width: int, *, rngs: nnx.Rngs, num_blocks: int = 1,
                 ratio: str | None = None, slstm_at: Sequence[int] | str | None = None,
                 mlstm_cell: MLSTM | None = None, slstm_cell: Cell | None = None, post_norm: bool = True,
                 reverse: bool = False, scan: ScanOptions | None = None, dtype: Any = None,
                 param_dtype: Any = None, **options):
        check_positive("model.num_layers", num_blocks)
        for option in options:
            if option not in MLSTM_OPTIONS + SLSTM_OPTIONS:
                raise ConfigError(f"model.block_options.{option} is not an option of the 'xlstm' block; choose from "
                                  f"{sorted(set(BLOCKS['xlstm']))}")
        self.slstm_at = slstm_positions(num_blocks, ratio, slstm_at)
        self.input_size = width if input_size is None else input_size
        self.width, self.reverse = width, reverse
        self.scan = _block_scan(scan, dtype)
        slstm_scan = self.scan if self.scan.mode not in ("parallel", "chunkwise") else with_overrides(self.scan,
                                                                                                       mode="auto")
        param_dtype = resolve_param_dtype(param_dtype)
        blocks = []
        for k in range(num_blocks):
            size = self.input_size if k == 0 else width
            kw = dict(rngs=rngs, num_blocks=num_blocks, param_dtype=param_dtype)
            if k in self.slstm_at:
                own = {o: v for o, v in options.items() if o in SLSTM_OPTIONS}
                blocks.append(SLSTMBlock(size, width, slstm_cell, scan=slstm_scan, block_index=k, **own, **kw))
            else:
                own = {o: v for o, v in options.items() if o in MLSTM_OPTIONS}
                blocks.append(MLSTMBlock(size, width, mlstm_cell, scan=self.scan, **own, **kw))
        self.blocks = nnx.List(blocks)
        self.post_blocks_norm = MultiHeadLayerNorm(width, param_dtype=param_dtype) if post_norm else None

    def initial_carry(self, batch_size: int, dtype=jnp.float32) -> tuple:
        return tuple(block.initial_carry(batch_size, dtype) for block in self.blocks)

    def forward(self, x, seq_lengths, carry, resets):
        valid = None if seq_lengths is None else sequence_mask(seq_lengths, *x.shape[:2])[..., None]
        carries = []
        for block, c in zip(self.blocks, carry):
            x, c = block.forward(x, seq_lengths, c, resets)
            if valid is not None:
                x = jnp.where(valid, x, 0)  # the next block sees zeros at padded steps, as a block's input
            carries.append(c)
        if self.post_blocks_norm is not None:
            x = self.post_blocks_norm(x)
        return x, tuple(carries)


def make_xlstm_block(name: str, cell: Cell, input_size: int, width: int, **kw) -> Block:
    """make_block's xLSTM part: "mlstm" -> MLSTMBlock, "slstm" -> SLSTMBlock, "xlstm" -> XLSTMStack
    (its cell an MLSTM or SLSTM: that kind's cell; the other kind its default)."""
    if name == "mlstm":
        return MLSTMBlock(input_size, width, cell, **kw)
    if name == "slstm":
        return SLSTMBlock(input_size, width, cell, **kw)
    if isinstance(cell, MLSTM):
        return XLSTMStack(input_size, width, mlstm_cell=cell, **kw)
    if isinstance(cell, _slstm_class()):
        return XLSTMStack(input_size, width, slstm_cell=cell, **kw)
    raise ConfigError(f"model.block='xlstm' needs model.cell='mlstm' or 'slstm', got {type(cell).__name__}")


def build_xlstm(cell: str, input_size: int, hidden_size: int, *, rngs: nnx.Rngs, num_layers: int = 1,
                bidirectional: bool = False, merge: str = "concat", dropout: float = 0.0, residual: bool = False,
                scan: ScanOptions | None = None, block_options: dict[str, Any] | None = None,
                param_dtype: Any = None, **cell_options):
    """`build_rnn(cell, ..., block="xlstm")`: a `Stack` of one layer, the `XLSTMStack` of
    num_layers blocks of width hidden_size (bidirectional: a forward and a backward stack, merged).

    cell: "mlstm" or "slstm" (the stack builds both kinds); each cell option goes to the cells
    that have it (num_heads and forget_gate to both), ConfigError for one that neither has.
    block_options: ratio / slstm_at and the block options (`BLOCKS["xlstm"]`), not num_blocks
    (that is num_layers). model.dropout and model.residual are refused (the blocks carry their
    own residuals; dropout between blocks is not part of the official stack).
    """
    from gatedrnn.nn.layers import Bidirectional, Stack

    if cell not in ("mlstm", "slstm"):
        raise ConfigError(f"model.block='xlstm' needs model.cell='mlstm' or 'slstm' (the stack builds both), "
                          f"got {cell!r}")
    if residual:
        raise ConfigError("model.residual=True is not valid with model.block='xlstm', whose blocks have their own "
                          "residual connections; use model.residual=False")
    if dropout:
        raise ConfigError(f"model.dropout={dropout!r} is not valid with model.block='xlstm' (one layer: the block "
                          "stack); use model.dropout=0.0")
    options = dict(block_options or {})
    if "num_blocks" in options:
        raise ConfigError("model.block_options.num_blocks is model.num_layers for model.block='xlstm'")
    kinds = {"mlstm": MLSTM, "slstm": _slstm_class()}
    sized = {"input_size", "hidden_size", "inputs", "qk_size", "output_gate"}  # set by the blocks
    fields = {k: {f.name for f in dataclasses.fields(c) if f.init} - sized for k, c in kinds.items()}
    for option in cell_options:
        if not any(option in f for f in fields.values()):
            raise ConfigError(f"model.cell_options.{option} is not an option of the mlstm or slstm cell in the "
                              f"xlstm stack; choose from {sorted(fields['mlstm'] | fields['slstm'])}")
    cells = {}
    for kind, cls in kinds.items():  # at a size any head count divides; each block re-sizes its cell
        own = {o: v for o, v in cell_options.items() if o in fields[kind]}
        heads = own.get("num_heads", 4)
        if kind == "mlstm":
            cells[kind] = cls(3 * heads, heads, inputs="qkv", output_gate=False, **own)
        else:
            cells[kind] = cls(4 * heads, heads, inputs="gates", **own)

    def make(reverse: bool):
        return XLSTMStack(input_size, hidden_size, rngs=rngs, num_blocks=num_layers, mlstm_cell=cells["mlstm"],
                          slstm_cell=cells["slstm"], reverse=reverse, scan=scan, param_dtype=param_dtype, **options)

    layer = Bidirectional(make(False), make(True), merge=merge) if bidirectional else make(False)
    return Stack([layer], rngs=rngs)
