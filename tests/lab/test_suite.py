"""The results suite, run (gatedrnn.lab.suite, experiments/reproduce_results.py): its table file and the
README block it rewrites, and --only updating one row without dropping the others."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from gatedrnn.lab import suite
from gatedrnn.train.config import default_config
from gatedrnn.validation import ConfigError

from paths import REPO as ROOT


def _finished(out, entry, task, accuracy, seed=0, steps=200):
    """A finished seed run of a SUITE entry under `out` (config.json and metrics.jsonl)."""
    workdir = os.path.join(out, entry, f"seed{seed}")
    config = default_config()
    config.task, config.model.cell, config.train.num_steps = task, "lstm", steps
    os.makedirs(workdir)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(config.to_dict(), f)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.write(json.dumps({"step": steps, "steps_per_s": 4.0, "cpu_s": 99.0, "eval_accuracy": accuracy,
                            "eval_baseline_accuracy": 0.25, "eval_loss": 0.01}) + "\n")
    return workdir


def _row(text, name):
    return next(line for line in text.splitlines() if line.startswith(f"| {name} |"))


def test_only_updates_its_row_and_keeps_the_others(tmp_path):
    """Bug 4's sibling: `--only=ROW` wrote a one-row table over the tracked docs/results_suite.md. The
    other entries' rows (and commands) stay, in the file and in the README block; the row rerun changes."""
    out, table, readme = str(tmp_path / "suite"), str(tmp_path / "results_suite.md"), tmp_path / "README.md"
    readme.write_text(f"intro\n{suite.BEGIN}\nold\n{suite.END}\nrest\n")
    _finished(out, "parity_lstm", "parity", 0.9)
    _finished(out, "basic_motions_lstm", "uea_classification", 0.8)
    full = suite.reproduce(out, table_only=True, table=table, readme=str(readme), report=lambda m: None)
    assert "| parity_lstm |" in full and "| basic_motions_lstm |" in full

    shutil.rmtree(os.path.join(out, "parity_lstm"))  # e.g. another machine's --out, holding only the rerun entry
    shutil.rmtree(os.path.join(out, "basic_motions_lstm"))
    _finished(out, "basic_motions_lstm", "uea_classification", 0.7)
    text = suite.reproduce(out, ["basic_motions_lstm"], table_only=True, table=table, readme=str(readme),
                           report=lambda m: None)
    on_disk = (tmp_path / "results_suite.md").read_text()
    assert on_disk == suite.TITLE + text
    for doc in (on_disk, readme.read_text()):
        assert _row(doc, "parity_lstm") == _row(full, "parity_lstm")  # kept, as it was
        assert "| 0.7 | 0.25 (majority class) |" in _row(doc, "basic_motions_lstm")  # the rerun
        assert f"# parity_lstm\npython -m experiments.train --config=configs/parity.py --workdir={out}/parity_lstm/seed0\n" in doc
        assert doc.index("| parity_lstm |") < doc.index("| basic_motions_lstm |")  # SUITE order
    assert readme.read_text().startswith(f"intro\n{suite.BEGIN}\n") and readme.read_text().endswith(f"{suite.END}\nrest\n")

    text = suite.reproduce(out, table_only=True, table=table, report=lambda m: None)  # without --only: rebuilt
    assert "| parity_lstm |" not in text and "| basic_motions_lstm |" in text


def test_unknown_entries_and_a_readme_without_markers_are_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"--only: \['nope'\] are not suite entries"):
        suite.select(["nope"])
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(ConfigError, match="has no <!-- results-suite:begin -->"):
        suite.reproduce(str(tmp_path / "out"), ["parity_lstm"], table=str(tmp_path / "t.md"), readme=str(readme))
    assert not (tmp_path / "out").exists() and not (tmp_path / "t.md").exists()  # nothing trained or written


@pytest.mark.slow
def test_script_tabulates_finished_runs_into_the_readme_block(tmp_path):
    out = tmp_path / "suite"
    _finished(str(out), "parity_lstm", "parity", 1.0)
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
