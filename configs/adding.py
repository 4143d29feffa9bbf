"""The adding problem (Hochreiter & Schmidhuber 1997, in the form of Le et al. 2015).

  python -m experiments.train --config=configs/adding.py --workdir=/tmp/adding

An LSTM of 32 units on sequences of T=50 steps: the eval MSE falls from the always-predict-1
baseline, 0.167 (0.158 on the eval batches), to 0.001-0.003 in 1,500 steps (seed 0: 0.0028; the
loss leaves the baseline between steps 600 and 900), in 24 seconds on 2 CPU cores.

`--config=configs/adding.py:smoke` is a 40-step run of a few seconds, for tests.

Input [batch, T, 2]: values drawn from U[0, 1] and a marker channel with exactly two ones,
one in each half of the sequence; the target is the sum of the two marked values. Data are
generated on the fly from (train.seed, step). `data.seq_len` names T; try
--config.data.seq_len=200 --config.model.cell=rnn to see the tanh RNN stay at the baseline.
"""

from configs.common import finish
from gatedrnn.train.config import default_config


def get_config(arg: str | None = None):
    config = default_config()
    config.task = "adding"
    config.data.seq_len = 50

    config.model.cell = "lstm"
    config.model.hidden_size = 32

    config.train.num_steps = 1500
    config.train.batch_size = 64
    config.train.learning_rate = 1e-2
    config.optim.warmup_steps = 50
    config.optim.grad_clip_norm = 1.0

    config.eval.every_steps = 100
    config.eval.batch_size = 512
    config.eval.num_batches = 2
    config.log.every_steps = 50
    config.checkpoint.every_steps = 500

    def smoke(config):
        config.data.seq_len = 10

    return finish(config, arg, "adding", smoke)
