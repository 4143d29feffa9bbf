"""JapaneseVowels: which of 9 speakers said /ae/, from 7-29 frames of 12 LPC cepstra.

  python -m experiments.train --config=configs/japanese_vowels.py --workdir=/tmp/japanese_vowels

A 64-unit LSTM reaches test accuracy 0.973 (0.981 at step 200) on the 370 test utterances
after 600 steps, in 42 s on 2 shared CPU cores (majority baseline 0.238).

`--config=configs/japanese_vowels.py:smoke` is a 40-step run of a few seconds, for tests.

Data: the UEA archive's JapaneseVowels as shipped by sktime (`pip install -e '.[data]'`;
the .ts files are read without importing sktime): 270 train / 370 test utterances of
variable length (7-29 frames), zero-padded, with the lengths passed to the RNN. The eval
scores the whole test set. Majority-class baseline accuracy: 88/370 = 0.238. Published:
Kudo et al. 1999 report 94.1% correct on this split.
"""

from configs.common import finish
from gatedrnn.train.config import default_config


def get_config(arg: str | None = None):
    config = default_config()
    config.task = "uea_classification"
    config.data.name = "JapaneseVowels"

    config.model.cell = "lstm"
    config.model.hidden_size = 64

    config.train.num_steps = 600
    config.train.batch_size = 32
    config.train.learning_rate = 3e-3
    config.optim.warmup_steps = 30
    config.optim.weight_decay = 1e-4

    config.eval.every_steps = 100
    config.eval.batch_size = 370
    config.eval.num_batches = 1
    config.log.every_steps = 50
    config.checkpoint.every_steps = 200
    return finish(config, arg, "japanese_vowels")
