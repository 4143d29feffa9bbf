"""In-process tests of `train_and_evaluate`: outputs, exact resume, faults and bad input."""

import dataclasses
import gc
import json
import os
import runpy
import shutil
import signal
import time

import jax
import numpy as np
import pytest

from gatedrnn.tasks.registry import TASKS
from gatedrnn.tasks.synthetic import AddingTask
from gatedrnn.train import ConfigError, NonFiniteLossError, train_and_evaluate
from gatedrnn.train.loop import init_state, make_experiment
from gatedrnn.train.metrics import read_final_metrics, read_metrics

pytestmark = pytest.mark.slow  # every test here trains (seconds each), or needs a run that did

from paths import REPO as REPO

LOSS_KEYS = ("loss", "mse", "eval_loss", "eval_mse")


def smoke_config(**overrides):
    """configs/adding.py:smoke with overrides such as model__scan__dtype="bfloat16" (existing fields
    only, as the CLI's locked config: a misspelt or moved field must not pass silently)."""
    config = runpy.run_path(os.path.join(REPO, "configs", "adding.py"))["get_config"]("smoke")
    for dotted, value in overrides.items():
        *groups, name = dotted.split("__")
        group = config
        for g in groups:
            group = group[g]
        if name not in group:
            raise KeyError(f"{'.'.join(groups + [name])} is not a config field")
        group[name] = value
    return config


def losses_of(workdir):
    return [{k: r[k] for k in ("step",) + LOSS_KEYS if k in r} for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))]


def snapshot(path):
    """Every file under path with its size and modification time."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            st = os.stat(os.path.join(root, f))
            out[os.path.relpath(os.path.join(root, f), path)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted smoke run that keeps every checkpoint."""
    workdir = str(tmp_path_factory.mktemp("reference"))
    train_and_evaluate(smoke_config(checkpoint__keep=10, log__plots=True), workdir)
    return workdir


def test_a_run_writes_metrics_config_tensorboard_plots_and_checkpoints(reference):
    records = read_metrics(os.path.join(reference, "metrics.jsonl"))
    assert [r["step"] for r in records] == list(range(5, 41, 5))
    assert all(np.isfinite(r["loss"]) for r in records)
    assert {"eval_loss", "eval_mse", "eval_baseline_mse"} <= set(records[-1])
    assert "eval_loss" in records[3] and "eval_loss" not in records[2]  # eval every 20 steps
    assert records[-1]["loss"] < records[0]["loss"]
    with open(os.path.join(reference, "config.json")) as f:
        saved = json.load(f)
    assert saved["model"]["cell"] == "lstm" and saved["data"]["seq_len"] == 10
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(reference, "tensorboard")))
    with open(os.path.join(reference, "plots", "learning_curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(int(s) for s in os.listdir(os.path.join(reference, "checkpoints"))) == [10, 20, 30, 40]


def test_a_finished_run_resumes_to_no_more_work(reference, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(reference, workdir)
    before = losses_of(workdir)
    train_and_evaluate(smoke_config(checkpoint__keep=10), workdir)
    assert losses_of(workdir) == before


def test_resume_from_an_older_checkpoint_logs_the_same_losses(reference, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(reference, workdir)
    for step in (30, 40):  # as if the run had died after saving step 20 and logging step 35
        shutil.rmtree(os.path.join(workdir, "checkpoints", str(step)))
    train_and_evaluate(smoke_config(checkpoint__keep=10), workdir)
    assert losses_of(workdir) == losses_of(reference)


# orbax's failed read of the garbage leaves tensorstore callbacks aimed at a closed asyncio
# loop; Python reports them as unraisable exceptions, which are harmless and not ours.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_damaged_newest_checkpoint_is_reported_and_an_older_one_resumes(reference, tmp_path, capsys):
    workdir = str(tmp_path / "run")
    shutil.copytree(reference, workdir)
    newest = os.path.join(workdir, "checkpoints", "40", "default")
    for root, _, files in os.walk(newest):
        for f in files:
            if not f.startswith("_") and f != "commit_success.txt":
                with open(os.path.join(root, f), "wb") as fh:
                    fh.write(b"garbage")
    train_and_evaluate(smoke_config(checkpoint__keep=10), workdir)
    err = capsys.readouterr().err
    assert "checkpoint 40 in" in err and "is damaged" in err and "resuming from the checkpoint at step 30" in err
    assert os.path.isdir(os.path.join(workdir, "checkpoints_damaged", "40"))
    assert losses_of(workdir) == losses_of(reference)
    time.sleep(0.5)  # let the stray callbacks fire inside this test, under its filter
    gc.collect()


def test_resume_with_an_incompatible_config_is_refused_and_leaves_the_workdir_alone(reference, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(reference, workdir)
    before = snapshot(workdir)
    with pytest.raises(ConfigError, match=r"^model.hidden_size=16 does not match the checkpoints in .* written with model.hidden_size=8; use that value or a new --workdir$"):
        train_and_evaluate(smoke_config(model__hidden_size=16), workdir)
    assert snapshot(workdir) == before


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(model__cell="transformer"), r"model.cell='transformer' is not valid; choose one of \["),
        (dict(model__num_layers=0), "model.num_layers must be a positive integer, got 0"),
        (dict(data__seq_len=-3), "data.seq_len must be a positive integer, got -3"),
    ],
)
def test_bad_config_fails_before_touching_the_workdir(tmp_path, overrides, message):
    workdir = tmp_path / "fresh"
    with pytest.raises(ConfigError, match=message):
        train_and_evaluate(smoke_config(**overrides), str(workdir))
    assert not workdir.exists()


@dataclasses.dataclass(frozen=True)
class PoisonedAdding(AddingTask):
    """The adding problem whose inputs turn to NaN from a given step on."""

    poison_step: int = 1_000_000

    def train_batch(self, seed, step, batch_size):
        batch = super().train_batch(seed, step, batch_size)
        if step + 1 >= self.poison_step:
            batch["inputs"][:] = np.nan
        return batch


def test_a_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setitem(TASKS, "poisoned", lambda c: PoisonedAdding(seq_len=c.data.seq_len, poison_step=23))
    config = smoke_config(checkpoint__keep=10)
    config.task = "poisoned"
    workdir = str(tmp_path / "run")
    with pytest.raises(NonFiniteLossError, match=r"non-finite at step 23; stopped \(the last good checkpoint is step 20 in "):
        train_and_evaluate(config, workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10", "20"]
    assert max(r["step"] for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))) == 20


@dataclasses.dataclass(frozen=True)
class ReportingAdding(AddingTask):
    """The adding problem that sends this process SIGTERM while making batch `signal_step`, and
    whose final report records every call in `reports` (metrics computed from the model)."""

    signal_step: int = -1  # -1: never
    reports: list = dataclasses.field(default_factory=list, compare=False)

    def train_batch(self, seed, step, batch_size):
        if step == self.signal_step:
            os.kill(os.getpid(), signal.SIGTERM)  # as a preempting scheduler would, mid-step
        return super().train_batch(seed, step, batch_size)

    def final_report(self, model, seed, workdir):
        outputs = model(jax.numpy.asarray(self.eval_batch(seed, 0, 4)["inputs"]))
        metrics = {"first_output": float(outputs[0, 0]), "calls": len(self.reports) + 1}
        self.reports.append(metrics)
        return f"report {len(self.reports)}", metrics


def test_sigterm_skips_the_final_report_and_the_run_that_finishes_writes_it(tmp_path, monkeypatch, capsys):
    reports, signal_step = [], {"step": 25}
    monkeypatch.setitem(TASKS, "reporting", lambda c: ReportingAdding(seq_len=c.data.seq_len, reports=reports,
                                                                       signal_step=signal_step["step"]))
    config = smoke_config()
    config.task = "reporting"
    workdir = str(tmp_path / "run")
    train_and_evaluate(config, workdir)
    err = capsys.readouterr().err
    assert "received SIGTERM: saved a checkpoint at step 26 in " in err and "the final report is skipped" in err
    assert reports == [] and not os.path.exists(os.path.join(workdir, "report.txt"))
    assert read_final_metrics(workdir) == {}
    signal_step["step"] = -1
    last = train_and_evaluate(config, workdir)
    assert last["step"] == 40 and "resuming from the checkpoint at step 26" in capsys.readouterr().err
    assert len(reports) == 1 and read_final_metrics(workdir) == reports[0]  # the metrics it returned
    with open(os.path.join(workdir, "report.txt")) as f:
        assert f.read() == "report 1\n"


def test_bfloat16_compute_trains_close_to_float32(reference, tmp_path):
    workdir = str(tmp_path / "bf16")
    train_and_evaluate(smoke_config(model__scan__dtype="bfloat16", train__num_steps=10, checkpoint__every_steps=10), workdir)
    bf16 = [r["loss"] for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))]
    f32 = [r["loss"] for r in read_metrics(os.path.join(reference, "metrics.jsonl"))][:2]
    assert all(np.isfinite(bf16))
    np.testing.assert_allclose(bf16[0], f32[0], rtol=0.05)


def test_dropout_two_layers_rmsprop_and_a_linear_schedule_train_and_resume_exactly(tmp_path):
    config = smoke_config(optim__name="rmsprop", model__dropout=0.2, model__num_layers=2, train__num_steps=10,
                          optim__warmup_steps=2, optim__schedule="linear", checkpoint__every_steps=5)
    workdir = str(tmp_path / "run")
    last = train_and_evaluate(config, workdir)
    records = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    assert last == records[-1] and all(np.isfinite(r["loss"]) for r in records)
    uninterrupted = losses_of(workdir)
    shutil.rmtree(os.path.join(workdir, "checkpoints", "10"))
    train_and_evaluate(config, workdir)  # the dropout masks of steps 6-10 are drawn again, the same
    assert losses_of(workdir) == uninterrupted
    exp = make_experiment(config)  # dropout acts in training, with masks that follow the key
    params = init_state(exp).params
    batch = {k: jax.numpy.asarray(v) for k, v in exp.task.train_batch(0, 0, 8).items()}
    train_losses = [float(exp.loss(params, batch, jax.random.key(i), True)[0]) for i in (1, 1, 2)]
    assert train_losses[0] == train_losses[1] != train_losses[2]
    eval_losses = {float(exp.loss(params, batch, jax.random.key(i), False)[0]) for i in (1, 2)}
    assert len(eval_losses) == 1


def test_checkpoints_of_another_model_are_refused_even_without_config_json(reference, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(reference, workdir)
    os.remove(os.path.join(workdir, "config.json"))
    before = snapshot(workdir)
    with pytest.raises(ConfigError, match=r"the checkpoint at step 40 in .* was written by a different config "
                                          r"\(params/head/kernel is shape \(8, 1\) float32 there, shape \(12, 1\) float32 here\)"):
        train_and_evaluate(smoke_config(model__hidden_size=12), workdir)
    with pytest.raises(ConfigError, match=r"the optimizer state differs"):
        train_and_evaluate(smoke_config(optim__name="sgd"), workdir)
    assert snapshot(workdir) == before


def test_a_workdir_without_checkpoints_takes_any_config(tmp_path):
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write('{"model": {"hidden_size": 99}}')
    train_and_evaluate(smoke_config(train__num_steps=5, optim__warmup_steps=0, checkpoint__every_steps=5), workdir)
    assert read_metrics(os.path.join(workdir, "metrics.jsonl"))[-1]["step"] == 5
