"""JapaneseVowels and BasicMotions: the published facts, the .ts reader, and lengths in the model."""

import importlib.util

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gatedrnn.tasks.uea import UEAClassificationTask, load_uea
from gatedrnn.train.model import SequenceModel

if importlib.util.find_spec("sktime") is None:
    pytest.skip("DATA-MISSING: JapaneseVowels and BasicMotions need sktime: pip install -e '.[data]'",
                allow_module_level=True)


def test_japanese_vowels_facts():
    d = load_uea("JapaneseVowels")
    assert d["train_x"].shape == (270, 29, 12) and d["test_x"].shape == (370, 29, 12)
    lengths = np.concatenate([d["train_len"], d["test_len"]])
    assert lengths.min() == 7 and lengths.max() == 29
    assert list(d["classes"]) == [str(i) for i in range(1, 10)]
    np.testing.assert_array_equal(np.bincount(d["train_y"]), 30)  # 30 utterances per speaker
    assert np.bincount(d["test_y"]).sum() == 370
    task = UEAClassificationTask("JapaneseVowels")
    assert (task.input_size, task.output_size) == (12, 9)
    assert task.baseline_accuracy == pytest.approx(88 / 370)


def test_padding_is_zero_and_channels_are_standardized_on_train():
    d = load_uea("JapaneseVowels")
    valid = np.arange(29)[None, :] < d["train_len"][:, None]
    assert (d["train_x"][~valid] == 0).all()
    assert (d["test_x"][np.arange(29)[None, :] >= d["test_len"][:, None]] == 0).all()
    frames = d["train_x"][valid]
    np.testing.assert_allclose(frames.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(frames.std(0), 1.0, atol=1e-3)


def test_basic_motions_facts():
    d = load_uea("BasicMotions")
    assert d["train_x"].shape == (40, 100, 6) and d["test_x"].shape == (40, 100, 6)
    assert (d["train_len"] == 100).all() and (d["test_len"] == 100).all()
    assert sorted(d["classes"]) == ["Badminton", "Running", "Standing", "Walking"]
    np.testing.assert_array_equal(np.bincount(d["test_y"]), 10)


@pytest.mark.slow
def test_the_reader_agrees_with_sktimes_loader():
    from sktime.datasets import load_japanese_vowels  # takes seconds to import

    x, y = load_japanese_vowels(split="train", return_X_y=True)
    d = load_uea("JapaneseVowels")
    first = np.stack([x.iloc[0, c].to_numpy() for c in range(12)], axis=1)
    assert len(first) == d["train_len"][0] and [int(v) for v in y[:5]] == list(d["train_y"][:5] + 1)
    frames = np.concatenate([np.stack([x.iloc[i, c].to_numpy() for c in range(12)], 1) for i in range(len(x))])
    mean, std = frames.mean(0), frames.std(0) + 1e-6
    np.testing.assert_allclose(d["train_x"][0, : len(first)], (first - mean) / std, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_a_batch_scores_each_utterance_as_if_it_were_alone():
    """The task passes seq_lengths, so padding never changes the model's output."""
    task = UEAClassificationTask("JapaneseVowels")
    batch = task.eval_batch(0, 0, 6)
    model = SequenceModel(cell="gru", input_size=12, hidden_size=8, output_size=9, readout="last", rngs=nnx.Rngs(0))
    padded = model(jnp.asarray(batch["inputs"]), jnp.asarray(batch["seq_lengths"]))
    for i, n in enumerate(batch["seq_lengths"]):
        alone = model(jnp.asarray(batch["inputs"][i:i + 1, :n]))
        np.testing.assert_allclose(padded[i], alone[0], rtol=1e-5, atol=1e-6)
    assert len(set(batch["seq_lengths"].tolist())) > 1
