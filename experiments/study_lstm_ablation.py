"""LSTM ablation in the manner of Greff et al. 2017 ("LSTM: A Search Space Odyssey"): the vanilla
LSTM (with peepholes) and its one-change variants, on the adding problem, several seeds each.

  python -m experiments.study_lstm_ablation --out=/tmp/studies/ablation --seeds=0,1,2

Variants (`gatedrnn.lab.lstm_ablation.GREFF_VARIANTS`, passed as `model.cell_options`): V (vanilla, with
peepholes), NP (no peepholes), CIFG (coupled input-forget gate), NFG / NIG / NOG (no forget /
input / output gate), NIAF / NOAF (no input / output activation). One `train_and_evaluate`
run per (variant, seed) into --out/<variant>_s<seed>; writes --out/lstm_ablation.png (final
eval MSE per run, median bar), lstm_ablation.md and .csv. Other --config.* fields override the
adding problem's config (T, steps, ...). --quick: a seconds-long version for tests.
The study is `gatedrnn.lab.lstm_ablation`.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from gatedrnn.lab.lstm_ablation import GREFF_VARIANTS, lstm_ablation_study
from gatedrnn.validation import ConfigError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/adding.py", "The task config (the adding problem).")
flags.DEFINE_string("out", "/tmp/studies/ablation", "Output directory (runs, plot, tables).")
flags.DEFINE_list("variants", list(GREFF_VARIANTS), "Variants to train.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "train.seed of each run.")
flags.DEFINE_bool("quick", False, "A seconds-long version for tests (2 variants, 1 seed).")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    try:
        print(lstm_ablation_study(FLAGS.config, FLAGS.variants, [int(s) for s in FLAGS.seeds], FLAGS.out,
                                  quick=FLAGS.quick))
    except ConfigError as e:
        raise app.UsageError(str(e)) from None


if __name__ == "__main__":
    app.run(main)
