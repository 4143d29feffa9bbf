"""The benchmark (gatedrnn.lab.benchmark, experiments/benchmark.py): its smoke run completes, writes what it
promises and checks agreement first; the ours -> Flax weight mapping computes what our layers compute."""

import json
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

from gatedrnn.lab import benchmark as bm
from gatedrnn.lab.runtime import malloc_env, malloc_env_active
from gatedrnn.nn.layers import Stack
from gatedrnn.validation import ConfigError

from conftest import torch_or_skip
from paths import REPO


@pytest.mark.slow
def test_quick_run_writes_json_and_table(tmp_path):
    torch_or_skip()
    argv = ["--quick", "--bf16_sizes=", "--bidir_sizes=", f"--out={tmp_path}", "--no-malloc-tuning"]
    result = subprocess.run([sys.executable, "-m", "experiments.benchmark", *argv], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert {"cpu_model", "cpu_count", "jax", "flax", "torch"} <= set(report["machine"])
    assert report["settings"]["sizes"] == ["Q"] and report["settings"]["bidir_sizes"] == []  # --quick, then the flags
    ours = [bm.contestant_name(v) for v in bm.engine_vjp_variants()]
    names = {c["name"] for c in report["configs"]}
    assert names == {"Q lstm 1xuni", "Q gru 1xuni"}
    for c in report["configs"]:
        assert c["errors"] == {}
        assert set(c["contestants"]) == {"torch", "flax", "bound", *ours}
        for name in [*ours, "flax"]:  # the agreement check ran and passed for every contestant
            assert c["agreement"][name]["passed"]
            assert c["agreement"][name]["forward_max_abs_diff"] <= bm.FORWARD_TOL
        for name, entry in c["contestants"].items():
            for mode in bm.MODES:
                assert len(entry[mode]["seconds"]) == 2 and entry[mode]["tokens_per_s"] > 0
            if name != "torch":
                assert entry["memory"]["train"]["total"] > 0 and entry["compile_s"]["train"] > 0
        assert set(c["ratio_to_torch"]["train"]) == {"flax", "bound", *ours}
        assert set(c["fraction_of_bound"]["forward"]) == {"torch", "flax", *ours}
    assert {(r["time"], r["remat"]) for r in report["remat"]} == {(16, False), (16, True)}
    assert all(r["memory"]["temp"] >= 0 and r["train_tokens_per_s"] > 0 for r in report["remat"])
    table = (tmp_path / "benchmark.md").read_text()
    assert table.startswith("`python -m experiments.benchmark --quick --bf16_sizes= ")
    assert "| Q gru 1xuni" in table and "torch fwd+bwd tok/s" in table and "| 16 | True |" in table
    assert table in result.stdout


def test_bad_sizes_cells_and_lengths_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"--sizes='S9' is not valid; choose one of \['Q', 'S1'"):
        bm.build_configs(bm.Settings(sizes=("S9",)))
    with pytest.raises(ConfigError, match="--cells='rnn' is not valid"):
        bm.build_configs(bm.Settings(cells=("rnn",)))
    with pytest.raises(ConfigError, match="'4k' is not a positive integer"):
        bm.settings_from_flags({"remat_lengths": ["16", "4k"]})
    settings = bm.settings_from_flags({**bm.QUICK, "bidir_sizes": []})
    assert settings.remat_lengths == (16,) and settings.sizes == ("Q",) and settings.bidir_sizes == ()
    names = [c.name for c in bm.build_configs(bm.settings_from_flags({**bm.QUICK, "cells": ["gru"]}))]
    assert names == ["Q gru 1xuni", "Q lstm 2xbi", "Q gru 1xuni bfloat16"]


def _contestant(name, outputs, grad):
    return bm.Contestant(name, run={}, outputs=np.asarray(outputs, np.float32), input_grad=np.asarray(grad, np.float32))


def test_agreement_check_raises_on_different_outputs():
    ref = _contestant("torch", np.zeros((2, 3, 4)), np.ones((2, 3, 5)))
    close = _contestant("ours", np.full((2, 3, 4), 5e-5), np.ones((2, 3, 5)))
    report = bm.check_agreement(ref, [close])
    assert report["ours"]["passed"] and report["ours"]["forward_max_abs_diff"] == pytest.approx(5e-5)
    far = _contestant("flax", np.full((2, 3, 4), 1e-3), np.ones((2, 3, 5)))
    with pytest.raises(bm.OutputMismatch, match="flax"):
        bm.check_agreement(ref, [close, far])
    wrong_grad = _contestant("ours", np.zeros((2, 3, 4)), np.full((2, 3, 5), 1.1))
    with pytest.raises(bm.OutputMismatch, match="input grads"):
        bm.check_agreement(ref, [wrong_grad])


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_flax_params_give_our_layers_outputs(cell):
    """The ours -> linen mapping against the layer it maps: a 2-layer bidirectional Flax RNN with
    `flax_params(stack)` computes what our stack computes (torch's weights, via from_torch)."""
    torch_or_skip()
    import flax.linen as nn
    import jax.numpy as jnp

    config = bm.Config(bm.Size("t", 2, 3, 4, 5), cell, num_layers=2, bidirectional=True)
    stack = bm.ours_stack(bm.torch_module(config), config, None)
    params = bm.flax_params(stack, cell)
    cell_cls = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}[cell]
    model = nn.Sequential([nn.Bidirectional(nn.RNN(cell_cls(5)), nn.RNN(cell_cls(5))) for _ in range(2)])
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 4)), jnp.float32)
    np.testing.assert_allclose(model.apply({"params": params}, x), stack(x)[0], rtol=1e-5, atol=1e-6)
    if cell == "gru":
        inner = params["layers_1"]["backward_rnn"]["cell"]
        assert inner["in"]["kernel"].shape == (10, 5) and "bias" not in inner["hr"]


def test_configure_layers_reaches_every_direction_and_refuses_unknown_settings():
    torch_or_skip()
    config = bm.Config(bm.Size("t", 2, 3, 4, 5), "lstm", num_layers=2, bidirectional=True)
    stack = bm.ours_stack(bm.torch_module(config), config, "replay", unroll=2)
    rnns = [r for layer in stack.layers for r in (layer.forward, layer.backward)]
    assert [(r.scan.vjp, r.scan.unroll) for r in rnns] == [("replay", 2)] * 4
    with pytest.raises(AttributeError, match="no attribute 'scan'"):
        bm.configure_layers(Stack([_NoVjp()]), vjp="fused")


class _NoVjp(nnx.Module):
    """A layer without the setting, as a stand-in for a layer type the harness does not know."""


def test_flops_and_malloc_env():
    s = bm.SIZES["S1"]
    assert bm.Config(s, "lstm").forward_flops() == 2 * 32 * 256 * (128 + 256) * 4 * 256
    bi = bm.Config(s, "gru", num_layers=2, bidirectional=True).forward_flops()
    assert bi == 2 * 2 * 32 * 256 * 3 * 256 * ((128 + 256) + (512 + 256))
    env = malloc_env()
    assert set(env) == {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"} and all(v.isdigit() for v in env.values())
    assert malloc_env_active(env) and not malloc_env_active({})
    with pytest.raises(ValueError):
        malloc_env(0)
