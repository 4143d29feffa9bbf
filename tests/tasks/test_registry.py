"""The task protocol and the registry: the optional members' defaults, and causal tasks refusing a
bidirectional model (its backward direction would read the targets)."""

import dataclasses
import glob
import os
import runpy

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gatedrnn.tasks import TASKS, Task, make_task
from gatedrnn.tasks.data import MissingPackageError
from gatedrnn.tasks.synthetic import AddingTask
from gatedrnn.train.config import ConfigError
from gatedrnn.train.loop import make_experiment

from paths import REPO

CAUSAL = {"char_lm", "chorales"}  # the targets are later inputs: the next character, the next frame


def config_paths() -> dict[str, str]:
    """task name -> the first configs/*.py that trains it."""
    out = {}
    for path in sorted(glob.glob(os.path.join(REPO, "configs", "*.py"))):
        if os.path.basename(path) != "common.py":
            out.setdefault(runpy.run_path(path)["get_config"]().task, path)
    return out


CONFIGS = config_paths()


def smoke_config(name):
    return runpy.run_path(CONFIGS[name])["get_config"]("smoke")


def test_every_registered_task_has_a_config():
    assert set(CONFIGS) == set(TASKS)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_causal_tasks_refuse_a_bidirectional_model_and_the_others_accept_it(name):
    config = smoke_config(name)
    config.model.bidirectional = True
    if name in CAUSAL:
        with pytest.raises(ConfigError, match=rf"^model\.bidirectional=True is not valid for the causal task '{name}' "
                                              r"\(its targets are later inputs\); use model\.bidirectional=False$"):
            make_task(config)
        config.model.bidirectional = False
    try:
        task = make_task(config)
    except MissingPackageError as e:
        pytest.skip(f"DATA-MISSING: {e}")
    assert Task in type(task).__mro__ and task.causal == (name in CAUSAL)  # every task inherits the defaults


def test_a_non_causal_task_builds_a_bidirectional_model():
    config = smoke_config("adding")
    config.model.bidirectional = True
    head = make_experiment(config).abstract_params["head"]["kernel"]
    assert head.shape == (2 * config.model.hidden_size, 1)  # both directions feed the readout


@dataclasses.dataclass(frozen=True)
class Minimal(Task):
    """The required members only."""

    input_size = 3
    output_size = 2
    readout = "all"
    vocab_size = None

    def train_batch(self, seed, step, batch_size):
        return {"inputs": np.full((batch_size, 4, 3), float(step), np.float32)}

    def eval_batch(self, seed, index, batch_size):
        return self.train_batch(seed, index, batch_size)

    def metrics(self, outputs, batch):
        return jnp.mean(outputs), {}


def test_the_optional_members_default_to_the_sequence_model_and_no_report(tmp_path):
    task = Minimal()
    assert task.causal is False and task.build_model(None, nnx.Rngs(0)) is None
    assert task.final_report(None, 0, str(tmp_path)) == ("", {}) and os.listdir(tmp_path) == []
    calls = []

    def model(inputs, seq_lengths):
        calls.append((inputs, seq_lengths))
        return inputs * 2

    batch = {"inputs": jnp.ones((1, 4, 3)), "seq_lengths": jnp.asarray([2])}
    np.testing.assert_array_equal(task.apply(model, batch, True), 2 * np.ones((1, 4, 3)))
    assert calls[0][1] is batch["seq_lengths"]
    assert task.apply(model, {"inputs": batch["inputs"]}, False) is not None and calls[1][1] is None


def test_a_task_without_a_required_method_cannot_be_built():
    @dataclasses.dataclass(frozen=True)
    class NoMetrics(Task):
        input_size, output_size, readout, vocab_size = 1, 1, "last", None

        def train_batch(self, seed, step, batch_size):
            return {}

        def eval_batch(self, seed, index, batch_size):
            return {}

    with pytest.raises(TypeError, match="abstract method.*metrics"):
        NoMetrics()


def test_the_adding_task_keeps_its_old_import_path():
    from gatedrnn.tasks.registry import AddingTask as old

    assert old is AddingTask and TASKS["adding"].__self__ is AddingTask
