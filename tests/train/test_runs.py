"""gatedrnn.train.runs: a run's config, its recorded config file, and its params as a model (the trained
case, against the run's own logged eval loss, is tests/lab/test_studies.py::test_load_params_gives_the_trained_model)."""

import json
import os
import runpy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gatedrnn.train.loop import init_state, make_experiment
from gatedrnn.train.runs import CONFIG_FILE, load_run, read_config, read_config_file, record_config_file

from paths import REPO


def _smoke():
    return runpy.run_path(os.path.join(REPO, "configs", "adding.py"))["get_config"]("smoke")


def test_the_initial_run_is_the_loops_initial_state_as_an_eval_model():
    config = _smoke()
    run = load_run(config=config)
    assert run.step == 0 and run.workdir is None and run.config is config
    expected = init_state(make_experiment(config)).params
    jax.tree.map(np.testing.assert_array_equal, run.params, expected)
    xs = jax.random.normal(jax.random.key(0), (3, config.data.seq_len, run.task.input_size))
    model = run.model()
    ys = model(xs)
    assert ys.shape == (3, run.task.output_size)
    assert np.all(np.asarray(ys) != 0)
    zero = jax.tree.map(jnp.zeros_like, run.params)  # given params: all-zero weights and biases output 0
    np.testing.assert_array_equal(run.model(zero)(xs), np.zeros(ys.shape))


def test_a_workdir_without_config_or_checkpoint_is_a_one_line_error_and_stays_as_it_was(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        read_config(str(tmp_path))
    with pytest.raises(ValueError, match="needs a workdir or a config"):
        load_run()
    with open(tmp_path / "config.json", "w") as f:
        json.dump(_smoke().to_dict(), f)
    assert read_config(str(tmp_path)).to_dict() == _smoke().to_dict()
    with pytest.raises(FileNotFoundError, match="no checkpoint in .*checkpoints: train the run first"):
        load_run(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["config.json"]  # no checkpoints/ made by looking


def test_the_config_file_round_trips(tmp_path):
    assert read_config_file(str(tmp_path)) is None
    record_config_file(str(tmp_path / "w"), "configs/mnist_pixel.py:smoke")
    assert read_config_file(str(tmp_path / "w")) == "configs/mnist_pixel.py:smoke"
    assert (tmp_path / "w" / CONFIG_FILE).read_text() == "configs/mnist_pixel.py:smoke\n"
