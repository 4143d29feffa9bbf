"""GRU (Cho et al. 2014), in both reset-gate conventions."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from gatedrnn.cells.base import Cell, Params, StepGrads, accumulation_dtype, expand, gate_matmul, uniform


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
        if self.reset_after:
            r, z, n, _ = self.reset_after_gates(params, h, xp, matmul)
        else:
            xr, xz, xn = xp
            hr, hz = matmul(h, params["r"][:, :2])
            r = jax.nn.sigmoid(xr + hr)
            z = jax.nn.sigmoid(xz + hz)
            n = jnp.tanh(xn + matmul(r * h, params["r"][:, 2]))
        h = n + z * (h - n)
        return h, h

    def reset_after_gates(self, params, h, xp, matmul):
        """(r, z, n, R_n h + b_hn) of the reset-after convention; h [..., h], xp as `project` gives."""
        xr, xz, xn = xp
        hr, hz, hn = matmul(h, params["r"])
        if self.bias:
            b = params["b_h"]
            hr, hz, hn = hr + expand(b[0], hr), hz + expand(b[1], hz), hn + expand(b[2], hn)
        r = jax.nn.sigmoid(xr + hr)
        z = jax.nn.sigmoid(xz + hz)
        return r, z, jnp.tanh(xn + r * hn), hn

    @property
    def analytic_backward(self) -> bool:
        """The reset-after GRU (PyTorch's), with or without biases."""
        return self.reset_after

    def step_residuals(self, params, h_prev, xp):
        """`step` with reset_after, also returning (h_{t-1}, r, z, n, R_n h_{t-1} + b_hn)."""
        r, z, n, hn = self.reset_after_gates(params, h_prev, xp, gate_matmul)
        h = n + z * (h_prev - n)
        return h, h, (h_prev, r, z, n, hn)

    def step_backward(self, params, residuals, d_carry, d_y):
        """With a_n = W_n x_t + b_xn + r (R_n h_{t-1} + b_hn) and d h = d h_t + d carry:

          d a_n = d h (1 - z) (1 - n^2),   d_z = d h (h_{t-1} - n) z (1 - z)
          d_r = d a_n (R_n h_{t-1} + b_hn) r (1 - r),   d(R_n h_{t-1} + b_hn) = d a_n r
          d h_{t-1} = d h z + (d_r, d_z, d a_n r) R^T
        """
        h_prev, r, z, n, hn = residuals
        d_h = d_y + d_carry
        d_an = d_h * (1 - z) * (1 - n * n)
        d_z = d_h * (h_prev - n) * z * (1 - z)
        d_r = d_an * hn * r * (1 - r)
        d_rec = jnp.concatenate([d_r, d_z, d_an * r], axis=-1)
        w = params["r"].astype(d_rec.dtype)
        d_h_prev = d_h * z + d_rec @ w.reshape(w.shape[0], -1).T
        others = {}
        if self.bias:  # summed in float32 or wider, like every gradient sum of the engine
            others["b_h"] = jnp.sum(d_rec, axis=0, dtype=accumulation_dtype(d_rec.dtype)).reshape(3, -1)
        return StepGrads(d_h_prev, (d_r, d_z, d_an), {"r": (h_prev, d_rec)}, others)
