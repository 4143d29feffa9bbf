"""Polyphonic music: next-frame prediction on Bach's four-part chorales (as JSB Chorales).

  python -m experiments.train --config=configs/bach_chorales.py --workdir=/tmp/bach_chorales

A 128-unit LSTM reaches a test NLL of 8.96 nats per frame after 1,500 steps of 32 windows
(about 220 passes over the 218 training chorales; train 8.68), against 11.40 for independent
pitches with their training frequencies; frame-level accuracy 0.168. 5 min 3 s on 2 shared CPU
cores (other jobs running), with a warm cache; the eval NLL was 9.09 at step 800 and 8.97 at
1,200, so the cosine schedule had flattened it out. The three samples have 3.6-4.4 notes per
frame (the chorales: 3.87).

`--config=configs/bach_chorales.py:smoke` is a 40-step run of a few seconds on 6 chorales, for tests.

Data: the 364 four-part chorales of music21's corpus (`pip install -e '.[data]'`), as binary piano
rolls over the 88 piano keys with one frame per quarter note (`data.steps_per_quarter`), not
transposed (`data.transpose="c"` takes every key signature to none); a fixed split by chorale,
218 train / 73 valid / 73 test (`gatedrnn/tasks/music.py`). The first parse takes about 40 s
of CPU (80 s on 2 busy cores); the rolls are then cached (64 KB) under ~/.cache/gatedrnn. Training
crops chorales to windows of `data.seq_len` frames (128: every training chorale whole, the longest
has 128); the eval scores every frame of every
chorale of `data.eval_split` (73 chorales, one batch). Loss: binary cross-entropy summed over the
88 pitches, averaged over frames: `eval_nll_per_step` in nats, next to
`eval_baseline_nll_per_step` (independent pitches with their training frequencies) and Bay et
al. 2009's frame-level accuracy. At the end, 3 sampled chorales go to <workdir>/sample_*.mid and
samples.png.

Published, JSB Chorales test NLL per step (nats; 229 / 76 / 77 chorales from other sources, so
close but not the same data): tanh RNN 8.61, GRU 8.54, LSTM 8.67 (Chung et al. 2014, Table 2);
RNN-RBM about 7.27 (Boulanger-Lewandowski et al. 2012, as commonly cited; not re-checked here).
"""

from configs.common import finish
from gatedrnn.train.config import default_config


def get_config(arg: str | None = None):
    config = default_config()
    config.task = "chorales"
    config.data.steps_per_quarter = 1
    config.data.transpose = "none"  # or "c"
    config.data.max_chorales = 0  # 0: all 364; else the first N (at least 3)
    config.data.seq_len = 128  # training window, frames
    config.data.eval_split = "test"  # or "valid" (for tuning)

    config.model.cell = "lstm"
    config.model.hidden_size = 128

    config.train.num_steps = 1500
    config.train.batch_size = 32
    config.train.learning_rate = 3e-3
    config.optim.warmup_steps = 50
    config.optim.weight_decay = 1e-4

    config.eval.every_steps = 100
    config.eval.batch_size = 80
    config.eval.num_batches = 1
    config.log.every_steps = 50
    config.checkpoint.every_steps = 500

    def smoke(config):
        config.data.max_chorales = 6  # 4 / 1 / 1: about a second to parse with a cold cache
        config.data.seq_len = 16

    return finish(config, arg, "bach_chorales", smoke)
