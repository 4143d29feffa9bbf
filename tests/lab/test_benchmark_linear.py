"""The linear-cell suite of the benchmark (gatedrnn.lab.benchmark.linear, --suite=linear): a tiny run has
every contestant with positive, finite numbers and passed agreement checks; the two parallel rows run the
algorithms they name; the budget skips and shortens; the ratios and the issue's targets are computed from
the tokens/s. No timing assertions."""

import math

import jax
import jax.numpy as jnp
import pytest

from gatedrnn.lab import benchmark as bm
from gatedrnn.lab.benchmark import linear
from gatedrnn.validation import ConfigError

from conftest import torch_or_skip


@pytest.mark.slow
def test_quick_linear_suite_has_every_contestant_with_sane_numbers(tmp_path):
    torch = torch_or_skip()
    pytest.importorskip("recurrentgemma.jax", reason="RECURRENTGEMMA-MISSING: pip install recurrentgemma")
    settings = bm.Settings(suite="linear", linear_sizes=("LQ",), linear_chunks=(4,), repeats=2, min_time=0.0,
                           out=str(tmp_path))
    report = bm.run_benchmark(settings, "python -m experiments.benchmark --suite=linear --quick")

    assert report["configs"] == [] and report["remat"] == []  # the classic suite did not run
    (result,) = report["linear"]["sizes"]
    single_thread = torch.get_num_threads() > 1
    names = bm.contestant_names(bm.LINEAR_CELLS, (4,), single_thread)
    assert list(result["contestants"]) == names
    auto = "linear" if jax.default_backend() == "cpu" else "associative"
    assert {f"mingru parallel (auto: {auto})", "mingru parallel[associative]", "mingru parallel[chunk 4]",
            "mingru sequential", f"lru parallel (auto: {auto})", "lru parallel[associative]", "lru sequential",
            "rglru recurrentgemma[associative]", "rglru recurrentgemma[linear]", "torch GRU", "torch LSTM"} <= set(names)
    for name, c in result["contestants"].items():
        assert "skipped" not in c, name
        assert len(c["seconds"]) == 2 and all(s > 0 and math.isfinite(s) for s in c["seconds"]), name
        assert c["tokens_per_s"] > 0 and math.isfinite(c["tokens_per_s"]) and c["finite"], name
        assert c["memory_bytes"] >= 0
        if name.startswith("torch"):
            assert c["memory_kind"] in ("rss", "maxrss") and c["compile_s"] is None
        else:  # the outputs and gradients alone are > 0 bytes
            assert c["memory_kind"] == "xla" and c["memory_bytes"] > 0 and c["compile_s"] > 0
    # each cell's other rows (and recurrentgemma's RG-LRU) were checked against its auto parallel row
    autos = {linear.parallel_name(c) for c in bm.LINEAR_CELLS}
    checked = {n for n in names if not n.startswith("torch") and n not in autos}
    assert "rglru parallel[associative]" in checked and "rglru recurrentgemma[linear]" in checked
    assert set(result["agreement"]) == checked
    assert all(a["passed"] and a["forward_max_abs_diff"] <= 1e-4 for a in result["agreement"].values())
    for name, ratios in result["ratios"].items():
        own = linear.own_sequential(name)
        want = result["contestants"][name]["tokens_per_s"] / result["contestants"][own]["tokens_per_s"] if own else None
        assert ratios["own_sequential"] == (pytest.approx(want) if own else None), name
        assert ratios["torch_gru"] > 0 and ratios["torch_lstm"] > 0
    # LQ is not the target size: every target is reported as not measured
    assert [t["value"] for t in report["linear"]["targets"]] == [None] * len(report["linear"]["targets"])

    table = (tmp_path / "benchmark.md").read_text()
    assert table.startswith("`python -m experiments.benchmark --suite=linear --quick`")
    for name in names:
        assert f"| {name} |" in table
    assert "Targets:" in table and "not measured" in table and "(xla)" in table and "(rss)" in table


def test_contestants_predicted_over_budget_are_skipped_with_a_note():
    torch_or_skip()
    names = linear.contestant_names(("mingru", "rglru"), single_thread=True)
    result = linear.run_linear_size(bm.LINEAR_SIZES["LQ"], cells=("mingru", "rglru"), repeats=2, min_time=0.0,
                                    budget_s=5.0, predicted_s={n: 60.0 for n in names})
    assert result["contestants"], "nothing reported"
    for name, c in result["contestants"].items():
        assert c["tokens_per_s"] is None and "60 s per call predicted > budget 5 s" in c["skipped"], name
        assert result["ratios"][name]["own_sequential"] is None
    table = bm.linear_table({"sizes": [result]})
    assert f"| LQ (B2 T16 I8 H8) | {linear.parallel_name('mingru')} | - |" in table and "skipped" in table
    assert "| LQ (B2 T16 I8 H8) | mingru parallel[associative] | - |" in table


def _scans_in(cell_name, parallel_scan):
    from gatedrnn.cells import CELLS

    cell = CELLS[cell_name](4, 4)
    x = jnp.ones((2, 8, 4))
    train = linear._train(linear.cell_apply(cell, "parallel", None, parallel_scan))
    return str(jax.make_jaxpr(train)(cell.init(jax.random.key(0)), x, x)).count("scan[")


@pytest.mark.parametrize("cell_name", bm.LINEAR_CELLS)
def test_parallel_rows_run_the_algorithm_they_name(cell_name):
    # "linear" is one lax.scan forward and one in reverse; associative_scan has no scan primitive
    assert _scans_in(cell_name, "associative") == 0
    assert _scans_in(cell_name, "linear") == 2
    assert _scans_in(cell_name, "auto") == (2 if jax.default_backend() == "cpu" else 0)


def _timed(name, first_s, calls):
    return linear.Timed(name, lambda: calls.append(name), None, None, "xla", first_s)


def test_time_rounds_shortens_slow_contestants_to_the_budget():
    calls = []
    fast, slow, over = _timed("fast", 1e-3, calls), _timed("slow", 1.0, calls), _timed("over", 9.0, calls)
    seconds = linear._time_rounds([fast, slow, over], repeats=4, min_time=0.01, budget_s=3.0)
    # fast: 10 calls per measurement (min_time / first call), 4 rounds; slow: (3 - 1) / 1 = 2 rounds;
    # over: its first call alone overran the budget, still one round
    assert {n: len(s) for n, s in seconds.items()} == {"fast": 4, "slow": 2, "over": 1}
    assert calls.count("fast") == 40 and calls.count("slow") == 2 and calls.count("over") == 1
    assert calls[:3] == ["fast"] * 3  # rounds interleave: fast x10, slow, over, fast x10, ...
    assert calls[10:12] == ["slow", "over"]


def _result(size, tokens_per_s, threads=2):
    contestants = {n: {"tokens_per_s": v, "median_s": 1.0} for n, v in tokens_per_s.items()}
    return {"size": {"batch": size[0], "time": size[1], "hidden_size": size[2]}, "torch_threads": threads,
            "contestants": contestants, "ratios": linear._ratios(contestants)}


def test_ratios_and_targets():
    mingru, lru = linear.parallel_name("mingru"), linear.parallel_name("lru")
    assert mingru == f"mingru parallel (auto: {'linear' if jax.default_backend() == 'cpu' else 'associative'})"
    r = _result((4, 8192, 64), {mingru: 2000.0, "mingru parallel[associative]": 500.0, "mingru sequential": 250.0,
                                lru: 300.0, "lru parallel[associative]": 1000.0, "lru sequential": 100.0,
                                "torch GRU": 50.0, "torch GRU[1 thread]": 125.0, "torch LSTM": 400.0})
    assert r["ratios"][mingru] == {"own_sequential": 8.0, "torch_gru": 40.0, "torch_lstm": 5.0,
                                   "torch_gru_1thread": 16.0}
    assert r["ratios"]["mingru parallel[associative]"]["own_sequential"] == 2.0
    assert r["ratios"]["mingru sequential"]["own_sequential"] is None
    # the targets use the auto rows (lru's associative row, 10x its sequential, does not count)
    targets = {t["target"]: (t["value"], t["met"]) for t in linear.linear_targets([r], ("mingru", "lru", "rglru"))}
    assert targets == {
        f"{mingru} / torch GRU (2 threads) at B4 T8192 H64": (40.0, True),
        f"{mingru} / torch GRU[1 thread] at B4 T8192 H64": (16.0, False),
        "mingru sequential / torch GRU (2 threads) at B4 T8192 H64": (5.0, False),
        "mingru sequential / torch GRU[1 thread] at B4 T8192 H64": (2.0, False),
        f"{mingru} / mingru sequential at T=8192": (8.0, True),
        f"{lru} / lru sequential at T=8192": (3.0, False),
        f"{linear.parallel_name('rglru')} / rglru sequential at T=8192": (None, None),  # not run
    }
    # the next size's calls are predicted from this one's by b * t * h
    assert linear.predict(r, bm.Size("x", 8, 8192, 64, 64))["torch GRU"] == pytest.approx(2.0)
    lines = bm.report.linear_targets_lines({"targets": linear.linear_targets([r], ("lru",))})
    assert lines == [f"- {lru} / lru sequential at T=8192: 3.00x (goal >= 5x: NOT met)"]


def test_names_and_one_line_errors():
    assert linear.own_sequential("lru parallel[chunk 64]") == "lru sequential"
    assert linear.own_sequential("lru parallel[associative]") == "lru sequential"
    assert linear.own_sequential(linear.parallel_name("lru")) == "lru sequential"
    assert linear.contestant_names(("lru",), (8,))[:4] == [
        linear.parallel_name("lru"), "lru parallel[associative]", "lru parallel[chunk 8]", "lru sequential"]
    assert linear.own_sequential("rglru recurrentgemma[associative]") == "rglru recurrentgemma[linear]"
    assert linear.own_sequential("torch GRU") is None and linear.own_sequential("lru sequential") is None
    with pytest.raises(ConfigError,
                       match=r"--suite='fast' is not valid; choose one of \['all', 'classic', 'linear', 'xlstm'\]"):
        bm.check_linear(bm.Settings(suite="fast"))
    with pytest.raises(ConfigError, match="--linear_sizes='L2k' is not valid"):
        bm.check_linear(bm.Settings(suite="linear", linear_sizes=("L2k",)))
    with pytest.raises(ConfigError, match="--linear_cells='gru' is not valid"):
        bm.check_linear(bm.Settings(suite="linear", linear_cells=("gru",)))
    with pytest.raises(ConfigError, match="--linear_budget_s must be a positive number, got 0"):
        bm.check_linear(bm.Settings(suite="linear", linear_budget_s=0))
    with pytest.raises(ConfigError, match="--linear_chunks=64,0: '0' is not a positive integer"):
        bm.settings_from_flags({"linear_chunks": ["64", "0"]})
    settings = bm.settings_from_flags({**bm.QUICK, "suite": "linear", "linear_chunks": ["8"]})
    assert settings.linear_sizes == ("LQ",) and settings.linear_chunks == (8,) and settings.remat_lengths == (16,)
    assert [s.name for s in bm.check_linear(settings)] == ["LQ"]


def test_agreement_raises_beyond_tolerance():
    import numpy as np

    ref = (np.zeros((2, 3, 4), np.float32), np.full((2, 3, 4), 2.0, np.float32))
    close = (ref[0] + 5e-5, ref[1] + 1e-3)
    report = linear._agreement("lru sequential", ref, close)
    assert report["passed"] and report["forward_max_abs_diff"] == pytest.approx(5e-5)
    with pytest.raises(bm.OutputMismatch, match="lru sequential disagrees with the parallel mode: outputs by 0.001"):
        linear._agreement("lru sequential", ref, (ref[0] + 1e-3, ref[1]))
    with pytest.raises(bm.OutputMismatch, match="input grads by 0.01"):
        linear._agreement("lru sequential", ref, (ref[0], ref[1] + 1e-2))  # tol 1e-3 * max(1, 2)
