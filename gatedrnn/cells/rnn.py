"""Elman RNN (Elman 1990) and IRNN (Le, Jaitly & Hinton 2015)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from gatedrnn.cells.base import Cell, Params, expand, gate_matmul, uniform
from gatedrnn.validation import check_choice

ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


@dataclasses.dataclass(frozen=True)
class ElmanRNN(Cell):
    """h_t = act(W x_t + R h_{t-1} + b),  act in {tanh, relu}.

    Params: w [d, h], r [h, h], b [h] (b is PyTorch's b_ih + b_hh).
    `identity_init=True` gives the IRNN: R = I, b = 0, W ~ N(0, 0.001^2).
    """

    nonlinearity: str = "tanh"
    bias: bool = True
    identity_init: bool = False

    def __post_init__(self):
        super().__post_init__()
        check_choice("ElmanRNN.nonlinearity", self.nonlinearity, ACTIVATIONS)

    def init(self, key, dtype=jnp.float32) -> Params:
        kw, kr, kb = jax.random.split(key, 3)
        d, h, s = self.input_size, self.hidden_size, self.init_scale
        if self.identity_init:
            params = {"w": 0.001 * jax.random.normal(kw, (d, h), dtype), "r": jnp.eye(h, dtype=dtype)}
            if self.bias:
                params["b"] = jnp.zeros((h,), dtype)
            return params
        params = {"w": uniform(kw, (d, h), s, dtype), "r": uniform(kr, (h, h), s, dtype)}
        if self.bias:
            params["b"] = uniform(kb, (h,), s, dtype)
        return params

    def project(self, params, xs):
        y = gate_matmul(xs, params["w"])
        if self.bias:
            y = y + expand(params["b"], y)
        return y

    def step(self, params, h, xp, matmul=gate_matmul):
        h = ACTIVATIONS[self.nonlinearity](xp + matmul(h, params["r"]))
        return h, h
