"""Unit tests of the training library: data, losses, optimizers, config validation."""

import dataclasses
import json
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from gatedrnn import losses
from gatedrnn.cells import CELLS
from gatedrnn.tasks.registry import TASKS, make_task
from gatedrnn.tasks.synthetic import AddingTask
from gatedrnn.train import optim
from gatedrnn.train.config import ConfigError, check_resume_compatible, default_config, to_json, validate
from gatedrnn.train.loop import make_experiment
from gatedrnn.train.model import SequenceModel

from conftest import torch_or_skip


def adding_config():
    c = default_config()
    c.task = "adding"
    c.data.seq_len = 20
    return c


# --- the adding problem -------------------------------------------------------------------

def test_adding_batches_follow_the_spec():
    task = AddingTask(seq_len=20)
    b = task.train_batch(seed=3, step=7, batch_size=256)
    x, y = b["inputs"], b["targets"]
    assert x.shape == (256, 20, 2) and y.shape == (256, 1) and x.dtype == np.float32
    assert (x[..., 0] >= 0).all() and (x[..., 0] < 1).all()
    marker = x[..., 1]
    assert set(np.unique(marker)) == {0.0, 1.0}
    np.testing.assert_array_equal(marker[:, :10].sum(1), 1.0)  # one marker in each half
    np.testing.assert_array_equal(marker[:, 10:].sum(1), 1.0)
    np.testing.assert_allclose(y[:, 0], (x[..., 0] * marker).sum(1), rtol=1e-6)


def test_adding_data_is_a_function_of_seed_and_step():
    task = AddingTask(seq_len=12)
    a, b = task.train_batch(0, 5, 8), task.train_batch(0, 5, 8)
    np.testing.assert_array_equal(a["inputs"], b["inputs"])
    assert not np.array_equal(a["inputs"], task.train_batch(0, 6, 8)["inputs"])
    assert not np.array_equal(a["inputs"], task.train_batch(1, 5, 8)["inputs"])
    assert not np.array_equal(task.eval_batch(0, 5, 8)["inputs"], a["inputs"])  # held out


def test_adding_baseline_is_one_sixth():
    task = AddingTask(seq_len=30)
    b = task.train_batch(0, 0, 20000)
    _, sums = task.metrics(jnp.ones((20000, 1), jnp.float32), {k: jnp.asarray(v) for k, v in b.items()})
    out = losses.normalize(jax.device_get(sums))
    assert out["mse"] == pytest.approx(1 / 6, abs=0.005)
    assert out["baseline_mse"] == pytest.approx(out["mse"], rel=1e-6)


def test_task_registry_errors_list_the_valid_tasks():
    c = adding_config()
    c.task = "adding_problem"
    with pytest.raises(ValueError, match=r"task='adding_problem' is not valid; choose one of \['adding'"):
        make_task(c)
    c.task = "adding"
    c.data.seq_len = 0
    with pytest.raises(ConfigError, match="data.seq_len must be a positive integer, got 0"):
        make_task(c)
    assert "adding" in TASKS


@pytest.mark.parametrize("error", [TypeError, ValueError])
def test_a_bug_inside_a_model_surfaces_as_itself_with_its_traceback(monkeypatch, error):
    """Only intended checks are one-line ConfigErrors; a TypeError or ValueError from a bug is not
    turned into one (it would hide where the bug is)."""

    @dataclasses.dataclass(frozen=True)
    class Broken(AddingTask):
        def build_model(self, config, rngs):
            raise error("a bug deep inside the model")

    monkeypatch.setitem(TASKS, "broken", lambda c: Broken(seq_len=c.data.seq_len))
    c = adding_config()
    c.task = "broken"
    with pytest.raises(error, match="a bug deep inside the model") as info:
        make_experiment(c)
    assert type(info.value) is error and info.traceback[-1].name == "build_model"


@pytest.mark.parametrize("options, message", [
    ({"peeholes": True}, r"^model\.cell_options\.peeholes is not an option of the 'lstm' cell; choose from \['bias', "
                         r"'cifg', .*'peephole', 'proj_size'\]$"),
    ({"cifg": True, "input_gate": False}, r"^LSTM\.cifg=True couples the input gate to the forget gate: it needs "
                                          r"input_gate and forget_gate$"),
])
def test_bad_cell_options_are_one_line_config_errors(options, message):
    c = adding_config()
    c.model.cell_options = options
    with pytest.raises(ConfigError) as info:
        make_experiment(c)
    assert re.fullmatch(message, str(info.value))  # str(): what the CLI prints (pytest's match adds JAX's note)


@pytest.mark.parametrize("vocab", [None, 7])
def test_sequence_model_steps_give_the_outputs_of_the_whole_sequence(vocab):
    """prefill(prompt) then step(x_t, carry) for the rest: the outputs __call__ gives at every step."""
    model = SequenceModel(cell="gru", input_size=3, hidden_size=5, output_size=4, readout="all", rngs=nnx.Rngs(0),
                          vocab_size=vocab, num_layers=2)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, 7, (2, 6)) if vocab else rng.normal(size=(2, 6, 3)).astype(np.float32))
    want = model(x)
    got, carry = model.prefill(x[:, :2])
    outputs = [got]
    for t in range(2, 6):
        got, carry = model.step(x[:, t], carry)
        outputs.append(got)
    np.testing.assert_allclose(np.stack(outputs, 1), want[:, 1:], rtol=1e-5, atol=1e-6)
    both = SequenceModel(cell="gru", input_size=3, hidden_size=5, output_size=4, readout="all", rngs=nnx.Rngs(0),
                         bidirectional=True)
    with pytest.raises(ValueError, match="unidirectional"):
        both.prefill(jnp.zeros((1, 2, 3)))


# --- losses ---------------------------------------------------------------------------------

def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_regression_metrics_respect_the_mask():
    p = jnp.asarray([[1.0, 2.0], [3.0, 5.0]], jnp.float32)
    t = jnp.asarray([[0.0, 2.0], [3.0, 1.0]], jnp.float32)
    mask = jnp.asarray([[1, 1], [1, 0]], jnp.int32)
    loss, sums = losses.regression_metrics(p, t, mask)
    assert float(loss) == pytest.approx(1 / 3)
    out = losses.normalize(jax.device_get(sums))
    assert out["mse"] == pytest.approx(1 / 3) and out["mae"] == pytest.approx(1 / 3)


def test_classification_metrics_match_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 6)
    loss, sums = losses.classification_metrics(jnp.asarray(logits), jnp.asarray(labels))
    want = -_log_softmax(logits.astype(np.float64))[np.arange(6), labels].mean()
    assert float(loss) == pytest.approx(want, rel=1e-5)
    acc = losses.normalize(jax.device_get(sums))["accuracy"]
    assert acc == pytest.approx((logits.argmax(-1) == labels).mean())


def test_language_model_metrics_give_perplexity_and_bits_per_char():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 5, 7)).astype(np.float32)
    targets = rng.integers(0, 7, (2, 5))
    mask = np.ones((2, 5), np.int32)
    mask[1, 3:] = 0
    _, sums = losses.language_model_metrics(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask))
    out = losses.normalize(jax.device_get(sums))
    nll = -np.take_along_axis(_log_softmax(logits.astype(np.float64)), targets[..., None], -1)[..., 0]
    want = (nll * mask).sum() / mask.sum()
    assert out["nll"] == pytest.approx(want, rel=1e-5)
    assert out["perplexity"] == pytest.approx(math.exp(want), rel=1e-5)
    assert out["bits_per_char"] == pytest.approx(want / math.log(2), rel=1e-5)


def test_seq2seq_sequence_accuracy_ignores_padding():
    targets = jnp.asarray([[1, 2, 0], [2, 2, 1]], jnp.int32)
    mask = jnp.asarray([[1, 1, 0], [1, 1, 1]], jnp.int32)
    logits = jax.nn.one_hot(jnp.asarray([[1, 2, 2], [2, 1, 1]]), 3, dtype=jnp.float32) * 10.0
    _, sums = losses.seq2seq_metrics(logits, targets, mask)
    out = losses.normalize(jax.device_get(sums))
    assert out["sequence_accuracy"] == pytest.approx(0.5)  # the padded mistake does not count
    assert out["accuracy"] == pytest.approx(4 / 5)


def test_seq2seq_padding_rows_are_neither_correct_nor_counted():
    """[right, wrong, padding]: 1 of 2 sequences right (0.5), not 2 of 3 (a padding row has no
    wrong token); the G2P eval pads 3,720 words to 4,096 with such rows."""
    targets = jnp.asarray([[1, 2, 3], [1, 2, 3], [1, 2, 3]], jnp.int32)
    mask = jnp.asarray([[1, 1, 1], [1, 1, 1], [0, 0, 0]], jnp.float32)
    logits = jax.nn.one_hot(jnp.asarray([[1, 2, 3], [1, 3, 3], [0, 0, 0]]), 4, dtype=jnp.float32) * 10.0
    _, sums = losses.seq2seq_metrics(logits, targets, mask)
    np.testing.assert_array_equal(sums["sequence_accuracy"], [1.0, 2.0])
    out = losses.normalize(jax.device_get(sums))
    assert out["sequence_accuracy"] == pytest.approx(0.5)
    assert out["accuracy"] == pytest.approx(5 / 6)


def test_g2p_eval_padding_rows_enter_no_word_accuracy():
    """The G2P eval's last batch: real words, then rows repeating word 0 with mask 0 (eval_indices)."""
    from gatedrnn.tasks.data import eval_indices
    from gatedrnn.tasks.g2p import make_batch

    words, prons = ["ab", "cab", "b", "ba"], [["AA", "B"], ["B", "AA", "B"], ["B"], ["B", "AA"]]
    rows, row_mask = eval_indices(1, 3, 4)  # rows 3, 4, 5 of 4 words: [3, 0, 0], mask [1, 0, 0]
    batch = make_batch([words[i] for i in rows], [prons[i] for i in rows], {"AA": 3, "B": 4}, row_mask=row_mask)
    guess = batch["tgt_out"].copy()
    guess[0, 0] = 3  # word 3 ("ba": B AA) wrong; the padding rows (copies of word 0) predicted right
    logits = jax.nn.one_hot(jnp.asarray(guess), 5, dtype=jnp.float32) * 10.0
    _, sums = losses.seq2seq_metrics(logits, jnp.asarray(batch["tgt_out"]), jnp.asarray(batch["mask"]))
    np.testing.assert_array_equal(sums["sequence_accuracy"], [0.0, 1.0])


def test_seq2seq_metrics_all_padding_and_garbage_in_padding():
    rng = np.random.default_rng(4)
    logits = jnp.asarray(rng.normal(size=(3, 4, 5)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 5, (3, 4)), jnp.int32)
    loss, sums = losses.seq2seq_metrics(logits, targets, jnp.zeros((3, 4), jnp.float32))
    assert float(loss) == 0.0
    for name, value in sums.items():
        np.testing.assert_array_equal(value, [0.0, 0.0], err_msg=name)  # count 0, no NaN
    mask = losses.sequence_mask(jnp.asarray([4, 2, 0]), 3, 4)
    garbage_ids = jnp.where(mask, targets, jnp.asarray([[-7, 99, 5, 1 << 20]], jnp.int32))
    garbage_logits = jnp.where(mask[:, :, None], logits, jnp.nan)
    want_loss, want = losses.seq2seq_metrics(logits, targets, mask)
    got_loss, got = losses.seq2seq_metrics(garbage_logits, garbage_ids, mask)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)
    assert np.asarray(got["sequence_accuracy"])[1] == 2.0
    grad = jax.grad(lambda x: losses.seq2seq_metrics(x, garbage_ids, mask)[0])(garbage_logits)
    assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad)[~np.asarray(mask)] == 0.0)


def test_masked_metrics_ignore_whatever_fills_the_padding():
    """Padding holding ids outside the classes, or NaN targets, never enters a sum or a count."""
    rng = np.random.default_rng(5)
    row_mask = jnp.asarray([1, 1, 0], jnp.float32)
    logits = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
    labels = jnp.asarray([2, 0, 1], jnp.int32)
    _, want = losses.classification_metrics(logits[:2], labels[:2])
    _, got = losses.classification_metrics(logits, labels.at[2].set(99), row_mask)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)
    seq_logits = jnp.asarray(rng.normal(size=(2, 3, 4)), jnp.float32)
    seq_targets = jnp.asarray([[1, 2, 3], [0, 1, 2]], jnp.int32)
    mask = jnp.asarray([[1, 1, 1], [1, 0, 0]], jnp.float32)
    _, want = losses.language_model_metrics(seq_logits, seq_targets, mask)
    _, got = losses.language_model_metrics(seq_logits, seq_targets.at[1, 1:].set(99), mask)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)
    preds = jnp.asarray([[1.0, 2.0], [3.0, 5.0]], jnp.float32)
    targets = jnp.asarray([[0.0, 2.0], [3.0, jnp.nan]], jnp.float32)
    valid = jnp.asarray([[1, 1], [1, 0]], jnp.int32)
    loss, sums = losses.regression_metrics(preds, targets, valid)
    assert float(loss) == pytest.approx(1 / 3)
    np.testing.assert_allclose(sums["mae"], [1.0, 3.0])
    grad = jax.grad(lambda p: losses.regression_metrics(p, targets, valid)[0])(preds)
    np.testing.assert_allclose(grad, [[2 / 3, 0.0], [0.0, 0.0]], atol=1e-7)  # d/dp of sum((p - t)^2) / 3
    frames = jnp.asarray(rng.normal(size=(1, 3, 2)), jnp.float32)
    notes = jnp.asarray([[[1.0, 0.0], [0.0, 1.0], [jnp.nan, jnp.nan]]], jnp.float32)
    frame_mask = jnp.asarray([[1, 1, 0]], jnp.float32)
    _, want = losses.bernoulli_nll_metrics(frames[:, :2], notes[:, :2], frame_mask[:, :2])
    _, got = losses.bernoulli_nll_metrics(frames, notes, frame_mask)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)


@pytest.mark.torch
def test_ctc_metrics_match_pytorch():
    torch = torch_or_skip()
    rng = np.random.default_rng(2)
    b, t, v, l = 3, 12, 5, 4
    logits = rng.normal(size=(b, t, v)).astype(np.float32)
    labels = rng.integers(1, v, (b, l))
    in_len, lab_len = np.array([12, 10, 7]), np.array([4, 3, 2])
    loss, sums = losses.ctc_metrics(jnp.asarray(logits), jnp.asarray(in_len), jnp.asarray(labels), jnp.asarray(lab_len))
    log_probs = torch.log_softmax(torch.tensor(logits), -1).transpose(0, 1)
    want = torch.nn.functional.ctc_loss(log_probs, torch.tensor(labels), torch.tensor(in_len), torch.tensor(lab_len),
                                        blank=0, reduction="sum").item()
    out = losses.normalize(jax.device_get(sums))
    assert out["ctc_per_sequence"] == pytest.approx(want / b, rel=1e-4)
    assert float(loss) == pytest.approx(want / lab_len.sum(), rel=1e-4)


@pytest.mark.slow
def test_ctc_metrics_padding_rows_and_padded_frames_count_nowhere():
    """Two real rows, then a padding row (no frames) with garbage labels: the sums are those of the
    two rows alone; NaN in padded frames changes neither the loss nor its (finite) gradient."""
    rng = np.random.default_rng(3)
    logits = jnp.asarray(rng.normal(size=(3, 6, 4)), jnp.float32)
    labels = jnp.asarray([[1, 2, 9], [3, 9, 9], [-5, 77, 2]], jnp.int32)
    in_len, lab_len = jnp.asarray([6, 4, 0]), jnp.asarray([2, 1, 3])
    _, sums = losses.ctc_metrics(logits, in_len, labels, lab_len)
    _, alone = losses.ctc_metrics(logits[:2], in_len[:2], labels[:2], lab_len[:2])
    for name in ("loss", "ctc_per_sequence"):
        np.testing.assert_allclose(sums[name], alone[name], rtol=1e-6)
    assert np.asarray(sums["ctc_per_sequence"])[1] == 2.0 and np.asarray(sums["loss"])[1] == 3.0
    poisoned = jnp.where(losses.sequence_mask(in_len, 3, 6)[:, :, None], logits, jnp.nan)

    def loss_of(x):
        return losses.ctc_metrics(x, in_len, labels, lab_len)[0]

    np.testing.assert_allclose(loss_of(poisoned), loss_of(logits), rtol=1e-6)
    grad = np.asarray(jax.grad(loss_of)(poisoned))
    np.testing.assert_allclose(grad, np.asarray(jax.grad(loss_of)(logits)), rtol=1e-5, atol=1e-7)
    assert np.all(grad[2] == 0.0) and np.all(grad[1, 4:] == 0.0)


def test_sequence_mask_is_one_helper():
    from gatedrnn.nn import attention, encoder

    lengths = np.array([3, 0, 5, 7])
    want = np.arange(5)[None, :] < lengths[:, None]
    np.testing.assert_array_equal(losses.sequence_mask(jnp.asarray(lengths), 4, 5), want)
    assert losses.sequence_mask(None, 2, 3).tolist() == [[True] * 3] * 2
    assert encoder.sequence_mask is losses.sequence_mask and attention.lengths_to_mask is losses.sequence_mask


# --- optimizers and schedules ----------------------------------------------------------------

def test_warmup_then_cosine_schedule():
    c = adding_config()
    c.train.learning_rate, c.train.num_steps, c.optim.warmup_steps = 0.1, 110, 10
    c.optim.schedule, c.optim.end_learning_rate_factor = "cosine", 0.0
    s = optim.make_schedule(c)
    assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(0.05) and float(s(10)) == pytest.approx(0.1)
    assert float(s(60)) == pytest.approx(0.05, rel=1e-5) and float(s(110)) == pytest.approx(0.0, abs=1e-7)
    c.optim.schedule, c.optim.end_learning_rate_factor = "linear", 0.5
    s = optim.make_schedule(c)
    assert float(s(60)) == pytest.approx(0.075, rel=1e-5) and float(s(110)) == pytest.approx(0.05, rel=1e-5)


@pytest.mark.parametrize("name", ["adamw", "sgd", "rmsprop"])
def test_every_optimizer_descends_and_clips(name):
    c = adding_config()
    c.optim.name, c.optim.schedule, c.train.learning_rate, c.optim.grad_clip_norm = name, "constant", 0.01, 1.0
    c.optim.weight_decay = 0.01
    tx = optim.make_optimizer(c)
    params = {"w": jnp.full((3,), 100.0, jnp.float32)}
    state = tx.init(params)
    grads = jax.grad(lambda p: jnp.sum(jnp.square(p["w"])))(params)  # norm ~346, clipped to 1
    updates, state = tx.update(grads, state, params)
    if name == "sgd":  # lr * (clipped gradient + weight decay): far below lr * 346
        assert float(optax.tree.norm(updates)) < 0.05
    new = optax.apply_updates(params, updates)
    assert float(jnp.sum(jnp.square(new["w"]))) < float(jnp.sum(jnp.square(params["w"])))


# --- config validation -------------------------------------------------------------------------

@pytest.mark.parametrize(
    "field, value, message",
    [
        ("model.cell", "lstmm", r"model.cell='lstmm' is not valid; choose one of \['gru', 'lru', 'lstm'"),
        ("task", "copy", r"task='copy' is not valid; choose one of \['adding', 'anomaly_detection', 'char_lm'"),
        ("model.hidden_size", 0, "model.hidden_size must be a positive integer, got 0"),
        ("train.batch_size", -4, "train.batch_size must be a positive integer, got -4"),
        ("train.learning_rate", 0.0, "train.learning_rate must be a positive number, got 0.0"),
        ("optim.name", "adam", r"optim.name='adam' is not valid; choose one of \['adamw', 'rmsprop', 'sgd'\]"),
        ("model.scan.dtype", "float16", r"model.scan.dtype='float16' is not valid; choose one of \['bfloat16', 'float32'\]"),
        ("model.scan.vjp", "fast", r"^model.scan.vjp='fast' is not valid; choose one of \['autodiff', 'fused', 'replay'\]$"),
        ("model.scan.mode", "fast", r"^model.scan.mode='fast' is not valid; choose one of \['auto', 'chunkwise', 'parallel', 'sequential'\]$"),
        ("model.scan.remat", -2, r"^model.scan.remat must be False, True, 'sqrt' or a positive chunk length, got -2$"),
        ("model.scan.unroll", 0, r"^model.scan.unroll must be a positive integer or True \(unroll fully\), got 0$"),
    ],
)
def test_validate_names_the_field_and_the_valid_values(field, value, message):
    c = adding_config()
    group, _, name = field.rpartition(".")
    (c[group] if group else c)[name] = value
    with pytest.raises(ConfigError, match=message):
        validate(c, cells=CELLS, tasks=TASKS)


def test_resume_compatibility_names_the_field(tmp_path):
    c = adding_config()
    (tmp_path / "config.json").write_text(to_json(c))
    c.train.num_steps = 5000  # may change on resume
    c.log.every_steps = 7
    check_resume_compatible(c, str(tmp_path / "config.json"))
    c.model.hidden_size = 128
    with pytest.raises(ConfigError, match=r"model.hidden_size=128 does not match the checkpoints in .*written with model.hidden_size=64"):
        check_resume_compatible(c, str(tmp_path / "config.json"))
    assert json.loads((tmp_path / "config.json").read_text())["model"]["hidden_size"] == 64


def test_a_run_saved_before_a_field_existed_resumes_while_the_field_keeps_the_old_behaviour(tmp_path):
    c = adding_config()
    saved = json.loads(to_json(c))
    del saved["model"]["block"], saved["model"]["scan"]["parallel_chunk"]  # fields added by issue 13
    (tmp_path / "config.json").write_text(json.dumps(saved))
    check_resume_compatible(c, str(tmp_path / "config.json"))  # None: as before
    c.model.scan.parallel_chunk = 64
    with pytest.raises(ConfigError, match=r"model.scan.parallel_chunk=64 does not match .*written with "
                                          r"model.scan.parallel_chunk='<absent>'"):
        check_resume_compatible(c, str(tmp_path / "config.json"))


def test_block_auto_puts_the_lru_in_its_block_and_leaves_other_cells_plain():
    from gatedrnn.nn.blocks import LRUBlock
    from gatedrnn.nn.layers import RNN

    assert default_config().model.block == "auto"
    kw = dict(input_size=2, hidden_size=8, output_size=1, readout="last", rngs=nnx.Rngs(0))
    assert isinstance(SequenceModel(cell="lru", block="auto", **kw).rnn.layers[0], LRUBlock)
    for cell in ("lru", "gru", "mingru"):
        plain = SequenceModel(cell=cell, block=None, **kw).rnn.layers[0]
        assert isinstance(plain, RNN) and type(plain.cell).__name__ == type(CELLS[cell](2, 8)).__name__
    assert isinstance(SequenceModel(cell="mingru", block="auto", **kw).rnn.layers[0], RNN)


# --- checkpoints ------------------------------------------------------------------------------

def test_checkpointer_keeps_the_newest_and_the_best(tmp_path):
    from gatedrnn.train.checkpoint import Checkpointer

    ckpt = Checkpointer(str(tmp_path / "checkpoints"), keep=2, keep_best=1)
    for step, eval_loss in [(1, 0.5), (2, 0.1), (3, 0.4), (4, 0.3), (5, 0.6)]:
        ckpt.save(step, {"w": jnp.full((2,), float(step), jnp.float32)}, metrics={"eval_loss": eval_loss})
    ckpt.wait()
    assert ckpt.all_steps() == [2, 4, 5]  # the newest two and the best
    abstract = {"w": jax.ShapeDtypeStruct((2,), jnp.float32)}
    step, state = ckpt.restore_newest(abstract, report=pytest.fail)
    assert step == 5 and np.asarray(state["w"]).tolist() == [5.0, 5.0]
    ckpt.close()


def test_a_g2p_run_saved_before_attention_bias_resumes_with_the_old_attention(tmp_path):
    """model.attention_bias (multihead's q/k/v biases, added with issue 14): False, the g2p default, is what
    a run saved without the field had; True changes the params and is refused on such a run."""
    import os
    import runpy

    from paths import REPO

    c = runpy.run_path(os.path.join(REPO, "configs", "g2p_cmudict.py"))["get_config"]("smoke")
    assert c.model.attention_bias is False
    saved = json.loads(to_json(c))
    del saved["model"]["attention_bias"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    check_resume_compatible(c, str(tmp_path / "config.json"))
    c.model.attention_bias = True
    with pytest.raises(ConfigError, match=r"model.attention_bias=True does not match .*written with "
                                          r"model.attention_bias='<absent>'"):
        check_resume_compatible(c, str(tmp_path / "config.json"))
