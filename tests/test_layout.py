"""The package's floors: each module imports only its own floor and the ones below it.

  validation, losses  ->  cells  ->  scan  ->  nn  ->  tasks  ->  train  ->  lab

`gatedrnn/__init__.py` and the one-line aliases that keep old import paths working
(`gatedrnn.interop`, `gatedrnn.attention`, ...) sit above every floor. Cells and the engine
are pure JAX: no Flax below `nn`.
"""

import ast
import importlib
import os

import pytest

from paths import REPO

FLOORS = ["validation", "losses", "cells", "scan", "nn", "tasks", "train", "lab"]
LEVEL = {"validation": 0, "losses": 0, "cells": 1, "scan": 2, "nn": 3, "tasks": 4, "train": 5, "lab": 6}
PACKAGE = os.path.join(REPO, "gatedrnn")


def parse(path: str) -> ast.Module:
    with open(path) as f:
        return ast.parse(f.read(), path)


def modules():
    for root, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                yield os.path.relpath(path, REPO)[:-3].replace(os.sep, "."), path


def floor_of(module: str) -> str | None:
    """'gatedrnn.nn.seq2seq' -> 'nn'; None for the package root and the top-level aliases."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1] == "__init__":
        return None
    return parts[1] if parts[1] in LEVEL else None


def imports(path: str) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, function-level ones included."""
    out = []
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module != "gatedrnn":
                out.append((node.lineno, node.module))
                continue
            # `from gatedrnn import losses` names a floor; `from gatedrnn import scan_cell` the facade
            out += [(node.lineno, f"gatedrnn.{a.name}" if a.name in LEVEL else "gatedrnn") for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:  # kept as written: the floors test refuses it
            out.append((node.lineno, "." * node.level + (node.module or "")))
    return out


def test_every_module_lives_on_a_floor_or_is_an_alias():
    for module, path in modules():
        if floor_of(module) is None and module != "gatedrnn.__init__":
            body = [n for n in parse(path).body if not isinstance(n, ast.Expr)]
            assert all(isinstance(n, ast.ImportFrom) for n in body), f"{module} is neither on a floor nor an alias"


def test_no_module_imports_a_floor_above_its_own():
    upward = []
    for module, path in modules():
        floor = floor_of(module)
        if floor is None:
            continue
        for line, target in imports(path):
            if target.startswith("."):
                upward.append(f"{path}:{line} imports {target} (relative; write it absolute so that its floor is checked)")
            elif target == "gatedrnn" or (target.startswith("gatedrnn.") and floor_of(target) is None):
                upward.append(f"{path}:{line} imports {target} (the package facade)")
            elif target.startswith("gatedrnn.") and LEVEL[floor_of(target)] > LEVEL[floor]:
                upward.append(f"{path}:{line} ({floor}) imports {target} ({floor_of(target)})")
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("floor", ["validation", "losses", "cells", "scan"])
def test_the_pure_floors_do_not_import_flax(floor):
    for module, path in modules():
        if floor_of(module) == floor:
            flax = [t for _, t in imports(path) if t == "flax" or t.startswith("flax.")]
            assert not flax, f"{module} imports {flax}"


def test_the_check_sees_an_upward_import(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text("from gatedrnn.train.loop import train_and_evaluate\nfrom gatedrnn import losses, scan_cell\n")
    assert [t for _, t in imports(str(path))] == ["gatedrnn.train.loop", "gatedrnn.losses", "gatedrnn"]
    assert LEVEL[floor_of("gatedrnn.train.loop")] > LEVEL[floor_of("gatedrnn.tasks.music")]
    path.write_text("from ..train import loop\nfrom . import base\n")
    assert [t for _, t in imports(str(path))] == ["..train", "."]


@pytest.mark.parametrize("old, new, name", [
    ("gatedrnn.layers", "gatedrnn.nn.layers", "build_rnn"),
    ("gatedrnn.interop", "gatedrnn.nn.interop", "from_torch"),
    ("gatedrnn.attention", "gatedrnn.nn.attention", "make_attention"),
    ("gatedrnn.heads", "gatedrnn.nn.heads", "SequenceClassifier"),
    ("gatedrnn.encoder", "gatedrnn.nn.encoder", "sequence_mask"),
    ("gatedrnn.seq2seq", "gatedrnn.nn.seq2seq", "Seq2Seq"),
    ("gatedrnn.ctc", "gatedrnn.nn.ctc", "ctc_loss"),
    ("gatedrnn.lm", "gatedrnn.nn.lm", "LanguageModel"),
    ("gatedrnn.streaming", "gatedrnn.nn.streaming", "StatefulRNN"),
    ("gatedrnn.regularization", "gatedrnn.nn.regularization", "param_values"),
    ("gatedrnn.studies", "gatedrnn.lab.studies", "input_gradient_norms"),
    ("gatedrnn.results", "gatedrnn.lab.results", "summarize_run"),
    ("gatedrnn.runtime", "gatedrnn.lab.runtime", "malloc_env"),
])
def test_old_import_paths_are_aliases_of_the_new_homes(old, new, name):
    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    assert getattr(old_module, name) is getattr(new_module, name)
