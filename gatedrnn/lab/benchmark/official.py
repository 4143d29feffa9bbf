"""NX-AI's native JAX mLSTM kernels (`mlstm_kernels.jax`), imported on a machine without Triton:
the reference of tests/cells/test_mlstm.py and a contestant of the xLSTM benchmark suite."""

from __future__ import annotations

import sys
import types


class _StandIn:
    """Any attribute, call or decoration: what mlstm_kernels' Triton modules touch at import time."""

    def __getattr__(self, name):
        return _StandIn()

    def __call__(self, *args, **kwargs):
        return args[0] if len(args) == 1 and callable(args[0]) and not kwargs else _StandIn()

    def __getitem__(self, key):
        return _StandIn()

    def __iter__(self):
        return iter(())


def _stand_in_attribute(name: str):
    if name.startswith("__"):  # no __file__, __path__, ...: inspect and importlib probe modules for them
        raise AttributeError(name)
    return _StandIn()


def load_mlstm_kernels() -> types.SimpleNamespace:
    """NX-AI's native JAX mLSTM kernels: (chunkwise, parallel, recurrent) as a namespace.

    `mlstm_kernels.jax` imports its Triton kernels beside the native ones; no Triton runs on a CPU, so
    stand-in `triton`, `triton.language` and `jax_triton` modules go into sys.modules first (only where
    the real ones are absent; dunder attributes are missing on them, so that `inspect` and importers that
    scan sys.modules, such as torch's, see ordinary modules). Only the native kernels are returned.
    ImportError without mlstm_kernels.
    """
    import mlstm_kernels  # noqa: F401  (ImportError before any stand-in is installed)

    for name in ("triton", "triton.language", "jax_triton"):
        if name not in sys.modules:
            try:
                __import__(name)
            except ImportError:
                module = types.ModuleType(name)
                module.__getattr__ = _stand_in_attribute
                sys.modules[name] = module
    sys.modules["triton"].language = sys.modules["triton.language"]
    import mlstm_kernels.jax.chunkwise.native as chunkwise
    import mlstm_kernels.jax.parallel.native as parallel
    import mlstm_kernels.jax.recurrent.native_sequence as recurrent

    return types.SimpleNamespace(chunkwise=chunkwise.mlstm_chunkwise__native_autograd,
                                 parallel=parallel.mlstm_parallel__native_autograd,
                                 recurrent=recurrent.mlstm_recurrent_sequence__native_fw)
