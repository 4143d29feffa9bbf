"""Autoregressive generation: a recurrent language model, and one-to-many generation from a vector.

Glossary: b batch, t time, v vocabulary, h hidden units, f conditioning features.

  LanguageModel:  p(x_{t+1} | x_<=t) = softmax(W_o h_t + b_o),  h_t = Stack(E x_t, carry_{t-1})
  OneToMany:      carry_0 = tanh(W_c v + b_c) (one Linear per carry leaf), then the same decoder from bos

Sampling (`sample_logits`) applies, in this order: temperature (logits / T), top-k (keep the k
largest logits), top-p / nucleus (keep the smallest set of most likely tokens whose total
probability reaches p; the most likely token is always kept), then draws from the
renormalized distribution. Generation runs in one `lax.scan` (no Python loop per token);
jit it with the module-level `sample_lm` / `sample_one_to_many`. Both modules take
`param_dtype` (None: float32, float64 under jax_enable_x64) and `dtype` (compute; None: the inputs').
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from gatedrnn.nn.encoder import SequenceEncoder, bridge_carry, carry_bridge
from gatedrnn.nn.heads import last_pool
from gatedrnn.nn.params import resolve_param_dtype
from gatedrnn.validation import check_positive


def _check_sampling(temperature, top_k, top_p) -> None:
    if isinstance(temperature, (int, float)) and not temperature > 0:
        raise ValueError(f"temperature must be > 0 (use top_k=1 for greedy), got {temperature}")
    if top_k is not None:
        check_positive("sampling.top_k", top_k)
    if top_p is not None and isinstance(top_p, (int, float)) and not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")


def filter_logits(logits: jax.Array, top_k: int | None = None, top_p: float | None = None) -> jax.Array:
    """Sets to -inf every logit [..., v] outside the top-k and outside the top-p nucleus."""
    neg_inf = jnp.asarray(-jnp.inf, logits.dtype)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits >= kth, logits, neg_inf)
    if top_p is not None:
        ordered = jnp.flip(jnp.sort(logits, axis=-1), axis=-1)  # descending
        probs = jax.nn.softmax(ordered, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        kept = mass_before < jnp.asarray(top_p, probs.dtype)
        cutoff = jnp.min(jnp.where(kept, ordered, jnp.asarray(jnp.inf, logits.dtype)), axis=-1, keepdims=True)
        logits = jnp.where(logits >= cutoff, logits, neg_inf)
    return logits


def sample_logits(key: jax.Array, logits: jax.Array, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> jax.Array:
    """Draws token ids [...] from logits [..., v] after temperature, top-k and top-p."""
    _check_sampling(temperature, top_k, top_p)
    scaled = logits / jnp.asarray(temperature, logits.dtype)
    return jax.random.categorical(key, filter_logits(scaled, top_k, top_p), axis=-1).astype(jnp.int32)


def generate_tokens(step: Callable, key: jax.Array, logits: jax.Array, carry: Any, num_steps: int, *,
                    temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                    eos_id: int | None = None, pad_id: int = 0, draw: Callable | None = None) -> jax.Array:
    """The sampling loop shared by every generator (language models, tasks' samplers), as one `lax.scan`.

    step(token [b], carry) -> (logits [b, v], carry); `logits` [b, v] predict the first token.
    Returns tokens [b, num_steps]; after a sequence emits `eos_id` it emits `pad_id`.
    `draw(key, logits) -> token` replaces `sample_logits` (e.g. Bernoulli piano-roll frames
    [b, p] from logits [b, p]); then the tokens are whatever it returns, [b, num_steps, ...].
    """
    check_positive("generate.num_steps", num_steps)
    _check_sampling(temperature, top_k, top_p)
    b = logits.shape[0]
    if draw is None:
        draw = functools.partial(sample_logits, temperature=temperature, top_k=top_k, top_p=top_p)

    def body(state, key_t):
        logits, carry, finished = state
        token = draw(key_t, logits)
        if eos_id is not None:
            token = jnp.where(finished, pad_id, token)
            finished = finished | (token == eos_id)
        logits, carry = step(token, carry)
        return (logits, carry, finished), token

    _, tokens = jax.lax.scan(body, (logits, carry, jnp.zeros((b,), bool)), jax.random.split(key, num_steps))
    return jnp.swapaxes(tokens, 0, 1)


class LanguageModel(nnx.Module):
    """Token embedding -> unidirectional recurrent stack -> logits over the vocabulary.

    Example:
      lm = LanguageModel("lstm", 64, vocab_size=100, num_layers=2, rngs=nnx.Rngs(0))
      logits, carry = lm(tokens)                                   # [b, t] -> [b, t, 100]
      out = sample_lm(lm, jax.random.key(0), prompt, num_steps=50, temperature=0.8, top_p=0.9)
    """

    def __init__(self, cell: str, hidden_size: int, vocab_size: int, *, rngs: nnx.Rngs, embed_size: int | None = None,
                 num_layers: int = 1, dtype: Any = None, param_dtype: Any = None, **encoder_options: Any):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=resolve_param_dtype(param_dtype))
        self.encoder = SequenceEncoder(cell, hidden_size, vocab_size=vocab_size, embed_size=embed_size,
                                       num_layers=num_layers, bidirectional=False, **kw, **encoder_options)
        self.head = nnx.Linear(self.encoder.output_size, vocab_size, **kw)
        self.vocab_size = vocab_size

    def initial_carry(self, batch_size: int):
        return self.encoder.rnn.initial_carry(batch_size)

    def __call__(self, tokens, seq_lengths=None, initial_carry=None):
        """tokens [b, t] -> (logits [b, t, v], carry after each sequence's last valid token)."""
        outputs, carry = self.encoder(tokens, seq_lengths, initial_carry)
        return self.head(outputs), carry

    def step(self, token: jax.Array, carry):
        """One token [b] -> (logits [b, v], carry): the stack run on a length-1 sequence."""
        logits, carry = self(token[:, None], None, carry)
        return logits[:, 0], carry

    def generate(self, key, prompt, prompt_lengths=None, *, num_steps: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, eos_id: int | None = None,
                 pad_id: int = 0) -> jax.Array:
        """Continues each prompt [b, t_p] (its first prompt_lengths tokens) by num_steps sampled tokens."""
        if prompt.ndim != 2 or prompt.shape[1] < 1:
            raise ValueError(f"prompt must be int tokens [batch, time >= 1], got shape {prompt.shape}")
        logits, carry = self(prompt, prompt_lengths)
        return generate_tokens(self.step, key, last_pool(logits, prompt_lengths), carry, num_steps,
                               temperature=temperature, top_k=top_k, top_p=top_p, eos_id=eos_id, pad_id=pad_id)


class OneToMany(nnx.Module):
    """Generation from one input vector (e.g. an image embedding): carry_0 = tanh(W_c v + b_c), then a
    recurrent decoder fed its own previous token, starting from `bos_id`.

    Example:
      model = OneToMany("gru", 32, vocab_size=20, condition_size=8, rngs=nnx.Rngs(0))
      logits = model(v, tgt_in)                                # teacher forcing: [b, t, 20]
      tokens = sample_one_to_many(model, key, v, num_steps=10, top_k=1)   # greedy
    """

    def __init__(self, cell: str, hidden_size: int, vocab_size: int, condition_size: int, *, rngs: nnx.Rngs,
                 bos_id: int = 1, dtype: Any = None, param_dtype: Any = None, **lm_options: Any):
        check_positive("OneToMany.condition_size", condition_size)
        if not 0 <= bos_id < vocab_size:
            raise ValueError(f"OneToMany.bos_id={bos_id} must lie in [0, vocab_size={vocab_size})")
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=resolve_param_dtype(param_dtype))
        self.decoder = LanguageModel(cell, hidden_size, vocab_size, **kw, **lm_options)
        self.bridge = carry_bridge(self.decoder.initial_carry(1), condition_size, **kw)
        self.bos_id, self.condition_size = bos_id, condition_size

    def initial_carry_from(self, v: jax.Array):
        """v [b, f] -> the decoder stack's carry (a list over layers of cell carries)."""
        if v.ndim != 2 or v.shape[1] != self.condition_size:
            raise ValueError(f"condition must have shape [batch, {self.condition_size}], got {v.shape}")
        return bridge_carry(self.bridge, self.decoder.initial_carry(1), v)

    def __call__(self, v, tokens_in, seq_lengths=None) -> jax.Array:
        """Teacher forcing: v [b, f], tokens_in [b, t] (bos y_1 ..) -> logits [b, t, v]."""
        logits, _ = self.decoder(tokens_in, seq_lengths, self.initial_carry_from(v))
        return logits

    def generate(self, key, v, *, num_steps: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, eos_id: int | None = None, pad_id: int = 0) -> jax.Array:
        """v [b, f] -> sampled tokens [b, num_steps] (bos not included)."""
        bos = jnp.full((v.shape[0],), self.bos_id, jnp.int32)
        logits, carry = self.decoder.step(bos, self.initial_carry_from(v))
        return generate_tokens(self.decoder.step, key, logits, carry, num_steps, temperature=temperature,
                               top_k=top_k, top_p=top_p, eos_id=eos_id, pad_id=pad_id)


_SAMPLING_STATICS = ("num_steps", "top_k", "eos_id", "pad_id")


@functools.partial(nnx.jit, static_argnames=_SAMPLING_STATICS)
def sample_lm(model: LanguageModel, key, prompt, prompt_lengths=None, *, num_steps: int, temperature=1.0,
              top_k: int | None = None, top_p=None, eos_id: int | None = None, pad_id: int = 0) -> jax.Array:
    """jit-compiled `LanguageModel.generate` (temperature and top_p may change without recompiling)."""
    return model.generate(key, prompt, prompt_lengths, num_steps=num_steps, temperature=temperature, top_k=top_k,
                          top_p=top_p, eos_id=eos_id, pad_id=pad_id)


@functools.partial(nnx.jit, static_argnames=_SAMPLING_STATICS)
def sample_one_to_many(model: OneToMany, key, v, *, num_steps: int, temperature=1.0, top_k: int | None = None,
                       top_p=None, eos_id: int | None = None, pad_id: int = 0) -> jax.Array:
    """jit-compiled `OneToMany.generate`."""
    return model.generate(key, v, num_steps=num_steps, temperature=temperature, top_k=top_k, top_p=top_p,
                          eos_id=eos_id, pad_id=pad_id)
