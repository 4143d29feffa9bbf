"""Stateful streaming and truncated backpropagation through time.

Glossary: b batch (parallel streams), t chunk length, d features.

A long sequence is processed in chunks; the carry after one chunk is the initial carry of the
next, so running chunks one after another gives exactly the outputs of one pass over the whole
sequence. Resets start a stream afresh (the carry returns to the cell's initial zeros):

  reset [b] bool         at the start of this chunk, for the streams where it is True
  resets [b, t] bool     before the step where it is True (episode boundaries inside a chunk)

Only unidirectional layers can stream (a backward direction would need the future).

`stream` is the functional form; `StatefulRNN` keeps the carry in an NNX variable between
calls (Keras' stateful=True); `tbptt_train` trains on long streams with truncated BPTT.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from gatedrnn.cells.base import Cell, Params, WrappedCell, gate_matmul
from gatedrnn.nn.layers import RNN, Bidirectional, Stack
from gatedrnn.nn.params import param_values, standard_promotion
from gatedrnn.scan import select
from gatedrnn.validation import check_positive


def reset_carry(carry: Any, reset: jax.Array, initial: Any) -> Any:
    """Per-example select over carry pytrees: reset [b] True -> initial, else carry."""
    return select(reset, initial, carry)


@dataclasses.dataclass(frozen=True)
class ResettingCell(WrappedCell):
    """Wraps a cell so that a reset flag, carried as one extra input feature, zeroes the carry.

    The engine's own `resets=` (`scan_cell`, every layer) does this for any cell and mode; this
    wrapper is the step-level statement of the same rule (tests use it as a reference).

    xs [..., d + 1]: the last feature is the flag (> 0.5 = reset before this step).
    step: carry <- where(flag, initial_carry, carry); then the wrapped cell's step.
    """


    @classmethod
    def wrap(cls, inner: Cell) -> "ResettingCell":
        return cls(input_size=inner.input_size + 1, hidden_size=inner.hidden_size, inner=inner)

    def init(self, key, dtype=jnp.float32) -> Params:
        return self.inner.init(key, dtype)

    def project(self, params, xs):
        return self.inner.project(params, xs[..., :-1]), xs[..., -1] > 0.5

    def step(self, params, carry, xp, matmul=gate_matmul):
        xp, flag = xp
        leaf = jax.tree.leaves(carry)[0]
        carry = reset_carry(carry, flag, self.inner.initial_carry(flag.shape, leaf.dtype))
        extra = {"reset": flag} if self.inner.linear else {}  # a linear cell may change b_t at a reset (RG-LRU)
        return self.inner.step(params, carry, xp, matmul=matmul, **extra)


def _rnn_layers(layer) -> list[RNN]:
    layers = list(layer.layers) if isinstance(layer, Stack) else [layer]
    for sub in layers:
        if isinstance(sub, Bidirectional) or not isinstance(sub, RNN) or sub.reverse:
            raise ValueError(f"streaming needs unidirectional RNN layers (alone or in a Stack), got {type(sub).__name__}"
                             f"{' with reverse=True' if isinstance(sub, RNN) else ''}")
    return layers


def stream(layer: RNN | Stack, chunk: jax.Array, carry: Any = None, *, reset: jax.Array | None = None,
           resets: jax.Array | None = None, seq_lengths: jax.Array | None = None) -> tuple[jax.Array, Any]:
    """Runs one chunk [b, t, d] of a stream from `carry` (None: the initial carry).

    reset [b] bool starts the marked streams afresh at this chunk; resets [b, t] bool before the
    marked steps. seq_lengths [b] marks a shorter last chunk; the returned carry is then each
    stream's last valid one. Returns (outputs [b, t, h], carry for the next chunk).
    """
    _rnn_layers(layer)  # unidirectional only
    b = chunk.shape[0]
    if carry is None:
        carry = layer.initial_carry(b)
    if reset is not None:
        if reset.shape != (b,) or reset.dtype != jnp.bool_:
            raise ValueError(f"reset must be bool of shape [batch]=({b},), got {reset.shape} {reset.dtype}")
        carry = reset_carry(carry, reset, layer.initial_carry(b))
    if resets is not None and (resets.shape != chunk.shape[:2] or resets.dtype != jnp.bool_):
        raise ValueError(f"resets must be bool of shape [batch, time]={chunk.shape[:2]}, got {resets.shape} {resets.dtype}")
    return layer(chunk, seq_lengths=seq_lengths, initial_carry=carry, resets=resets)  # the engine resets the carry


class RecurrentState(nnx.Variable):
    """The carry a `StatefulRNN` keeps between calls (not a parameter: optimizers skip it)."""


class StatefulRNN(nnx.Module):
    """A unidirectional layer or stack that remembers its carry between calls.

    Example:
      layer = StatefulRNN(build_rnn("lstm", 8, 32, rngs=nnx.Rngs(0)), batch_size=4)
      for chunk in chunks:                        # [4, t, 8] each
          outputs = layer(chunk)                  # == slices of one pass over the concatenation
      layer.reset_state()
    """

    def __init__(self, layer: RNN | Stack, batch_size: int):
        _rnn_layers(layer)
        check_positive("StatefulRNN.batch_size", batch_size)
        self.layer = layer
        self.batch_size = batch_size
        self.state = nnx.data(jax.tree.map(RecurrentState, layer.initial_carry(batch_size)))

    @property
    def carry(self) -> Any:
        return param_values(self.state)

    def reset_state(self, reset: jax.Array | None = None) -> None:
        """Zeroes the carry of every stream, or of those where reset [b] is True."""
        initial = self.layer.initial_carry(self.batch_size)
        new = initial if reset is None else reset_carry(self.carry, reset, initial)
        jax.tree.map(lambda var, value: var.set_value(value), self.state, new,
                     is_leaf=lambda v: isinstance(v, nnx.Variable))

    def __call__(self, chunk, *, reset=None, resets=None, seq_lengths=None) -> jax.Array:
        """chunk [batch_size, t, d] -> outputs [batch_size, t, h]; the carry is kept for the next call."""
        if chunk.shape[0] != self.batch_size:
            raise ValueError(f"StatefulRNN was built for batch_size={self.batch_size}, got a chunk of batch {chunk.shape[0]}")
        outputs, carry = stream(self.layer, chunk, self.carry, reset=reset, resets=resets, seq_lengths=seq_lengths)
        jax.tree.map(lambda var, value: var.set_value(value), self.state, carry,
                     is_leaf=lambda v: isinstance(v, nnx.Variable))
        return outputs


def split_chunks(xs: jax.Array, chunk_length: int) -> list[jax.Array]:
    """[b, T, ...] -> [b, chunk_length, ...] pieces along time (the last may be shorter)."""
    check_positive("split_chunks.chunk_length", chunk_length)
    return [xs[:, s : s + chunk_length] for s in range(0, xs.shape[1], chunk_length)]


def tbptt_train(model: nnx.Module, optimizer: nnx.Optimizer, loss_fn: Callable, inputs: jax.Array,
                targets: jax.Array, chunk_length: int, carry: Any = None, *,
                resets: jax.Array | None = None) -> tuple[list[float], Any]:
    """Truncated BPTT (Williams & Peng 1990) over long streams inputs/targets [b, T, ...].

    The stream is cut into chunks of `chunk_length` steps. For each chunk, one jitted update:
    gradients flow through the chunk only (the incoming carry is a constant,
    stop_gradient), while the carry itself flows on to the next chunk, so the model sees the
    whole past in its forward pass.

    loss_fn(model, x_chunk, y_chunk, carry) -> (loss, new_carry); carry=None is passed on the
    first chunk when none is given (use the model's initial carry there). resets [b, T] bool
    marks new streams: the carry of a stream is zeroed before a chunk that starts with a reset
    (put boundaries at chunk starts, or use `stream(..., resets=)` inside loss_fn).
    Returns (the loss of every chunk, the final carry).
    """
    step = _tbptt_step(loss_fn)
    losses = []
    x_chunks, y_chunks = split_chunks(inputs, chunk_length), split_chunks(targets, chunk_length)
    r_chunks = split_chunks(resets, chunk_length) if resets is not None else [None] * len(x_chunks)
    for x, y, r in zip(x_chunks, y_chunks, r_chunks):
        if carry is not None and r is not None:  # every cell's initial carry is zeros
            carry = reset_carry(carry, r[:, 0], jax.tree.map(jnp.zeros_like, carry))
        loss, carry = step(model, optimizer, x, y, carry)
        losses.append(float(loss))
    return losses, carry


@functools.lru_cache(maxsize=32)
def _tbptt_step(loss_fn: Callable):  # one jitted step per loss_fn, so repeated calls do not recompile
    @nnx.jit
    def step(model, optimizer, x, y, carry):
        carry = None if carry is None else jax.lax.stop_gradient(carry)
        (loss, new_carry), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, x, y, carry)
        with standard_promotion():
            optimizer.update(model, grads)
        return loss, new_carry

    return step
