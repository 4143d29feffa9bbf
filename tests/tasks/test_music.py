"""Bach chorales: piano rolls against hand-written ones, the NLL and baseline against NumPy, the split,
the cache, MIDI round trips and config errors."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gatedrnn.tasks import music as tm
from gatedrnn.tasks.data import MissingPackageError
from gatedrnn.train.config import ConfigError
from gatedrnn.train.loop import make_experiment
from gatedrnn.train.model import SequenceModel

from paths import REPO

if importlib.util.find_spec("music21") is None:
    pytest.skip("DATA-MISSING: the Bach chorales need music21: pip install -e '.[data]'", allow_module_level=True)

from music21 import chord, key, note, stream, tie  # noqa: E402


def roll_from(frames):
    """Hand-written frames (lists of active MIDI pitches) -> uint8 [t, 88]."""
    out = np.zeros((len(frames), tm.NUM_PITCHES), np.uint8)
    for t, pitches in enumerate(frames):
        out[t, [p - tm.PITCH_LOW for p in pitches]] = 1
    return out


def tiny_score():
    """Two parts: C4 quarter, D4 + E4 eighths, F4 half | C3-G3 half chord, quarter rest, A3 tied over two quarters."""
    upper, lower = stream.Part(), stream.Part()
    for offset, n in ((0, note.Note("C4", quarterLength=1)), (1, note.Note("D4", quarterLength=0.5)),
                      (1.5, note.Note("E4", quarterLength=0.5)), (2, note.Note("F4", quarterLength=2))):
        upper.insert(offset, n)
    tied = [note.Note("A3", quarterLength=1), note.Note("A3", quarterLength=1)]
    tied[0].tie, tied[1].tie = tie.Tie("start"), tie.Tie("stop")
    for offset, n in ((0, chord.Chord(["C3", "G3"], quarterLength=2)), (2, note.Rest(quarterLength=1)),
                      (3, tied[0]), (4, tied[1])):
        lower.insert(offset, n)
    score = stream.Score()
    score.insert(0, upper)
    score.insert(0, lower)
    return score


def test_piano_roll_of_a_hand_built_score():
    c4, d4, e4, f4, c3, g3, a3 = 60, 62, 64, 65, 48, 55, 57
    quarters = roll_from([[c4, c3, g3], [d4, c3, g3], [f4], [f4, a3], [a3]])  # E4 falls between frames 1 and 2
    eighths = roll_from([[c4, c3, g3], [c4, c3, g3], [d4, c3, g3], [e4, c3, g3], [f4], [f4], [f4, a3], [f4, a3],
                         [a3], [a3]])
    np.testing.assert_array_equal(tm.piano_roll(tiny_score(), 1), quarters)
    np.testing.assert_array_equal(tm.piano_roll(tiny_score(), 2), eighths)
    np.testing.assert_array_equal(tm.piano_roll(tiny_score(), 1, shift=-3), np.roll(quarters, -3, axis=1))


@pytest.mark.parametrize("sharps, shift", [(0, 0), (2, -2), (-1, -5), (3, 3), (-3, -3), (6, -6), (-2, 2)])
def test_key_shift_takes_the_signature_to_c(sharps, shift):
    s = stream.Score()
    s.insert(0, key.KeySignature(sharps))
    s.insert(0, note.Note("C4"))
    assert tm.key_shift(s) == shift
    assert tm.key_shift(tiny_score()) == 0  # no signature


def numpy_nll(logits, targets, mask):
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    per_step = -(targets * np.log(p) + (1 - targets) * np.log(1 - p)).sum(-1)
    return (per_step * mask).sum() / mask.sum()


def test_nll_per_step_and_frame_accuracy_against_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (3, 7, tm.NUM_PITCHES)).astype(np.float32)
    targets = (rng.random((3, 7, tm.NUM_PITCHES)) < 0.1).astype(np.float32)
    mask = np.ones((3, 7), np.float32)
    mask[1, 4:] = 0.0
    mask[2] = 0.0
    logits[2] = 30.0  # masked out: must not count
    loss, sums = tm.bernoulli_nll_metrics(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask))
    np.testing.assert_allclose(float(loss), numpy_nll(logits, targets, mask), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(sums["nll_per_step"]), [numpy_nll(logits, targets, mask) * 11, 11], rtol=1e-5)
    on, w = logits > 0, mask[..., None] > 0
    tp, fp, fn = (on & (targets == 1) & w).sum(), (on & (targets == 0) & w).sum(), (~on & (targets == 1) & w).sum()
    np.testing.assert_allclose(np.asarray(sums["frame_accuracy"]), [tp, tp + fp + fn])


def test_nll_is_stable_at_extreme_logits():
    targets = jnp.asarray(np.eye(2, tm.NUM_PITCHES, dtype=np.float32)[None])  # [1, 2, 88]
    logits = jnp.where(targets > 0, 200.0, -200.0)
    loss, _ = tm.bernoulli_nll_metrics(logits, targets, jnp.ones((1, 2), jnp.float32))
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    loss, _ = tm.bernoulli_nll_metrics(-logits, targets, jnp.ones((1, 2), jnp.float32))
    assert float(loss) == pytest.approx(200.0 * tm.NUM_PITCHES, rel=1e-6)


def test_independent_bernoulli_baseline_against_numpy():
    rng = np.random.default_rng(1)
    freq = rng.uniform(0.01, 0.5, tm.NUM_PITCHES)
    targets = (rng.random((2, 5, tm.NUM_PITCHES)) < freq).astype(np.float32)
    mask = np.asarray([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.float32)
    total, count = np.asarray(tm.independent_bernoulli_nll(jnp.asarray(freq, jnp.float32), jnp.asarray(targets),
                                                           jnp.asarray(mask)))
    per_step = -(targets * np.log(freq) + (1 - targets) * np.log(1 - freq)).sum(-1)
    np.testing.assert_allclose([total, count], [(per_step * mask).sum(), 8], rtol=1e-5)
    garbage = np.where(mask[..., None] > 0, targets, np.nan).astype(np.float32)  # NaN in the padded frames
    again = tm.independent_bernoulli_nll(jnp.asarray(freq, jnp.float32), jnp.asarray(garbage), jnp.asarray(mask))
    np.testing.assert_array_equal(np.asarray(again), [total, count])


def test_split_is_disjoint_deterministic_and_60_20_20():
    full = tm.split_indices(364)
    assert [len(full[s]) for s in tm.SPLITS] == [218, 73, 73]
    assert sorted(np.concatenate(list(full.values())).tolist()) == list(range(364))
    again = tm.split_indices(364)
    assert all(np.array_equal(full[s], again[s]) for s in tm.SPLITS)
    assert [len(tm.split_indices(3)[s]) for s in tm.SPLITS] == [1, 1, 1]


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    tm.chorale_splits.cache_clear()
    yield tmp_path
    tm.chorale_splits.cache_clear()


def test_cache_round_trips_and_is_keyed_by_the_parameters(cache_home, monkeypatch):
    calls = []
    real = tm.process_corpus
    monkeypatch.setattr(tm, "process_corpus", lambda *a: calls.append(a) or real(*a))
    names, rolls = tm.load_chorales(1, "none", 3)
    assert len(calls) == 1 and len(names) == 3 and len(set(names)) == 3
    path = tm.cache_path(1, "none", 3)
    assert os.path.dirname(path) == os.path.join(str(cache_home), "gatedrnn") and os.path.exists(path)
    assert [f for f in os.listdir(os.path.dirname(path)) if f.endswith(".tmp")] == []
    again_names, again_rolls = tm.load_chorales(1, "none", 3)
    assert len(calls) == 1 and again_names == names
    assert all(np.array_equal(a, b) for a, b in zip(rolls, again_rolls))
    _, finer = tm.load_chorales(2, "none", 3)  # other parameters: parsed again, into another file
    assert len(calls) == 2 and tm.cache_path(2, "none", 3) != path
    assert [len(r) for r in finer] == [2 * len(r) for r in rolls]
    _, moved = tm.load_chorales(1, "c", 3)
    assert len(calls) == 3 and any(not np.array_equal(a, b) for a, b in zip(rolls, moved))
    with open(path, "wb") as f:
        f.write(b"half a file")  # a damaged cache is parsed again and rewritten
    assert tm.load_chorales(1, "none", 3)[0] == names and len(calls) == 4
    assert tm.load_chorales(1, "none", 3)[0] == names and len(calls) == 4


def test_the_chosen_chorales_have_four_parts(cache_home):
    names, rolls = tm.load_chorales(1, "none", 3)
    assert "bwv1.6.mxl" not in names  # five parts (horns with the voices): skipped
    score = tm.parse_score(os.path.join(os.path.dirname(tm.corpus_paths()[0]), names[0]))
    assert len(score.parts) == 4
    np.testing.assert_array_equal(tm.piano_roll(score, 1), rolls[0])
    assert 2 <= rolls[0].sum(1).min() and rolls[0].sum(1).max() <= 4  # four voices, some in unison


def smoke_task(**kw):
    return tm.ChoralesTask(**{"max_chorales": 6, "seq_len": 16, **kw})


def test_batches_score_every_frame_of_the_held_out_chorales_once(cache_home):
    task = smoke_task(eval_split="valid")
    names, rolls = tm.load_chorales(1, "none", 6)
    held_out = [rolls[i] for i in tm.split_indices(6)["valid"]]
    batches = [task.eval_batch(0, i, 4) for i in range(2)]
    assert sum(b["mask"].sum() for b in batches) == sum(len(r) for r in held_out)
    b = batches[0]
    for i, r in enumerate(held_out):
        np.testing.assert_array_equal(b["targets"][i, : len(r)], r)
        np.testing.assert_array_equal(b["inputs"][i, 1 : len(r)], r[:-1])
        assert not b["inputs"][i, 0].any()  # the start frame
    freq = task.data["pitch_freq"]
    train = np.concatenate([rolls[i] for i in tm.split_indices(6)["train"]])
    np.testing.assert_allclose(freq, (train.sum(0) + 1) / (len(train) + 2))
    _, sums = task.metrics(jnp.zeros(b["targets"].shape, jnp.float32), {k: jnp.asarray(v) for k, v in b.items()})
    frames = np.concatenate(held_out)
    expected = -(frames * np.log(freq) + (1 - frames) * np.log(1 - freq)).sum(-1)
    np.testing.assert_allclose(np.asarray(sums["baseline_nll_per_step"]), [expected.sum(), len(frames)], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(sums["nll_per_step"]), [len(frames) * 88 * np.log(2), len(frames)], rtol=1e-5)


def test_train_windows_are_crops_of_training_chorales(cache_home):
    task = smoke_task()
    train = task.data["train"]
    b = task.train_batch(3, 5, 8)
    assert b["inputs"].shape == (8, 16, 88) and b["mask"].shape == (8, 16)
    np.testing.assert_array_equal(b["inputs"][:, 1:], b["targets"][:, :-1])
    for targets in b["targets"]:
        found = [i for i, n in enumerate(train["lengths"]) for s in range(n - 15)
                 if np.array_equal(train["frames"][i, 1 + s : 17 + s], targets)]
        assert found
    assert np.array_equal(task.train_batch(3, 5, 8)["targets"], b["targets"])  # a function of (seed, step)


def test_written_midi_parses_back_to_the_same_notes(tmp_path):
    from music21 import converter

    roll = roll_from([[60, 64, 67], [60, 64, 67], [62], [], [59, 62, 67], [59, 62, 67], [59, 62, 67], [48]])
    path = tm.write_midi(roll, 2, str(tmp_path / "x.mid"))
    score = converter.parse(path, forceSource=True)
    notes = sorted((p.midi, float(n.offset), float(n.duration.quarterLength))
                   for n in score.flatten().notes for p in n.pitches)
    assert notes == [(48, 3.5, 0.5), (59, 2.0, 1.5), (60, 0.0, 1.0), (62, 1.0, 0.5), (62, 2.0, 1.5), (64, 0.0, 1.0),
                     (67, 0.0, 1.0), (67, 2.0, 1.5)]
    np.testing.assert_array_equal(tm.piano_roll(score, 2), roll)
    np.testing.assert_array_equal(tm.midi_to_roll(path, 2), roll)
    dense = (np.random.default_rng(0).random((12, tm.NUM_PITCHES)) < 0.5).astype(np.uint8)
    dense[-1, 0] = 1  # the roll ends with a sounding note (MIDI has no trailing silence)
    np.testing.assert_array_equal(tm.midi_to_roll(tm.write_midi(dense, 1, str(tmp_path / "d.mid")), 1), dense)


@pytest.mark.slow
def test_final_report_writes_midi_files_and_a_png(cache_home, tmp_path):
    task = smoke_task()
    model = SequenceModel(cell="lstm", input_size=88, hidden_size=8, output_size=88, readout="all", rngs=nnx.Rngs(0))
    model.head.bias[...] = jnp.full((88,), -3.0)  # sparse samples, as from a trained model (faster to write)
    report, metrics = task.final_report(model, 0, str(tmp_path))
    assert metrics == {}
    for name in ("sample_0.mid", "sample_1.mid", "sample_2.mid", "samples.png", "samples.npz"):
        assert os.path.getsize(tmp_path / name) > 0 and name in report
    rolls = np.load(tmp_path / "samples.npz")["rolls"]
    assert rolls.shape == (3, np.median(task.data["train"]["lengths"]), 88) and set(np.unique(rolls)) == {0, 1}
    for i, roll in enumerate(rolls):
        back = tm.midi_to_roll(str(tmp_path / f"sample_{i}.mid"), 1)
        np.testing.assert_array_equal(back, roll[: len(back)])
        assert not roll[len(back):].any()


@pytest.mark.slow
def test_sampled_rolls_follow_the_model_frame_by_frame():
    """The sampler against a reference that reruns the whole model on the frames so far (the all-zero
    start frame first) and draws frame t with jax.random.bernoulli(key_t, sigmoid(logits))."""
    model = SequenceModel(cell="gru", input_size=88, hidden_size=8, output_size=88, readout="all", rngs=nnx.Rngs(2),
                          num_layers=2)
    model.head.bias[...] = jnp.full((88,), -1.0)
    got = tm.sample_rolls(model, jax.random.key(4), 2, 6)
    frames = jnp.zeros((2, 1, 88), jnp.float32)
    for key_t in jax.random.split(jax.random.key(4), 6):
        p = jax.nn.sigmoid(model(frames)[:, -1])
        frames = jnp.concatenate([frames, jax.random.bernoulli(key_t, p).astype(jnp.float32)[:, None]], axis=1)
    assert got.dtype == np.uint8 and got.shape == (2, 6, 88) and got.any()
    np.testing.assert_array_equal(got, np.asarray(frames[:, 1:]))


@pytest.mark.parametrize("field, value, message", [
    ("steps_per_quarter", 0, r"^data\.steps_per_quarter must be a positive integer, got 0$"),
    ("eval_split", "dev", r"^data\.eval_split='dev' is not valid; choose one of \['test', 'valid'\]$"),
    ("transpose", "d", r"^data\.transpose='d' is not valid; choose one of \['c', 'none'\]$"),
    ("max_chorales", 2, r"^data\.max_chorales must be 0 \(all\) or an integer >= 3 \(one chorale per split\), got 2$"),
    ("max_chorales", -1, r"got -1$"),
])
def test_bad_config_values_fail_in_one_line(field, value, message):
    import runpy

    config = runpy.run_path(os.path.join(REPO, "configs", "bach_chorales.py"))["get_config"]("smoke")
    config.data[field] = value
    with pytest.raises(ConfigError, match=message):
        make_experiment(config)


def test_a_missing_music21_names_the_extra(cache_home, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "music21" else real(n, *a))
    with pytest.raises(MissingPackageError, match=r"^the Bach chorales needs music21: pip install -e '\.\[data\]'$"):
        tm.load_chorales(1, "none", 3)
