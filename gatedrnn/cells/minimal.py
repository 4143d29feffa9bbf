"""Lighter gated cells: MGU (Zhou et al. 2016), UGRNN (Collins et al. 2017). minGRU lives in `minrnn`."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from gatedrnn.cells.base import Cell, Params, expand, gate_matmul, uniform
from gatedrnn.cells.minrnn import MinGRU  # noqa: F401  (its old import path)


def _gated_params(cell: Cell, key, num_gates: int, dtype) -> Params:
    kw, kr, kb = jax.random.split(key, 3)
    d, h, s = cell.input_size, cell.hidden_size, cell.init_scale
    params = {"w": uniform(kw, (d, num_gates, h), s, dtype), "r": uniform(kr, (h, num_gates, h), s, dtype)}
    if cell.bias:
        params["b"] = uniform(kb, (num_gates, h), s, dtype)
    return params


def _project(cell: Cell, params, xs):
    gates = tuple(gate_matmul(xs, params["w"]))
    if cell.bias:
        gates = tuple(g + expand(params["b"][i], g) for i, g in enumerate(gates))
    return gates


@dataclasses.dataclass(frozen=True)
class MGU(Cell):
    """Minimal gated unit: one forget gate.

      f_t = sigmoid(W_f x_t + R_f h_{t-1} + b_f)
      n_t = tanh(W_n x_t + R_n (f_t * h_{t-1}) + b_n)
      h_t = (1 - f_t) * h_{t-1} + f_t * n_t

    Params: w [d, 2, h], r [h, 2, h], b [2, h]; gate order (f, n).
    """

    bias: bool = True

    def init(self, key, dtype=jnp.float32) -> Params:
        return _gated_params(self, key, 2, dtype)

    def project(self, params, xs):
        return _project(self, params, xs)

    def step(self, params, h, xp, matmul=gate_matmul):
        xf, xn = xp
        f = jax.nn.sigmoid(xf + matmul(h, params["r"][:, 0]))
        n = jnp.tanh(xn + matmul(f * h, params["r"][:, 1]))
        h = h + f * (n - h)
        return h, h


@dataclasses.dataclass(frozen=True)
class UGRNN(Cell):
    """Update-gate RNN (Collins, Sohl-Dickstein & Sussillo 2017).

      c_t = tanh(W_c x_t + R_c h_{t-1} + b_c)
      g_t = sigmoid(W_g x_t + R_g h_{t-1} + b_g)
      h_t = g_t * h_{t-1} + (1 - g_t) * c_t

    Params: w [d, 2, h], r [h, 2, h], b [2, h]; gate order (c, g).
    """

    bias: bool = True

    def init(self, key, dtype=jnp.float32) -> Params:
        return _gated_params(self, key, 2, dtype)

    def project(self, params, xs):
        return _project(self, params, xs)

    def step(self, params, h, xp, matmul=gate_matmul):
        xc, xg = xp
        rc, rg = matmul(h, params["r"])
        c = jnp.tanh(xc + rc)
        g = jax.nn.sigmoid(xg + rg)
        h = c + g * (h - c)
        return h, h
