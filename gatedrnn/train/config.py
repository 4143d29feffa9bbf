"""Shared config defaults, validation and the resume-compatibility check.

Every task config (`configs/<task>.py`) starts from `default_config()` and sets its own
`task` and `data` fields. Validation raises `ConfigError`, a one-line message that names
the field and what is valid; the entry point prints it without a traceback.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable

import ml_collections

from gatedrnn.nn.blocks import BLOCKS
from gatedrnn.scan import ScanOptions
from gatedrnn.validation import ConfigError, check_choice, check_non_negative, check_positive

OPTIMIZERS = ("adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "linear")
DTYPES = ("float32", "bfloat16")  # model.scan.dtype: what a training run may compute in

# Fields that may change between a run and its resume; every other field must match the
# config the checkpoints were written with (it changes the state, the data or the numbers).
RESUMABLE_FIELDS = (
    "train.num_steps",
    "log.",
    "checkpoint.every_steps",
    "checkpoint.keep",
    "checkpoint.keep_best",
    "eval.every_steps",
    "debug.",
)


def default_config() -> ml_collections.ConfigDict:
    """The groups and names every task shares; tasks override and add to them."""
    c = ml_collections.ConfigDict()
    c.task = ""

    c.data = ml_collections.ConfigDict()

    c.model = ml_collections.ConfigDict()
    c.model.cell = "lstm"
    c.model.cell_options = ml_collections.ConfigDict()  # the cell's keyword options, e.g. {'peephole': True}
    c.model.hidden_size = 64
    c.model.num_layers = 1
    c.model.bidirectional = False
    c.model.dropout = 0.0
    c.model.residual = False
    # A block of gatedrnn.nn.blocks around the cell: "hawk", "griffin", "min", "lru"; None: plain RNN
    # layers; "auto": plain layers, except the LRU (linear in its input alone) in its "lru" block
    c.model.block = ml_collections.FieldReference("auto", field_type=str)
    c.model.block_options = ml_collections.ConfigDict()  # the block's keyword options, e.g. {'mlp_expansion': 3}
    c.model.scan = scan_config()

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 1000
    c.train.batch_size = 32
    c.train.learning_rate = 1e-3
    c.train.seed = 0

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adamw"
    c.optim.weight_decay = 0.0
    c.optim.momentum = 0.9  # sgd momentum, rmsprop momentum
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.eps = 1e-8
    c.optim.grad_clip_norm = 1.0  # global-norm clipping; 0 turns it off
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 0
    c.optim.end_learning_rate_factor = 0.0  # final lr = learning_rate * factor

    c.eval = ml_collections.ConfigDict()
    c.eval.every_steps = 100
    c.eval.batch_size = 256
    c.eval.num_batches = 4

    c.log = ml_collections.ConfigDict()
    c.log.every_steps = 50
    c.log.progress = True  # tqdm progress bar (process 0 only)
    c.log.tensorboard = True
    c.log.plots = True

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every_steps = 500
    c.checkpoint.keep = 3  # the newest N checkpoints ...
    c.checkpoint.keep_best = 1  # ... plus the best N by eval loss

    c.debug = ml_collections.ConfigDict()
    c.debug.step_delay_s = 0.0  # sleep after every step: lets tests interrupt a run mid-way
    return c


def scan_config() -> ml_collections.ConfigDict:
    """`model.scan`: how the engine runs every layer, the fields of `gatedrnn.ScanOptions` (see
    `gatedrnn.scan_cell`), with ScanOptions' defaults; `ScanOptions.from_config` reads it."""
    defaults = ScanOptions()
    c = ml_collections.ConfigDict()
    c.mode = defaults.mode  # "auto" (parallel for linear cells), "sequential" or "parallel"
    c.vjp = defaults.vjp  # "fused", "replay" or "autodiff"
    # typed `object` so that an override may change the type: remat=True or 4, projection_chunk=None
    c.remat = ml_collections.FieldReference(defaults.remat, field_type=object)  # False, True/"sqrt", or a chunk length
    c.unroll = ml_collections.FieldReference(defaults.unroll, field_type=object)  # a positive int, or True (fully)
    c.projection_chunk = ml_collections.FieldReference(defaults.projection_chunk, field_type=object)  # int or None
    c.parallel_chunk = ml_collections.FieldReference(defaults.parallel_chunk, field_type=object)  # int or None
    c.parallel_scan = defaults.parallel_scan  # "auto" (linear on CPU, else associative), "associative", "linear"
    c.dtype = "float32"  # compute dtype; "bfloat16" for mixed precision (params stay float32)
    return c


def shrink_for_smoke_test(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A run of a few seconds on a CPU (the `:smoke` argument of every configs/<task>.py).

    Shrinks the shared fields in place; a task shrinks its own `data` fields.
    """
    config.model.hidden_size = 8
    config.model.num_layers = 1
    config.train.num_steps = 40
    config.train.batch_size = 8
    config.optim.warmup_steps = 5
    config.eval.every_steps = 20
    config.eval.batch_size = 16
    config.eval.num_batches = 1
    config.log.every_steps = 5
    config.log.progress = False
    config.log.plots = False
    config.checkpoint.every_steps = 10
    return config


def validate(config: ml_collections.ConfigDict, *, cells: Iterable[str], tasks: Iterable[str]) -> None:
    """Checks the shared fields; a task checks its own `data` fields when it is built."""
    check_choice("task", config.task, tasks)
    check_choice("model.cell", config.model.cell, cells)
    check_choice("model.block", config.model.get("block"), [None, "auto", *BLOCKS])
    for field in ("model.hidden_size", "model.num_layers", "train.num_steps", "train.batch_size",
                  "eval.every_steps", "eval.batch_size", "eval.num_batches", "log.every_steps",
                  "checkpoint.every_steps", "checkpoint.keep"):
        check_positive(field, get_field(config, field))
    check_positive("train.learning_rate", config.train.learning_rate, integer=False)
    check_non_negative("train.seed", config.train.seed, integer=True)
    if not 0.0 <= config.model.dropout < 1.0:
        raise ConfigError(f"model.dropout must lie in [0, 1), got {config.model.dropout!r}")
    check_choice("model.scan.dtype", config.model.scan.dtype, DTYPES)
    ScanOptions.from_config(config.model.scan)  # the other model.scan fields
    check_choice("optim.name", config.optim.name, OPTIMIZERS)
    check_choice("optim.schedule", config.optim.schedule, SCHEDULES)
    for field in ("optim.weight_decay", "optim.momentum", "optim.grad_clip_norm", "optim.warmup_steps",
                  "optim.end_learning_rate_factor", "checkpoint.keep_best", "debug.step_delay_s"):
        check_non_negative(field, get_field(config, field))
    # optim.warmup_steps >= train.num_steps is clamped, with a warning (gatedrnn.train.optim.warmup_steps)


def get_field(config: ml_collections.ConfigDict, dotted: str) -> Any:
    value = config
    for part in dotted.split("."):
        value = value[part]
    return value


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"model": {"cell": "lstm"}} -> {"model.cell": "lstm"} (for ConfigDicts and JSON dicts)."""
    groups = (dict, ml_collections.ConfigDict)
    out: dict[str, Any] = {}
    for key, value in (tree.items() if isinstance(tree, groups) else []):
        name = f"{prefix}{key}"
        if isinstance(value, groups):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)


# Fields added to the config since runs were first saved, and their values that reproduce what a
# run saved without them did (so those runs still resume).
ADDED_FIELDS = {"model.block": (None, "auto"), "model.scan.parallel_chunk": (None,),
                "model.scan.parallel_scan": ("auto",), "model.attention_bias": (False,)}


def check_resume_compatible(config: ml_collections.ConfigDict, saved_path: str) -> None:
    """Raises ConfigError naming the first field where `config` differs from the saved one."""
    if not os.path.exists(saved_path):
        return
    with open(saved_path) as f:
        saved = flatten(json.load(f))
    # Round-trip through JSON so that tuples/lists and ints/floats compare as they were saved.
    current = flatten(json.loads(to_json(config)))
    workdir = os.path.dirname(saved_path)
    for field in sorted(set(saved) | set(current)):
        if any(field == r or (r.endswith(".") and field.startswith(r)) for r in RESUMABLE_FIELDS):
            continue
        if field not in saved and current.get(field) in ADDED_FIELDS.get(field, ()):
            continue  # a field added since, at a value that keeps the old behaviour
        if saved.get(field, "<absent>") != current.get(field, "<absent>"):
            raise ConfigError(
                f"{field}={current.get(field, '<absent>')!r} does not match the checkpoints in {workdir}, "
                f"written with {field}={saved.get(field, '<absent>')!r}; use that value or a new --workdir"
            )
