"""The results suite (gatedrnn.lab.results.SUITE, experiments/reproduce_results.py): headline metrics
per task, mean ± sd over seeds, and the README block the script rewrites."""

import json
import math
import os
import subprocess
import sys

import pytest

from gatedrnn.lab.results import HEADLINES, SUITE, Entry, is_finished, metric_value, seed_workdir, suite_row
from gatedrnn.tasks.registry import TASKS
from gatedrnn.train.config import default_config
from gatedrnn.train.metrics import write_final_metrics

from paths import REPO as ROOT


def _run(workdir, task="uea_classification", cell="lstm", steps=200, records=(), final=None):
    config = default_config()
    config.task, config.model.cell, config.train.num_steps = task, cell, steps
    os.makedirs(workdir)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(config.to_dict(), f)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    if final:
        write_final_metrics(workdir, final)
    return workdir


def test_every_task_has_a_headline_and_every_suite_config_exists():
    assert set(HEADLINES) == set(TASKS)
    assert len({e.name for e in SUITE}) == len(SUITE)
    for e in SUITE:
        assert os.path.exists(os.path.join(ROOT, e.config)), e.config


def test_metric_value_reads_the_last_finite_eval_a_final_metric_or_a_constant():
    records = [{"step": 1, "eval_accuracy": 0.5}, {"step": 2, "eval_accuracy": 0.75}, {"step": 3, "eval_accuracy": math.nan},
               {"step": 4, "loss": 1.0}]
    assert metric_value(records, {}, "eval_accuracy") == 0.75
    assert metric_value(records, {"test_f1": 0.4}, "final:test_f1") == 0.4
    assert math.isnan(metric_value(records, {}, "final:test_f1"))
    assert metric_value(records, {}, 0.1) == 0.1
    assert math.isnan(metric_value(records, {}, None))


def test_suite_row_reports_mean_sd_and_range_over_seeds(tmp_path):
    accs, bases, cpus = [0.9, 0.95, 0.97], [0.238, 0.238, 0.238], [30.0, 40.0, 50.0]
    workdirs = [_run(str(tmp_path / f"seed{i}"), records=[
        {"step": 100, "steps_per_s": 10.0, "cpu_s": cpus[i] / 2},
        {"step": 200, "steps_per_s": 20.0, "cpu_s": cpus[i], "eval_accuracy": accs[i],
         "eval_baseline_accuracy": bases[i], "eval_loss": 0.1}]) for i in range(3)]
    entry = Entry("jv", "configs/japanese_vowels.py", published="94.1% (Kudo 1999)")
    row = suite_row(entry, workdirs)
    mean = sum(accs) / 3
    sd = math.sqrt(sum((a - mean) ** 2 for a in accs) / 2)
    assert row[:5] == ["jv", "japanese_vowels.py", "lstm", 3, "accuracy ↑"]
    assert row[5] == f"{mean:.4g} ± {sd:.2g} (0.9-0.97)"
    assert row[6] == "0.238 (majority class)"  # the same on every seed: no spread shown
    assert row[7:] == ["94.1% (Kudo 1999)", 200, 40, round(100 / 10 + 100 / 20)]


def test_suite_row_reads_final_metrics_and_rejects_a_task_without_a_headline(tmp_path):
    w = _run(str(tmp_path / "a"), task="anomaly_detection", records=[{"step": 200, "steps_per_s": 1.0, "eval_loss": 0.2}],
             final={"test_f1": 0.42, "test_always_anomalous_f1": 0.25})
    row = suite_row(Entry("ecg", "configs/ecg_anomaly.py"), [w])
    assert (row[4], row[5], row[6], row[9]) == ("F1 (per point) ↑", "0.42", "0.25 (flag everything)", "-")
    w = _run(str(tmp_path / "b"), task="nope", records=[{"step": 200}])
    with pytest.raises(ValueError, match="task 'nope' has no headline metric"):
        suite_row(Entry("x", "configs/adding.py"), [w])


def test_entry_command_and_finished_runs(tmp_path):
    e = Entry("x", "configs/adding.py", (("data.seq_len", 200), ("model.cell", "gru")), seeds=(0, 2))
    assert e.command("/w", 0) == ["experiments.train", "--config=configs/adding.py", "--workdir=/w",
                                  "--config.data.seq_len=200", "--config.model.cell=gru"]
    assert e.command("/w", 2)[-1] == "--config.train.seed=2"
    assert seed_workdir("/out", e, 2) == "/out/x/seed2"
    assert not is_finished(str(tmp_path / "missing"))
    assert not is_finished(_run(str(tmp_path / "half"), records=[{"step": 100}]))
    assert is_finished(_run(str(tmp_path / "done"), records=[{"step": 200}]))


@pytest.mark.slow
def test_script_tabulates_finished_runs_into_the_readme_block(tmp_path):
    out = tmp_path / "suite"
    _run(str(out / "parity_lstm" / "seed0"), task="parity", records=[
        {"step": 200, "steps_per_s": 4.0, "cpu_s": 99.0, "eval_accuracy": 1.0, "eval_loss": 0.01}])
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results-suite:begin -->\nold table\n<!-- results-suite:end -->\nrest\n")
    result = subprocess.run([sys.executable, "-m", "experiments.reproduce_results", "--table_only", f"--out={out}",
                             "--only=parity_lstm", f"--table={tmp_path / 't.md'}", f"--readme={readme}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    text = readme.read_text()
    assert text.startswith("intro\n<!-- results-suite:begin -->\n") and text.endswith("<!-- results-suite:end -->\nrest\n")
    assert "old table" not in text
    assert "| parity_lstm | parity.py | lstm | 1 | accuracy at 4x the training length ↑ | 1 | 0.5 (chance) |" in text
    assert f"python -m experiments.train --config=configs/parity.py --workdir={out}/parity_lstm/seed0\n" in text
    bad = subprocess.run([sys.executable, "-m", "experiments.reproduce_results", "--table_only", "--only=nope",
                          f"--out={out}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "'nope'] are not suite entries" in bad.stderr
