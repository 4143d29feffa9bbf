"""Every notebook in notebooks/ executes top to bottom, and is committed without outputs."""

import glob
import os
import time

import pytest

from paths import REPO as ROOT

NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


def _read(path):
    nbformat = pytest.importorskip("nbformat", reason="the notebook tests need pip install -e '.[test]'")
    return nbformat.read(path, as_version=4)


def test_there_are_notebooks():
    names = {os.path.basename(p) for p in NOTEBOOKS}
    assert {"cells_tour.ipynb", "vanishing_gradients.ipynb", "seq2seq_attention.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_committed_without_outputs(path):
    for cell in _read(path).cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path}: strip the outputs"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_executes(path, monkeypatch):
    nb = _read(path)
    nbclient = pytest.importorskip("nbclient", reason="the notebook tests need pip install -e '.[test]'")
    monkeypatch.setenv("MPLBACKEND", "Agg")  # no display; the kernel inherits the environment
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core's platformdirs migration warning
    start = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(path)}}).execute()
    print(f"{os.path.basename(path)} ran in {time.perf_counter() - start:.1f} s")
