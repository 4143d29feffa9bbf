"""Parity, a state-tracking task: the XOR of the bits so far, at every step.

  python -m experiments.train --config=configs/parity.py --workdir=/tmp/parity

A 32-unit LSTM trained on T = 64 leaves chance between steps 200 and 300 and scores eval
accuracy 1.000 (loss 0.0002, baseline ln 2 = 0.693) on sequences of 256 after 1,000 steps, in
47 s on 2 shared CPU cores. With --config.model.cell=mingru it stays at chance (accuracy
0.505, loss 0.690; 61 s).

`--config=configs/parity.py:smoke` is a 40-step run of a few seconds, for tests.

Input: T random bits; target: their running parity (`data.labels="every_step"`) or only the
final one (`data.labels="last"`, much harder to learn). Chance is accuracy 0.5 and
cross-entropy ln 2 = 0.693 (`eval_baseline_loss`). `data.eval_seq_len` scores length
generalisation (here 4 T). Try `--config.model.cell=mingru`: a linear recurrence with
positive gates cannot track parity (Grazzi et al. 2024).
"""

from configs.common import finish
from gatedrnn.train.config import default_config


def get_config(arg: str | None = None):
    config = default_config()
    config.task = "parity"
    config.data.seq_len = 64
    config.data.labels = "every_step"
    config.data.eval_seq_len = 256

    config.model.cell = "lstm"
    config.model.hidden_size = 32
    config.model.embed_size = 8

    config.train.num_steps = 1000
    config.train.batch_size = 64
    config.train.learning_rate = 3e-3
    config.optim.warmup_steps = 50

    config.eval.every_steps = 100
    config.eval.batch_size = 256
    config.eval.num_batches = 1
    config.log.every_steps = 50
    config.checkpoint.every_steps = 500

    def smoke(config):
        config.model.embed_size = 4
        config.data.seq_len = 10
        config.data.eval_seq_len = 20

    return finish(config, arg, "parity", smoke)
