"""The entry point as users run it: real subprocesses, real signals, several devices and processes."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from gatedrnn.train import train_and_evaluate
from gatedrnn.train.metrics import read_metrics

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
