"""BasicMotions: activity recognition (standing, walking, running, badminton) from a
wrist-worn accelerometer and gyroscope, 6 channels x 100 steps.

  python -m experiments.train --config=configs/basic_motions.py --workdir=/tmp/basic_motions

A 32-unit LSTM reaches test accuracy 1.000 (40/40; loss 0.025) after 400 steps (first at
step 200), in 52 s on 2 shared CPU cores (chance 0.25).

`--config=configs/basic_motions.py:smoke` is a 40-step run of a few seconds, for tests.

Data: the UEA archive's BasicMotions as shipped by sktime (`pip install -e '.[data]'`),
40 train / 40 test, 4 balanced classes; channels standardized with the training statistics.
Chance / majority baseline: accuracy 0.25. Many published UEA-archive classifiers reach 100%.
"""

from configs.common import finish
from gatedrnn.train.config import default_config


def get_config(arg: str | None = None):
    config = default_config()
    config.task = "uea_classification"
    config.data.name = "BasicMotions"

    config.model.cell = "lstm"
    config.model.hidden_size = 32

    config.train.num_steps = 400
    config.train.batch_size = 20
    config.train.learning_rate = 3e-3
    config.optim.warmup_steps = 20

    config.eval.every_steps = 50
    config.eval.batch_size = 40
    config.eval.num_batches = 1
    config.log.every_steps = 25
    config.checkpoint.every_steps = 200
    return finish(config, arg, "basic_motions")
