"""Copy memory and parity: the papers' layouts, (seed, step) determinism and exact baselines."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gatedrnn import losses
from gatedrnn.tasks.registry import TASKS, make_task
from gatedrnn.tasks.synthetic import CopyMemoryTask, ParityTask
from gatedrnn.train.config import ConfigError, default_config
from gatedrnn.train.loop import make_experiment

NEG = -1e4  # a logit whose softmax weight underflows to exactly 0 in float32


def normalized(task, outputs, batch):
    _, sums = task.metrics(jnp.asarray(outputs), {k: jnp.asarray(v) for k, v in batch.items()})
    return losses.normalize(jax.device_get(sums))


@pytest.mark.parametrize("t", [1, 10, 100])
def test_copy_memory_batches_follow_arjovsky_et_al(t):
    task = CopyMemoryTask(seq_len=t)
    b = task.train_batch(seed=0, step=3, batch_size=64)
    x, y = b["inputs"], b["targets"]
    assert x.shape == y.shape == (64, t + 20) and x.dtype == y.dtype == np.int32
    assert ((x[:, :10] >= 1) & (x[:, :10] <= 8)).all()
    np.testing.assert_array_equal(x[:, 10:t + 9], 0)
    np.testing.assert_array_equal(x[:, t + 9], 9)  # the delimiter
    np.testing.assert_array_equal(x[:, t + 10:], 0)
    np.testing.assert_array_equal(y[:, :t + 10], 0)
    np.testing.assert_array_equal(y[:, t + 10:], x[:, :10])
    assert len(np.unique(x[:, :10])) == 8


@pytest.mark.parametrize("t", [10, 100, 500])
def test_copy_memory_baseline_is_the_memoryless_cross_entropy(t):
    """The best memoryless predictor (blank for T + 10 steps, uniform over the 8 symbols for
    the last 10) scores exactly 10 log 8 / (T + 20), and the task reports that number."""
    task = CopyMemoryTask(seq_len=t)
    batch = task.eval_batch(seed=1, index=0, batch_size=32)
    logits = np.full((32, t + 20, 10), NEG, np.float32)
    logits[:, :t + 10, 0] = 0.0  # certain of blank while nothing is recalled
    logits[:, t + 10:, 1:9] = 0.0  # uniform over the symbols afterwards
    out = normalized(task, logits, batch)
    assert task.baseline == pytest.approx(10 * math.log(8) / (t + 20), rel=1e-12)
    assert out["loss"] == pytest.approx(task.baseline, rel=1e-5)
    assert out["baseline_loss"] == pytest.approx(task.baseline, rel=1e-6)
    assert out["copy_accuracy"] <= 0.25  # argmax among ties is symbol 1: right 1/8 of the time
    perfect = np.where(np.eye(10, dtype=bool)[batch["targets"]], 0.0, NEG).astype(np.float32)
    best = normalized(task, perfect, batch)
    assert best["loss"] == pytest.approx(0.0, abs=1e-6) and best["copy_accuracy"] == 1.0


def test_synthetic_data_is_a_function_of_seed_and_step():
    for task in (CopyMemoryTask(seq_len=20), ParityTask(seq_len=20)):
        a = task.train_batch(0, 5, 8)
        np.testing.assert_array_equal(a["inputs"], task.train_batch(0, 5, 8)["inputs"])
        assert not np.array_equal(a["inputs"], task.train_batch(0, 6, 8)["inputs"])
        assert not np.array_equal(a["inputs"], task.train_batch(1, 5, 8)["inputs"])
        assert not np.array_equal(a["inputs"], task.eval_batch(0, 5, 8)["inputs"])  # held out


def test_parity_targets_are_running_xor_and_lengths_generalise():
    task = ParityTask(seq_len=12, eval_seq_len=40)
    b = task.train_batch(2, 0, 16)
    x, y = b["inputs"], b["targets"]
    assert x.shape == y.shape == (16, 12) and task.readout == "all"
    expect = np.zeros(16, np.int32)
    for i in range(12):
        expect ^= x[:, i]
        np.testing.assert_array_equal(y[:, i], expect)
    assert task.eval_batch(2, 0, 4)["inputs"].shape == (4, 40)
    last = ParityTask(seq_len=12, labels="last")
    b = last.train_batch(2, 0, 16)
    assert last.readout == "last" and b["targets"].shape == (16,)
    np.testing.assert_array_equal(b["targets"], x.sum(1) % 2)  # same bits: same stream


def test_parity_chance_is_ln2():
    task = ParityTask(seq_len=30)
    out = normalized(task, np.zeros((64, 30, 2), np.float32), task.eval_batch(0, 0, 64))
    assert out["loss"] == pytest.approx(math.log(2), rel=1e-4)  # float32 sums
    assert out["baseline_loss"] == pytest.approx(math.log(2), rel=1e-6)
    assert "bits_per_char" not in out


def test_bad_synthetic_configs_are_one_line_errors():
    c = default_config()
    c.task = "parity"
    c.data.seq_len = 10
    c.data.labels = "first"
    with pytest.raises(ConfigError, match=r"data.labels='first' is not valid"):
        make_experiment(c)
    c = default_config()
    c.task = "copy_memory"
    c.data.seq_len = 0
    with pytest.raises(ConfigError, match="data.seq_len must be a positive integer"):
        make_experiment(c)
    assert {"copy_memory", "parity"} <= set(TASKS)
    c.data.seq_len = 5
    assert isinstance(make_task(c), CopyMemoryTask)
