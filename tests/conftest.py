"""Strict numerics for every test: no silent dtype promotion, no silent broadcasting."""

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

try:
    from hypothesis import settings

    settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
    settings.load_profile("ci")
except ImportError:  # pragma: no cover
    pass


def torch_or_skip():
    """Imports torch, or skips with a visible reason (CI fails on such skips: see .ci/run)."""
    return pytest.importorskip("torch", reason="TORCH-MISSING: PyTorch reference tests need pip install -e '.[torch]'")


def xlstm_or_skip():
    """Imports NX-AI's `xlstm` (its pure-PyTorch sLSTM and blocks), or skips visibly (CI fails on it)."""
    torch_or_skip()
    return pytest.importorskip("xlstm", reason="XLSTM-MISSING: the xLSTM reference tests need pip install -e '.[dev]'")


def mlstm_kernels_or_skip():
    """NX-AI's `mlstm_kernels.jax` native kernels (`gatedrnn.lab.benchmark.official.load_mlstm_kernels`: stand-in
    Triton modules, as no Triton runs on a CPU), or a visible skip (CI fails on it)."""
    pytest.importorskip("mlstm_kernels", reason="MLSTM-KERNELS-MISSING: the mLSTM reference tests need "
                                                "pip install -e '.[dev]'")
    from gatedrnn.lab.benchmark.official import load_mlstm_kernels

    return load_mlstm_kernels()
