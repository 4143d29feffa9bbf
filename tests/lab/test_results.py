"""The results tables (gatedrnn.lab.results): run summaries, the results table's rows and the command that
reproduces a run (its config file: recorded by experiments.train, or the nearest configs/*.py), the results
suite's headline rows, the git revision a run records (its `git checkout` line), and the results_table script
(the old name of `experiments.results --runs`)."""

import json
import math
import os
import runpy
import subprocess
import sys

import pytest

from gatedrnn.lab import studies
from gatedrnn.lab.results import (
    HEADER,
    HEADLINES,
    SUITE,
    Entry,
    config_files,
    is_finished,
    metric_value,
    reproduce_command,
    reproduce_lines,
    results_rows,
    results_table,
    run_command,
    seed_workdir,
    suite_row,
    summarize_run,
    train_time_s,
)
from gatedrnn.tasks.registry import TASKS
from gatedrnn.train.config import default_config
from gatedrnn.train.metrics import write_final_metrics
from gatedrnn.train.runs import read_config_file, record_config_file

from paths import REPO as ROOT

CONFIGS = os.path.join(ROOT, "configs")


def _config_file(path, arg=None, **overrides):
    """A config file's get_config(arg) with dotted overrides, as experiments.train would build it."""
    config = runpy.run_path(os.path.join(ROOT, path))["get_config"](arg)
    return studies.with_overrides(config, overrides)


def _write_run(workdir, config, records=(), final=None, config_file=None):
    """A workdir as train_and_evaluate (config.json, metrics.jsonl, final_metrics.json) and
    experiments.train (config_file.txt, when `config_file` is given) leave it."""
    os.makedirs(workdir)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(config.to_dict(), f)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    if final:
        write_final_metrics(workdir, final)
    if config_file:
        record_config_file(workdir, config_file)
    return workdir


def _run(workdir, task="uea_classification", cell="lstm", steps=200, records=(), final=None):
    config = default_config()
    config.task, config.model.cell, config.train.num_steps = task, cell, steps
    return _write_run(workdir, config, records, final)


# ------------------------------------------------------------------------------ the results table


ADDING_RECORDS = [
    {"step": 100, "loss": 0.2, "steps_per_s": 10.0},
    {"step": 200, "loss": 0.1, "steps_per_s": 50.0, "eval_loss": 0.05, "eval_baseline_mse": 0.16},
    {"step": 300, "loss": 0.1, "steps_per_s": 25.0, "eval_loss": 0.07, "eval_baseline_mse": 0.18},
]


def _fabricate_run(path, cell="rnn", seq_len=200, options=None, **overrides):
    """An adding-problem run of configs/adding.py with these overrides, recorded as experiments.train does."""
    config = _config_file("configs/adding.py", **{"model.cell": cell, "data.seq_len": seq_len,
                                                  "train.num_steps": 300, **overrides})
    if options:
        config = studies.with_overrides(config, {"model.cell_options": options})
    _write_run(path, config, ADDING_RECORDS, config_file="configs/adding.py")
    with open(os.path.join(path, "metrics.jsonl"), "a") as f:
        f.write('{"step": 40')  # a half-written last line (a killed writer) is skipped
    return config


def test_results_rows_from_a_fabricated_run(tmp_path):
    workdir = str(tmp_path / "adding200_rnn")
    _fabricate_run(workdir)
    s = summarize_run(workdir)
    assert (s.task, s.cell, s.seq_len, s.steps, s.name) == ("adding", "rnn", 200, 300, "adding200_rnn")
    assert (s["task"], s["eval_loss"]) == ("adding", 0.07)  # dict-style access, as before
    assert (s.eval_loss, s.best_eval_loss) == (0.07, 0.05)
    assert s.baseline == pytest.approx(0.17)
    assert s.train_time_s == pytest.approx(100 / 10 + 100 / 50 + 100 / 25)
    assert s.config_file == "configs/adding.py" and s.finished
    (row,) = results_rows([s], "/runs/{name}", CONFIGS)
    assert row[:11] == ["adding200_rnn", "adding", 200, "rnn", "-", 300, 0.07, 0.05, pytest.approx(0.17),
                        pytest.approx(0.07 / 0.17), "never"]
    assert "Le, Jaitly & Hinton 2015" in row[11] and row[12] == 16
    assert row[13] == "-"  # no revision recorded
    assert row[14] == ("python -m experiments.train --config=configs/adding.py --workdir=/runs/adding200_rnn "
                       "--config.data.seq_len=200 --config.model.cell=rnn --config.train.num_steps=300")
    assert len(row) == len(HEADER)
    assert train_time_s([{"step": 5}]) == 0.0


def test_solved_step_is_the_first_eval_below_a_tenth_of_the_baseline(tmp_path):
    _fabricate_run(str(tmp_path / "run"))
    records = [{"step": 100, "steps_per_s": 1.0, "eval_loss": 0.1, "eval_baseline_mse": 0.2},
               {"step": 200, "steps_per_s": 1.0, "eval_loss": 0.019, "eval_baseline_mse": 0.2},
               {"step": 300, "steps_per_s": 1.0, "eval_loss": 0.01, "eval_baseline_mse": 0.2}]
    with open(tmp_path / "run" / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    assert summarize_run(str(tmp_path / "run")).solved_step == 200


def test_reproduce_command_names_the_cell_options():
    default = _config_file("configs/adding.py").to_dict()
    config = _config_file("configs/adding.py", **{"model.cell_options": {"peephole": True}}).to_dict()
    assert reproduce_command(config, default, "configs/adding.py", "/w") == (
        "python -m experiments.train --config=configs/adding.py --workdir=/w \"--config.model.cell_options={'peephole': True}\"")


def test_published_figures_only_where_they_apply(tmp_path):
    _fabricate_run(str(tmp_path / "short"), cell="lstm", seq_len=50)
    _fabricate_run(str(tmp_path / "variant"), cell="lstm", options={"peephole": True})
    _fabricate_run(str(tmp_path / "long"), cell="lstm")
    rows = results_rows([summarize_run(str(tmp_path / n)) for n in ("short", "variant", "long")])
    assert [row[11] != "-" for row in rows] == [False, False, True]


# ------------------------------------------------------------------------------ the run's git revision

REV = "0123456789abcdef0123456789abcdef01234567"


def record_provenance(root, by_name):
    """Writes each workdir's run.json (workdir name -> {"config_file", "git_revision", "git_dirty"}), as
    `train_and_evaluate` records them, for `gatedrnn.train.runs.read_provenance` to read back."""
    from gatedrnn.train.provenance import RUN_JSON, write_json

    for name, record in by_name.items():
        write_json(os.path.join(root, name, RUN_JSON), record)


def test_the_recorded_revision_gives_a_checkout_line_before_the_command(tmp_path):
    for name in ("clean", "dirty", "unknown"):
        _fabricate_run(str(tmp_path / name))
    record_provenance(str(tmp_path), {
        "clean": {"config_file": "configs/adding.py", "git_revision": REV, "git_dirty": False},
        "dirty": {"config_file": "configs/adding.py:smoke", "git_revision": REV, "git_dirty": True},
        "unknown": {"config_file": "configs/adding.py", "git_revision": None, "git_dirty": None},
    })
    clean, dirty, unknown = (summarize_run(str(tmp_path / n)) for n in ("clean", "dirty", "unknown"))
    assert dirty.config_file == "configs/adding.py:smoke"  # the provenance's, not config_file.txt's
    assert [s.revision for s in (clean, dirty, unknown)] == [REV[:10], REV[:10] + "+dirty", "-"]
    command = ("python -m experiments.train --config=configs/adding.py --workdir=/w "
               "--config.data.seq_len=200 --config.model.cell=rnn --config.train.num_steps=300")
    assert reproduce_lines(clean, "/w", CONFIGS) == [f"git checkout {REV}", command]
    assert reproduce_lines(unknown, "/w", CONFIGS) == [command]
    checkout, smoke = reproduce_lines(dirty, "/w", CONFIGS)
    assert checkout == f"git checkout {REV}  # the run's checkout had uncommitted changes, not recorded"
    assert smoke.startswith("python -m experiments.train --config=configs/adding.py:smoke --workdir=/w ")
    assert "--config.data.seq_len=200" in smoke.split()  # against the smoke config's own values

    text, rows = results_table([clean, dirty, unknown], title="t", generated_by="g", workdir_for_command="/w",
                               configs_dir=CONFIGS)
    assert [row[-2] for row in rows] == [REV[:10], REV[:10] + "+dirty", "-"]
    assert f"| {REV[:10]}+dirty |" in text
    assert f"# clean\ngit checkout {REV}\n{command}\n# dirty\n{checkout}\n{smoke}\n# unknown\n{command}\n" in text


# ------------------------------------------------------------------------------ the command's config file


def test_every_suite_entry_gives_the_command_it_was_trained_by(tmp_path):
    """A run of each SUITE entry, as experiments.train leaves it, gets a command naming the entry's config
    file (which exists) with exactly the entry's overrides: the suite's commands and the table's agree."""
    for e in SUITE:
        workdir = _write_run(str(tmp_path / e.name), _config_file(e.config, **dict(e.overrides)),
                             records=[{"step": 1}], config_file=e.config)
        command = run_command(summarize_run(workdir), "/w", CONFIGS)
        head = f"python -m experiments.train --config={e.config} --workdir=/w"
        assert command.startswith(head), (e.name, command)
        assert os.path.exists(os.path.join(ROOT, e.config))
        assert set(command[len(head):].split()) == set(e.command("/w", 0)[3:]), e.name


@pytest.mark.parametrize("path", [os.path.relpath(p, ROOT) for p in config_files(CONFIGS)])
def test_a_run_without_a_recorded_config_file_names_the_config_it_matches(tmp_path, path):
    """Bug 4: the config file was guessed as configs/<task>.py, a file that does not exist for most tasks
    (sequential_mnist is mnist_pixel.py, mnist_rows.py, ...). A workdir of each config file's defaults
    (older runs record no config file) names that very file, with no overrides."""
    workdir = _write_run(str(tmp_path / "run"), _config_file(path), records=[{"step": 1}])
    assert read_config_file(workdir) is None
    command = run_command(summarize_run(workdir), "/w", CONFIGS)
    assert command == f"python -m experiments.train --config={path} --workdir=/w"
    assert os.path.exists(os.path.join(ROOT, command.split("--config=")[1].split()[0]))


def test_the_recorded_config_file_and_its_argument_win(tmp_path):
    # japanese_vowels.py with data.name=BasicMotions is closest to basic_motions.py; the record says otherwise
    config = _config_file("configs/japanese_vowels.py", **{"data.name": "BasicMotions"})
    w = _write_run(str(tmp_path / "a"), config, config_file=os.path.join(ROOT, "configs/japanese_vowels.py"))
    assert run_command(summarize_run(w), "/w", CONFIGS) == (
        "python -m experiments.train --config=configs/japanese_vowels.py --workdir=/w --config.data.name=BasicMotions")
    w = _write_run(str(tmp_path / "b"), _config_file("configs/adding.py", "smoke"), config_file="configs/adding.py:smoke")
    assert run_command(summarize_run(w), "/w", CONFIGS) == (
        "python -m experiments.train --config=configs/adding.py:smoke --workdir=/w")
    w = _run(str(tmp_path / "c"), task="nope")
    assert run_command(summarize_run(w), "/w", CONFIGS) is None  # no config file has the task
    assert results_rows([summarize_run(w)], "/w", CONFIGS)[0][-1] == "-"


@pytest.mark.slow
def test_experiments_train_records_its_config_file(tmp_path):
    workdir = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "experiments.train", "--config=configs/adding.py:smoke",
                             f"--workdir={workdir}", "--config.train.seed=1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_config_file(str(workdir)) == "configs/adding.py:smoke"
    assert run_command(summarize_run(str(workdir)), "/w", CONFIGS) == (
        "python -m experiments.train --config=configs/adding.py:smoke --workdir=/w --config.train.seed=1")


# ------------------------------------------------------------------------------ the results suite's rows


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


# ------------------------------------------------------------------------------ the script


@pytest.mark.slow
def test_results_table_script(tmp_path):
    _fabricate_run(str(tmp_path / "adding200_rnn"), **{"train.learning_rate": 1e-3})
    out = tmp_path / "results.md"
    result = subprocess.run([sys.executable, "-m", "experiments.results_table", f"--runs={tmp_path / 'adding200_rnn'}",
                             f"--out={out}", f"--csv={tmp_path / 'results.csv'}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# Results\n\nGenerated by `python -m experiments.results_table --runs=")
    assert "| adding200_rnn | adding | 200 | rnn | - | 300 | 0.07 | 0.05 | 0.17 | 0.4118 | never |" in text
    command = text.split("# adding200_rnn\n")[1].splitlines()[0]  # against configs/adding.py's own values
    assert command.startswith("python -m experiments.train --config=configs/adding.py --workdir=/tmp/adding200_rnn ")
    for override in ("--config.data.seq_len=200", "--config.model.cell=rnn", "--config.train.num_steps=300",
                     "--config.train.learning_rate=0.001"):
        assert f" {override}" in command
    assert (tmp_path / "results.csv").read_text().count("\n") == 2
