"""mLSTM, the matrix-memory LSTM of xLSTM (Beck et al. 2024, section 2.3 and appendix).

Per head (H heads; q, k of width dk, v of width dv; x_t the cell's input):

  q_t = W_q x_t + b_q,   k_t = (W_k x_t + b_k) / sqrt(dk) (the scale is put on q here),  v_t = W_v x_t + b_v
  i~_t = w_i^T x_t + b_i,   f~_t = w_f^T x_t + b_f          scalar gates: one per head
  log i_t = i~_t (exponential input gate);  log f_t = log sigmoid(f~_t) (or f~_t: forget_gate="exp")
  m_t = max(log f_t + m_{t-1}, log i_t)                                     stabiliser
  C_t = f'_t C_{t-1} + i'_t k_t v_t^T,   n_t = f'_t n_{t-1} + i'_t k_t,   i'_t = exp(log i_t - m_t),
        f'_t = exp(log f_t + m_{t-1} - m_t)
  h~_t = C_t^T q_t / (max(|n_t^T q_t|, exp(-m_t)) + eps)                    [H, dv]
  y_t = sigmoid(W_o x_t + b_o) * h~_t                                       output gate

The gates see the input only, so the recurrence is linear in (C, n): the engine runs it step by
step (mode="sequential"), all at once with the decay matrix (mode="parallel") or chunk by chunk
(mode="chunkwise", the default under "auto"); see `gatedrnn.cells.base.MatrixMemoryCell` and
`gatedrnn.scan.memory`. The forms equal NX-AI's `mlstm_kernels.jax` native recurrent, parallel
and chunkwise kernels with the same q, k, v and gates (tests/cells/test_mlstm.py).

With inputs="qkv" the cell is the official `mLSTMCell` of the xLSTM block (less its output norm,
which the block applies): xs = concat(q, k, v) from the block's own projections, the gates are
Linear(cat(q, k, v)) -> [H], and there is no output gate.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gatedrnn.cells.base import MatrixMemoryCell, MemoryCarry, MemoryInputs, Params, expand, small_init_std
from gatedrnn.validation import ConfigError, check_choice, check_positive

MLSTMCarry = MemoryCarry  # (c [*b, H, dk, dv], n [*b, H, dk], m [*b, H])

INPUTS = ("dense", "qkv")
FORGET_GATES = ("sigmoid", "exp")


class MLSTMProjected(NamedTuple):
    """What `MLSTM.project` returns (leaves [*leading, width]): every input-only quantity."""

    q: jax.Array  # [*, H * dk]
    k: jax.Array  # [*, H * dk]
    v: jax.Array  # [*, H * dv]
    i: jax.Array  # [*, H]   input gate pre-activation i~
    f: jax.Array  # [*, H]   forget gate pre-activation f~
    o: jax.Array | None  # [*, H * dv] output gate pre-activation (None: no output gate)


def small_init(key: jax.Array, shape: tuple[int, ...], dim: int, dtype) -> jax.Array:
    """N(0, 2 / (5 dim)): the official `small_init_init_` (Nguyen & Salazar 2019)."""
    return small_init_std(dim) * jax.random.normal(key, shape, dtype)


@dataclasses.dataclass(frozen=True)
class MLSTM(MatrixMemoryCell):
    """The mLSTM (equations in the module docstring) as a matrix-memory cell.

    Args:
      input_size: d (inputs="qkv": 2 * qk_size + hidden_size, the concatenated q, k, v).
      hidden_size: H * dv, the width of h~ and y.
      num_heads: H; must divide hidden_size and qk_size.
      qk_size: H * dk (None: hidden_size).
      inputs: "dense" (q, k, v, gates and output gate are linear maps of x) or "qkv" (see above).
      output_gate: y = sigmoid(W_o x + b_o) * h~ (inputs="dense" only); False: y = h~.
      forget_gate: "sigmoid" (log f = log sigmoid(f~), the paper's and official default) or "exp".
      bias: biases on q, k, v and the output gate (the gates always have one).
      eps: added to the normaliser (1e-6 as the official kernels).
      forget_bias_range: b_f = linspace(start, end, H) at init (official: 3 to 6).

    Params: w_q, w_k [d, H dk], w_v, w_o [d, H dv], b_q, b_k [H dk], b_v, b_o [H dv] (dense);
    w_i, w_f [d, H], b_i, b_f [H]. Init as the official code: q/k/v/o weights small_init
    N(0, 2 / (5 d)), their biases 0; gate weights 0, b_i ~ N(0, 0.1^2), b_f linspace(3, 6).
    Carry: MLSTMCarry(c [*b, H, dk, dv], n [*b, H, dk], m [*b, H]).

    Example:
      cell = MLSTM(8, 16, num_heads=2)
      ys, carry = gatedrnn.scan_cell(cell, cell.init(jax.random.key(0)), xs)   # xs [b, t, 8]
    """

    num_heads: int = 4
    qk_size: int | None = None
    inputs: str = "dense"
    output_gate: bool = True
    forget_gate: str = "sigmoid"
    bias: bool = True
    eps: float = 1e-6
    forget_bias_range: tuple[float, float] = (3.0, 6.0)

    def __post_init__(self):
        super().__post_init__()
        check_positive("MLSTM.num_heads", self.num_heads)
        check_choice("MLSTM.inputs", self.inputs, INPUTS)
        check_choice("MLSTM.forget_gate", self.forget_gate, FORGET_GATES)
        if self.qk_size is not None:
            check_positive("MLSTM.qk_size", self.qk_size)
        for name, size in (("hidden_size", self.hidden_size), ("qk_size", self.qk_width)):
            if size % self.num_heads:
                raise ConfigError(f"MLSTM.num_heads={self.num_heads} must divide {name}={size}")
        if not isinstance(self.eps, (int, float)) or isinstance(self.eps, bool) or self.eps < 0:
            raise ConfigError(f"MLSTM.eps must be a number >= 0, got {self.eps!r}")
        if self.inputs == "qkv":
            want = 2 * self.qk_width + self.hidden_size
            if self.input_size != want:
                raise ConfigError(f"MLSTM(inputs='qkv') needs input_size = 2 * qk_size + hidden_size = {want} "
                                  f"(concat(q, k, v)), got {self.input_size}")
            if self.output_gate:
                raise ConfigError("MLSTM(inputs='qkv') has no output gate (the xLSTM block gates its output): "
                                  "set output_gate=False")
        rng = self.forget_bias_range
        if not (isinstance(rng, (tuple, list)) and len(rng) == 2):
            raise ConfigError(f"MLSTM.forget_bias_range must be a (start, end) pair, got {rng!r}")
        object.__setattr__(self, "forget_bias_range", tuple(float(r) for r in rng))  # hashable

    @property
    def qk_width(self) -> int:
        return self.hidden_size if self.qk_size is None else self.qk_size

    @property
    def key_size(self) -> int:
        return self.qk_width // self.num_heads

    @property
    def value_size(self) -> int:
        return self.hidden_size // self.num_heads

    def init(self, key, dtype=jnp.float32) -> Params:
        keys = iter(jax.random.split(key, 6))
        d, h, qk, n = self.input_size, self.hidden_size, self.qk_width, self.num_heads
        params = {}
        if self.inputs == "dense":
            widths = {"q": qk, "k": qk, "v": h}
            if self.output_gate:
                widths["o"] = h
            for name, width in widths.items():
                params[f"w_{name}"] = small_init(next(keys), (d, width), d, dtype)
                if self.bias:
                    params[f"b_{name}"] = jnp.zeros((width,), dtype)
        params["w_i"] = jnp.zeros((d, n), dtype)
        params["b_i"] = 0.1 * jax.random.normal(next(keys), (n,), dtype)
        params["w_f"] = jnp.zeros((d, n), dtype)
        params["b_f"] = jnp.linspace(*self.forget_bias_range, n, dtype=dtype)
        return params

    def project(self, params, xs) -> MLSTMProjected:
        """xs [..., d] -> MLSTMProjected (every step at once)."""
        def dense(name):
            y = xs @ params[f"w_{name}"].astype(xs.dtype)
            return y + expand(params[f"b_{name}"], y) if f"b_{name}" in params else y

        if self.inputs == "qkv":
            qk = self.qk_width
            q, k, v = xs[..., :qk], xs[..., qk:2 * qk], xs[..., 2 * qk:]
            o = None
        else:
            q, k, v = dense("q"), dense("k"), dense("v")
            o = dense("o") if self.output_gate else None
        return MLSTMProjected(q, k, v, dense("i"), dense("f"), o)

    def memory_inputs(self, params, xp: MLSTMProjected) -> MemoryInputs:
        n, dk, dv = self.num_heads, self.key_size, self.value_size
        heads = lambda a, w: a.reshape(*a.shape[:-1], n, w)  # noqa: E731
        log_f = jax.nn.log_sigmoid(xp.f) if self.forget_gate == "sigmoid" else xp.f
        return MemoryInputs(q=heads(xp.q, dk) * (dk ** -0.5), k=heads(xp.k, dk), v=heads(xp.v, dv),
                            log_i=xp.i, log_f=log_f)

    def readout(self, params, h, xp: MLSTMProjected):
        """y = sigmoid(o~) * h~ (heads concatenated) [..., H dv]; h~ alone without an output gate."""
        y = h.reshape(*h.shape[:-2], -1)
        return y if xp.o is None else jax.nn.sigmoid(xp.o) * y
