"""LSTM (Hochreiter & Schmidhuber 1997; forget gate, Gers et al. 2000) with its common variants."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gatedrnn.cells.base import D_XP, Cell, Params, StepGrads, expand, gate_matmul, layer_norm, uniform
from gatedrnn.validation import ConfigError, check_positive


class LSTMCarry(NamedTuple):
    c: jax.Array  # [*batch, h]  cell state
    h: jax.Array  # [*batch, h], or [*batch, p] with a projection


class LSTMGates(NamedTuple):
    """One step's activations, each [*batch, h] (None where the variant has no such gate)."""

    i: jax.Array | None  # input gate (1 - f under cifg)
    f: jax.Array | None  # forget gate
    z: jax.Array  # block input
    o: jax.Array | None  # output gate
    act_c: jax.Array  # tanh(c_t) (of LN(c_t) with layer_norm; c_t itself without output_activation)


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
      cifg:         coupled input-forget gate, i_t = 1 - f_t (no W_i, R_i, p_i, b_i). The
                    forget gate keeps its weights; Greff et al. write the same coupling the
                    other way, f_t = 1 - i_t, keeping the input gate's. Equivalent: since
                    1 - sigmoid(a) = sigmoid(-a), their weights port in with a sign flip,
                    W_f = -W_i, R_f = -R_i, p_f = -p_i, b_f = -b_i (then our i_t is their i_t).
      forget_bias:  constant added to b_f at init (Gers et al. 2000; 1.0 is common).
      proj_size:    LSTMP (Sak et al. 2014; PyTorch's proj_size): y_t = W_hr (tanh(c_t) * o_t),
                    of size p; the recurrence uses y_t.
      layer_norm:   Ba et al. 2016: LN(W x_t) + LN(R y_{t-1}) + b per gate, and
                    y_t = o_t * tanh(LN(c_t)).
      input_gate / forget_gate / output_gate = False: that gate is fixed at 1 and has no
                    weights (Greff et al.'s NIG, NFG, NOG variants).
      input_activation / output_activation = False: no tanh on z_t / on c_t (NIAF, NOAF).

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
    input_gate: bool = True
    forget_gate: bool = True
    output_gate: bool = True
    input_activation: bool = True
    output_activation: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.proj_size:
            check_positive("LSTM.proj_size", self.proj_size)
        if self.cifg and not (self.input_gate and self.forget_gate):
            raise ConfigError("LSTM.cifg=True couples the input gate to the forget gate: it needs input_gate and forget_gate")

    @property
    def gate_names(self) -> tuple[str, ...]:
        """The gates with weights, in order: a subset of (i, f, z, o)."""
        present = {"i": self.input_gate and not self.cifg, "f": self.forget_gate, "z": True, "o": self.output_gate}
        return tuple(g for g, on in present.items() if on)

    @property
    def num_gates(self) -> int:
        return len(self.gate_names)

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
            if self.forget_gate:
                b = b.at[self.gate_names.index("f")].add(self.forget_bias)
            params["b"] = b
        if self.peephole:
            for gate in "ifo":
                if gate in self.gate_names:
                    params[f"p_{gate}"] = uniform(next(keys), (h,), s, dtype)
        if self.proj_size:
            params["w_proj"] = uniform(next(keys), (h, self.proj_size), s, dtype)
        if self.layer_norm:
            for name, shape in (("ln_x", (g, h)), ("ln_r", (g, h)), ("ln_c", (h,))):
                params[f"{name}_scale"] = jnp.ones(shape, dtype)
                params[f"{name}_bias"] = jnp.zeros(shape, dtype)
        return params

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
        new_carry, y, _ = self._forward(params, carry, xp, matmul)
        return new_carry, y

    def _forward(self, params, carry: LSTMCarry, xp, matmul) -> tuple[LSTMCarry, jax.Array, LSTMGates]:
        """The step's equations, shared by `step` and `step_residuals`: (carry, y_t, activations)."""
        c, y = carry
        rec = matmul(y, params["r"])
        if self.layer_norm:
            rec = tuple(layer_norm(r, params["ln_r_scale"][k], params["ln_r_bias"][k]) for k, r in enumerate(rec))
        pre = {g: x + r for g, x, r in zip(self.gate_names, xp, rec)}

        def gate(g, cell_state):
            if g not in pre:
                return None
            if self.peephole:
                return jax.nn.sigmoid(pre[g] + expand(params[f"p_{g}"], cell_state) * cell_state)
            return jax.nn.sigmoid(pre[g])

        f = gate("f", c)
        i = gate("i", c)
        if self.cifg:
            i = 1.0 - f
        z = jnp.tanh(pre["z"]) if self.input_activation else pre["z"]
        c_in = z if i is None else i * z
        c = c + c_in if f is None else f * c + c_in
        o = gate("o", c)
        c_out = layer_norm(c, params["ln_c_scale"], params["ln_c_bias"]) if self.layer_norm else c
        act_c = jnp.tanh(c_out) if self.output_activation else c_out
        y = act_c if o is None else o * act_c
        if self.proj_size:
            y = matmul(y, params["w_proj"])
        return LSTMCarry(c, y), y, LSTMGates(i, f, z, o, act_c)

    @property
    def analytic_backward(self) -> bool:
        """The plain LSTM (all four gates and activations; no peephole, cifg, projection or LN)."""
        plain = self.input_gate and self.forget_gate and self.output_gate
        plain = plain and self.input_activation and self.output_activation
        return plain and not (self.peephole or self.cifg or self.proj_size or self.layer_norm)

    def step_residuals(self, params, carry: LSTMCarry, xp):
        """`step` of the plain LSTM, also returning (y_{t-1}, c_{t-1}, i, f, z, o, tanh c_t)."""
        new_carry, y, g = self._forward(params, carry, xp, gate_matmul)
        return new_carry, y, (carry.h, carry.c, g.i, g.f, g.z, g.o, g.act_c)

    def step_backward(self, params, residuals, d_carry: LSTMCarry, d_y):
        """With d_pre = (d_i, d_f, d_z, d_o) the gradients of the gates' pre-activations:

          d y   = d y_t + d carry.h,       d_o = d y tanh(c_t) o (1 - o)
          d c   = d carry.c + d y o (1 - tanh^2 c_t)
          d_i   = d c z i (1 - i),  d_f = d c c_{t-1} f (1 - f),  d_z = d c i (1 - z^2)
          d c_{t-1} = d c f,        d y_{t-1} = d_pre R^T
        """
        y_prev, c_prev, i, f, z, o, tanh_c = residuals
        d_out = d_y + d_carry.h
        d_o = d_out * tanh_c * o * (1 - o)
        d_c = d_carry.c + d_out * o * (1 - tanh_c * tanh_c)
        d_i, d_f, d_z = d_c * z * i * (1 - i), d_c * c_prev * f * (1 - f), d_c * i * (1 - z * z)
        d_pre = jnp.concatenate([d_i, d_f, d_z, d_o], axis=-1)
        r = params["r"].astype(d_pre.dtype)
        d_y_prev = d_pre @ r.reshape(r.shape[0], -1).T
        return StepGrads(LSTMCarry(d_c * f, d_y_prev), d_pre, {"r": (y_prev, D_XP)}, {})
