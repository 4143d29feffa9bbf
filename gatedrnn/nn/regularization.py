"""Recurrent regularization: variational dropout (Gal & Ghahramani 2016) and zoneout (Krueger et al. 2017).

Glossary: b batch, t time, d input features, h hidden units.

Masks are drawn once per call (per sequence) outside the scan, and reach the step without any
change to the cells or the scan engine:

  variational dropout  one Bernoulli(1 - rate) / (1 - rate) mask per sequence, the same at every step:
      input:      x_t  -> m_x * x_t                  (m_x [b, d])
      recurrent:  R h_{t-1} -> R (m_h * h_{t-1}) in every recurrent product (m_h [b, h]; closed
                  over through the params pytree, so time-invariant)
      output:     y_t  -> m_y * y_t                  (m_y [b, h])
  zoneout              per step and unit, keep the previous value with probability `rate`:
      carry_t = m_t * carry_{t-1} + (1 - m_t) * cell(carry_{t-1}, x_t),  m_t ~ Bernoulli(rate)
      masks [b, t, sum of carry sizes] travel as extra input features; at evaluation
      m_t = rate (the expectation), as in the paper.

What the recurrent mask drops is exactly Gal & Ghahramani's: the input of the recurrent weight
matrices, m_h * h_{t-1} (for LSTM, m_h * y_{t-1}), at every product of the state with a weight
matrix, and nowhere else: a GRU's interpolation h_t = (1 - z_t) * n_t + z_t * h_{t-1} and an
LSTM's cell state c_{t-1} keep the undropped values. This uses the cells' `matmul` hook
(`step(params, carry, xp, matmul=...)`, through which every state-weight product passes); for
LSTM it masks y_{t-1} in the carry (y_{t-1} enters the step only through R), so that an LSTMP's
projection matmul is not masked. minGRU has no recurrent weights, so it has nothing to drop.

Active in `.train()` mode, off (zoneout: expected) after `.eval()`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from gatedrnn.cells import LSTMCarry
from gatedrnn.cells.base import Cell, Params, WrappedCell, gate_matmul
from gatedrnn.nn.layers import RNN, Bidirectional, Stack
from gatedrnn.nn.params import param_values
from gatedrnn.scan import scan_cell


def _carry_sizes(cell: Cell) -> list[int]:
    return [leaf.shape[-1] for leaf in jax.tree.leaves(cell.initial_carry((1,)))]


def _output_of(carry: Any, y: jax.Array) -> jax.Array:
    """The step output implied by a (zoned-out) carry: LSTM's h, a single state itself."""
    if isinstance(carry, LSTMCarry):
        return carry.h
    if isinstance(carry, jax.Array) and carry.shape == y.shape:
        return carry
    return y


@dataclasses.dataclass(frozen=True)
class RegularizedCell(WrappedCell):
    """Wraps any cell with a variational recurrent-dropout mask and/or zoneout masks.

    params: {"cell": the wrapped cell's params, "recurrent_mask": [b, output_size] (when
    recurrent_dropout)}. xs [..., d + z] with z = sum of carry sizes when
    zoneout (the last z features are the zoneout masks), else [..., d].
    """

    recurrent_dropout: bool = False
    zoneout: bool = False

    @classmethod
    def wrap(cls, inner: Cell, *, recurrent_dropout: bool, zoneout: bool) -> "RegularizedCell":
        extra = sum(_carry_sizes(inner)) if zoneout else 0
        return cls(input_size=inner.input_size + extra, hidden_size=inner.hidden_size, inner=inner,
                   recurrent_dropout=recurrent_dropout, zoneout=zoneout)

    def init(self, key, dtype=jnp.float32) -> Params:
        return {"cell": self.inner.init(key, dtype)}

    def project(self, params, xs):
        if not self.zoneout:
            return self.inner.project(params["cell"], xs)
        d = self.inner.input_size
        return self.inner.project(params["cell"], xs[..., :d]), xs[..., d:]

    def step(self, params, carry, xp, matmul=gate_matmul):
        xp, zmask = xp if self.zoneout else (xp, None)
        carry_in, inner_matmul = carry, matmul
        if self.recurrent_dropout:
            m = params["recurrent_mask"]
            if isinstance(carry, LSTMCarry):
                carry_in = carry._replace(h=carry.h * m.astype(carry.h.dtype))
            else:
                def inner_matmul(lhs, w):
                    return matmul(lhs * m.astype(lhs.dtype), w)
        new, y = self.inner.step(params["cell"], carry_in, xp, matmul=inner_matmul)
        if zmask is None:
            return new, y
        leaves, treedef = jax.tree.flatten(new)
        bounds = [0]
        for leaf in leaves:
            bounds.append(bounds[-1] + leaf.shape[-1])
        masks = [zmask[..., a:b].astype(leaf.dtype) for a, b, leaf in zip(bounds, bounds[1:], leaves)]
        old = jax.tree.leaves(carry)
        new = jax.tree.unflatten(treedef, [m * o + (1 - m) * n for m, o, n in zip(masks, old, leaves)])
        return new, _output_of(new, y)


class Masks(NamedTuple):
    """The masks of one call (None where that regularizer is off)."""

    input: jax.Array | None  # [b, d]
    recurrent: jax.Array | None  # [b, output_size], on the state's way into the recurrent weights
    zoneout: jax.Array | None  # [b, t, z]
    output: jax.Array | None  # [b, h]


def _check_rate(name: str, rate: float) -> None:
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"RegularizedRNN.{name} must lie in [0, 1), got {rate!r}")


def _inverted_dropout_mask(key, shape, rate: float, dtype) -> jax.Array:
    keep = 1.0 - rate
    return jax.random.bernoulli(key, keep, shape).astype(dtype) / jnp.asarray(keep, dtype)


class RegularizedRNN(nnx.Module):
    """An `RNN` layer with variational input/recurrent/output dropout and zoneout.

    Wraps an existing RNN (sharing its cell and parameters), so it drops into a Stack or a
    Bidirectional; `regularize(stack, ...)` does that for every layer.

    Example:
      rnn = regularize(build_rnn("lstm", 8, 32, num_layers=2, rngs=nnx.Rngs(0)),
                       recurrent_dropout=0.25, zoneout=0.1, rngs=nnx.Rngs(dropout=1))
      outputs, carries = rnn(x, seq_lengths=lengths)     # rnn.train() / rnn.eval() as usual
    """

    def __init__(self, layer: RNN, *, rngs: nnx.Rngs, input_dropout: float = 0.0, recurrent_dropout: float = 0.0,
                 output_dropout: float = 0.0, zoneout: float = 0.0, deterministic: bool = False):
        if not isinstance(layer, RNN):
            raise ValueError(f"RegularizedRNN wraps an RNN layer, got {type(layer).__name__}")
        for name, rate in (("input_dropout", input_dropout), ("recurrent_dropout", recurrent_dropout),
                           ("output_dropout", output_dropout), ("zoneout", zoneout)):
            _check_rate(name, rate)
        if recurrent_dropout > 0 and (layer.cell.linear or layer.cell.matrix_memory):
            raise ValueError(f"recurrent_dropout has nothing to drop in {type(layer.cell).__name__} (a linear "
                             "recurrence: no recurrent weights); use zoneout or 0")
        self.layer = layer
        self.rates = dict(input=input_dropout, recurrent=recurrent_dropout, output=output_dropout, zoneout=zoneout)
        self.rngs = rngs
        self.deterministic = deterministic
        self.cell = RegularizedCell.wrap(layer.cell, recurrent_dropout=recurrent_dropout > 0, zoneout=zoneout > 0)

    @property
    def input_size(self) -> int:
        return self.layer.input_size

    @property
    def output_size(self) -> int:
        return self.layer.output_size

    @property
    def reverse(self) -> bool:
        return self.layer.reverse

    def initial_carry(self, batch_size: int, dtype=jnp.float32):
        return self.layer.initial_carry(batch_size, dtype)

    def draw_masks(self, batch: int, time: int, dtype=jnp.float32) -> Masks:
        """Fresh masks in training mode; identity (zoneout: expected) masks when deterministic."""
        r = self.rates
        train = not self.deterministic

        def dropout(rate, shape):
            if rate == 0:
                return None
            if not train:
                return jnp.ones(shape, dtype)
            return _inverted_dropout_mask(self.rngs.dropout(), shape, rate, dtype)

        recurrent = dropout(r["recurrent"], (batch, self.output_size))
        zoneout = None
        if r["zoneout"] > 0:
            shape = (batch, time, sum(_carry_sizes(self.layer.cell)))
            if train:
                zoneout = jax.random.bernoulli(self.rngs.dropout(), r["zoneout"], shape).astype(dtype)
            else:
                zoneout = jnp.full(shape, r["zoneout"], dtype)
        return Masks(dropout(r["input"], (batch, self.input_size)), recurrent, zoneout,
                     dropout(r["output"], (batch, self.output_size)))

    def apply_masks(self, x, masks: Masks, seq_lengths=None, initial_carry=None, resets=None):
        """The forward pass with given masks: x [b, t, d] -> (outputs [b, t, h], carry)."""
        if masks.input is not None:
            x = x * masks.input[:, None, :]
        if masks.zoneout is not None:
            x = jnp.concatenate([x, masks.zoneout.astype(x.dtype)], axis=-1)
        params = {"cell": param_values(self.layer.params)}
        if masks.recurrent is not None:
            params["recurrent_mask"] = masks.recurrent
        ys, carry = scan_cell(self.cell, params, x, initial_carry=initial_carry, seq_lengths=seq_lengths,
                              reverse=self.layer.reverse, resets=resets, options=self.layer.scan)
        if masks.output is not None:
            ys = ys * masks.output[:, None, :].astype(ys.dtype)
        return ys, carry

    def __call__(self, x, seq_lengths=None, initial_carry=None, resets=None):
        if x.ndim != 3:
            raise ValueError(f"x must be [batch, time, {self.input_size}], got shape {x.shape}")
        return self.apply_masks(x, self.draw_masks(x.shape[0], x.shape[1], x.dtype), seq_lengths, initial_carry,
                                resets)


def regularize(stack: Stack, *, rngs: nnx.Rngs, **rates: float) -> Stack:
    """Replaces every RNN of a Stack (inside Bidirectional layers too) by a RegularizedRNN with
    the given rates (input_dropout, recurrent_dropout, output_dropout, zoneout); returns the stack."""
    if not isinstance(stack, Stack):
        raise ValueError(f"regularize expects a Stack (see build_rnn), got {type(stack).__name__}")

    def wrap(layer):
        return layer if isinstance(layer, RegularizedRNN) else RegularizedRNN(layer, rngs=rngs, **rates)

    for k, layer in enumerate(stack.layers):
        if isinstance(layer, Bidirectional):
            layer.forward, layer.backward = wrap(layer.forward), wrap(layer.backward)
        else:
            stack.layers[k] = wrap(layer)
    return stack
