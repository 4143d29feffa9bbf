"""The benchmark's smoke run: it completes, writes what it promises, and checks agreement first."""

import json

import numpy as np
import pytest

from gatedrnn.lab import benchmark as bm
from gatedrnn.lab.runtime import malloc_env, malloc_env_active

from conftest import torch_or_skip
from paths import REPO


@pytest.mark.slow
def test_quick_run_writes_json_and_table(tmp_path, monkeypatch):
    torch_or_skip()
    monkeypatch.syspath_prepend(REPO)  # `pytest` alone need not put the root there
    from experiments.benchmark import main

    argv = ["--quick", "--bf16_sizes=", "--bidir_sizes=", f"--out={tmp_path}", "--no-malloc-tuning"]
    report = main(argv)

    on_disk = json.loads((tmp_path / "benchmark.json").read_text())
    assert on_disk["configs"] and on_disk == json.loads(json.dumps(report))
    assert {"cpu_model", "cpu_count", "jax", "flax", "torch"} <= set(report["machine"])
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
    assert "| Q gru 1xuni" in table and "torch fwd+bwd tok/s" in table and "| 16 | True |" in table


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


def test_flax_params_mapping_shapes():
    torch_or_skip()
    config = bm.Config(bm.Size("t", 2, 3, 4, 5), "gru", num_layers=2, bidirectional=True)
    params = bm.flax_params_from_torch(bm.torch_module(config), config)
    cell = params["layers_1"]["backward_rnn"]["cell"]
    assert cell["in"]["kernel"].shape == (10, 5) and cell["hn"]["bias"].shape == (5,) and "bias" not in cell["hr"]


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
