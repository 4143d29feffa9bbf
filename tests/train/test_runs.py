"""gatedrnn.train.runs: a run's config, its recorded config file, and its params as a model (the trained
case, against the run's own logged eval loss, is tests/lab/test_studies.py::test_load_params_gives_the_trained_model)."""

import json
import os
import runpy
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gatedrnn.cells import CELLS
from gatedrnn.tasks.registry import TASKS
from gatedrnn.train import provenance
from gatedrnn.train.config import validate
from gatedrnn.train.loop import init_state, make_experiment
from gatedrnn.train.optim import make_schedule, warmup_steps, warmup_warning
from gatedrnn.train.provenance import git_revision
from gatedrnn.train.runs import (CONFIG_FILE, load_run, read_config, read_config_file, read_provenance,
                                 record_config_file)

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


# ------------------------------------------------------------------------------ provenance


def test_git_revision_is_heads_commit_and_none_without_a_checkout_or_git(tmp_path, monkeypatch):
    head = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True)
    revision, dirty = git_revision()
    if head.returncode != 0:
        assert (revision, dirty) == (None, None)
    else:
        assert revision == head.stdout.strip() and isinstance(dirty, bool)
    assert git_revision(str(tmp_path)) == (None, None)  # not a checkout
    monkeypatch.setenv("PATH", str(tmp_path))  # no git at all
    assert git_revision() == (None, None)


def test_provenance_is_recorded_at_the_start_and_old_workdirs_read_as_unknown(tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    assert read_provenance(workdir) == {"config_file": None, "git_revision": None, "git_dirty": None}
    record_config_file(workdir, "configs/adding.py")  # a workdir from before run.json
    assert read_provenance(workdir) == {"config_file": "configs/adding.py", "git_revision": None, "git_dirty": None}
    monkeypatch.setattr(provenance, "git_revision", lambda: ("abc123", True))
    provenance.record_start(workdir, 0, "configs/adding.py:smoke")
    assert read_provenance(workdir) == {"config_file": "configs/adding.py:smoke", "git_revision": "abc123",
                                        "git_dirty": True}
    assert read_config_file(workdir) == "configs/adding.py:smoke" and provenance.finished_step(workdir) is None
    monkeypatch.setattr(provenance, "git_revision", lambda: (None, None))
    provenance.record_start(workdir, 20, None)  # resumed from Python, without git: the config file stays
    provenance.record_finished(workdir, 40)
    assert read_provenance(workdir) == {"config_file": "configs/adding.py:smoke", "git_revision": None,
                                        "git_dirty": None}
    with open(os.path.join(workdir, "run.json")) as f:
        record = json.load(f)
    assert [s["step"] for s in record["starts"]] == [0, 20] and record["finished_step"] == 40
    assert provenance.finished_step(workdir) == 40


# ------------------------------------------------------------------------------ warmup


def test_a_warmup_as_long_as_the_run_is_clamped_with_a_warning():
    config = _smoke()
    config.train.num_steps, config.optim.warmup_steps, config.optim.schedule = 3, 50, "constant"
    validate(config, cells=CELLS, tasks=TASKS)  # no error
    lr = config.train.learning_rate
    schedule = make_schedule(config)
    np.testing.assert_allclose([float(schedule(s)) for s in range(3)], [0.0, lr / 2, lr], rtol=1e-6)
    assert warmup_warning(config) == ("warning: optim.warmup_steps=50 is not shorter than train.num_steps=3; "
                                      "warming up over 2 steps instead")
    config.optim.warmup_steps = 2
    assert warmup_warning(config) is None and warmup_steps(config) == 2
    config.train.num_steps, config.optim.warmup_steps = 1, 1
    assert warmup_steps(config) == 0 and float(make_schedule(config)(0)) == lr
