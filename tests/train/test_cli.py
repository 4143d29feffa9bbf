"""The entry point as users run it: real subprocesses, real signals, several devices and processes."""

import dataclasses
import glob
import json
import os
import re
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import gatedrnn
from gatedrnn.nn.blocks import BLOCKS
from gatedrnn.tasks.registry import TASKS
from gatedrnn.tasks.synthetic import AddingTask
from gatedrnn.train import TrainingInterrupted, read_provenance, train_and_evaluate
from gatedrnn.train.loop import init_state, make_experiment
from gatedrnn.train.metrics import read_final_metrics, read_metrics
from gatedrnn.train.provenance import finished_step

from paths import REPO as REPO
from test_loop import LOSS_KEYS, losses_of, smoke_config, snapshot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Subprocess environment sharing one persistent compilation cache (same programs, less waiting)."""
    e = dict(os.environ)
    e["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("jax_cache"))
    e["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    e["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
    return e


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("reference"))
    train_and_evaluate(smoke_config(), workdir)
    return workdir


def command(workdir, *flags):
    return [sys.executable, "-m", "experiments.train", "--config=configs/adding.py:smoke", f"--workdir={workdir}", *flags]


def run(workdir, env, *flags, timeout=180):
    return subprocess.run(command(workdir, *flags), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def start_and_signal(workdir, env, sig, after_step=15):
    """Starts a slowed-down run and sends `sig` once it has logged `after_step` (a checkpoint exists)."""
    proc = subprocess.Popen(command(workdir, "--config.debug.step_delay_s=0.1"), cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            records = read_metrics(os.path.join(workdir, "metrics.jsonl"))
            if records and records[-1]["step"] >= after_step:
                proc.send_signal(sig)
                break
            time.sleep(0.05)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


def test_sigkill_then_rerun_logs_the_losses_of_an_uninterrupted_run(tmp_path, env, reference):
    workdir = str(tmp_path / "run")
    rc, err = start_and_signal(workdir, env, signal.SIGKILL)
    assert rc == -signal.SIGKILL, err
    logged = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    assert 15 <= logged[-1]["step"] < 40  # it really died mid-run
    done = run(workdir, env)
    assert done.returncode == 0, done.stderr
    assert "resuming from the checkpoint at step" in done.stderr
    assert losses_of(workdir) == losses_of(reference)


def test_sigterm_saves_the_current_step_exits_0_and_resumes_exactly(tmp_path, env, reference):
    workdir = str(tmp_path / "run")
    rc, err = start_and_signal(workdir, env, signal.SIGTERM)
    assert rc == 0, err
    line = [l for l in err.splitlines() if l.startswith("received SIGTERM: saved a checkpoint at step ")]
    assert line, err
    stopped = int(line[0].split("at step ")[1].split()[0])
    assert 15 <= stopped < 40 and os.path.isdir(os.path.join(workdir, "checkpoints", str(stopped)))
    done = run(workdir, env)
    assert done.returncode == 0, done.stderr
    assert f"resuming from the checkpoint at step {stopped}" in done.stderr
    assert losses_of(workdir) == losses_of(reference)


def test_bad_input_is_one_line_on_stderr_exit_1_and_no_workdir(tmp_path, env, reference):
    fresh = tmp_path / "fresh"
    bad = run(str(fresh), env, "--config.model.cell=lstmm")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith("error: model.cell='lstmm' is not valid; choose one of ['gru', 'lru', 'lstm'")
    assert "Traceback" not in bad.stderr and not fresh.exists()
    typo = run(str(fresh), env, "--config.modl.hidden_size=4")
    assert typo.returncode == 1 and not fresh.exists()
    assert typo.stderr.strip() == "error: --config.modl.hidden_size names no config field; did you mean 'model'?"

    workdir = str(tmp_path / "copy")
    shutil.copytree(reference, workdir)
    before = snapshot(workdir)
    bad = run(workdir, env, "--config.model.cell=gru")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1] == (
        f"error: model.cell='gru' does not match the checkpoints in {os.path.abspath(workdir)}, written with "
        "model.cell='lstm'; use that value or a new --workdir")
    assert snapshot(workdir) == before


def test_a_causal_task_with_a_bidirectional_model_is_one_line_exit_1_and_no_workdir(tmp_path, env):
    fresh = tmp_path / "fresh"
    bad = subprocess.run([sys.executable, "-m", "experiments.train", "--config=configs/char_lm.py:smoke",
                          f"--workdir={fresh}", "--config.model.bidirectional=True"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=180)
    assert bad.returncode == 1 and not fresh.exists()
    assert bad.stderr.strip() == ("error: model.bidirectional=True is not valid for the causal task 'char_lm' (its "
                                  "targets are later inputs); use model.bidirectional=False")


def close_losses(workdir, reference):
    got, want = losses_of(workdir), losses_of(reference)
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for g, w in zip(got, want):
        for key in LOSS_KEYS:
            if key in w:
                np.testing.assert_allclose(g[key], w[key], rtol=2e-5, err_msg=f"{key} at step {w['step']}")


def test_two_devices_log_the_losses_of_one(tmp_path, env, reference):
    workdir = str(tmp_path / "run")
    two = dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    done = run(workdir, two, "--config.log.progress=true")
    assert done.returncode == 0, done.stderr
    assert "training on 2 device(s) in 1 process(es)" in done.stderr
    assert "40/40" in done.stderr and "step/s" in done.stderr and "loss=" in done.stderr  # the progress bar
    close_losses(workdir, reference)


def test_two_processes_on_loopback_log_the_losses_of_one(tmp_path, env, reference):
    workdir = str(tmp_path / "run")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [
        subprocess.Popen(command(workdir, f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                                 f"--process_id={i}"), cwd=REPO, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    try:
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err
    assert "training on 2 device(s) in 2 process(es)" in results[0][1]
    assert "metrics:" in results[0][1] and "metrics:" not in results[1][1]  # only process 0 writes
    close_losses(workdir, reference)


def test_sigterm_to_one_of_two_processes_stops_both_at_one_step_and_one_process_resumes(tmp_path, env, reference):
    workdir = str(tmp_path / "run")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [
        subprocess.Popen(command(workdir, "--config.debug.step_delay_s=0.1", f"--coordinator_address=127.0.0.1:{port}",
                                 "--num_processes=2", f"--process_id={i}"), cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and procs[1].poll() is None:
            records = read_metrics(os.path.join(workdir, "metrics.jsonl"))
            if records and records[-1]["step"] >= 15:
                procs[1].send_signal(signal.SIGTERM)  # the preemption notice reaches one host only
                break
            time.sleep(0.05)
        results = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert [p.returncode for p in procs] == [0, 0], results
    line = [l for l in results[0][1].splitlines() if l.startswith("received SIGTERM: saved a checkpoint at step ")]
    assert line, results[0][1]
    stopped = int(line[0].split("at step ")[1].split()[0])
    assert 15 <= stopped < 40 and os.path.isdir(os.path.join(workdir, "checkpoints", str(stopped)))
    done = run(workdir, env)  # one process picks up what two left
    assert done.returncode == 0, done.stderr
    assert f"resuming from the checkpoint at step {stopped}" in done.stderr
    close_losses(workdir, reference)


# ------------------------------------------------------------------------------ Ctrl-C


def _interrupt_line(err):
    lines = err.strip().splitlines()
    assert lines and "Traceback" not in err, err
    return lines[-1]


def test_sigint_saves_the_current_step_exits_130_in_one_line_and_resumes_exactly(tmp_path, env, reference):
    workdir = str(tmp_path / "run")
    rc, err = start_and_signal(workdir, env, signal.SIGINT)
    assert rc == 130, err
    last = _interrupt_line(err)
    assert last.startswith("received SIGINT: saved a checkpoint at step ") and last.endswith(
        f"in {workdir}/checkpoints; rerun the same command to resume"), err
    stopped = int(last.split("at step ")[1].split()[0])
    assert 15 <= stopped < 40 and os.path.isdir(os.path.join(workdir, "checkpoints", str(stopped)))
    assert read_provenance(workdir)["config_file"] == "configs/adding.py:smoke"  # recorded at the start
    done = run(workdir, env)
    assert done.returncode == 0, done.stderr
    assert f"resuming from the checkpoint at step {stopped}" in done.stderr
    assert losses_of(workdir) == losses_of(reference)


def test_a_second_sigint_stops_at_once_in_one_line_and_the_run_still_resumes(tmp_path, env, reference):
    workdir = str(tmp_path / "run")
    proc = subprocess.Popen(command(workdir, "--config.debug.step_delay_s=0.2"), cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            records = read_metrics(os.path.join(workdir, "metrics.jsonl"))
            if records and records[-1]["step"] >= 15:
                proc.send_signal(signal.SIGINT)
                time.sleep(0.05)  # the first is handled (the loop is in its 0.2 s step delay) ...
                proc.send_signal(signal.SIGINT)  # ... and the second comes before the save
                break
            time.sleep(0.02)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert _interrupt_line(err).startswith(f"received a second SIGINT: stopped at once (the newest complete "
                                           f"checkpoint in {workdir}/checkpoints is kept; rerun the same command"), err
    done = run(workdir, env)
    assert done.returncode == 0, done.stderr
    assert losses_of(workdir) == losses_of(reference)


@dataclasses.dataclass(frozen=True)
class InterruptedAdding(AddingTask):
    """The adding problem that sends this process SIGINT at one moment: "setup" (making the eval
    batches, before any step), "first_step" (making batch 0, i.e. before the first compile ends)
    or "report" (inside the final report); `reports` records finished reports."""

    when: str = ""
    reports: list = dataclasses.field(default_factory=list, compare=False)

    def eval_batch(self, seed, index, batch_size):
        if self.when == "setup":
            os.kill(os.getpid(), signal.SIGINT)
        return super().eval_batch(seed, index, batch_size)

    def train_batch(self, seed, step, batch_size):
        if self.when == "first_step" and step == 0 and batch_size > 1:  # not the 1-example sample of init
            os.kill(os.getpid(), signal.SIGINT)
        return super().train_batch(seed, step, batch_size)

    def final_report(self, model, seed, workdir):
        if self.when == "report":
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # interrupted at once: never reached the end
        self.reports.append(1)
        return "report", {"calls": float(len(self.reports))}


def _interrupted_task(monkeypatch, when, reports):
    monkeypatch.setitem(TASKS, "interrupted", lambda c: InterruptedAdding(seq_len=c.data.seq_len, when=when["when"],
                                                                         reports=reports))
    config = smoke_config()
    config.task = "interrupted"
    return config


def test_sigint_before_the_first_step_saves_nothing_and_a_rerun_starts(tmp_path, monkeypatch):
    when, reports = {"when": "setup"}, []
    config = _interrupted_task(monkeypatch, when, reports)
    workdir = str(tmp_path / "run")
    with pytest.raises(TrainingInterrupted, match=r"^received SIGINT before the first step: nothing to save in .*; "
                                                  r"rerun the same command to start$"):
        train_and_evaluate(config, workdir)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    assert not os.listdir(os.path.join(workdir, "checkpoints")) and read_metrics(os.path.join(workdir, "metrics.jsonl")) == []


def test_sigint_during_the_first_compile_saves_step_1(tmp_path, monkeypatch):
    when, reports = {"when": "first_step"}, []
    config = _interrupted_task(monkeypatch, when, reports)
    workdir = str(tmp_path / "run")
    with pytest.raises(TrainingInterrupted, match=r"^received SIGINT: saved a checkpoint at step 1 in "):
        train_and_evaluate(config, workdir)
    assert os.listdir(os.path.join(workdir, "checkpoints")) == ["1"] and not reports


def test_sigint_during_the_final_report_stops_it_and_the_rerun_writes_it(tmp_path, monkeypatch):
    when, reports = {"when": "report"}, []
    config = _interrupted_task(monkeypatch, when, reports)
    workdir = str(tmp_path / "run")
    with pytest.raises(TrainingInterrupted, match=r"^received SIGINT during the final report: the run is trained "
                                                  r"\(checkpoint at step 40 in .*\); rerun the same command to write"):
        train_and_evaluate(config, workdir)
    assert reports == [] and read_final_metrics(workdir) == {} and finished_step(workdir) is None
    when["when"] = ""
    train_and_evaluate(config, workdir)
    assert reports == [1] and read_final_metrics(workdir) == {"calls": 1.0} and finished_step(workdir) == 40


# ------------------------------------------------------------------------------ file-system errors


def one_line_error(result):
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_missing_config_file_is_one_line(tmp_path, env):
    result = subprocess.run([sys.executable, "-m", "experiments.train", "--config=configs/addng.py",
                             f"--workdir={tmp_path / 'w'}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert one_line_error(result) == (f"error: --config=configs/addng.py: the file {REPO}/configs/addng.py does not "
                                      "exist; python -m experiments.train --list shows the config files")
    assert not (tmp_path / "w").exists()


def test_a_workdir_that_is_a_file_or_under_a_file_is_one_line_before_training(tmp_path, env):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    line = one_line_error(run(str(afile), env))
    assert line == f"error: workdir {afile} is a file, not a directory; give a directory (a new one is created)"
    line = one_line_error(run(str(afile / "run" / "deeper"), env))  # fails even for root
    assert line == f"error: workdir {afile}/run/deeper cannot be created: {afile} is a file, not a directory"
    assert afile.read_text() == "not a directory"


def test_a_read_only_workdir_is_one_line_before_training(tmp_path, env):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("this user (root?) can write to a read-only directory: chmod cannot make one")
        assert one_line_error(run(str(ro), env)) == (
            f"error: workdir {ro} is not writable: Permission denied (a directory you can write to is needed)")
        assert one_line_error(run(str(ro / "run"), env)) == (
            f"error: workdir {ro}/run cannot be created: Permission denied (a directory you can write to is needed)")
    finally:
        ro.chmod(0o700)


# ------------------------------------------------------------------------------ --list, --dry_run, --help


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_list_prints_every_config_with_its_docstring_tasks_cells_and_blocks(env):
    result = _cli("--list", env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    listed = 0
    for path in sorted(glob.glob(os.path.join(REPO, "configs", "*.py"))):
        module = runpy.run_path(path)
        if "get_config" in module:
            first = module["__doc__"].strip().splitlines()[0]
            assert re.search(rf"^  configs/{os.path.basename(path)}\s+{re.escape(first)}$", out, re.M), path
            listed += 1
    assert listed >= 15
    assert f"tasks (--config.task; each config file sets its own): {', '.join(sorted(TASKS))}\n" in out
    assert f"cells (--config.model.cell): {', '.join(sorted(gatedrnn.CELLS))}\n" in out
    assert out.rstrip().endswith(", ".join(sorted(BLOCKS)))


def test_dry_run_prints_the_config_a_run_writes_and_the_parameter_count_and_writes_nothing(tmp_path, env, reference):
    workdir = tmp_path / "w"
    result = _cli("--config=configs/adding.py:smoke", f"--workdir={workdir}", "--dry_run", env=env)
    assert result.returncode == 0, result.stderr
    assert not workdir.exists()
    config_text, params_line = result.stdout.rstrip().rsplit("\n", 1)
    with open(os.path.join(reference, "config.json")) as f:
        assert json.loads(config_text) == json.load(f)
    count = sum(np.size(a) for a in jax.tree.leaves(init_state(make_experiment(smoke_config())).params))
    assert count == 4 * 8 * (2 + 8 + 1) + 8 + 1  # LSTM gates over [x, h] and a bias, then the 8 -> 1 head
    assert params_line == f"parameters: {count:,} (task adding, cell lstm, hidden_size 8, num_layers 1, block auto)"
    short = _cli("--config=configs/adding.py:smoke", "--config.train.num_steps=3", "--dry_run", env=env)
    assert short.returncode == 0, short.stderr
    assert ("warning: optim.warmup_steps=5 is not shorter than train.num_steps=3; warming up over 2 steps instead"
            in short.stdout.splitlines())
    bad = _cli("--config=configs/adding.py:smoke", "--config.model.cell=lstmm", "--dry_run", env=env)
    assert one_line_error(bad).startswith("error: model.cell='lstmm' is not valid")
    assert one_line_error(_cli("--workdir=/tmp/x", env=env)).startswith("error: --config is required")
    assert one_line_error(_cli("--config=configs/adding.py:smoke", env=env)).startswith("error: --workdir is required")


def test_help_mentions_list_and_dry_run(env):
    result = _cli("--help", env=env)
    assert result.returncode == 0
    assert "python -m experiments.train --list" in result.stdout and "--dry_run" in result.stdout
    assert "--[no]list: Print the config files" in result.stdout and "--[no]dry_run: Print the resolved config" in result.stdout


# ------------------------------------------------------------------------------ the end of a run


def _expected_final_line(workdir):
    last = [r for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if "eval_loss" in r][-1]
    return (f"final: eval_loss {last['eval_loss']:.4g} (MSE; baseline {last['eval_baseline_mse']:.4g}, always 1) "
            f"at step {last['step']}")


def test_a_run_ends_with_its_final_metric_and_a_rerun_only_prints_it_again(tmp_path, env):
    workdir = str(tmp_path / "run")
    first = run(workdir, env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1] == _expected_final_line(workdir)
    assert finished_step(workdir) == 40
    before = snapshot(workdir)
    again = run(workdir, env)
    assert again.returncode == 0, again.stderr
    assert again.stderr.strip().splitlines()[-1] == (f"already finished at step 40 in {workdir}; nothing to train "
                                                     "(a larger --config.train.num_steps trains on)")
    assert "training on" not in again.stderr  # nothing set up, nothing compiled
    assert again.stdout.splitlines()[-1] == _expected_final_line(workdir)
    assert snapshot(workdir) == before
    longer = run(workdir, env, "--config.train.num_steps=50")
    assert longer.returncode == 0, longer.stderr
    assert "resuming from the checkpoint at step 40" in longer.stderr
    assert longer.stdout.splitlines()[-1] == _expected_final_line(workdir) and "at step 50" in longer.stdout
    assert len(read_provenance_starts(workdir)) == 2


def read_provenance_starts(workdir):
    with open(os.path.join(workdir, "run.json")) as f:
        return json.load(f)["starts"]
