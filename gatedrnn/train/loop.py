"""The training loop: jitted `train_step` / `eval_step`, checkpoints, metrics and signals.

`train_and_evaluate(config, workdir)` is the whole of a run. It resumes from the newest
checkpoint in `workdir`; since every batch is a function of (seed, step) and every random
number of (seed, step), a resumed run logs exactly the losses of an uninterrupted one.

Stopping: SIGTERM (a preempted job) saves a checkpoint at the current step and returns; SIGINT
(Ctrl-C) saves one and raises `TrainingInterrupted` (one line); a second SIGINT stops at once.
Files are never left half-written: checkpoints are committed atomically by orbax, metrics.jsonl
drops a torn last line on resume, run.json and final_metrics.json are written whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import signal
import sys
import tempfile
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx, struct
from tqdm import tqdm

from gatedrnn import losses
from gatedrnn.cells import CELLS
from gatedrnn.scan import ScanOptions
from gatedrnn.tasks.registry import TASKS, Task, make_task
from gatedrnn.train import distributed, provenance
from gatedrnn.train.checkpoint import CHECKPOINT_DIR, Checkpointer
from gatedrnn.train.config import ConfigError, check_resume_compatible, to_json, validate
from gatedrnn.train.metrics import MetricsWriter, read_metrics, write_final_metrics
from gatedrnn.train.model import SequenceModel
from gatedrnn.train.optim import make_optimizer, make_schedule, warmup_warning

_INIT_STREAM, _DROPOUT_STREAM = 0, 1


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


class WorkdirError(ConfigError):
    """The workdir cannot hold a run (a file, under a file, not writable): one line naming the path."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) stopped the run; the message (one line) says what was saved and how to resume."""


class TrainState(struct.PyTreeNode):
    step: jax.Array  # int32 [], updates done so far
    params: Any  # pure dict of arrays (nnx.to_pure_dict of the model's nnx.Param state)
    opt_state: Any
    metric_sums: dict[str, jax.Array]  # name -> [sum, count] since the last log record
    nonfinite_step: jax.Array  # int32 [], the first step whose loss was not finite, or -1

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def build_model(config: ml_collections.ConfigDict, task: Task, rngs: nnx.Rngs) -> nnx.Module:
    """The task's own model (`task.build_model(config, rngs)`, e.g. an encoder-decoder) or a SequenceModel."""
    own = task.build_model(config, rngs)
    if own is not None:
        return own
    m = config.model
    return SequenceModel(
        cell=m.cell, input_size=task.input_size if not task.vocab_size else m.get("embed_size", m.hidden_size),
        hidden_size=m.hidden_size, output_size=task.output_size, readout=task.readout, rngs=rngs,
        vocab_size=task.vocab_size, num_layers=m.num_layers, bidirectional=m.bidirectional, dropout=m.dropout,
        residual=m.residual, scan=ScanOptions.from_config(m.scan),
        cell_options=m.get("cell_options", {}).to_dict() if m.get("cell_options") else None,
        block=m.get("block"), block_options=m.get("block_options", {}).to_dict() if m.get("block_options") else None,
    )


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything a run derives from its config (never written back into the config)."""

    config: ml_collections.ConfigDict
    task: Task
    graphdef: Any
    other_state: Any  # abstract non-Param model state (dropout RNG streams), refilled every step
    abstract_params: Any  # the params' shapes and dtypes (a pure dict of jax.ShapeDtypeStruct)
    tx: optax.GradientTransformation
    schedule: optax.Schedule

    def model(self, params: Any, rng: jax.Array) -> nnx.Module:
        """The model with `params` and dropout streams seeded by `rng` (inside jit)."""
        leaves, treedef = jax.tree.flatten(self.other_state)
        fresh = [jax.random.fold_in(rng, i) if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)
                 else jnp.zeros(a.shape, a.dtype) for i, a in enumerate(leaves)]
        return nnx.merge(self.graphdef, params, jax.tree.unflatten(treedef, fresh))

    def loss(self, params: Any, batch: dict[str, jax.Array], rng: jax.Array, train: bool):
        model = self.model(params, rng)
        if train:
            model.train()
        else:
            model.eval()
        return self.task.metrics(self.task.apply(model, batch, train), batch)


def make_experiment(config: ml_collections.ConfigDict) -> Experiment:
    """Validates the config and builds the task, the model's structure and the optimizer.

    A bad config value is a ConfigError (one line) from `validate`, the task or the model's
    parts; any other exception is a bug and surfaces as it is.
    """
    validate(config, cells=CELLS, tasks=TASKS)
    task = make_task(config)
    abstract = nnx.eval_shape(lambda: build_model(config, task, nnx.Rngs(params=0, dropout=1)))
    graphdef, params, other = nnx.split(abstract, nnx.Param, ...)
    return Experiment(config, task, graphdef, other, nnx.to_pure_dict(params), make_optimizer(config),
                      make_schedule(config))


def init_state(exp: Experiment) -> TrainState:
    """The initial train state, a pure function of `train.seed`.

    Run eagerly (op by op): compiling the whole initialization as one program takes longer
    on a CPU than running it.
    """
    key = jax.random.fold_in(jax.random.key(exp.config.train.seed), _INIT_STREAM)
    model = build_model(exp.config, exp.task, nnx.Rngs(params=key, dropout=jax.random.fold_in(key, 1)))
    return _fresh_state(exp, nnx.to_pure_dict(nnx.split(model, nnx.Param, ...)[1]))


def abstract_state(exp: Experiment, sharding: jax.sharding.Sharding | None = None) -> TrainState:
    """`init_state`'s shapes and dtypes (jax.ShapeDtypeStruct leaves), from the experiment's
    abstract params: no model is built. With `sharding` on every leaf: what a checkpoint restores into."""
    abstract = jax.eval_shape(lambda p: _fresh_state(exp, p), exp.abstract_params)
    if sharding is None:
        return abstract
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), abstract)


def _fresh_state(exp: Experiment, params: Any) -> TrainState:
    """Step 0 around `params`: a fresh optimizer state and zero metric sums."""
    sample = {k: jnp.asarray(v) for k, v in exp.task.train_batch(0, 0, 1).items()}
    sums = jax.eval_shape(lambda p: exp.loss(p, sample, jax.random.key(0), False)[1], params)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=exp.tx.init(params),
        metric_sums=jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), sums),
        nonfinite_step=jnp.full((), -1, jnp.int32),
    )


def train_step(exp: Experiment, state: TrainState, batch: dict[str, jax.Array]) -> TrainState:
    """One optimizer update; dropout RNG = fold_in(seed key, step). Metrics accumulate in the state."""
    rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(exp.config.train.seed), _DROPOUT_STREAM), state.step)
    grad_fn = jax.value_and_grad(lambda p: exp.loss(p, batch, rng, True), has_aux=True)
    (loss, sums), grads = grad_fn(state.params)
    updates, opt_state = exp.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    first_bad = (state.nonfinite_step < 0) & ~jnp.isfinite(loss)
    return TrainState(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        metric_sums=losses.add_sums(state.metric_sums, sums),
        nonfinite_step=jnp.where(first_bad, state.step + 1, state.nonfinite_step),
    )


def eval_step(exp: Experiment, params: Any, batch: dict[str, jax.Array]) -> losses.Sums:
    return exp.loss(params, batch, jax.random.key(0), False)[1]


def make_eval_fn(exp: Experiment, repl: jax.sharding.Sharding, data: jax.sharding.Sharding):
    """`eval_step` jitted as the loop runs it: params replicated, batches split over devices."""
    return jax.jit(lambda p, b: eval_step(exp, p, b), in_shardings=(repl, data), out_shardings=repl)


def eval_batches(exp: Experiment, data: jax.sharding.Sharding) -> list[dict[str, jax.Array]]:
    """The fixed held-out set: `eval.num_batches` batches of `eval.batch_size`, from `train.seed`."""
    c = exp.config
    return [distributed.global_batch(exp.task.eval_batch(c.train.seed, i, c.eval.batch_size), data)
            for i in range(c.eval.num_batches)]


def evaluate(eval_fn, params: Any, batches: list[dict[str, jax.Array]]) -> dict[str, float]:
    """{"eval_loss": ..., "eval_<metric>": ...}: the sums over `batches`, normalized on the host."""
    total = None
    for batch in batches:
        sums = eval_fn(params, batch)
        total = sums if total is None else losses.add_sums(total, sums)
    return {f"eval_{k}": v for k, v in losses.normalize(distributed.to_host(total)).items()}


def _reset_metrics(state: TrainState) -> TrainState:
    return state.replace(metric_sums=jax.tree.map(jnp.zeros_like, state.metric_sums))


class _Preemption:
    """SIGTERM (a preempted batch job) as a stop request that the loop polls after every step.

    One process: a Python SIGTERM handler sets a flag. Several processes: JAX's preemption
    service (started by `jax.distributed.initialize`) hears the signal on any process and
    agrees on one step at which every process stops (`reached_preemption_sync_point`).
    """

    def __init__(self):
        self.received = False
        self._old = None
        self._multi = jax.process_count() > 1

    def __enter__(self):
        if not self._multi and threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)

    def requested(self, step: int) -> bool:
        if self._multi:
            from jax.experimental import multihost_utils

            return multihost_utils.reached_preemption_sync_point(step)
        return self.received


class _Interrupt:
    """SIGINT (Ctrl-C) as a stop request, the way `_Preemption` takes SIGTERM (one process only).

    Normally the handler only sets `received` (the loop stops after the step, with a checkpoint,
    and nothing is torn mid-write); inside `immediate(message)` (the final report: long, and
    writing nothing) it raises `TrainingInterrupted(message)` at once. A second SIGINT stops at
    once: with `exit_at_once` (the command line) the process exits with status 130, as a kill
    would, which every file here survives; else (a notebook) it raises KeyboardInterrupt.
    """

    def __init__(self, exit_at_once: bool):
        self.exit_at_once = exit_at_once
        self.received = False
        self.where = ""  # for the second SIGINT's message
        self._immediate: str | None = None
        self._old = None

    def __enter__(self):
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)

    def _handle(self, signum, frame):
        if self.received:
            message = f"received a second SIGINT: stopped at once{self.where}"
            if self.exit_at_once:
                print(message, file=sys.stderr, flush=True)
                os._exit(130)
            raise KeyboardInterrupt(message)
        self.received = True
        if self._immediate is not None:
            raise TrainingInterrupted(self._immediate)

    @contextlib.contextmanager
    def immediate(self, message: str):
        if self.received:
            raise TrainingInterrupted(message)
        self._immediate = message
        try:
            yield
        finally:
            self._immediate = None


def _log(message: str) -> None:
    if jax.process_index() == 0:
        print(message, file=sys.stderr, flush=True)


class _Run:
    """The jitted functions, the checkpointer and the writer of one run (see `train_and_evaluate`)."""

    def __init__(self, exp: Experiment, workdir: str):
        c = self.config = exp.config
        self.exp = exp
        mesh = distributed.make_mesh()
        self.repl, self.data = distributed.replicated(mesh), distributed.batch_sharded(mesh)
        repl, data = self.repl, self.data
        self.step_fn = jax.jit(lambda s, b: train_step(exp, s, b), in_shardings=(repl, data), out_shardings=repl,
                               donate_argnums=0)
        self.eval_fn = make_eval_fn(exp, repl, data)
        self.reset_fn = jax.jit(_reset_metrics, in_shardings=repl, out_shardings=repl, donate_argnums=0)
        self.ckpt = Checkpointer(os.path.join(workdir, CHECKPOINT_DIR), keep=c.checkpoint.keep,
                                 keep_best=c.checkpoint.keep_best)
        self.eval_batches = eval_batches(exp, data)

    def restore_or_init(self) -> tuple[int, TrainState]:
        abstract = abstract_state(self.exp, self.repl)
        step, restored = self.ckpt.restore_newest(abstract.as_dict(), report=lambda m: _log(f"warning: {m}"))
        if restored is None:
            return 0, distributed.replicate(init_state(self.exp), self.repl)
        _log(f"resuming from the checkpoint at step {step} in {self.ckpt.directory}")
        return step, TrainState(**restored)

    def train_batch(self, step: int) -> dict[str, jax.Array]:
        c = self.config
        return distributed.global_batch(self.exp.task.train_batch(c.train.seed, step, c.train.batch_size), self.data)

    def evaluate(self, params: Any) -> dict[str, float]:
        return evaluate(self.eval_fn, params, self.eval_batches)

    def check_finite(self, state: TrainState) -> None:
        bad = int(distributed.to_host(state.nonfinite_step))
        if bad >= 0:
            self.ckpt.wait()
            good = self.ckpt.all_steps()
            kept = f"the last good checkpoint is step {good[-1]} in {self.ckpt.directory}" if good else "no checkpoint was saved"
            raise NonFiniteLossError(f"the training loss became non-finite at step {bad}; stopped ({kept})")


def _has_checkpoints(workdir: str) -> bool:
    directory = os.path.join(workdir, CHECKPOINT_DIR)
    return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


def checkpoint_steps(workdir: str) -> list[int]:
    """The steps of the committed checkpoints in `workdir` (from the directory listing; nothing is read)."""
    directory = os.path.join(workdir, CHECKPOINT_DIR)
    if not os.path.isdir(directory):
        return []
    return sorted(int(n) for n in os.listdir(directory)
                  if n.isdigit() and os.path.exists(os.path.join(directory, n, "commit_success.txt")))


def prepare_workdir(workdir: str) -> None:
    """Creates `workdir` if needed and checks that files can be written there; WorkdirError (one
    line naming the path and the problem) otherwise. Called before anything is compiled."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"workdir {workdir} is a file, not a directory; give a directory (a new one is created)")
    try:
        os.makedirs(workdir, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_test_", dir=workdir)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        parent = os.path.dirname(workdir)
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if e.errno == errno.ENOTDIR or (parent and not os.path.isdir(parent)):
            raise WorkdirError(f"workdir {workdir} cannot be created: {parent} is a file, not a directory") from None
        where = "cannot be created" if not os.path.isdir(workdir) else "is not writable"
        raise WorkdirError(f"workdir {workdir} {where}: {e.strerror or e} (a directory you can write to is needed)") from None


def _finished_and_intact(exp: Experiment, workdir: str) -> bool:
    """Whether run.json says the run finished at train.num_steps or later, and its final checkpoint
    matches this config and reads back (read, not compiled). Otherwise the normal path runs,
    which reports a damaged checkpoint or another config's and resumes or refuses."""
    finished = provenance.finished_step(workdir)
    if (finished is None or finished < exp.config.train.num_steps or finished not in checkpoint_steps(workdir)
            or not os.path.exists(os.path.join(workdir, "config.json"))):
        return False
    ckpt = Checkpointer(os.path.join(workdir, CHECKPOINT_DIR), keep=1_000_000, keep_best=0)
    try:
        ckpt.restore(finished, abstract_state(exp, distributed.replicated(distributed.make_mesh())).as_dict())
        return True
    except Exception:  # noqa: BLE001 - damaged or another config's: the normal path says which
        return False
    finally:
        ckpt.close()


def _check_divisible(config: ml_collections.ConfigDict) -> None:
    n = jax.device_count()
    for field, size in (("train.batch_size", config.train.batch_size), ("eval.batch_size", config.eval.batch_size)):
        if size % n:
            raise ConfigError(f"{field}={size} must be divisible by the number of devices ({n})")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, config_file: str | None = None,
                       exit_at_once_on_second_interrupt: bool = False) -> dict[str, Any]:
    """Trains (or resumes) the run the config describes in `workdir`; returns the last record.

    When the run finishes, the loop writes the task's `final_report` (text, metrics) to report.txt
    and final_metrics.json and marks run.json finished; a run stopped by SIGTERM saves a checkpoint
    and skips the report (the rerun that finishes writes it). A finished run (run.json says so,
    at this `train.num_steps` or beyond) returns its last record at once: nothing is compiled or
    written. `config_file` (the command line's --config) goes into run.json with the git revision.

    Raises ConfigError (bad config, or a workdir written by an incompatible config; the
    workdir is then left untouched), WorkdirError (a workdir that cannot be written),
    NonFiniteLossError (the last good checkpoint stays) and TrainingInterrupted (SIGINT: a
    checkpoint at the current step is saved first). `exit_at_once_on_second_interrupt` makes a
    second SIGINT end the process (status 130) instead of raising KeyboardInterrupt.
    """
    with _Interrupt(exit_at_once_on_second_interrupt) as interrupt:
        return _train_and_evaluate(config, os.path.abspath(workdir), config_file, interrupt)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, config_file: str | None,
                        interrupt: _Interrupt) -> dict[str, Any]:
    c = config
    exp = make_experiment(config)
    if _has_checkpoints(workdir):  # with none, there is nothing to resume and any config goes
        check_resume_compatible(config, os.path.join(workdir, "config.json"))
    _check_divisible(config)
    primary = jax.process_index() == 0
    if _finished_and_intact(exp, workdir):
        finished = provenance.finished_step(workdir)
        _log(f"already finished at step {finished} in {workdir}; nothing to train "
             f"(a larger --config.train.num_steps trains on)")
        return (read_metrics(os.path.join(workdir, "metrics.jsonl")) or [{}])[-1] if primary else {}
    warning = warmup_warning(config)
    if warning:
        _log(warning)
    if primary:
        prepare_workdir(workdir)
    # Nothing above writes; from here on the workdir is ours.
    run = _Run(exp, workdir)
    interrupt.where = f" (the newest complete checkpoint in {run.ckpt.directory} is kept; rerun the same command to resume)"
    start, state = run.restore_or_init()
    _log(f"training on {jax.device_count()} device(s) in {jax.process_count()} process(es)")
    if primary:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(to_json(config))
        provenance.record_start(workdir, start, config_file)
    writer = MetricsWriter(workdir, resume_step=start, enabled=primary, tensorboard=c.log.tensorboard, plots=c.log.plots)
    last_record: dict[str, Any] = (read_metrics(writer.path) or [{}])[-1] if primary else {}
    saved_at, stopped_by = start, None
    bar = tqdm(total=c.train.num_steps, initial=start, disable=not (primary and c.log.progress), unit="step",
               dynamic_ncols=True, file=sys.stderr)
    window_start, window_steps = time.perf_counter(), 0
    # CPU seconds of this process (every thread), summed over the run's restarts.
    cpu_offset = (last_record.get("cpu_s") or 0.0) - time.process_time()
    try:
        if interrupt.received:  # Ctrl-C while setting up: no step was taken, nothing to save
            run.ckpt.wait()
            raise TrainingInterrupted(f"received SIGINT before the first step: nothing to save in {workdir}; "
                                      f"rerun the same command to {'resume' if start else 'start'}")
        with _Preemption() as preemption:
            for step in range(start, c.train.num_steps):
                state = run.step_fn(state, run.train_batch(step))
                done, window_steps = step + 1, window_steps + 1
                bar.update(1)
                if c.debug.step_delay_s:
                    time.sleep(c.debug.step_delay_s)
                stop = preemption.requested(done) or interrupt.received
                is_eval = done % c.eval.every_steps == 0 or done == c.train.num_steps
                eval_metrics = None
                if is_eval or done % c.log.every_steps == 0:
                    run.check_finite(state)
                    record = {"step": done, **losses.normalize(distributed.to_host(state.metric_sums)),
                              "learning_rate": float(exp.schedule(done - 1))}
                    state = run.reset_fn(state)
                    if is_eval:
                        eval_metrics = run.evaluate(state.params)
                        record.update(eval_metrics)
                    record["steps_per_s"] = window_steps / max(time.perf_counter() - window_start, 1e-9)
                    record["cpu_s"] = cpu_offset + time.process_time()
                    writer.write(record)
                    last_record = record
                    bar.set_postfix(loss=f"{record['loss']:.4g}", ex_per_s=f"{record['steps_per_s'] * c.train.batch_size:.0f}")
                    window_start, window_steps = time.perf_counter(), 0
                if stop or done % c.checkpoint.every_steps == 0 or done == c.train.num_steps:
                    run.check_finite(state)
                    run.ckpt.save(done, state.as_dict(), metrics=eval_metrics or run.evaluate(state.params))
                    saved_at = done
                if stop:
                    run.ckpt.wait()
                    bar.close()
                    stopped_by = "SIGINT" if interrupt.received else "SIGTERM"
                    if stopped_by == "SIGTERM":
                        skipped = (" (the final report is skipped: it runs when the run finishes)"
                                   if type(exp.task).final_report is not Task.final_report else "")
                        _log(f"received SIGTERM: saved a checkpoint at step {done} in {run.ckpt.directory}; "
                             f"rerun the same command to resume{skipped}")
                    break
            run.check_finite(state)
    finally:
        bar.close()
        run.ckpt.close()
        writer.close()
    if stopped_by == "SIGINT":
        raise TrainingInterrupted(f"received SIGINT: saved a checkpoint at step {saved_at} in {run.ckpt.directory}; "
                                  "rerun the same command to resume")
    if primary and stopped_by is None:  # samples, beam-search scores, MIDI files ...: not inside a grace period
        reporting = (f"received SIGINT during the final report: the run is trained (checkpoint at step {saved_at} "
                     f"in {run.ckpt.directory}); rerun the same command to write the report")
        with interrupt.immediate(reporting):  # Ctrl-C stops the report at once: it writes nothing ...
            model = exp.model(jax.tree.map(jnp.asarray, distributed.to_host(state.params)), jax.random.key(0))
            model.eval()
            report, final_metrics = exp.task.final_report(model, c.train.seed, workdir)
        if final_metrics:  # ... and these writes, short, finish before a Ctrl-C is acted on
            write_final_metrics(workdir, final_metrics)
        if report:
            with open(os.path.join(workdir, "report.txt"), "w") as f:
                f.write(report + "\n")
            _log(report)
    if primary:
        plot = writer.plot()
        if stopped_by is None:
            provenance.record_finished(workdir, saved_at)
        _log(f"metrics: {writer.path}\ncheckpoints: {run.ckpt.directory} (newest step {saved_at})"
             + (f"\nplot: {plot}" if plot else ""))
    return last_record
