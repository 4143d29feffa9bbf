"""The results system: train the results suite and/or tabulate runs, into an output directory;
the published tables are rewritten only when asked (`write`).

  results(out="runs/suite")                               # train every SUITE entry; table -> runs/suite/results.md
  results(out="runs/suite", only=["parity_lstm"])         # one entry (the table lists every finished entry in out)
  results(out="runs/suite", table_only=True, write=True)  # and rewrite docs/results_suite.md from the runs in out
  results(runs=["/tmp/a", "/tmp/b"], out="/tmp/table")    # the runs table of given workdirs -> /tmp/table/results.md

`python -m experiments.results` calls `results` (so do the old names, experiments/reproduce_results.py
and experiments/results_table.py). The tables are built by `gatedrnn.lab.results` (one
`summarize_run` per workdir, `suite_row` / `results_rows`, `document`).

Suite mode trains each seed of an entry as `python -m experiments.train <entry.command>` (a
subprocess) into <out>/<entry>/seed<k>, its log in that workdir's train.log; a finished run is
skipped. <out>/results.md and results.csv get a row per entry with finished runs in `out`. With
`write`, the published table (`table`, default docs/results_suite.md) is rewritten too, and with
`readme` the block of that file between `<!-- results-suite:begin -->` and `<!-- results-suite:end -->`;
with `only`, they keep the rows (and commands) of the other entries and only the rerun rows change.

Runs mode tabulates given workdirs (`runs`, and those listed in `manifests`) into
<out>/results.md and results.csv (out defaults to runs/results); with `write`, also into `table`
(default docs/results.md), whole.

Without `write`, no published file (docs/results_suite.md, docs/results.md, README.md) is written,
whatever `out` says: ConfigError instead.
"""

from __future__ import annotations

import concurrent.futures
import os
import shlex
import subprocess
import sys
from typing import Any, Callable, Sequence

from gatedrnn.lab.results import (
    HEADER,
    SUITE,
    SUITE_HEADER,
    Entry,
    document,
    is_finished,
    parse_document,
    read_manifests,
    reproduce_lines,
    results_table,
    seed_workdir,
    suite_row,
    summarize_run,
)
from gatedrnn.lab.tables import write_csv, write_text
from gatedrnn.validation import ConfigError

BEGIN, END = "<!-- results-suite:begin -->", "<!-- results-suite:end -->"
TITLE = "# Results suite\n\n"

SUITE_OUT = "runs/suite"  # suite mode's default out: the runs and their table
RUNS_OUT = "runs/results"  # runs mode's default out: the table
MARKDOWN, CSV = "results.md", "results.csv"  # the tables in out
PUBLISHED_SUITE = "docs/results_suite.md"  # what `write` rewrites by default, per mode
PUBLISHED_RUNS = "docs/results.md"
PUBLISHED = (PUBLISHED_SUITE, PUBLISHED_RUNS, "README.md")  # never written without `write`
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ------------------------------------------------------------------------------ where tables go


def is_published(path: str) -> bool:
    """Whether `path` is a published file (PUBLISHED) of this checkout or of the working directory's."""
    real = os.path.realpath(path)
    return any(real == os.path.realpath(os.path.join(root, p)) for root in (REPO, os.getcwd()) for p in PUBLISHED)


def check_writable(path: str, write: bool) -> None:
    """ConfigError when `path` is a published table and `write` was not given."""
    if not write and is_published(path):
        raise ConfigError(f"{path} is a published table: it is only rewritten with --write (or give another --out)")


def _check_targets(paths: Sequence[str | None], write: bool, table: str | None, readme: str | None) -> None:
    if not write:
        for flag, value in (("table", table), ("readme", readme)):
            if value is not None:
                raise ConfigError(f"--{flag}={value} is only written with --write; add --write, or drop --{flag}")
    for path in paths:
        if path is not None:
            check_writable(path, write)


def _read(path: str) -> str | None:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return f.read()


# ------------------------------------------------------------------------------ the suite


def select(only: Sequence[str]) -> list[Entry]:
    """The SUITE entries named in `only` (all when empty), in SUITE order; ConfigError names an unknown one."""
    names = [e.name for e in SUITE]
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise ConfigError(f"--only: {unknown} are not suite entries; choose from {sorted(names)}")
    return [e for e in SUITE if not only or e.name in only]


def train_seed(entry: Entry, seed: int, out: str) -> str:
    """Trains one seed of `entry` (a subprocess; skipped when finished); RuntimeError when it fails."""
    workdir = os.path.abspath(seed_workdir(out, entry, seed))
    if is_finished(workdir):
        return f"{entry.name} seed {seed}: finished before"
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "train.log"), "a") as log:
        code = subprocess.call([sys.executable, "-m", *entry.command(workdir, seed)], stdout=log,
                               stderr=subprocess.STDOUT)
    if code:
        raise RuntimeError(f"{entry.name} seed {seed} failed (exit {code}); see {workdir}/train.log")
    return f"{entry.name} seed {seed}: done"


def train(entries: Sequence[Entry], out: str, jobs: int, report: Callable[[str], None] = print) -> None:
    """Every seed of every entry, `jobs` at a time; a failed seed is reported and the others go on
    (the table leaves it out)."""
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(train_seed, e, s, out) for e in entries for s in e.seeds]
        for future in concurrent.futures.as_completed(futures):
            try:
                report(future.result())
            except RuntimeError as err:
                print(f"error: {err}", file=sys.stderr, flush=True)


def _entry_commands(entry: Entry, out: str, workdirs: Sequence[str]) -> list[str]:
    """The lines that reproduce each finished seed (`reproduce_lines`: its git revision and the
    train command for its workdir), a `git checkout` only where the revision changes."""
    lines: list[str] = []
    checkout = None
    for seed, workdir in zip(entry.seeds, workdirs):
        shown = seed_workdir(out, entry, seed)
        found = reproduce_lines(summarize_run(workdir), shown) or ["python -m " + shlex.join(entry.command(shown, seed))]
        if found[:-1] and found[0] != checkout:
            checkout = found[0]
            lines.append(checkout)
        lines.append(found[-1])
    return lines


def suite_rows(entries: Sequence[Entry], out: str, previous: str | None = None
               ) -> tuple[list[list[Any]], list[tuple[str, list[str]]]]:
    """(rows with SUITE_HEADER's columns, (name, commands) pairs) in SUITE order: a row per entry of
    `entries` with finished runs in `out`; with `previous` (an earlier `render`), the rows of the
    other SUITE entries are kept from it, as written."""
    kept_rows, kept_commands = parse_document(previous) if previous else ({}, {})
    chosen = {e.name for e in entries}
    rows, commands = [], []
    for e in SUITE:
        seeds = [s for s in e.seeds if e.name in chosen and is_finished(seed_workdir(out, e, s))]
        if seeds:
            done = [seed_workdir(out, e, s) for s in seeds]
            rows.append(suite_row(e, done))
            commands.append((e.name, _entry_commands(Entry(e.name, e.config, e.overrides, tuple(seeds)), out, done)))
        elif e.name not in chosen and e.name in kept_rows:
            rows.append(kept_rows[e.name])
            commands.append((e.name, kept_commands.get(e.name, [])))
    return rows, commands


def render(entries: Sequence[Entry], out: str, previous: str | None = None, write: bool = True) -> str:
    """The suite's markdown (without a heading) of `suite_rows`, for a published file (`write`: its
    intro names --write) or <out>/results.md; with `previous`, its intro is kept too, so that a
    rerun of some entries changes their rows (and commands) only."""
    intro = None
    if previous and "\n\n| " in previous:
        intro = previous.split("\n\n| ", 1)[0].strip()
        intro = intro[len(TITLE):] if intro.startswith(TITLE) else intro
    return _suite_document(out, *suite_rows(entries, out, previous), intro=intro, write=write)


def _suite_document(out: str, rows: Sequence[Sequence[Any]], commands: Sequence[tuple[str, Sequence[str]]],
                    intro: str | None = None, write: bool = True) -> str:
    command = f"python -m experiments.results --table_only --out={out}" + (" --write" if write else "")
    intro = intro or (f"Generated by `{command}` from each run's "
             "metrics.jsonl and final_metrics.json (the last eval on the held-out data, or the numbers the task "
             "computes once at the end). reached: mean ± sd (min-max) over seeds; baseline: the trivial predictor "
             "on the same data; CPU s: process CPU seconds (all threads); wall s: the training loop's wall clock, "
             "compilation and evals included; measured on 2 CPU cores shared by two runs at a time.")
    return document(intro, SUITE_HEADER, rows, commands, "Commands (from the repository root):")


def _readme_block(readme: str, path: str) -> tuple[str, str, str]:
    """(head, block, tail) of a file around the results-suite markers; ConfigError when they are missing."""
    if BEGIN not in readme or END not in readme:
        raise ConfigError(f"{path} has no {BEGIN} ... {END} block")
    head, rest = readme.split(BEGIN, 1)
    block, tail = rest.split(END, 1)
    return head, block, tail


def reproduce(out: str = SUITE_OUT, only: Sequence[str] = (), *, jobs: int = 2, table_only: bool = False,
              write: bool = False, table: str | None = None, readme: str | None = None,
              report: Callable[[str], None] = print) -> str:
    """Trains the selected entries (unless `table_only`) into `out` and writes <out>/results.md and
    results.csv: a row per SUITE entry with finished runs in `out`. With `write`, also `table`
    (default docs/results_suite.md) and `readme`'s results-suite block; with `only`, those keep the
    other entries' rows. Returns <out>/results.md's markdown (without its heading)."""
    entries = select(only)
    markdown, csv = os.path.join(out, MARKDOWN), os.path.join(out, CSV)
    published = (table or PUBLISHED_SUITE) if write else None
    _check_targets([markdown, csv], write, table, readme)
    if readme is not None:  # a README without the markers fails now, not after an hour of training
        _readme_block(_read(readme) or "", readme)
    if not table_only:
        train(entries, out, jobs, report)
    everything = [e for e in SUITE if any(is_finished(seed_workdir(out, e, s)) for s in e.seeds)]
    rows, commands = suite_rows(everything, out)
    text = _suite_document(out, rows, commands, write=False)
    write_text(markdown, TITLE + text)
    write_csv(csv, SUITE_HEADER, rows)
    report(f"wrote {markdown} and {csv}")
    if published is not None:
        write_text(published, TITLE + render(entries, out, _read(published) if only else None))
        report(f"wrote {published}")
    if readme is not None:
        head, block, tail = _readme_block(_read(readme) or "", readme)
        write_text(readme, head + BEGIN + "\n" + render(entries, out, block if only else None) + END + tail)
        report(f"updated {readme}")
    return text


# ------------------------------------------------------------------------------ given runs


def tabulate(workdirs: Sequence[str], out: str = RUNS_OUT, *, title: str = "Results", generated_by: str,
             write: bool = False, table: str | None = None, markdown: str | None = None, csv: str | None = None,
             workdir_for_command: str = "/tmp/{name}", configs_dir: str = "configs",
             report: Callable[[str], None] = print) -> str:
    """The runs table of `workdirs` (`gatedrnn.lab.results.results_table`) into <out>/results.md and
    results.csv (every column, the commands included), or into `markdown` ("-": nowhere) and `csv`
    where given. With `write`, also into `table` (default docs/results.md). Returns the markdown."""
    if not workdirs:
        raise ConfigError("no runs to tabulate: give --runs and/or --manifests")
    if markdown is None:
        markdown, csv = os.path.join(out, MARKDOWN), csv or os.path.join(out, CSV)
    published = (table or PUBLISHED_RUNS) if write else None
    _check_targets([None if markdown == "-" else markdown, csv], write, table, None)
    text, rows = results_table([summarize_run(w) for w in workdirs], title=title, generated_by=generated_by,
                               workdir_for_command=workdir_for_command, configs_dir=configs_dir)
    for path in dict.fromkeys(p for p in (markdown, published) if p not in (None, "-")):
        write_text(path, text)
        report(f"wrote {path}")
    if csv:
        write_csv(csv, HEADER, rows)
        report(f"wrote {csv}")
    return text


# ------------------------------------------------------------------------------ the one entry


def results(*, out: str | None = None, only: Sequence[str] = (), runs: Sequence[str] = (),
            manifests: Sequence[str] = (), jobs: int = 2, table_only: bool = False, write: bool = False,
            table: str | None = None, readme: str | None = None, markdown: str | None = None,
            csv: str | None = None, title: str = "Results", generated_by: str = "python -m experiments.results",
            workdir_for_command: str = "/tmp/{name}", configs_dir: str = "configs",
            report: Callable[[str], None] = print) -> str:
    """What `python -m experiments.results` does: runs mode (`tabulate`) when `runs` or `manifests`
    name workdirs, else suite mode (`reproduce`); returns the table's markdown. ConfigError for
    options of the other mode, an unknown entry, or a published file without `write`."""
    if runs or manifests:
        mixed = [f"--{name}" for name, value in (("only", only), ("table_only", table_only), ("readme", readme))
                 if value]
        if mixed:
            raise ConfigError(f"{', '.join(mixed)}: options of the suite, but --runs/--manifests tabulate given "
                              "runs; give one or the other")
        return tabulate([*runs, *read_manifests(manifests)], out or RUNS_OUT, title=title,
                        generated_by=generated_by, write=write, table=table, markdown=markdown, csv=csv,
                        workdir_for_command=workdir_for_command, configs_dir=configs_dir, report=report)
    if markdown is not None or csv is not None:
        raise ConfigError("the suite's table goes to <out>/results.md and results.csv; "
                          "--markdown/--csv are for --runs/--manifests")
    return reproduce(out or SUITE_OUT, only, jobs=jobs, table_only=table_only, write=write, table=table,
                     readme=readme, report=report)
