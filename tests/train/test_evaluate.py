"""Using a trained run: `load_run(checkpoint=...)`, `Run.evaluate` (the loop's own eval numbers),
`Run.predict`, and `python -m experiments.evaluate` (subprocesses)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gatedrnn.lab.results import HEADLINES
from gatedrnn.train import ConfigError, load_run, train_and_evaluate
from gatedrnn.train.evaluate import headline_line
from gatedrnn.train.metrics import read_metrics

from paths import REPO
from test_loop import smoke_config

pytestmark = pytest.mark.slow  # a smoke run trains first (seconds)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """configs/adding.py:smoke, every checkpoint kept (10, 20, 30, 40)."""
    workdir = str(tmp_path_factory.mktemp("trained"))
    train_and_evaluate(smoke_config(checkpoint__keep=10), workdir)
    return workdir


def eval_record(workdir, step):
    return next(r for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if r["step"] == step and "eval_loss" in r)


def test_evaluate_gives_the_loops_eval_numbers_at_that_step(trained):
    for checkpoint, step in (("newest", 40), (20, 20)):
        run = load_run(trained, checkpoint=checkpoint)
        assert run.step == step
        logged = {k: v for k, v in eval_record(trained, step).items() if k.startswith("eval_")}
        assert run.evaluate() == logged  # the same program on the same batches: equal to the last bit


def test_best_is_the_checkpoint_of_the_lowest_eval_loss(trained):
    losses = {s: load_run(trained, checkpoint=s).evaluate()["eval_loss"] for s in (10, 20, 30, 40)}
    best = load_run(trained, checkpoint="best")
    assert best.step == min(losses, key=losses.get)
    assert load_run(trained, checkpoint=str(best.step)).step == best.step  # "30" as the command line gives it


def test_bad_checkpoint_values_are_one_line_errors(trained, tmp_path):
    with pytest.raises(ConfigError, match=r"^checkpoint='bst' is not valid; choose 'newest', 'best' or a step$"):
        load_run(trained, checkpoint="bst")
    with pytest.raises(ConfigError, match=r"^checkpoint=35 names no checkpoint in .*checkpoints \(the steps there: "
                                          r"10, 20, 30, 40\)$"):
        load_run(trained, checkpoint=35)


def test_predict_gives_outputs_whose_mse_is_the_eval_mse(trained):
    run = load_run(trained)
    assert run.config.eval.num_batches == 1  # so eval_mse is batch 0's MSE
    batch = run.eval_batch(0)
    outputs = np.asarray(run.predict(batch))
    assert outputs.shape == (run.config.eval.batch_size, 1)
    mse = float(np.mean((outputs[:, 0] - batch["targets"].reshape(-1)) ** 2))
    np.testing.assert_allclose(mse, run.evaluate()["eval_mse"], rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(run.predict(batch["inputs"])), outputs)  # an inputs array alone
    other = np.asarray(load_run(trained, checkpoint=10).predict(batch))
    assert not np.allclose(other, outputs)  # the params really are the checkpoint's


def test_the_headline_line_names_the_metric_and_the_baseline():
    metrics = {"eval_loss": 0.0029612, "eval_baseline_mse": 0.16549, "eval_mse": 0.0029612}
    assert headline_line(1500, metrics, HEADLINES["adding"]) == (
        "final: eval_loss 0.002961 (MSE; baseline 0.1655, always 1) at step 1500")
    assert headline_line(7, {"eval_loss": 0.5, "eval_accuracy": 0.75}, HEADLINES["parity"], prefix="eval") == (
        "eval: eval_accuracy 0.75 (accuracy at 4x the training length; baseline 0.5, chance) at step 7")
    # a headline computed only when training ends ("final:test_f1") falls back to the eval loss
    assert headline_line(3, {"eval_loss": 0.25}, HEADLINES["anomaly_detection"]) == "final: eval_loss 0.25 at step 3"
    assert headline_line(3, {"eval_loss": 0.25, "final:test_f1": 0.9, "final:test_always_anomalous_f1": 0.4},
                         HEADLINES["anomaly_detection"]) == (
        "final: test_f1 0.9 (F1 (per point); baseline 0.4, flag everything) at step 3")


def _evaluate(*args):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "experiments.evaluate", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_evaluate_command_prints_and_writes_the_best_checkpoints_metrics(trained, tmp_path):
    best = load_run(trained, checkpoint="best")
    result = _evaluate(f"--workdir={trained}")  # keep_best=1: the best by default
    assert result.returncode == 0, result.stderr
    path = os.path.join(trained, f"eval_{best.step}.json")
    with open(path) as f:
        written = json.load(f)
    assert written["step"] == best.step and written["checkpoint"] == "best"
    assert written["metrics"] == best.evaluate()
    lines = result.stdout.strip().splitlines()
    assert lines[-2] == f"wrote {path}"
    assert lines[-1] == headline_line(best.step, best.evaluate(), HEADLINES["adding"], prefix="eval",
                                      suffix=" (the best checkpoint)")
    out = tmp_path / "sub" / "e.json"
    newest = _evaluate(f"--workdir={trained}", "--checkpoint=newest", f"--out={out}")
    assert newest.returncode == 0, newest.stderr
    assert json.loads(out.read_text())["metrics"] == {k: v for k, v in eval_record(trained, 40).items()
                                                       if k.startswith("eval_")}


@pytest.mark.parametrize("args, message", [
    (["--checkpoint=bst"], "error: checkpoint='bst' is not valid; choose 'newest', 'best' or a step"),
    (["--checkpoint=35"], "error: checkpoint=35 names no checkpoint in {w}/checkpoints (the steps there: 10, 20, 30, 40)"),
])
def test_the_evaluate_command_errors_are_one_line(trained, args, message):
    result = _evaluate(f"--workdir={trained}", *args)
    assert result.returncode == 1 and result.stderr.strip() == message.format(w=trained), result.stderr


def test_a_workdir_without_a_run_or_a_checkpoint_is_one_line(tmp_path):
    result = _evaluate(f"--workdir={tmp_path}")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {tmp_path}/config.json is missing: {tmp_path} is not a training run's workdir"
    with open(tmp_path / "config.json", "w") as f:
        json.dump(smoke_config().to_dict(), f)
    result = _evaluate(f"--workdir={tmp_path}", "--checkpoint=newest")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: no checkpoint in {tmp_path}/checkpoints: train the run first"
    assert sorted(os.listdir(tmp_path)) == ["config.json"]
