"""The xLSTM suite of the benchmark (gatedrnn.lab.benchmark.xlstm, --suite=xlstm): a tiny run has every row with
positive, finite numbers and passed agreement checks against the official kernel; the agreement check stops a
row whose outputs or input gradients are wrong; rows too big are skipped with a note; the ratios, the target and
the tables are computed from the tokens/s. No timing assertions."""

import dataclasses
import math

import jax
import pytest

from gatedrnn.lab import benchmark as bm
from gatedrnn.lab.benchmark import xlstm
from gatedrnn.validation import ConfigError

from conftest import mlstm_kernels_or_skip, torch_or_skip, xlstm_or_skip

TINY = xlstm.MSize("tiny", 2, 8, 2, 2)


def _check_timed(entry, repeats):
    assert len(entry["seconds"]) == repeats and all(s > 0 and math.isfinite(s) for s in entry["seconds"])
    assert entry["tokens_per_s"] > 0 and math.isfinite(entry["tokens_per_s"])


def test_a_tiny_size_times_ours_and_the_official_kernel_after_checking_they_agree():
    kernels = mlstm_kernels_or_skip()
    ours, official = xlstm.ours_name("chunkwise", 4), xlstm.official_name("chunkwise", 4)
    result = xlstm.run_mlstm_size(TINY, chunks=(4,), repeats=2, min_time=0.0, budget_s=5.0, kernels=kernels,
                                  rows=(ours, official))
    assert result["reference"] == official and list(result["contestants"]) == [ours, official]
    for name, c in result["contestants"].items():
        for mode in ("train", "forward"):
            _check_timed(c[mode], 2)
        assert c["train"]["compile_s"] > 0 and c["train"]["memory_bytes"] > 0, name
        assert result["ratios"][name]["train"] == pytest.approx(
            c["train"]["tokens_per_s"] / result["contestants"][official]["train"]["tokens_per_s"])
    assert set(result["agreement"]) == {ours} and result["agreement"][ours]["passed"]
    assert result["agreement"][ours]["forward_max_abs_diff"] < 1e-5 and all(result["finite"].values())



def test_the_agreement_check_stops_a_wrong_row_before_timing():
    kernels = mlstm_kernels_or_skip()
    ours, official = xlstm.ours_name("parallel"), xlstm.official_name("parallel")  # the cheapest to compile
    right = xlstm.ours_apply(xlstm.mlstm_cell(TINY), "parallel")
    with pytest.raises(bm.OutputMismatch, match=r"mlstm parallel disagrees with official parallel: "
                                                r"outputs by 0\.00\d+ \(tol 0\.000\d+\)"):
        xlstm.run_mlstm_size(TINY, chunks=(4,), repeats=1, min_time=0.0, budget_s=5.0, kernels=kernels,
                             rows=(official, ours), contestants={ours: lambda p, xs: right(p, xs) * 1.001})


def test_agreement_is_relative_to_the_reference_scale_and_checks_input_gradients():
    import numpy as np

    ref = (np.full((2, 3, 4), 10.0, np.float32), np.full((2, 3, 4), 0.5, np.float32))
    close = (ref[0] + 9e-4, ref[1] + 9e-4)  # tol 1e-4 * 10 on outputs, 1e-3 * max(1, 0.5) on gradients
    report = xlstm.agreement("x", "ref", ref, close, forward_tol=1e-4, grad_tol=1e-3)
    assert report["passed"] and report["tolerance"] == {"forward": pytest.approx(1e-3), "input_grad": 1e-3}
    with pytest.raises(bm.OutputMismatch, match=r"x disagrees with ref: outputs by 0\.0011 \(tol 0\.001\)"):
        xlstm.agreement("x", "ref", ref, (ref[0] + 1.1e-3, ref[1]), forward_tol=1e-4, grad_tol=1e-3)
    with pytest.raises(bm.OutputMismatch, match=r"input grads by 0\.0011 \(tol 0\.001\)"):
        xlstm.agreement("x", "ref", ref, (ref[0], ref[1] + 1.1e-3), forward_tol=1e-4, grad_tol=1e-3)
    with pytest.raises(bm.OutputMismatch, match="input grads by nan"):  # NaN never passes
        xlstm.agreement("x", "ref", ref, (ref[0], ref[1] * np.nan), forward_tol=1e-4, grad_tol=1e-3)
    with pytest.raises(bm.OutputMismatch, match="output shapes"):
        xlstm.agreement("x", "ref", ref, (ref[0][:1], ref[1]), forward_tol=1e-4, grad_tol=1e-3)


def test_rows_too_big_or_over_budget_are_skipped_with_a_note():
    long = xlstm.MSize("long", 1, 2 * xlstm.PARALLEL_MAX_T, 1, 2)
    previous = {"size": dataclasses.asdict(xlstm.MSize("short", 1, xlstm.PARALLEL_MAX_T, 1, 2)),
                "contestants": {"mlstm sequential": {"train": {"median_s": 20.0}}}}
    result = xlstm.run_mlstm_size(long, chunks=(3,), repeats=1, min_time=0.0, budget_s=30.0, kernels=None,
                                  previous=previous, rows=("mlstm parallel", "mlstm sequential",
                                                           "official chunkwise[3]", "official parallel"))
    notes = {n: c["skipped"] for n, c in result["contestants"].items()}
    assert list(notes) == ["mlstm parallel", "mlstm sequential", "official chunkwise[3]", "official parallel"]
    assert notes["mlstm parallel"].startswith("skipped: quadratic form, T=2048 > 1024")
    assert notes["mlstm sequential"] == "skipped: ~40 s per call predicted > budget 30 s"  # 2x the steps
    assert "mlstm_kernels is not installed" in notes["official chunkwise[3]"]
    assert result["reference"] is None and result["agreement"] == {}
    table = bm.mlstm_table({"mlstm": [result]})
    assert "| long (B1 T2048 H1 d2) | mlstm parallel | - | - | - | - | - | - | 0 | skipped: quadratic form" in table
    # an official kernel whose chunk does not divide T is skipped, ours runs any T
    kernels = mlstm_kernels_or_skip()
    result = xlstm.run_mlstm_size(TINY, chunks=(3,), repeats=1, min_time=0.0, budget_s=5.0, kernels=kernels,
                                  rows=("official chunkwise[3]",))
    assert result["contestants"]["official chunkwise[3]"]["skipped"] == \
        "skipped: the official kernel needs chunk 3 to divide T=8"


def _result(name, tps):
    contestants = {n: {"train": {"tokens_per_s": v}, "forward": {"tokens_per_s": 2 * v}} for n, v in tps.items()}
    return {"name": name, "size": dataclasses.asdict(xlstm.MLSTM_SIZES[name]), "contestants": contestants,
            "ratios": xlstm._ratios(contestants, "official chunkwise[64]")}


def test_ratios_and_the_target():
    r = _result("M1k", {"mlstm chunkwise[64]": 300.0, "mlstm chunkwise[128]": 100.0, "official chunkwise[64]": 200.0,
                        "official chunkwise[128]": 50.0, "mlstm sequential": 20.0})
    assert r["ratios"]["mlstm chunkwise[64]"] == {"train": 1.5, "forward": 1.5}
    assert r["ratios"]["mlstm sequential"]["train"] == 0.1
    targets = xlstm.xlstm_targets([r, _result("M4k", {"mlstm chunkwise[64]": 10.0})], (64, 128))
    assert [(t["value"], t["met"]) for t in targets] == [(1.5, True), (2.0, True), (None, None), (None, None)]
    assert targets[0]["target"] == "mlstm chunkwise[64] / official chunkwise[64] fwd+bwd at M1k (B8 T1024 H4 d64)"
    lines = bm.report.linear_targets_lines({"targets": targets[:1] + targets[2:3]})
    assert lines == ["- mlstm chunkwise[64] / official chunkwise[64] fwd+bwd at M1k (B8 T1024 H4 d64): 1.50x "
                     "(goal >= 1x: met)",
                     "- mlstm chunkwise[64] / official chunkwise[64] fwd+bwd at M4k (B8 T4096 H4 d64): not measured "
                     "in this run (goal >= 1x)"]
    slow = xlstm.xlstm_targets([_result("M1k", {"mlstm chunkwise[64]": 100.0, "official chunkwise[64]": 200.0})],
                               (64,))
    assert slow[0]["value"] == 0.5 and slow[0]["met"] is False


def test_settings_and_one_line_errors():
    settings = bm.settings_from_flags({**bm.QUICK, "suite": "xlstm"})
    assert (settings.xlstm_sizes, settings.slstm_sizes, settings.xlstm_chunks) == (("MQ",), ("SQ",), (16,))
    mlstm_sizes, slstm_sizes = bm.check_xlstm(settings)
    assert [s.name for s in mlstm_sizes] == ["MQ"] and [s.name for s in slstm_sizes] == ["SQ"]
    assert bm.Settings().xlstm_chunks == (64, 128) and "xlstm" in bm.SUITES
    with pytest.raises(ConfigError, match="--xlstm_sizes='M2k' is not valid"):
        bm.check_xlstm(bm.Settings(suite="xlstm", xlstm_sizes=("M2k",)))
    with pytest.raises(ConfigError, match="--slstm_sizes='Q' is not valid"):
        bm.check_xlstm(bm.Settings(suite="xlstm", slstm_sizes=("Q",)))
    with pytest.raises(ConfigError, match="--xlstm_chunks is empty"):
        bm.check_xlstm(bm.Settings(suite="xlstm", xlstm_chunks=()))
    with pytest.raises(ConfigError, match="--xlstm_budget_s must be a positive number, got 0"):
        bm.check_xlstm(bm.Settings(suite="xlstm", xlstm_budget_s=0))
    with pytest.raises(ConfigError, match="--xlstm_chunks=64,x: 'x' is not a positive integer"):
        bm.settings_from_flags({"xlstm_chunks": ["64", "x"]})


@pytest.mark.slow
def test_quick_xlstm_suite_has_every_row_checked_and_timed(tmp_path):
    torch = torch_or_skip()
    xlstm_or_skip()
    mlstm_kernels_or_skip()
    settings = bm.Settings(suite="xlstm", xlstm_sizes=("MQ",), slstm_sizes=("SQ",), xlstm_chunks=(16,), repeats=2,
                           min_time=0.0, out=str(tmp_path))
    report = bm.run_benchmark(settings, "python -m experiments.benchmark --suite=xlstm --quick")
    assert report["configs"] == [] and report["remat"] == [] and "linear" not in report

    (m,) = report["xlstm"]["mlstm"]
    names = xlstm.mlstm_names((16,))
    assert list(m["contestants"]) == names and m["reference"] == "official chunkwise[16]"
    for name, c in m["contestants"].items():
        assert "skipped" not in c, name
        _check_timed(c["train"], 2)
        _check_timed(c["forward"], 2)
    assert set(m["agreement"]) == set(names) - {"official chunkwise[16]"}
    assert all(a["passed"] for a in m["agreement"].values()) and all(m["finite"].values())
    (target,) = report["xlstm"]["targets"]
    assert target["value"] == pytest.approx(m["ratios"]["mlstm chunkwise[16]"]["train"])

    (s,) = report["xlstm"]["slstm"]
    slstm_names = xlstm.slstm_names(torch.get_num_threads() > 1)
    assert list(s["contestants"]) == slstm_names and s["num_heads"] == 4
    for name, c in s["contestants"].items():
        _check_timed(c["train"], 2)
        assert "forward" not in c, name
    assert set(s["agreement"]) == {"slstm", "lstm"} and all(a["passed"] for a in s["agreement"].values())
    assert s["ratios"]["lstm"]["lstm"] == 1.0 and s["ratios"]["lstm"]["torch_lstm"] == pytest.approx(
        s["contestants"]["lstm"]["train"]["tokens_per_s"] / s["contestants"]["torch LSTM"]["train"]["tokens_per_s"])

    table = (tmp_path / "benchmark.md").read_text()
    assert table.startswith("`python -m experiments.benchmark --suite=xlstm --quick`")
    for name in names:
        assert f"| MQ (B2 T32 H2 d4) | {name} |" in table
    for name in slstm_names:
        assert f"| SQ (B2 T12 I3 H8, sLSTM 4 heads) | {name} |" in table
    assert "fwd+bwd × official chunkwise[16]" in table and "- mlstm chunkwise[16] / official chunkwise[16]" in table
