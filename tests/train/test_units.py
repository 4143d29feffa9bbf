"""Unit tests of the training library: data, losses, optimizers, config validation."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gatedrnn import losses
from gatedrnn.cells import CELLS
from gatedrnn.tasks.registry import TASKS, AddingTask, make_task
from gatedrnn.train import optim
from gatedrnn.train.config import ConfigError, check_resume_compatible, default_config, to_json, validate

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


@pytest.mark.torch
def test_ctc_metrics_match_pytorch():
    torch = torch_or_skip()
    rng = np.random.default_rng(2)
    b, t, v, l = 3, 12, 5, 4
    logits = rng.normal(size=(b, t, v)).astype(np.float32)
    labels = rng.integers(1, v, (b, l))
    in_len, lab_len = np.array([12, 10, 7]), np.array([4, 3, 2])
    logit_pad = (np.arange(t)[None, :] >= in_len[:, None]).astype(np.float32)
    label_pad = (np.arange(l)[None, :] >= lab_len[:, None]).astype(np.float32)
    loss, sums = losses.ctc_metrics(jnp.asarray(logits), jnp.asarray(logit_pad), jnp.asarray(labels), jnp.asarray(label_pad))
    log_probs = torch.log_softmax(torch.tensor(logits), -1).transpose(0, 1)
    want = torch.nn.functional.ctc_loss(log_probs, torch.tensor(labels), torch.tensor(in_len), torch.tensor(lab_len),
                                        blank=0, reduction="sum").item()
    out = losses.normalize(jax.device_get(sums))
    assert out["ctc_per_sequence"] == pytest.approx(want / b, rel=1e-4)
    assert float(loss) == pytest.approx(want / lab_len.sum(), rel=1e-4)


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
        ("model.cell", "lstmm", r"model.cell='lstmm' is not valid; choose one of \['gru', 'lstm'"),
        ("task", "copy", r"task='copy' is not valid; choose one of \['adding', 'anomaly_detection', 'char_lm'"),
        ("model.hidden_size", 0, "model.hidden_size must be a positive integer, got 0"),
        ("train.batch_size", -4, "train.batch_size must be a positive integer, got -4"),
        ("train.learning_rate", 0.0, "train.learning_rate must be a positive number, got 0.0"),
        ("optim.name", "adam", r"optim.name='adam' is not valid; choose one of \['adamw', 'rmsprop', 'sgd'\]"),
        ("model.dtype", "float16", r"model.dtype='float16' is not valid; choose one of \['bfloat16', 'float32'\]"),
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
