"""Optimizers and learning-rate schedules from the config's `optim` and `train` groups."""

from __future__ import annotations

import ml_collections
import optax

from gatedrnn.nn.params import with_standard_promotion


def warmup_steps(config: ml_collections.ConfigDict) -> int:
    """`optim.warmup_steps`, clamped to `train.num_steps - 1` so that a short run (a smoke test, a
    `--config.train.num_steps=20` try) still reaches the learning rate at its last step."""
    return max(0, min(int(config.optim.warmup_steps), int(config.train.num_steps) - 1))


def warmup_warning(config: ml_collections.ConfigDict) -> str | None:
    """The one-line warning for a clamped warmup (`warmup_steps`), or None when it is used as set."""
    used = warmup_steps(config)
    if used == int(config.optim.warmup_steps):
        return None
    return (f"warning: optim.warmup_steps={config.optim.warmup_steps} is not shorter than train.num_steps="
            f"{config.train.num_steps}; warming up over {used} steps instead")


def make_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warmup from 0 over `warmup_steps(config)` steps (`optim.warmup_steps`, at most
    `train.num_steps - 1`), then constant, cosine or linear decay to
    `learning_rate * optim.end_learning_rate_factor` at `train.num_steps`."""
    lr = float(config.train.learning_rate)
    warmup = warmup_steps(config)
    decay_steps = max(1, int(config.train.num_steps) - warmup)
    end = lr * float(config.optim.end_learning_rate_factor)
    name = config.optim.schedule
    if name == "constant":
        main = optax.constant_schedule(lr)
    elif name == "cosine":
        main = optax.cosine_decay_schedule(lr, decay_steps, alpha=float(config.optim.end_learning_rate_factor))
    else:  # "linear" (validated in gatedrnn.train.config)
        main = optax.linear_schedule(lr, end, decay_steps)
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Global-norm clipping (if `optim.grad_clip_norm` > 0) then AdamW, SGD or RMSprop."""
    o = config.optim
    schedule = make_schedule(config)
    if o.name == "adamw":
        opt = optax.adamw(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay)
    elif o.name == "sgd":
        opt = optax.sgd(schedule, momentum=o.momentum or None)
        if o.weight_decay:
            opt = optax.chain(optax.add_decayed_weights(o.weight_decay), opt)
    else:  # "rmsprop"
        opt = optax.rmsprop(schedule, eps=o.eps, momentum=o.momentum or None)
        if o.weight_decay:
            opt = optax.chain(optax.add_decayed_weights(o.weight_decay), opt)
    if o.grad_clip_norm > 0:
        opt = optax.chain(optax.clip_by_global_norm(o.grad_clip_norm), opt)
    return with_standard_promotion(opt)
