"""GRU (Cho et al. 2014), in both reset-gate conventions."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from gatedrnn.cells.base import Cell, Params, expand, gate_matmul, uniform


@dataclasses.dataclass(frozen=True)
class GRU(Cell):
    """Gated recurrent unit; gate order (r, z, n) as in PyTorch.

      r_t = sigmoid(W_r x_t + b_xr + R_r h_{t-1} + b_hr)
      z_t = sigmoid(W_z x_t + b_xz + R_z h_{t-1} + b_hz)
      reset_after=True  (PyTorch, cuDNN, Keras reset_after=True):
        n_t = tanh(W_n x_t + b_xn + r_t * (R_n h_{t-1} + b_hn))
      reset_after=False (Cho et al. 2014):
        n_t = tanh(W_n x_t + b_xn + R_n (r_t * h_{t-1}))
      h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    Params: w [d, 3, h], r [h, 3, h], b_x [3, h], and b_h [3, h] when reset_after
    (with reset_after=False a recurrent bias is redundant with b_x, so there is none).
    """

    bias: bool = True
    reset_after: bool = True

    def init(self, key, dtype=jnp.float32) -> Params:
        kw, kr, kbx, kbh = jax.random.split(key, 4)
        d, h, s = self.input_size, self.hidden_size, self.init_scale
        params = {"w": uniform(kw, (d, 3, h), s, dtype), "r": uniform(kr, (h, 3, h), s, dtype)}
        if self.bias:
            params["b_x"] = uniform(kbx, (3, h), s, dtype)
            if self.reset_after:
                params["b_h"] = uniform(kbh, (3, h), s, dtype)
        return params

    def project(self, params, xs):
        xr, xz, xn = gate_matmul(xs, params["w"])
        if self.bias:
            b = params["b_x"]
            xr, xz, xn = xr + expand(b[0], xr), xz + expand(b[1], xz), xn + expand(b[2], xn)
        return xr, xz, xn

    def step(self, params, h, xp, matmul=gate_matmul):
        xr, xz, xn = xp
        if self.reset_after:
            hr, hz, hn = matmul(h, params["r"])
            if self.bias:
                b = params["b_h"]
                hr, hz, hn = hr + expand(b[0], hr), hz + expand(b[1], hz), hn + expand(b[2], hn)
            r = jax.nn.sigmoid(xr + hr)
            z = jax.nn.sigmoid(xz + hz)
            n = jnp.tanh(xn + r * hn)
        else:
            hr, hz = matmul(h, params["r"][:, :2])
            r = jax.nn.sigmoid(xr + hr)
            z = jax.nn.sigmoid(xz + hz)
            n = jnp.tanh(xn + matmul(r * h, params["r"][:, 2]))
        h = n + z * (h - n)
        return h, h
