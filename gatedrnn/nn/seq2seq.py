"""Encoder-decoder with attention: Luong et al. 2015 (global attention, optional input feeding)
or Bahdanau et al. 2015 (attention from the previous state, context fed to the cell).

Glossary: b batch, s source steps, t target steps, v target vocabulary, h hidden units,
k beam size, n attention heads.

  encoder:   e_1..e_s = Encoder(x_1..x_s)                       (optionally bidirectional)
             (attention="dot" with e of another size than h, e.g. the default bidirectional
             encoder's 2h: e_s <- W_m e_s, a learned map to h, no bias; keys = values = W_m e)
  bridge:    carry_0 = tanh(W_b mean_{valid s}(e_s) + b_b)       (one Linear per carry leaf)
  decoder:   h_t = Cell(carry_{t-1}, [E y_{t-1}; a~_{t-1}])      (a~ only with input feeding)
             c_t, alpha_t = Attention(query=h_t, keys=values=e, mask)
             a~_t = tanh(W_c [c_t; h_t])                          (the attentional vector)
             p(y_t | y_<t, x) = softmax(W_o a~_t + b_o)
  style="bahdanau" instead attends from the previous decoder output and feeds the context in:
             c_t, alpha_t = Attention(query=h_{t-1}, keys=values=e, mask)
             h_t = Cell(carry_{t-1}, [E y_{t-1}; c_t]),   a~_t = tanh(W_c [c_t; h_t])

Token conventions: `pad_id`, `bos_id`, `eos_id` (defaults 0, 1, 2). Decoder inputs start
with bos; targets end with eos. Generation never emits pad or bos.

Decoding (`greedy_decode`, `beam_search`) runs in one `lax.while_loop` (no Python loop per
step) and stops early once every hypothesis has emitted eos. Both return a `Decoded`:
tokens [b, t_max] (pad after the end), lengths [b] (eos included), scores [b] (sum of log
p) and the attention weights [b, t_max, s] ([b, t_max, n, s] for multi-head) of the
returned hypothesis, 0 after its end. jit them with the module-level `decode_greedy` /
`decode_beam`.

dtypes: `param_dtype` (None: float32, float64 under jax_enable_x64) for every parameter;
`dtype` the compute dtype of every layer (None: the inputs'/params'; e.g. jnp.bfloat16).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from gatedrnn.cells import make_cell
from gatedrnn.losses import sequence_mask
from gatedrnn.nn.attention import Memory, make_attention
from gatedrnn.nn.encoder import SequenceEncoder, bridge_carry, carry_bridge
from gatedrnn.nn.heads import mean_pool
from gatedrnn.nn.layers import RNN
from gatedrnn.nn.params import cast, param_values, resolve_param_dtype
from gatedrnn.scan import ScanOptions, with_overrides
from gatedrnn.validation import check_choice, check_positive

STYLES = ("luong", "bahdanau")


class DecoderState(NamedTuple):
    carry: Any  # the decoder cell's carry, leaves [b, ...]
    feed: jax.Array  # [b, h] luong: the previous attentional vector a~_{t-1} (zeros at t = 0);
    #                  bahdanau: the previous decoder output h_{t-1} (the attention query)


class Decoded(NamedTuple):
    tokens: jax.Array  # [b, t_max] int32, pad after the end
    lengths: jax.Array  # [b] int32, eos included
    scores: jax.Array  # [b] sum of log-probabilities of the tokens
    weights: jax.Array  # [b, t_max, s] (or [b, t_max, n, s]) attention weights, 0 after the end


def length_penalty(lengths: jax.Array, alpha: float) -> jax.Array:
    """GNMT length normalization (Wu et al. 2016): lp(L) = ((5 + L) / 6) ** alpha; alpha = 0 is none."""
    return ((5.0 + lengths.astype(jnp.float32)) / 6.0) ** alpha


class Seq2Seq(nnx.Module):
    """Attention encoder-decoder; see the module docstring for the equations.

    `attention` is a name in `gatedrnn.nn.attention.ATTENTIONS`, built by `make_attention`
    with attention_size=hidden_size and `num_heads` (multihead; it must divide hidden_size)
    and `attention_bias` (multihead's q/k/v biases, torch's in_proj_bias; False: the param
    tree of models built before the option). "dot" works with any encoder: encoder outputs of
    another size than the decoder's are first mapped to it (`memory_proj`, see above).

    Example:
      model = Seq2Seq("gru", 32, target_vocab=12, source_vocab=12, attention="additive",
                      rngs=nnx.Rngs(0))
      logits, weights = model(src, src_lengths, tgt_in)        # teacher forcing
      out = decode_beam(model, src, src_lengths, beam_size=4, max_length=20)
      out.tokens, out.weights                                    # [b, 20], [b, 20, s]
    """

    def __init__(self, cell: str, hidden_size: int, target_vocab: int, *, rngs: nnx.Rngs,
                 source_vocab: int | None = None, source_size: int | None = None, embed_size: int | None = None,
                 encoder_layers: int = 1, bidirectional: bool = True, attention: str = "general",
                 input_feeding: bool = True, style: str = "luong", num_heads: int = 2, attention_bias: bool = True,
                 pad_id: int = 0, bos_id: int = 1, eos_id: int = 2, scan: ScanOptions | None = None,
                 dtype: Any = None, param_dtype: Any = None, **cell_options: Any):
        check_positive("Seq2Seq.target_vocab", target_vocab)
        ids = {"pad_id": pad_id, "bos_id": bos_id, "eos_id": eos_id}
        for name, value in ids.items():
            if not 0 <= value < target_vocab:
                raise ValueError(f"Seq2Seq.{name}={value} must lie in [0, target_vocab={target_vocab})")
        if len(set(ids.values())) != 3:
            raise ValueError(f"Seq2Seq needs distinct pad/bos/eos ids, got {ids}")
        check_choice("Seq2Seq.style", style, STYLES)
        if style == "bahdanau" and not input_feeding:
            raise ValueError("Seq2Seq style='bahdanau' always feeds the context to the cell; input_feeding=False is luong only")
        embed_size = embed_size or hidden_size
        param_dtype = resolve_param_dtype(param_dtype)
        scan = with_overrides(scan) if dtype is None else with_overrides(scan, dtype=dtype)
        dtype = scan.dtype  # one compute dtype for every layer
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.encoder = SequenceEncoder(cell, hidden_size, input_size=source_size, vocab_size=source_vocab,
                                       embed_size=embed_size, num_layers=encoder_layers, bidirectional=bidirectional,
                                       scan=scan, **kw, **cell_options)
        enc = self.encoder.output_size
        self.embed = nnx.Embed(target_vocab, embed_size, **kw)
        q = hidden_size  # the decoder's output size
        # "dot" scores q^T e_s: encoder outputs of another size (bidirectional: 2h) are mapped to h first
        self.memory_proj = nnx.Linear(enc, q, use_bias=False, **kw) if attention == "dot" and enc != q else None
        mem = q if self.memory_proj is not None else enc  # features of the attention's keys and values
        dec_in = embed_size + (mem if style == "bahdanau" else hidden_size if input_feeding else 0)
        self.decoder = RNN(make_cell(cell, dec_in, hidden_size, **cell_options), rngs=rngs, scan=scan,
                           param_dtype=param_dtype)
        q = self.decoder.output_size
        self.bridge = carry_bridge(self.decoder.initial_carry(1), enc, **kw)
        self.attention = make_attention(attention, q, mem, attention_size=hidden_size, num_heads=num_heads,
                                        bias=attention_bias, **kw)
        self.combine = nnx.Linear(mem + q, hidden_size, use_bias=False, **kw)
        self.out = nnx.Linear(hidden_size, target_vocab, **kw)
        self.dtype = dtype
        self.hidden_size, self.target_vocab, self.input_feeding = hidden_size, target_vocab, input_feeding
        self.style = style
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id

    # ------------------------------------------------------------------ building blocks

    def encode(self, src: jax.Array, src_lengths: jax.Array | None = None) -> tuple[Memory, DecoderState]:
        """src [b, s] tokens or [b, s, d] -> (memory over e [b, s, enc], the decoder's first state)."""
        outputs, _ = self.encoder(src, src_lengths)
        keys = outputs if self.memory_proj is None else self.memory_proj(outputs)
        memory = self.attention.prepare(keys, keys, sequence_mask(src_lengths, *outputs.shape[:2]))
        summary = mean_pool(outputs, src_lengths)
        carry = bridge_carry(self.bridge, self.decoder.initial_carry(1), summary)
        if self.style == "bahdanau":  # the first query: the output part of the carry (an LSTM's h: its last leaf)
            return memory, DecoderState(carry, jax.tree.leaves(carry)[-1])
        return memory, DecoderState(carry, jnp.zeros((outputs.shape[0], self.hidden_size), outputs.dtype))

    def _output(self, memory: Memory, h: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """h [b, (t,) q] -> (logits, attentional vector a~, weights)."""
        context, weights = self.attention.attend(memory, h)
        att = jnp.tanh(self.combine(jnp.concatenate([context, h], axis=-1)))
        return self.out(att), att, weights

    def decode_step(self, memory: Memory, state: DecoderState, token: jax.Array):
        """One decoder step: token [b] -> (state, logits [b, v], weights [b, s] or [b, n, s])."""
        x = self.embed(token)
        cell = self.decoder.cell
        params = param_values(self.decoder.params)
        if self.dtype is not None:  # as `scan_cell` does: params in the compute dtype
            params = jax.tree.map(lambda a: cast(a, self.dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a,
                                  params)
        if self.style == "bahdanau":
            context, weights = self.attention.attend(memory, state.feed)
            x = jnp.concatenate([x, context.astype(x.dtype)], axis=-1)
            carry, h = cell.step(params, state.carry, cell.project(params, x))
            att = jnp.tanh(self.combine(jnp.concatenate([context, h], axis=-1)))
            return DecoderState(carry, h), self.out(att), weights
        if self.input_feeding:
            x = jnp.concatenate([x, state.feed.astype(x.dtype)], axis=-1)
        carry, h = cell.step(params, state.carry, cell.project(params, x))
        logits, att, weights = self._output(memory, h)
        return DecoderState(carry, att), logits, weights

    def teacher_forcing_stepwise(self, src, src_lengths, tgt_in):
        """Teacher forcing by a `lax.scan` of `decode_step` (what input feeding needs)."""
        memory, state = self.encode(src, src_lengths)

        def body(state, token):
            state, logits, weights = self.decode_step(memory, state, token)
            return state, (logits, weights)

        _, (logits, weights) = jax.lax.scan(body, state, jnp.swapaxes(tgt_in, 0, 1))
        return jnp.swapaxes(logits, 0, 1), jnp.swapaxes(weights, 0, 1)

    def __call__(self, src, src_lengths, tgt_in, tgt_lengths=None):
        """Teacher forcing: src [b, s], tgt_in [b, t] (bos y_1 .. y_{t-1}) ->
        (logits [b, t, v], weights [b, t, s] or [b, t, n, s]).

        Without input feeding the decoder runs time-parallel through the scan engine and attends
        for all steps at once; with it, step by step. Outputs past tgt_lengths are not masked
        (mask the loss); weights past them are zero.
        """
        if tgt_in.ndim != 2 or not jnp.issubdtype(tgt_in.dtype, jnp.integer):
            raise ValueError(f"tgt_in must be int tokens [batch, time], got {tgt_in.shape} {tgt_in.dtype}")
        if self.input_feeding or self.style == "bahdanau":
            logits, weights = self.teacher_forcing_stepwise(src, src_lengths, tgt_in)
        else:
            memory, state = self.encode(src, src_lengths)
            h, _ = self.decoder(self.embed(tgt_in), initial_carry=state.carry)
            logits, _, weights = self._output(memory, h)
            if weights.ndim == 4:  # multi-head: [b, n, t, s] -> [b, t, n, s]
                weights = jnp.swapaxes(weights, 1, 2)
        if tgt_lengths is not None:
            valid = sequence_mask(tgt_lengths, *tgt_in.shape)
            weights = weights * valid.reshape(valid.shape + (1,) * (weights.ndim - 2)).astype(weights.dtype)
        return logits, weights

    def generation_log_probs(self, logits: jax.Array) -> jax.Array:
        """log p over the vocabulary with pad and bos banned (renormalized over the rest)."""
        banned = (jnp.arange(self.target_vocab) == self.pad_id) | (jnp.arange(self.target_vocab) == self.bos_id)
        banned = banned.reshape((1,) * (logits.ndim - 1) + banned.shape)
        return jax.nn.log_softmax(jnp.where(banned, jnp.asarray(-jnp.inf, logits.dtype), logits), axis=-1)

    # ------------------------------------------------------------------ decoding

    def greedy_decode(self, src, src_lengths, max_length: int) -> Decoded:
        """Picks argmax p(y_t | y_<t, x) at each step until eos or max_length."""
        check_positive("greedy_decode.max_length", max_length)
        memory, state = self.encode(src, src_lengths)
        b = state.feed.shape[0]
        _, w0 = self.attention.attend(memory, jnp.zeros((b, self.decoder.output_size)))  # for its shape
        init = dict(
            i=jnp.int32(0), state=state, prev=jnp.full((b,), self.bos_id, jnp.int32),
            tokens=jnp.full((b, max_length), self.pad_id, jnp.int32), lengths=jnp.zeros((b,), jnp.int32),
            scores=jnp.zeros((b,), jnp.float32), finished=jnp.zeros((b,), bool),
            weights=jnp.zeros((b, max_length) + w0.shape[1:], w0.dtype),
        )

        def cond(c):
            return (c["i"] < max_length) & ~jnp.all(c["finished"])

        def body(c):
            state, logits, weights = self.decode_step(memory, c["state"], c["prev"])
            logp = self.generation_log_probs(logits.astype(jnp.float32))
            live = ~c["finished"]
            tok = jnp.where(live, jnp.argmax(logp, axis=-1).astype(jnp.int32), self.pad_id)
            gained = jnp.take_along_axis(logp, tok[:, None], axis=-1)[:, 0]
            live_w = live.reshape((b,) + (1,) * (weights.ndim - 1))
            return dict(
                i=c["i"] + 1, state=state, prev=tok,
                tokens=c["tokens"].at[:, c["i"]].set(tok),
                lengths=c["lengths"] + live.astype(jnp.int32),
                scores=c["scores"] + jnp.where(live, gained, 0.0),
                finished=c["finished"] | (tok == self.eos_id),
                weights=c["weights"].at[:, c["i"]].set(jnp.where(live_w, weights, jnp.zeros_like(weights))),
            )

        c = jax.lax.while_loop(cond, body, init)
        return Decoded(c["tokens"], c["lengths"], c["scores"], c["weights"])

    def beam_search(self, src, src_lengths, beam_size: int, max_length: int, alpha: float = 0.0) -> Decoded:
        """Batched beam search; returns the hypothesis with the best score / lp(length).

        Each step expands every live beam by every allowed token; a finished beam (eos emitted)
        continues only with pad at zero cost. The k best candidates by score / lp(length)
        survive (GNMT length normalization with `alpha`; alpha = 0 ranks by total log p).
        With beam_size = 1 this is exactly greedy decoding.
        """
        check_positive("beam_search.beam_size", beam_size)
        check_positive("beam_search.max_length", max_length)
        if alpha < 0:
            raise ValueError(f"beam_search alpha must be >= 0, got {alpha}")
        k, v = beam_size, self.target_vocab
        memory, state = self.encode(src, src_lengths)
        b = state.feed.shape[0]
        tile = functools.partial(jnp.repeat, repeats=k, axis=0)
        memory, state = jax.tree.map(tile, memory), jax.tree.map(tile, state)  # [b * k, ...], beam-minor
        _, w0 = self.attention.attend(memory, jnp.zeros((b * k, self.decoder.output_size)))
        w_shape = w0.shape[1:]
        neg_inf = jnp.float32(-jnp.inf)
        only_pad = jnp.where(jnp.arange(v) == self.pad_id, 0.0, neg_inf)  # a finished beam's row
        init = dict(
            i=jnp.int32(0), state=state, prev=jnp.full((b, k), self.bos_id, jnp.int32),
            tokens=jnp.full((b, k, max_length), self.pad_id, jnp.int32), lengths=jnp.zeros((b, k), jnp.int32),
            scores=jnp.where(jnp.arange(k)[None, :] == 0, 0.0, neg_inf) * jnp.ones((b, 1), jnp.float32),
            finished=jnp.zeros((b, k), bool),
            weights=jnp.zeros((b, k, max_length) + w_shape, w0.dtype),
        )

        def cond(c):
            return (c["i"] < max_length) & ~jnp.all(c["finished"])

        def body(c):
            state, logits, weights = self.decode_step(memory, c["state"], c["prev"].reshape(b * k))
            logp = self.generation_log_probs(logits.astype(jnp.float32)).reshape(b, k, v)
            finished = c["finished"]
            logp = jnp.where(finished[:, :, None], only_pad[None, None, :], logp)
            cand = c["scores"][:, :, None] + logp  # [b, k, v]
            new_len = c["lengths"] + (~finished).astype(jnp.int32)  # [b, k]
            ranked = cand / length_penalty(new_len, alpha)[:, :, None]
            _, idx = jax.lax.top_k(ranked.reshape(b, k * v), k)  # [b, k]
            parent, tok = idx // v, (idx % v).astype(jnp.int32)
            flat_parent = (jnp.arange(b)[:, None] * k + parent).reshape(b * k)

            def pick(a):  # [b, k, ...] by parent
                return jnp.take_along_axis(a, parent.reshape(parent.shape + (1,) * (a.ndim - 2)), axis=1)

            was_finished = pick(finished)
            weights = weights.reshape((b, k) + w_shape)
            weights = jnp.where(was_finished.reshape((b, k) + (1,) * len(w_shape)), jnp.zeros_like(weights),
                                pick(weights))
            return dict(
                i=c["i"] + 1,
                state=jax.tree.map(lambda a: a[flat_parent], state),
                prev=tok,
                tokens=pick(c["tokens"]).at[:, :, c["i"]].set(tok),
                lengths=pick(new_len),
                scores=jnp.take_along_axis(cand.reshape(b, k * v), idx, axis=1),
                finished=was_finished | (tok == self.eos_id),
                weights=pick(c["weights"]).at[:, :, c["i"]].set(weights),
            )

        c = jax.lax.while_loop(cond, body, init)
        best = jnp.argmax(c["scores"] / length_penalty(c["lengths"], alpha), axis=1)  # [b]

        def choose(a):
            return jnp.take_along_axis(a, best.reshape((b, 1) + (1,) * (a.ndim - 2)), axis=1)[:, 0]

        return Decoded(choose(c["tokens"]), choose(c["lengths"]), choose(c["scores"]), choose(c["weights"]))


@functools.partial(nnx.jit, static_argnames=("max_length",))
def decode_greedy(model: Seq2Seq, src, src_lengths, *, max_length: int) -> Decoded:
    """jit-compiled `Seq2Seq.greedy_decode`."""
    return model.greedy_decode(src, src_lengths, max_length)


@functools.partial(nnx.jit, static_argnames=("beam_size", "max_length", "alpha"))
def decode_beam(model: Seq2Seq, src, src_lengths, *, beam_size: int, max_length: int, alpha: float = 0.0) -> Decoded:
    """jit-compiled `Seq2Seq.beam_search`."""
    return model.beam_search(src, src_lengths, beam_size, max_length, alpha)
