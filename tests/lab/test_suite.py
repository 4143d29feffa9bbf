"""The results system, run (gatedrnn.lab.suite, experiments/results.py and its old names
reproduce_results.py and results_table.py): tables go to the output directory; the published
docs/results_suite.md, docs/results.md and README block change only with --write, and then --only
changes only the rerun rows; the commands name the run's git revision."""

import json
import os
import runpy
import shutil
import subprocess
import sys

import pytest

from gatedrnn.lab import suite
from gatedrnn.lab.results import SUITE
from gatedrnn.train.runs import record_config_file
from gatedrnn.validation import ConfigError

from paths import REPO as ROOT

ENTRIES = {e.name: e for e in SUITE}


def _finished(out, name, accuracy, seed=0):
    """A finished seed run of the SUITE entry `name` under `out`, as experiments.train leaves it: the entry's
    config (its file's get_config with its overrides), config_file.txt, and one metrics record at its last step."""
    entry = ENTRIES[name]
    config = runpy.run_path(os.path.join(ROOT, entry.config))["get_config"]()
    for field, value in entry.overrides:
        group, key = field.split(".")
        config[group][key] = value
    config.train.seed = seed
    workdir = os.path.join(out, name, f"seed{seed}")
    os.makedirs(workdir)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(config.to_dict(), f)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.write(json.dumps({"step": config.train.num_steps, "steps_per_s": 4.0, "cpu_s": 99.0,
                            "eval_accuracy": accuracy, "eval_baseline_accuracy": 0.25, "eval_loss": 0.01}) + "\n")
    record_config_file(workdir, entry.config)
    return workdir


def _row(text, name):
    return next(line for line in text.splitlines() if line.startswith(f"| {name} |"))


def _quiet(message):
    del message


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A working directory like the repository root: a copy of the published docs/results_suite.md and
    docs/results.md, configs/ linked; the tracked files themselves are never written (checked at the end)."""
    from pathlib import Path

    tracked = {p: Path(ROOT, p).read_bytes() for p in (suite.PUBLISHED_SUITE, suite.PUBLISHED_RUNS)}
    (tmp_path / "docs").mkdir()
    for path in tracked:
        shutil.copy(os.path.join(ROOT, path), tmp_path / path)
    (tmp_path / "configs").symlink_to(os.path.join(ROOT, "configs"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for path, data in tracked.items():
        assert Path(ROOT, path).read_bytes() == data, f"a test rewrote the tracked {path}"


def test_only_without_write_leaves_the_published_table_byte_identical(checkout):
    """Bug: `reproduce_results --only=ROW` wrote a one-row table over the tracked docs/results_suite.md. Now
    a run writes <out>/results.md (and .csv); the published table (the default path) is untouched."""
    published = (checkout / suite.PUBLISHED_SUITE).read_bytes()
    out = checkout / "suite"
    _finished(str(out), "parity_lstm", 0.875)
    text = suite.results(out="suite", only=["parity_lstm"], table_only=True, report=_quiet)
    assert (checkout / suite.PUBLISHED_SUITE).read_bytes() == published
    assert (out / suite.MARKDOWN).read_text() == suite.TITLE + text
    assert "| parity_lstm | parity.py | lstm | 1 | accuracy at 4x the training length ↑ | 0.875 | 0.5 (chance) |" in text
    assert "| japanese_vowels_lstm |" not in text  # only what `out` holds
    assert (out / suite.CSV).read_text().splitlines()[1].startswith("parity_lstm,parity.py,lstm,1,")


def test_only_with_write_changes_only_the_rerun_row(checkout):
    published = (checkout / suite.PUBLISHED_SUITE).read_text()
    assert "| parity_lstm |" in published and "| japanese_vowels_gru |" in published
    _finished(str(checkout / "suite"), "parity_lstm", 0.875)
    suite.results(out="suite", only=["parity_lstm"], table_only=True, write=True, report=_quiet)
    after = (checkout / suite.PUBLISHED_SUITE).read_text()
    assert "| 0.875 | 0.5 (chance) |" in _row(after, "parity_lstm") and _row(published, "parity_lstm") != _row(after, "parity_lstm")
    commands = ["python -m experiments.train --config=configs/parity.py --workdir=suite/parity_lstm/seed0"]
    old, new = published.splitlines(), after.splitlines()
    assert len(old) == len(new) + 2  # parity's three seeds' commands became the one finished seed's
    changed = {line for line in new if line not in old} | {line for line in old if line not in new}
    parity = {_row(published, "parity_lstm"), _row(after, "parity_lstm"), *commands}
    parity |= {line for line in old if "parity_lstm/seed" in line}
    assert changed <= parity, changed - parity  # the intro and every other row and command stay
    assert new.index(_row(after, "parity_lstm")) == old.index(_row(published, "parity_lstm"))  # SUITE order
    assert f"# parity_lstm\n{commands[0]}\n# mnist_rows_lstm\n" in after


def test_write_with_a_readme_updates_its_block(tmp_path):
    out, table, readme = str(tmp_path / "suite"), str(tmp_path / "results_suite.md"), tmp_path / "README.md"
    readme.write_text(f"intro\n{suite.BEGIN}\nold\n{suite.END}\nrest\n")
    _finished(out, "parity_lstm", 0.9)
    _finished(out, "basic_motions_lstm", 0.8)
    full = suite.reproduce(out, table_only=True, write=True, table=table, readme=str(readme), report=_quiet)
    assert "| parity_lstm |" in full and "| basic_motions_lstm |" in full

    shutil.rmtree(os.path.join(out, "parity_lstm"))  # e.g. another machine's --out, holding only the rerun entry
    shutil.rmtree(os.path.join(out, "basic_motions_lstm"))
    _finished(out, "basic_motions_lstm", 0.7)
    text = suite.reproduce(out, ["basic_motions_lstm"], table_only=True, write=True, table=table,
                           readme=str(readme), report=_quiet)
    assert "| parity_lstm |" not in text  # <out>/results.md: the runs in out
    for doc in ((tmp_path / "results_suite.md").read_text(), readme.read_text()):
        assert _row(doc, "parity_lstm") == _row(full, "parity_lstm")  # kept, as it was
        assert "| 0.7 | 0.25 (majority class) |" in _row(doc, "basic_motions_lstm")  # the rerun
        assert f"# parity_lstm\npython -m experiments.train --config=configs/parity.py --workdir={out}/parity_lstm/seed0\n" in doc
        assert doc.index("| parity_lstm |") < doc.index("| basic_motions_lstm |")  # SUITE order
    assert readme.read_text().startswith(f"intro\n{suite.BEGIN}\n") and readme.read_text().endswith(f"{suite.END}\nrest\n")

    suite.reproduce(out, table_only=True, write=True, table=table, report=_quiet)  # without --only: rebuilt
    assert "| parity_lstm |" not in (tmp_path / "results_suite.md").read_text()


def test_suite_commands_name_each_seeds_revision(tmp_path):
    """The commands come from each finished run (gatedrnn.lab.results.reproduce_lines): a `git checkout`
    where the recorded revision changes, and the seed's command; they are the entry's own command."""
    from gatedrnn.train.provenance import RUN_JSON, write_json

    out = str(tmp_path / "suite")
    revs = {"seed0": "a" * 40, "seed1": "a" * 40, "seed2": "b" * 40}
    for seed in range(3):
        _finished(out, "japanese_vowels_gru", 0.9, seed=seed)
    for seed, rev in revs.items():  # each run's run.json, as train_and_evaluate records it
        write_json(os.path.join(out, "japanese_vowels_gru", seed, RUN_JSON),
                   {"config_file": "configs/japanese_vowels.py", "git_revision": rev, "git_dirty": False})
    text = suite.reproduce(out, ["japanese_vowels_gru"], table_only=True, report=_quiet)
    entry = ENTRIES["japanese_vowels_gru"]
    lines = text.split("# japanese_vowels_gru\n")[1].split("```")[0].splitlines()
    expected = [f"git checkout {'a' * 40}", entry.command(f"{out}/japanese_vowels_gru/seed0", 0),
                entry.command(f"{out}/japanese_vowels_gru/seed1", 1), f"git checkout {'b' * 40}",
                entry.command(f"{out}/japanese_vowels_gru/seed2", 2)]
    assert len(lines) == len(expected)
    for line, want in zip(lines, expected):
        if isinstance(want, str):
            assert line == want
        else:  # the same arguments (the table sorts the overrides)
            assert line.split()[:2] == ["python", "-m"] and set(line.split()[2:]) == set(want), line


def test_published_files_need_write_and_the_modes_do_not_mix(checkout):
    run = _finished(str(checkout / "runs"), "parity_lstm", 1.0)
    published = (checkout / suite.PUBLISHED_RUNS).read_bytes()
    with pytest.raises(ConfigError, match=r"^docs/results.md is a published table: it is only rewritten with --write"):
        suite.results(runs=[run], out="docs", report=_quiet)  # <out>/results.md is docs/results.md
    with pytest.raises(ConfigError, match=r"^--table=t.md is only written with --write"):
        suite.results(runs=[run], table="t.md", report=_quiet)
    with pytest.raises(ConfigError, match=r"^--readme=README.md is only written with --write"):
        suite.results(readme="README.md", table_only=True, report=_quiet)
    with pytest.raises(ConfigError, match=r"^--only, --table_only: options of the suite, but --runs"):
        suite.results(runs=[run], only=["parity_lstm"], table_only=True, report=_quiet)
    with pytest.raises(ConfigError, match=r"^no runs to tabulate"):
        suite.tabulate([], generated_by="g", report=_quiet)
    assert (checkout / suite.PUBLISHED_RUNS).read_bytes() == published

    text = suite.results(runs=[run], report=_quiet)  # default out: runs/results
    assert (checkout / suite.RUNS_OUT / suite.MARKDOWN).read_text() == text
    assert "| seed0 | parity |" in text and (checkout / suite.PUBLISHED_RUNS).read_bytes() == published
    assert suite.results(runs=[run], write=True, report=_quiet) == (checkout / suite.PUBLISHED_RUNS).read_text()


def test_unknown_entries_and_a_readme_without_markers_are_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"--only: \['nope'\] are not suite entries"):
        suite.select(["nope"])
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(ConfigError, match="has no <!-- results-suite:begin -->"):
        suite.reproduce(str(tmp_path / "out"), ["parity_lstm"], write=True, table=str(tmp_path / "t.md"),
                        readme=str(readme))
    assert not (tmp_path / "out").exists() and not (tmp_path / "t.md").exists()  # nothing trained or written


def _script(cwd, *args):
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_scripts_write_the_output_dir_and_the_published_table_only_with_write(checkout):
    """experiments.results and its old name reproduce_results, run from a copy of the repository root."""
    published = (checkout / suite.PUBLISHED_SUITE).read_bytes()
    _finished(str(checkout / "suite"), "parity_lstm", 0.875)
    for script in ("experiments.results", "experiments.reproduce_results"):
        result = _script(checkout, script, "--only=parity_lstm", "--table_only", "--out=suite")
        assert result.returncode == 0, result.stderr[-2000:]
        assert (checkout / suite.PUBLISHED_SUITE).read_bytes() == published
        assert "| 0.875 | 0.5 (chance) |" in _row((checkout / "suite" / suite.MARKDOWN).read_text(), "parity_lstm")
    result = _script(checkout, "experiments.results", "--only=parity_lstm", "--table_only", "--out=suite", "--write")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| 0.875 | 0.5 (chance) |" in _row((checkout / suite.PUBLISHED_SUITE).read_text(), "parity_lstm")
    bad = _script(checkout, "experiments.reproduce_results", "--table_only", "--only=nope", "--out=suite")
    assert bad.returncode == 1 and bad.stderr.startswith("error: --only: ['nope'] are not suite entries")
    bad = _script(checkout, "experiments.results_table", f"--runs={checkout}/suite/parity_lstm/seed0",
                  f"--out={suite.PUBLISHED_RUNS}")
    assert bad.returncode == 1 and "docs/results.md is a published table" in bad.stderr
