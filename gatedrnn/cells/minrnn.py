"""minGRU and minLSTM ("Were RNNs All We Needed?", Feng et al. 2024), as linear cells.

Their gates see the input only, so the recurrence is linear in the state,
h_t = a_t * h_{t-1} + b_t, and the engine (`gatedrnn.scan`) can solve it over the whole
sequence at once (mode="parallel") as well as step by step. With the paper's positive
candidate g (candidate="g", the default), a_t and b_t are positive and the cells give
(log a_t, log b_t) as the official code (BorealisAI/minRNNs) computes them, for the
log-space scan:

  g(x)     = x + 0.5 (x >= 0),  sigmoid(x) (x < 0)
  log g(x) = log(relu(x) + 0.5) (x >= 0),  -softplus(-x) (x < 0)

candidate="linear" (the paper's vanilla h~ = W_h x + b_h) and "tanh" (h~ = tanh(W_h x + b_h))
may be negative, so they scan in linear space. `expansion` widens the state to
state_size = int(hidden_size * expansion) units; when expansion != 1 the readout is the
paper's down-projection y_t = h_t W_out (W_out [state, hidden], no bias), else y_t = h_t.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from gatedrnn.cells.base import LinearCell, Params, expand, gate_matmul, uniform
from gatedrnn.validation import ConfigError, check_choice, check_positive

CANDIDATES = ("g", "linear", "tanh")


def g(x: jax.Array) -> jax.Array:
    """The paper's positive candidate activation: x + 0.5 for x >= 0, sigmoid(x) below."""
    return jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))


def log_g(x: jax.Array) -> jax.Array:
    """log g(x), as the official code: log(relu(x) + 0.5) for x >= 0, -softplus(-x) below."""
    return jnp.where(x >= 0, jnp.log(jax.nn.relu(x) + 0.5), -jax.nn.softplus(-x))


_CANDIDATE = {"g": g, "linear": lambda x: x, "tanh": jnp.tanh}


@dataclasses.dataclass(frozen=True)
class _MinRNN(LinearCell):
    """What minGRU and minLSTM share: gates and candidate from one input matmul, the expansion.

    Params: w [d, g, s], b [g, s] (with `bias`), w_out [s, h] (when expansion != 1), with
    s = state_size; the candidate's pre-activation is the last gate. w and b are
    U(-1/sqrt(h), 1/sqrt(h)) as the rest of the zoo; w_out is U(-1/sqrt(s), 1/sqrt(s)),
    PyTorch's Linear(s, h) init as in the official code.
    """

    bias: bool = True
    candidate: str = "g"
    expansion: float = 1.0

    num_gates = 0  # the subclass's number of input projections, the candidate's included

    def __post_init__(self):
        super().__post_init__()
        name = type(self).__name__
        check_choice(f"{name}.candidate", self.candidate, CANDIDATES)
        check_positive(f"{name}.expansion", self.expansion, integer=False)
        if self.state_size < 1:
            raise ConfigError(
                f"{name}.expansion={self.expansion!r} gives int({self.hidden_size} * {self.expansion!r}) = 0 "
                "state units; use expansion >= 1 / hidden_size"
            )

    @property
    def state_size(self) -> int:
        return int(self.hidden_size * self.expansion)

    @property
    def log_space(self) -> bool:
        return self.candidate == "g"

    @property
    def projected(self) -> bool:
        """Whether the readout is the down-projection h W_out (expansion != 1)."""
        return self.expansion != 1

    def init(self, key, dtype=jnp.float32) -> Params:
        kw, kb, ko = jax.random.split(key, 3)
        d, s, scale = self.input_size, self.state_size, self.init_scale
        params = {"w": uniform(kw, (d, self.num_gates, s), scale, dtype)}
        if self.bias:
            params["b"] = uniform(kb, (self.num_gates, s), scale, dtype)
        if self.projected:
            params["w_out"] = uniform(ko, (s, self.hidden_size), 1.0 / math.sqrt(s), dtype)
        return params

    def project(self, params, xs):
        """xs [..., d] -> the pre-activations, a tuple of num_gates arrays [..., s]."""
        gates = gate_matmul(xs, params["w"])
        if self.bias:
            gates = tuple(k + expand(params["b"][i], k) for i, k in enumerate(gates))
        return tuple(gates)

    def _gates(self, xp) -> tuple[jax.Array, jax.Array]:
        """(a, c): the state's and the candidate's coefficients, h = a h + c h~."""
        raise NotImplementedError

    def _log_gates(self, xp) -> tuple[jax.Array, jax.Array]:
        """(log a, log c), computed from softplus as the official code does."""
        raise NotImplementedError

    def linear_recurrence(self, params, xp, reset=None):
        """(a, b), [..., s] each: a the state's coefficient, b = c * h~ (computed in linear space)."""
        a, c = self._gates(xp)
        return a, c * _CANDIDATE[self.candidate](xp[-1])

    def log_recurrence(self, params, xp, reset=None):
        """(log a, log c + log g(h~ pre-activation)), [..., s] each (candidate="g" only)."""
        if not self.log_space:
            return super().log_recurrence(params, xp, reset)
        log_a, log_c = self._log_gates(xp)
        return log_a, log_c + log_g(xp[-1])

    def readout(self, params, h, xp):
        """y [..., h]: h W_out when expansion != 1, else h itself."""
        return gate_matmul(h, params["w_out"]) if self.projected else h


@dataclasses.dataclass(frozen=True)
class MinGRU(_MinRNN):
    """minGRU (Feng et al. 2024, Sec. 3.1): the GRU with gates that see the input only.

      z_t  = sigmoid(W_z x_t + b_z)
      h~_t = g(W_h x_t + b_h)            (candidate="g"; "linear": identity, "tanh": tanh)
      h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t
      y_t  = h_t W_out (expansion != 1), else h_t

    so a_t = 1 - z_t, b_t = z_t h~_t; in log space (candidate="g", the official code, with
    k = W_z x_t + b_z): log a_t = -softplus(k), log b_t = -softplus(-k) + log g(W_h x_t + b_h).

    Params: w [d, 2, s], b [2, s], w_out [s, h] (expansion != 1); gate order (z, h~);
    s = state_size = int(hidden_size * expansion).

    >>> cell = MinGRU(3, 8, expansion=2.0)
    >>> params = cell.init(jax.random.key(0))
    >>> h, y = cell.step(params, cell.initial_carry((4,)), cell.project(params, jnp.ones((4, 3))))
    >>> h.shape, y.shape
    ((4, 16), (4, 8))
    """

    num_gates = 2

    def _gates(self, xp):
        k = xp[0]
        return jax.nn.sigmoid(-k), jax.nn.sigmoid(k)

    def _log_gates(self, xp):
        k = xp[0]
        return -jax.nn.softplus(k), -jax.nn.softplus(-k)


@dataclasses.dataclass(frozen=True)
class MinLSTM(_MinRNN):
    """minLSTM (Feng et al. 2024, Sec. 3.2): the LSTM with gates from the input, no output gate.

      f_t  = sigmoid(W_f x_t + b_f),  i_t = sigmoid(W_i x_t + b_i)
      f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)    (normalise; else f' = f, i' = i)
      h~_t = g(W_h x_t + b_h)            (candidate="g"; "linear": identity, "tanh": tanh)
      h_t  = f'_t * h_{t-1} + i'_t * h~_t
      y_t  = h_t W_out (expansion != 1), else h_t

    The normalisation makes the state's scale independent of the time step (the paper's
    length-independence scaling). In log space (candidate="g"), as the official code, with
    k_f, k_i the pre-activations: normalised, diff = softplus(-k_f) - softplus(-k_i),
    log f' = -softplus(diff), log i' = -softplus(-diff); otherwise log f = -softplus(-k_f),
    log i = -softplus(-k_i); log b_t = log i'_t + log g(W_h x_t + b_h).

    Params: w [d, 3, s], b [3, s], w_out [s, h] (expansion != 1); gate order (f, i, h~);
    s = state_size = int(hidden_size * expansion).
    """

    normalise: bool = True

    num_gates = 3

    def _gates(self, xp):
        kf, ki = xp[0], xp[1]
        if self.normalise:  # f / (f + i) = sigmoid(log f - log i)
            diff = jax.nn.softplus(-kf) - jax.nn.softplus(-ki)  # log i - log f
            return jax.nn.sigmoid(-diff), jax.nn.sigmoid(diff)
        return jax.nn.sigmoid(kf), jax.nn.sigmoid(ki)

    def _log_gates(self, xp):
        kf, ki = xp[0], xp[1]
        if self.normalise:
            diff = jax.nn.softplus(-kf) - jax.nn.softplus(-ki)
            return -jax.nn.softplus(diff), -jax.nn.softplus(-diff)
        return -jax.nn.softplus(-kf), -jax.nn.softplus(-ki)
