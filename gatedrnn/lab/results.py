"""Results tables built from training runs' workdirs (never typed by hand).

One summary type and one document for both tables:

- `summarize_run(workdir) -> RunSummary`: a run's config (config.json), its provenance (the config
  file that trained it and the git revision, `gatedrnn.train.runs.read_provenance`), its
  metrics.jsonl records and final_metrics.json, and what the tables read from them.
- the runs table (`python -m experiments.results --runs=...`): `results_rows` gives one row per run
  (HEADER) with the trivial baseline, a published figure where one applies and `run_command`,
  the `experiments.train` command that reproduces the run;
- the results suite (`python -m experiments.results`, trained by `gatedrnn.lab.suite`): one
  row per `SUITE` entry (SUITE_HEADER, `suite_row`), each task's headline metric (`HEADLINES`)
  as mean ± sd over seeds;
- `reproduce_lines`: a run's commands, `git checkout <revision>` (when recorded) and `run_command`;
- `document` writes either as markdown: an intro, the table, then the commands.

`run_command` names the config file the run was trained from: the one `experiments.train`
recorded in the workdir, or for older runs the configs/*.py file whose defaults the run's config
matches best (a task can have several: sequential_mnist is mnist_pixel.py, mnist_rows.py, ...).
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import json
import math
import os
import runpy
import sys
from typing import Any, Iterable, Sequence

from gatedrnn.lab.tables import markdown_table
from gatedrnn.train.metrics import read_final_metrics, read_metrics
from gatedrnn.train.runs import read_config, read_provenance

# (task, cell) -> (the shortest T it applies from, published result, source); only for the cell's
# default options. Qualitative where the source gives a figure, not a number.
PUBLISHED: dict[tuple[str, str], tuple[int, str, str]] = {
    ("adding", "lstm"): (150, "solved: MSE -> ~0 at T = 150, 200, 300, 400", "Le, Jaitly & Hinton 2015, Fig. 2"),
    ("adding", "rnn"): (150, "not solved: MSE stays at ~0.167 for T >= 150", "Le, Jaitly & Hinton 2015, Fig. 2"),
}

SOLVED = 0.1  # a run counts as solving its task once the eval loss is below 0.1 x the trivial baseline

HEADER = ["run", "task", "T", "cell", "options", "steps", "eval loss (last)", "eval loss (best)", "baseline",
          "last / baseline", "first step < 0.1 x baseline", "published", "train time (s)", "revision", "command"]


# ------------------------------------------------------------------------------ one run


def metric_value(records: list[dict[str, Any]], final: dict[str, float], key: str | float | None) -> float:
    """A headline or baseline value of one run: the last finite eval value ("eval_x"), a final
    metric ("final:x", from final_metrics.json) or a constant; NaN for None or a missing one."""
    if key is None:
        return math.nan
    if isinstance(key, (int, float)):
        return float(key)
    if key.startswith("final:"):
        return float(final.get(key[len("final:"):], math.nan))
    values = [r[key] for r in records if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return float(values[-1]) if values else math.nan


def train_time_s(records: Iterable[dict[str, Any]]) -> float:
    """Seconds the loop ran (compilation and evals included): each record's steps since the
    previous record divided by its `steps_per_s`."""
    total, previous = 0.0, 0
    for r in records:
        if "step" in r and r.get("steps_per_s"):
            total += (r["step"] - previous) / r["steps_per_s"]
            previous = r["step"]
    return total


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """What the tables read from one workdir (`summarize_run`). Fields read as attributes, or
    by name like a dict (`summary["eval_loss"]`), as the summaries of earlier versions did."""

    workdir: str  # absolute
    config: dict[str, Any]  # config.json
    config_file: str | None  # the --config experiments.train recorded, e.g. "configs/mnist_pixel.py"
    records: list[dict[str, Any]]  # metrics.jsonl
    final: dict[str, float]  # final_metrics.json ({} when the task writes none)
    task: str
    cell: str
    cell_options: dict[str, Any]
    seq_len: int | None
    steps: int  # of the last record
    eval_loss: float  # the last finite eval loss
    best_eval_loss: float
    baseline: float  # the mean over evals of the eval_baseline* metric
    train_time_s: float
    cpu_s: float  # process CPU seconds (all threads), NaN when not logged
    solved_step: int | None  # the first eval step below SOLVED x baseline
    git_revision: str | None = None  # the commit the run was trained at, when recorded
    git_dirty: bool | None = None  # whether that checkout had uncommitted changes, when recorded

    @property
    def name(self) -> str:
        return os.path.basename(self.workdir)

    @property
    def finished(self) -> bool:
        """Whether the run reached its config's train.num_steps."""
        return self.steps == self.config["train"]["num_steps"]

    @property
    def revision(self) -> str:
        """The short revision for a table cell: "0d7f146a2b", "0d7f146a2b+dirty", or "-" when not recorded."""
        if not self.git_revision:
            return "-"
        return self.git_revision[:10] + ("+dirty" if self.git_dirty else "")

    def metric(self, key: str | float | None) -> float:
        """`metric_value` of this run's records and final metrics."""
        return metric_value(self.records, self.final, key)

    def __getitem__(self, field: str) -> Any:
        return getattr(self, field)


def summarize_run(workdir: str) -> RunSummary:
    """The summary of one workdir; FileNotFoundError names a missing config.json or metrics.jsonl."""
    config = read_config(workdir).to_dict()
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(metrics_path):
        raise FileNotFoundError(f"{metrics_path} is missing: {workdir} is not a finished training run")
    records = read_metrics(metrics_path)
    evals = [r for r in records if isinstance(r.get("eval_loss"), (int, float)) and math.isfinite(r["eval_loss"])]
    baselines = [r[k] for r in evals for k in r if k.startswith("eval_baseline")]
    cpu = [r["cpu_s"] for r in records if r.get("cpu_s")]
    origin = read_provenance(workdir)
    return RunSummary(
        workdir=os.path.abspath(workdir),
        config=config,
        config_file=origin.get("config_file"),
        records=records,
        final=read_final_metrics(workdir),
        task=config["task"],
        cell=config["model"]["cell"],
        cell_options=config["model"].get("cell_options") or {},
        seq_len=config.get("data", {}).get("seq_len"),
        steps=records[-1]["step"] if records else 0,
        eval_loss=evals[-1]["eval_loss"] if evals else math.nan,
        best_eval_loss=min(r["eval_loss"] for r in evals) if evals else math.nan,
        baseline=sum(baselines) / len(baselines) if baselines else math.nan,
        train_time_s=train_time_s(records),
        cpu_s=max(cpu) if cpu else math.nan,
        solved_step=next((r["step"] for r in evals if baselines and r["eval_loss"] < SOLVED * baselines[0]), None),
        git_revision=origin.get("git_revision"),
        git_dirty=origin.get("git_dirty"),
    )


def is_finished(workdir: str) -> bool:
    """A run whose metrics.jsonl reached its config's train.num_steps."""
    try:
        return summarize_run(workdir).finished
    except FileNotFoundError:
        return False


# ------------------------------------------------------------------------------ the command of a run


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys; `model.cell_options` stays one value (it is one command-line field)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name != "model.cell_options":
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def reproduce_command(config: dict[str, Any], default: dict[str, Any] | None, config_file: str,
                      workdir: str) -> str:
    """The `experiments.train` command that trains this config: every field that differs from
    `default` (the config file's own values) as a --config override."""
    current, base = _flatten(config), _flatten(default or {})
    parts = [f"python -m experiments.train --config={config_file} --workdir={workdir}"]
    for field in sorted(current):
        value = current[field]
        if field in base and base[field] == value:
            continue
        if field == "model.cell_options":
            if not value and not base.get(field):
                continue
            parts.append(f"\"--config.{field}={value!r}\"")
        else:
            parts.append(f"--config.{field}={value}")
    return " ".join(parts)


def _split_argument(config_file: str) -> tuple[str, str | None]:
    """"configs/adding.py:smoke" -> ("configs/adding.py", "smoke"), as ml_collections' config flag reads it."""
    path, sep, arg = config_file.partition(":")
    return path, (arg if sep else None)


def _file_default(path: str, arg: str | None) -> dict[str, Any] | None:
    """get_config(arg) of a config file as a dict (read once per process), or None when the file is missing."""
    return _load_default(os.path.abspath(path), arg)


@functools.lru_cache(maxsize=None)
def _load_default(path: str, arg: str | None) -> dict[str, Any] | None:
    if not os.path.exists(path):
        return None
    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))  # config files import configs.common
    added = root not in sys.path
    if added:
        sys.path.append(root)
    try:
        get_config = runpy.run_path(path)["get_config"]
        config = get_config(arg) if arg is not None else get_config()
        return json.loads(json.dumps(config.to_dict()))  # as config.json holds it: tuples as lists
    finally:
        if added:
            sys.path.remove(root)


def config_files(configs_dir: str = "configs") -> list[str]:
    """The task config files of a configs directory (common.py, what they share, left out)."""
    return sorted(p for p in glob.glob(os.path.join(configs_dir, "*.py")) if os.path.basename(p) != "common.py")


_MISSING = object()


def nearest_config_file(config: dict[str, Any], configs_dir: str = "configs") -> str | None:
    """The config file of `configs_dir` with the run's task whose defaults differ from `config` in the
    fewest fields (a field one of them lacks counts as different); None when no file has the task."""
    current = _flatten(config)
    best = None
    for path in config_files(configs_dir):
        default = _file_default(path, None)
        if default is None or default.get("task") != config.get("task"):
            continue
        base = _flatten(default)
        differing = sum(base.get(f, _MISSING) != current.get(f, _MISSING) for f in set(base) | set(current))
        if best is None or differing < best[0]:
            best = (differing, path)
    return None if best is None else best[1]


def run_config_file(summary: RunSummary, configs_dir: str = "configs") -> tuple[str, str] | None:
    """(as the command names it, the file to read its defaults from) for the config file of a run:
    the recorded --config, shown as configs/<name> when it lies in a configs/ directory, or
    `nearest_config_file`; None when neither names one."""
    if summary.config_file:
        path, arg = _split_argument(summary.config_file)
        if os.path.basename(os.path.dirname(os.path.abspath(path))) != "configs":
            return summary.config_file, summary.config_file
        name, suffix = os.path.basename(path), "" if arg is None else f":{arg}"
        return f"configs/{name}{suffix}", os.path.join(configs_dir, name) + suffix
    path = nearest_config_file(summary.config, configs_dir)
    return None if path is None else (f"configs/{os.path.basename(path)}", path)


def run_command(summary: RunSummary, workdir: str, configs_dir: str = "configs") -> str | None:
    """The `experiments.train` command that reproduces the run into `workdir` (`reproduce_command`
    against its config file's defaults); None when no config file has its task."""
    found = run_config_file(summary, configs_dir)
    if found is None:
        return None
    shown, source = found
    return reproduce_command(summary.config, _file_default(*_split_argument(source)), shown, workdir)


def reproduce_lines(summary: RunSummary, workdir: str, configs_dir: str = "configs") -> list[str]:
    """The shell lines that reproduce a run into `workdir`: `git checkout <revision>` when the run
    recorded one (with a note when its checkout had uncommitted changes, which are not recorded),
    then `run_command`; [] when no config file has its task."""
    command = run_command(summary, workdir, configs_dir)
    if command is None:
        return []
    if not summary.git_revision:
        return [command]
    note = "  # the run's checkout had uncommitted changes, not recorded" if summary.git_dirty else ""
    return [f"git checkout {summary.git_revision}{note}", command]


# ------------------------------------------------------------------------------ the results table


def results_rows(summaries: Iterable[RunSummary], workdir_for_command: str = "/tmp/{name}",
                 configs_dir: str = "configs") -> list[list[Any]]:
    """Table rows (see HEADER), in the order given; the last two columns are the run's git revision
    (`RunSummary.revision`) and its `experiments.train` command.

    workdir_for_command: the --workdir in each command, formatted with name = the run's directory name.
    """
    rows = []
    for s in summaries:
        min_len, published, source = PUBLISHED.get((s.task, s.cell), (0, "", ""))
        if s.cell_options or (s.seq_len or 0) < min_len:
            published = ""
        options = ", ".join(f"{k}={v}" for k, v in sorted(s.cell_options.items())) or "-"
        command = run_command(s, workdir_for_command.format(name=s.name), configs_dir)
        rows.append([
            s.name, s.task, s.seq_len if s.seq_len is not None else "-", s.cell, options, s.steps,
            s.eval_loss, s.best_eval_loss, s.baseline, s.eval_loss / s.baseline,
            "never" if s.solved_step is None else s.solved_step,
            f"{published} ({source})" if published else "-", round(s.train_time_s), s.revision, command or "-",
        ])
    return rows


def document(intro: str, header: Sequence[str], rows: Sequence[Sequence[Any]],
             commands: Sequence[tuple[str, Sequence[str]]], commands_heading: str) -> str:
    """Markdown: `intro`, the table, then `commands_heading` and a bash block of (name, commands)
    pairs, each as `# name` and its commands, one a line."""
    block = "".join(f"# {name}\n" + "".join(c + "\n" for c in lines) for name, lines in commands)
    return f"{intro}\n\n{markdown_table(header, rows)}\n{commands_heading}\n\n```bash\n{block}```\n"


def parse_document(text: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The inverse of `document` for merging: (name -> row cells as written, name -> commands)."""
    rows: dict[str, list[str]] = {}
    commands: dict[str, list[str]] = {}
    table, _, rest = text.partition("```bash\n")
    for line in table.splitlines():
        if line.startswith("| ") and line.endswith(" |"):
            cells = line[2:-2].split(" | ")
            rows.setdefault(cells[0], cells)
    name = None
    for line in rest.split("```", 1)[0].splitlines():
        if line.startswith("# "):
            name = line[2:]
            commands[name] = []
        elif name is not None and line:
            commands[name].append(line)
    return rows, commands


def results_table(summaries: Sequence[RunSummary], *, title: str, generated_by: str,
                  workdir_for_command: str = "/tmp/{name}", configs_dir: str = "configs") -> tuple[str, list[list[Any]]]:
    """(markdown, rows with HEADER's columns) of the results table: `# title`, how it was made
    (`generated_by`, the command), the table and each run's `reproduce_lines` below it."""
    rows = results_rows(summaries, workdir_for_command, configs_dir)
    commands = [(s.name, reproduce_lines(s, workdir_for_command.format(name=s.name), configs_dir) or ["-"])
                for s in summaries]
    intro = (f"# {title}\n\nGenerated by `{generated_by}` "
             "from each run's config.json and metrics.jsonl. Eval loss: the task's eval loss (MSE for the adding "
             "problem) on the fixed held-out batches; baseline: the trivial predictor on the same batches (the "
             "mean over evals); first step < 0.1 x baseline: the first eval step below a tenth of the baseline; "
             "train time: the training loop's wall-clock seconds, compilation and evals included.")
    text = document(intro, HEADER[:-1], [row[:-1] for row in rows], commands,
                    "To reproduce a row, run its commands from the repository root:")
    return text, rows


def read_manifests(paths: Sequence[str]) -> list[str]:
    """The workdirs listed in manifest files, one a line (the studies write <out>/manifest.txt)."""
    workdirs = []
    for path in paths:
        with open(path) as f:
            workdirs += [line.strip() for line in f if line.strip()]
    return workdirs


# ------------------------------------------------------------------------------ the results suite
#
# Every task's headline number, computed from a run's metrics.jsonl (the last eval) or its
# final_metrics.json (numbers a task computes once at the end, e.g. beam-search error rates).


@dataclasses.dataclass(frozen=True)
class Headline:
    """What a task's row reports: `key` and `baseline` name a metric ("eval_x" from the last eval
    record, "final:x" from final_metrics.json) or, for the baseline, give a constant."""

    metric: str  # as printed, e.g. "accuracy"
    key: str
    baseline: str | float | None
    baseline_name: str  # what the trivial predictor is
    higher_is_better: bool


HEADLINES: dict[str, Headline] = {
    "adding": Headline("MSE", "eval_loss", "eval_baseline_mse", "always 1", False),
    "copy_memory": Headline("cross-entropy per step", "eval_loss", "eval_baseline_loss", "memoryless", False),
    "parity": Headline("accuracy at 4x the training length", "eval_accuracy", 0.5, "chance", True),
    "sequential_mnist": Headline("accuracy", "eval_accuracy", 0.1, "chance", True),
    "uea_classification": Headline("accuracy", "eval_accuracy", "eval_baseline_accuracy", "majority class", True),
    "char_lm": Headline("bits per character", "eval_bits_per_char", "eval_unigram_bits_per_char", "unigram", False),
    "co2_forecast": Headline("MAE (ppm), 12 months", "eval_mae_ppm", "eval_seasonal_naive_mae_ppm", "seasonal naive",
                             False),
    "text_classification": Headline("accuracy", "eval_accuracy", "eval_baseline_accuracy", "majority class", True),
    "anomaly_detection": Headline("F1 (per point)", "final:test_f1", "final:test_always_anomalous_f1",
                                  "flag everything", True),
    "chorales": Headline("NLL per step (nats)", "eval_nll_per_step", "eval_baseline_nll_per_step",
                         "independent pitches", False),
    "g2p": Headline("phoneme error rate, beam search", "final:test_per_beam", None, "-", False),
}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One row of the results suite: a config file with overrides, trained once per seed."""

    name: str
    config: str  # e.g. "configs/japanese_vowels.py"
    overrides: tuple[tuple[str, Any], ...] = ()
    seeds: tuple[int, ...] = (0,)
    published: str = ""  # the literature's figure with its source, where one applies

    def command(self, workdir: str, seed: int) -> list[str]:
        """The argv (after `python -m`) of `experiments.train` for one seed."""
        args = ["experiments.train", f"--config={self.config}", f"--workdir={workdir}"]
        args += [f"--config.{k}={v}" for k, v in self.overrides]
        return args + ([f"--config.train.seed={seed}"] if seed else [])


SUITE: tuple[Entry, ...] = (
    Entry("adding_T200_lstm", "configs/adding.py", (("data.seq_len", 200), ("train.num_steps", 4000)),
          published="solved: MSE -> ~0 at T = 150-400 (Le, Jaitly & Hinton 2015, Fig. 2)"),
    Entry("adding_T200_gru", "configs/adding.py",
          (("data.seq_len", 200), ("train.num_steps", 4000), ("model.cell", "gru"))),
    Entry("adding_T200_rnn", "configs/adding.py",
          (("data.seq_len", 200), ("train.num_steps", 4000), ("model.cell", "rnn")),
          published="not solved: stays at ~0.167 for T >= 150 (Le, Jaitly & Hinton 2015, Fig. 2)"),
    Entry("copy_memory_T50_lstm", "configs/copy_memory.py"),
    Entry("copy_memory_T50_gru", "configs/copy_memory.py", (("model.cell", "gru"), ("model.hidden_size", 128),
                                                             ("train.num_steps", 6000), ("train.learning_rate", 2e-3))),
    Entry("parity_lstm", "configs/parity.py", seeds=(0, 1, 2)),
    Entry("mnist_rows_lstm", "configs/mnist_rows.py", seeds=(0, 1, 2)),
    Entry("japanese_vowels_lstm", "configs/japanese_vowels.py", seeds=(0, 1, 2),
          published="94.1% (Kudo, Toyama & Shimbo 1999)"),
    *(Entry(f"japanese_vowels_{cell}", "configs/japanese_vowels.py", (("model.cell", cell),), seeds=(0, 1, 2))
      for cell in ("gru", "mgu", "ugrnn", "mingru", "rnn")),  # the cell comparison on a real task
    Entry("basic_motions_lstm", "configs/basic_motions.py", seeds=(0, 1, 2)),
    Entry("char_lm_shakespeare_lstm", "configs/char_lm.py"),
    Entry("co2_forecast_gru", "configs/co2_forecast.py", seeds=(0, 1, 2)),
    Entry("bbc_news_gru", "configs/bbc_news.py"),
    Entry("tweet_sentiment_gru", "configs/tweet_sentiment.py"),
    Entry("ecg_anomaly_lstm", "configs/ecg_anomaly.py"),
    Entry("bach_chorales_lstm", "configs/bach_chorales.py",
          published="JSB Chorales test 8.67 (LSTM), 8.54 (GRU), 8.61 (tanh) nats/step (Chung et al. 2014, Table 2)"),
    Entry("g2p_cmudict_lstm", "configs/g2p_cmudict.py",
          published="PER 7.63% / WER 28.61%, encoder-decoder LSTM on their CMUdict split (Yao & Zweig 2015)"),
)

SUITE_HEADER = ["run", "config", "cell", "seeds", "metric", "reached", "baseline", "published", "steps",
                "CPU s per run", "wall s per run"]


def seed_workdir(out: str, entry: Entry, seed: int) -> str:
    return os.path.join(out, entry.name, f"seed{seed}")


def _mean_sd(values: list[float]) -> str:
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return "-"
    mean = sum(values) / len(values)
    if len(values) == 1 or max(values) - min(values) <= 1e-9 * max(1.0, abs(mean)):  # one seed, or a constant
        return f"{mean:.4g}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.4g} ± {sd:.2g} ({min(values):.4g}-{max(values):.4g})"


def suite_row(entry: Entry, workdirs: list[str]) -> list[Any]:
    """One table row (SUITE_HEADER) from the seed runs of `entry`: mean ± sd (min-max) over seeds."""
    summaries = [summarize_run(w) for w in workdirs]
    task = summaries[0].task
    if task not in HEADLINES:
        raise ValueError(f"task {task!r} has no headline metric; add one to gatedrnn.lab.results.HEADLINES")
    h = HEADLINES[task]
    cpu = [s.cpu_s for s in summaries]
    arrow = "↑" if h.higher_is_better else "↓"
    base = _mean_sd([s.metric(h.baseline) for s in summaries])
    return [
        entry.name, os.path.basename(entry.config), summaries[0].cell, len(summaries), f"{h.metric} {arrow}",
        _mean_sd([s.metric(h.key) for s in summaries]), f"{base} ({h.baseline_name})" if base != "-" else "-",
        entry.published or "-", summaries[0].steps,
        round(sum(cpu) / len(cpu)) if all(c > 0 for c in cpu) else "-",  # NaN (not logged) > 0 is False
        round(sum(s.train_time_s for s in summaries) / len(summaries)),
    ]
