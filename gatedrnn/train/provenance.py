"""Where a run came from and how far it got: `<workdir>/run.json`, written by `train_and_evaluate`.

  {"config_file": "configs/adding.py:smoke",   # the --config it was (last) started with, or null
   "git_revision": "63ab425...", "git_dirty": false,   # the code of the last start, null when unknown
   "starts": [{"step": 0, "config_file": ..., "git_revision": ..., "git_dirty": ..., "time": ...}, ...],
   "finished_step": 1500}                       # set once the run's final report is written; else null

config.json stays the resolved config alone (what `read_config` returns and a resume is checked
against); this file sits beside it. The git revision is `git rev-parse HEAD` of the checkout
holding the gatedrnn package, and `git_dirty` whether a tracked file differs from it (untracked
files do not count: run directories inside the checkout would make every run dirty). Neither
ever fails a run: without git or a checkout, both are null.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from typing import Any

RUN_JSON = "run.json"
CONFIG_FILE = "config_file.txt"  # the --config alone, as runs before run.json recorded it

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../gatedrnn


def git_revision(directory: str = _PACKAGE_DIR) -> tuple[str | None, bool | None]:
    """(HEAD's commit hash, whether tracked files differ from it) of the checkout holding `directory`;
    (None, None) when git is missing, `directory` is not in a checkout, or git fails or hangs."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", directory, *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        revision = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None
    return revision or None, dirty


def read_run_json(workdir: str) -> dict[str, Any]:
    """run.json's contents; {} when there is none (a run from before it existed) or it is unreadable."""
    try:
        with open(os.path.join(workdir, RUN_JSON)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_json(path: str, record: dict[str, Any]) -> None:
    """`record` as JSON at `path`, atomically: a reader (or a killed writer) never sees half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def record_start(workdir: str, step: int, config_file: str | None) -> dict[str, Any]:
    """Notes a (re)start at `step` in run.json (and `config_file` in config_file.txt); returns the record."""
    revision, dirty = git_revision()
    record = read_run_json(workdir)
    if config_file is None:  # train_and_evaluate called from Python: keep what an earlier start recorded
        config_file = record.get("config_file")
    start = {"step": int(step), "config_file": config_file, "git_revision": revision, "git_dirty": dirty,
             "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    record.update(config_file=config_file, git_revision=revision, git_dirty=dirty, finished_step=None,
                  starts=[*record.get("starts", []), start])
    write_json(os.path.join(workdir, RUN_JSON), record)
    if config_file is not None:
        with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
            f.write(config_file + "\n")
    return record


def record_finished(workdir: str, step: int) -> None:
    """Notes in run.json that the run finished at `step` (its final report and plots are written)."""
    record = read_run_json(workdir)
    record["finished_step"] = int(step)
    write_json(os.path.join(workdir, RUN_JSON), record)


def read_config_file(workdir: str) -> str | None:
    """config_file.txt: the --config a run was started with, or None if none was recorded."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return f.read().strip() or None


def recorded_config_file(workdir: str) -> str | None:
    """The --config of the run's latest start: run.json's, else (a run from before it) config_file.txt's."""
    return read_run_json(workdir).get("config_file") or read_config_file(workdir)


def finished_step(workdir: str) -> int | None:
    """The step the run finished at (run.json), or None: unfinished, interrupted, or from before run.json."""
    step = read_run_json(workdir).get("finished_step")
    return step if isinstance(step, int) else None
