"""sLSTM, the scalar-memory LSTM of xLSTM (Beck et al. 2024), as NX-AI's official `xlstm` code.

Equations (h the hidden size, n heads of size k = h / n; R block-diagonal over the heads):

  (i~, f~, z~, o~) = W x_t + R h_{t-1} + b                   pre-activations, each [h]
  log i_t = i~                                               exponential input gate
  log f_t = log_sigmoid(f~)  ("sigmoid", default)  or  f~  ("exp")
  m_t  = max(log f_t + m_{t-1}, log i_t)                     stabiliser (m_t = log i_t at a zero state)
  i'_t = exp(log i_t - m_t),  f'_t = exp(log f_t + m_{t-1} - m_t)
  c_t  = f'_t c_{t-1} + i'_t tanh(z~)                        cell state
  n_t  = f'_t n_{t-1} + i'_t                                 normaliser state
  h_t  = sigmoid(o~) * c_t / n_t                             hidden state = output

In exact arithmetic h_t does not depend on m: c_t and n_t are the unstabilised states
C_t = f_t C_{t-1} + i_t z_t, N_t = f_t N_{t-1} + i_t times exp(-m_t), and m cancels in c/n.
The stabiliser only keeps exp() in range: i', f' <= 1, so a sequence of large i~ (where exp(i~)
overflows float32 from i~ > 88) stays finite.

First step: the official vanilla code (xlstm/blocks/slstm/src/vanilla/slstm.py) sets m_1 = i~
when the whole state is zero (`torch.all(n == 0)`), else the max. Here the same rule holds per
element: where n_{t-1} == 0 (the initial carry, and after a reset, where the engine zeroes the
carry) m_t = log i_t, so i'_t = 1 and n_t = 1; afterwards n_t >= 1 always (one of i', f' is 1 at
every step). With the bare max from m_0 = 0 instead, n_1 = exp(i~ - max(i~, log f)) underflows to
0 for very negative i~ and h_1 = 0/0; the official rule avoids that, so it is matched rather than
the paper's m_0 = 0. Per element rather than over the batch, so that a sequence's values never
depend on the others in its batch (they equal the official ones whenever the batch starts from
zeros, as it does there); f' at such a step is 1 (it multiplies c = n = 0). Other steps need no
clamp: m_t is the larger of the two exponents, so i', f' <= 1 (the official code also clips both
at 1, which then never binds).

Dtypes: the pointwise part runs in float32 (at least), the carry keeps the compute dtype, as the
official kernels' bfloat16 states. A bfloat16 m is rounded (spacing |m| / 128); c and n are
computed relative to the unrounded m_t, so the next step's f' and i' stay <= 1 (bounded, tested
at T = 4096 with m ~ 2000) at a relative error of the mixing weights of about |m| / 256.
Recomputing c, n against the rounded m instead would let m stall on its coarse grid while c, n
grow by f each step until they overflow.

Layout (the official external one, so weights copy as they are): the gate order is (i, f, z, o);
r [n, k, 4, k]: r[j, a, g, b] maps feature a of head j of h_{t-1} to feature b of head j of gate
g (`sLSTMCell.recurrent_kernel`); b [n, 4, k] (`sLSTMCell.bias`); head j is the contiguous
features j*k..(j+1)*k of each gate's [h] slab and of h.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gatedrnn.cells.base import Cell, Params, accumulation_dtype, gate_matmul, small_init_std
from gatedrnn.validation import ConfigError, check_choice, check_positive

FORGET_GATES = ("sigmoid", "exp")
INPUTS = ("dense", "gates")


class SLSTMCarry(NamedTuple):
    c: jax.Array  # [*batch, h]  cell state (scaled by exp(-m))
    n: jax.Array  # [*batch, h]  normaliser state (scaled by exp(-m))
    m: jax.Array  # [*batch, h]  stabiliser (log scale of c and n)
    h: jax.Array  # [*batch, h]  hidden state, the output


def powerlaw_forget_bias(head_size: int, block_index: int = 0, num_blocks: int = 1) -> jax.Array:
    """The official "powerlaw_blockdependent" forget-gate bias of one head, [k]:

      b_f[a] = 5 - 12 * (a / (k - 1)) ** (0.3 + 1.3 * block_index / (num_blocks - 1))

    (the ratio is 0 for a single block), a ramp from +5 (long memory) down to -7. For k = 1 the
    official code divides 0 by 0 (NaN); here the one feature gets a = 0, i.e. +5.
    """
    ratio = block_index / (num_blocks - 1) if num_blocks > 1 else 0.0
    position = jnp.arange(head_size, dtype=jnp.float32) / max(head_size - 1, 1)
    return -(-5.0 + 12.0 * position ** (0.3 + 1.3 * ratio))


@dataclasses.dataclass(frozen=True)
class SLSTM(Cell):
    """sLSTM (Beck et al. 2024); equations, stabiliser and layout in the module docstring.

    Args:
      input_size: d. hidden_size: h.
      num_heads: n, the diagonal blocks of R; must divide h (head size k = h / n).
      forget_gate: "sigmoid" (log f = log_sigmoid(f~), the official default) or "exp" (log f = f~).
      inputs: "dense": the cell owns W [d, 4, h], so xs [..., d]. "gates": no W; xs [..., 4 h]
        already are the W x pre-activations in the gate order (i, f, z, o), each an [h] slab
        (the official sLSTMCell's input: its layer computes them headwise), so d must be 4 h.
      bias: add b (the official cell always has one).
      block_index, num_blocks: this cell's block in a residual stack of num_blocks, which sets
        the forget-gate bias ramp (the official `_block_idx`, `_num_blocks`); the defaults give
        the official single-block ramp.

    Params: w [d, 4, h] (inputs="dense"), r [n, k, 4, k], b [n, 4, k] (bias).
    Init (the official defaults): r zeros (`recurrent_weight_init="zeros"`); b zero for i, z, o and
    `powerlaw_forget_bias` for f in every head (`bias_init="powerlaw_blockdependent"`); w normal
    with std sqrt(2 / (5 d)) (`small_init_init_`, as sLSTMLayer's gate projections).
    Carry: SLSTMCarry(c, n, m, h), each [*batch, h].

    The recurrent product goes through `matmul` one head at a time (h_{t-1}[head j] @ r[j] as a
    [k, 4, k] gate weight), so the engine's fused VJP computes dR as n matmuls over all steps.

    Example:
      cell = SLSTM(8, 16, num_heads=4)
      ys, carry = gatedrnn.scan_cell(cell, cell.init(jax.random.key(0)), xs)   # xs [b, t, 8]
    """

    num_heads: int = 4
    forget_gate: str = "sigmoid"
    inputs: str = "dense"
    bias: bool = True
    block_index: int = 0
    num_blocks: int = 1

    def __post_init__(self):
        super().__post_init__()
        check_positive("SLSTM.num_heads", self.num_heads)
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"SLSTM.num_heads={self.num_heads} must divide hidden_size={self.hidden_size}")
        check_choice("SLSTM.forget_gate", self.forget_gate, FORGET_GATES)
        check_choice("SLSTM.inputs", self.inputs, INPUTS)
        if self.inputs == "gates" and self.input_size != 4 * self.hidden_size:
            raise ConfigError(f"SLSTM.inputs='gates' needs input_size == 4 * hidden_size = {4 * self.hidden_size} "
                              f"(the (i, f, z, o) pre-activations), got {self.input_size}")
        if not isinstance(self.bias, bool):
            raise ConfigError(f"SLSTM.bias must be True or False, got {self.bias!r}")
        check_positive("SLSTM.num_blocks", self.num_blocks)
        if isinstance(self.block_index, bool) or not isinstance(self.block_index, int) \
                or not 0 <= self.block_index < self.num_blocks:
            raise ConfigError(f"SLSTM.block_index must be an integer in [0, num_blocks={self.num_blocks}), "
                              f"got {self.block_index!r}")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    def initial_carry(self, batch_shape, dtype=jnp.float32) -> SLSTMCarry:
        zeros = jnp.zeros((*batch_shape, self.hidden_size), dtype)
        return SLSTMCarry(zeros, zeros, zeros, zeros)

    def init(self, key, dtype=jnp.float32) -> Params:
        n, k = self.num_heads, self.head_size
        params = {"r": jnp.zeros((n, k, 4, k), dtype)}
        if self.inputs == "dense":
            std = small_init_std(self.input_size)
            params["w"] = std * jax.random.normal(key, (self.input_size, 4, self.hidden_size), dtype)
        if self.bias:
            ramp = powerlaw_forget_bias(k, self.block_index, self.num_blocks)
            params["b"] = jnp.zeros((n, 4, k), dtype).at[:, 1, :].set(ramp.astype(dtype))
        return params

    def project(self, params, xs):
        """xs [..., d] -> (i~, f~, z~, o~) input parts W x + b, each [..., h]."""
        if self.inputs == "dense":
            gates = gate_matmul(xs, params["w"])
        else:
            gates = jnp.split(xs, 4, axis=-1)
        if self.bias:
            b = jnp.swapaxes(params["b"], 0, 1).reshape(4, self.hidden_size).astype(xs.dtype)  # [4, h]
            gates = [x + b[g].reshape((1,) * (x.ndim - 1) + (-1,)) for g, x in enumerate(gates)]
        return tuple(gates)

    def recurrent(self, params, h, matmul=gate_matmul) -> list[jax.Array]:
        """R h [..., h] -> the four gates' recurrent parts, each [..., h]: head by head through
        `matmul`, h[..., head j] @ r[j] with r[j] a [k, 4, k] gate weight."""
        k = self.head_size
        heads = [matmul(h[..., j * k:(j + 1) * k], params["r"][j]) for j in range(self.num_heads)]  # n x 4 [.., k]
        return [jnp.concatenate([head[g] for head in heads], axis=-1) for g in range(4)]

    def step(self, params, carry: SLSTMCarry, xp, matmul=gate_matmul):
        c, n, m, h = carry
        rec = self.recurrent(params, h, matmul)
        acc = accumulation_dtype(c.dtype)  # the pointwise part in (at least) float32, as the official kernels
        i_pre, f_pre, z_pre, o_pre = ((x + r).astype(acc) for x, r in zip(xp, rec))
        c, n, m = c.astype(acc), n.astype(acc), m.astype(acc)

        log_f = jax.nn.log_sigmoid(f_pre) if self.forget_gate == "sigmoid" else f_pre
        first = n == 0  # a zero state: the initial carry, or after a reset
        m_new = jnp.where(first, i_pre, jnp.maximum(log_f + m, i_pre))
        i_gate = jnp.exp(i_pre - m_new)
        f_gate = jnp.exp(jnp.where(first, 0.0, log_f + m - m_new))  # where inside: no inf at a zero state
        c_new = f_gate * c + i_gate * jnp.tanh(z_pre)
        n_new = f_gate * n + i_gate
        h_new = jax.nn.sigmoid(o_pre) * c_new / n_new
        dtype = carry.c.dtype
        new = SLSTMCarry(c_new.astype(dtype), n_new.astype(dtype), m_new.astype(dtype), h_new.astype(dtype))
        return new, new.h
