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
