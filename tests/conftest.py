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


class _Stand_in:
    """Any attribute, call or decoration: what mlstm_kernels' Triton modules touch at import time."""

    def __getattr__(self, name):
        return _Stand_in()

    def __call__(self, *args, **kwargs):
        return args[0] if len(args) == 1 and callable(args[0]) and not kwargs else _Stand_in()

    def __getitem__(self, key):
        return _Stand_in()

    def __iter__(self):
        return iter(())


def mlstm_kernels_or_skip():
    """NX-AI's `mlstm_kernels.jax` (native JAX mLSTM kernels), or a visible skip (CI fails on it).

    Its package imports the Triton kernels beside the native ones; no Triton runs on a CPU, so stand-in
    `triton`, `triton.language` and `jax_triton` modules go into sys.modules first (only where the real
    ones are absent). Only the native kernels are called.
    """
    import sys
    import types

    pytest.importorskip("mlstm_kernels", reason="MLSTM-KERNELS-MISSING: the mLSTM reference tests need "
                                                "pip install -e '.[dev]'")
    for name in ("triton", "triton.language", "jax_triton"):
        if name not in sys.modules:
            try:
                __import__(name)
            except ImportError:
                module = types.ModuleType(name)
                module.__getattr__ = lambda attr: _Stand_in()
                sys.modules[name] = module
    sys.modules["triton"].language = sys.modules["triton.language"]
    import mlstm_kernels.jax.chunkwise.native as chunkwise
    import mlstm_kernels.jax.parallel.native as parallel
    import mlstm_kernels.jax.recurrent.native_sequence as recurrent

    return types.SimpleNamespace(chunkwise=chunkwise.mlstm_chunkwise__native_autograd,
                                 parallel=parallel.mlstm_parallel__native_autograd,
                                 recurrent=recurrent.mlstm_recurrent_sequence__native_fw)
