"""The docs run as pasted: every ```python block of README.md and docs/*.md executes, and every
`python -m experiments.<script> --flag` in a ```bash block names a script and flags that exist.

A block that reads a trained run is preceded by `<!-- docs-test: run=configs/<task>.py:smoke
workdir=/tmp/<dir> -->`: the test trains that smoke run into a temporary directory first and
gives the block that directory in place of `/tmp/<dir>` (the path a reader's own run has).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import paths

REPO = Path(paths.REPO)

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"<!--\s*docs-test:\s*(.*?)\s*-->")
COMMAND = re.compile(r"python -m experiments\.(\w+)((?:[^\n#]|\\\n)*)")
# Slow blocks (each trains or builds something big) run in the full suite only.
SLOW = re.compile(r"train_and_evaluate|load_run|decode_beam|tbptt_train|from_torch|sample_lm|Seq2Seq\(|CTCModel\(|"
                  r"regularize\(|SequenceClassifier\(")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    source: str
    marker: dict[str, str]

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a markdown file, each with the docs-test marker just above it."""
    out, lines, i = [], path.read_text().split("\n"), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m and m.group(1):
            start, body = i, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            above = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            marker = MARKER.search(above)
            fields = dict(kv.split("=", 1) for kv in marker.group(1).split()) if marker else {}
            out.append(Block(path, start + 1, m.group(1), "\n".join(body) + "\n", fields))
        i += 1
    return out


ALL = [b for p in DOCS for b in blocks(p)]
PYTHON = [b for b in ALL if b.lang == "python"]


def _param(block: Block):
    marks = [pytest.mark.slow] if SLOW.search(block.source) or block.marker else []
    return pytest.param(block, id=block.id, marks=marks)


def test_the_docs_have_python_examples():
    assert len(PYTHON) >= 10, [b.id for b in PYTHON]
    assert all(b.lang in {"python", "bash", "text", "json", "yaml"} for b in ALL), {b.lang for b in ALL}


@pytest.mark.parametrize("block", [_param(b) for b in PYTHON])
def test_python_example_runs_as_pasted(block, tmp_path, monkeypatch):
    source = block.source
    if "run" in block.marker:
        workdir = tmp_path / "run"
        subprocess.run([sys.executable, "-m", "experiments.train", f"--config={block.marker['run']}",
                        f"--workdir={workdir}"], cwd=REPO, check=True, capture_output=True, text=True)
        source = source.replace(block.marker["workdir"], str(workdir))
    monkeypatch.chdir(REPO)
    import matplotlib

    matplotlib.use("Agg")
    namespace = {"__name__": "__docs__"}
    exec(compile(source, block.id, "exec"), namespace)  # noqa: S102 - the docs' own examples


def _commands() -> dict[str, set[str]]:
    """script -> the non-config flags the docs pass it."""
    found: dict[str, set[str]] = {}
    for b in ALL:
        if b.lang != "bash":
            continue
        for m in COMMAND.finditer(b.source):
            flags = {f for f in re.findall(r"(?:^|\s)'?--([\w-]+)", m.group(2)) if f != "config"}
            found.setdefault(m.group(1), set()).update(flags)
    return found


def test_every_documented_command_names_a_script():
    commands = _commands()
    assert "train" in commands
    missing = [s for s in commands if not (REPO / "experiments" / f"{s}.py").exists()]
    assert not missing, f"the docs run experiments scripts that do not exist: {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(_commands()))
def test_every_documented_flag_exists(script):
    flags = _commands()[script]
    code = (f"import experiments.{script}; from absl import flags; "
            "print(' '.join(flags.FLAGS))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"}).stdout.split()
    unknown = sorted(flags - set(out) - {f"no{f}" for f in out})
    unknown = [f for f in unknown if not (f.startswith("no") and f[2:] in out)]
    assert not unknown, f"the docs pass experiments.{script} flags it does not define: {unknown}"


def test_config_reference_is_current():
    import glob

    from gatedrnn.train.fields import config_reference

    files = [f for f in glob.glob(str(REPO / "configs" / "*.py")) if not f.endswith(("common.py", "__init__.py"))]
    assert (REPO / "docs" / "config.md").read_text() == config_reference(files), (
        "docs/config.md is stale: python -m experiments.config_reference --out=docs/config.md")


def test_config_reference_refuses_an_undocumented_field(tmp_path):
    from gatedrnn.train.fields import config_reference

    (tmp_path / "odd.py").write_text(
        "from gatedrnn.train.config import default_config\n"
        "def get_config(arg=None):\n    c = default_config(); c.task = 'adding'; c.data.seq_len = 5\n"
        "    c.data.mystery = 3\n    return c\n")
    with pytest.raises(ValueError, match=r"odd.py: data.mystery"):
        config_reference([str(tmp_path / "odd.py")])


def test_docs_site_builds_offline_with_the_api_reference(tmp_path):
    from gatedrnn.lab.docs import API_MODULES, build_site

    site = Path(build_site(str(tmp_path / "site")))
    assert (site / "index.html").exists() and (site / "config.html").exists()
    scan = (site / "api" / "gatedrnn.scan.html").read_text()
    assert "scan_cell" in scan and "seq_lengths" in scan  # the docstring, not just the name
    assert all((site / "api" / f"{m}.html").exists() for m in API_MODULES)


def test_docs_site_fails_on_a_broken_link(tmp_path):
    import shutil

    from gatedrnn.lab.docs import build_site

    repo = tmp_path / "repo"
    shutil.copytree(REPO / "docs", repo / "docs")
    shutil.copy(REPO / "README.md", repo / "README.md")
    (repo / "docs" / "cells.md").write_text((repo / "docs" / "cells.md").read_text() + "\n[gone](nowhere.md)\n")
    with pytest.raises(RuntimeError, match="nowhere.md"):
        build_site(str(tmp_path / "site"), repo=str(repo))
