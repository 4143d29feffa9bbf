"""LSTM (Hochreiter & Schmidhuber 1997; forget gate, Gers et al. 2000) with its common variants."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gatedrnn.cells.base import Cell, Params, check_positive_int, expand, gate_matmul, layer_norm, uniform


class LSTMCarry(NamedTuple):
    c: jax.Array  # [*batch, h]  cell state
    h: jax.Array  # [*batch, h], or [*batch, p] with a projection


@dataclasses.dataclass(frozen=True)
class LSTM(Cell):
    """LSTM in the vectorized form of Greff et al. 2017 ("LSTM: A Search Space Odyssey").

      z_t = tanh(W_z x_t + R_z y_{t-1} + b_z)                          block input
      i_t = sigmoid(W_i x_t + R_i y_{t-1} + p_i * c_{t-1} + b_i)       input gate
      f_t = sigmoid(W_f x_t + R_f y_{t-1} + p_f * c_{t-1} + b_f)       forget gate
      c_t = z_t * i_t + c_{t-1} * f_t                                  cell state
      o_t = sigmoid(W_o x_t + R_o y_{t-1} + p_o * c_t + b_o)           output gate
      y_t = tanh(c_t) * o_t                                            block output

    Options:
      peephole:     add the p_* terms (otherwise they are absent).
      cifg:         coupled input-forget gate, i_t = 1 - f_t (no W_i, R_i, p_i, b_i).
      forget_bias:  constant added to b_f at init (Gers et al. 2000; 1.0 is common).
      proj_size:    LSTMP (Sak et al. 2014; PyTorch's proj_size): y_t = W_hr (tanh(c_t) * o_t),
                    of size p; the recurrence uses y_t.
      layer_norm:   Ba et al. 2016: LN(W x_t) + LN(R y_{t-1}) + b per gate, and
                    y_t = o_t * tanh(LN(c_t)).

    Gate order (i, f, z, o), PyTorch's (i, f, g, o); without i under cifg.
    Params: w [d, g, h], r [p or h, g, h], b [g, h], p_i/p_f/p_o [h], w_proj [h, p],
    ln_x_scale/ln_x_bias/ln_r_scale/ln_r_bias [g, h], ln_c_scale/ln_c_bias [h].
    Carry: LSTMCarry(c [*batch, h], h [*batch, p or h]).
    """

    bias: bool = True
    forget_bias: float = 0.0
    peephole: bool = False
    cifg: bool = False
    proj_size: int = 0
    layer_norm: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.proj_size:
            check_positive_int("LSTM", "proj_size", self.proj_size)

    @property
    def num_gates(self) -> int:
        return 3 if self.cifg else 4

    @property
    def output_size(self) -> int:
        return self.proj_size or self.hidden_size

    def initial_carry(self, batch_shape, dtype=jnp.float32) -> LSTMCarry:
        return LSTMCarry(
            c=jnp.zeros((*batch_shape, self.hidden_size), dtype),
            h=jnp.zeros((*batch_shape, self.output_size), dtype),
        )

    def init(self, key, dtype=jnp.float32) -> Params:
        keys = iter(jax.random.split(key, 8))
        d, h, g, s = self.input_size, self.hidden_size, self.num_gates, self.init_scale
        params = {
            "w": uniform(next(keys), (d, g, h), s, dtype),
            "r": uniform(next(keys), (self.output_size, g, h), s, dtype),
        }
        if self.bias:
            b = uniform(next(keys), (g, h), s, dtype)
            params["b"] = b.at[self._forget_index].add(self.forget_bias)
        if self.peephole:
            for name in ("p_f", "p_o") if self.cifg else ("p_i", "p_f", "p_o"):
                params[name] = uniform(next(keys), (h,), s, dtype)
        if self.proj_size:
            params["w_proj"] = uniform(next(keys), (h, self.proj_size), s, dtype)
        if self.layer_norm:
            for name, shape in (("ln_x", (g, h)), ("ln_r", (g, h)), ("ln_c", (h,))):
                params[f"{name}_scale"] = jnp.ones(shape, dtype)
                params[f"{name}_bias"] = jnp.zeros(shape, dtype)
        return params

    @property
    def _forget_index(self) -> int:
        return 0 if self.cifg else 1

    def project(self, params, xs):
        gates = tuple(gate_matmul(xs, params["w"]))
        if self.layer_norm:
            gates = tuple(
                layer_norm(x, params["ln_x_scale"][i], params["ln_x_bias"][i]) for i, x in enumerate(gates)
            )
        if self.bias:
            gates = tuple(x + expand(params["b"][i], x) for i, x in enumerate(gates))
        return gates

    def step(self, params, carry: LSTMCarry, xp, matmul=gate_matmul):
        c, y = carry
        rec = matmul(y, params["r"])
        if self.layer_norm:
            rec = tuple(layer_norm(r, params["ln_r_scale"][k], params["ln_r_bias"][k]) for k, r in enumerate(rec))
        pre = [x + r for x, r in zip(xp, rec)]
        if self.cifg:
            f_pre, z_pre, o_pre = pre
        else:
            i_pre, f_pre, z_pre, o_pre = pre
        if self.peephole:
            f_pre = f_pre + expand(params["p_f"], c) * c
            if not self.cifg:
                i_pre = i_pre + expand(params["p_i"], c) * c
        f = jax.nn.sigmoid(f_pre)
        i = 1.0 - f if self.cifg else jax.nn.sigmoid(i_pre)
        c = f * c + i * jnp.tanh(z_pre)
        if self.peephole:
            o_pre = o_pre + expand(params["p_o"], c) * c
        o = jax.nn.sigmoid(o_pre)
        c_out = layer_norm(c, params["ln_c_scale"], params["ln_c_bias"]) if self.layer_norm else c
        y = o * jnp.tanh(c_out)
        if self.proj_size:
            y = matmul(y, params["w_proj"])
        return LSTMCarry(c, y), y
