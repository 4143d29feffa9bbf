"""Process-level runtime settings that make JAX on the CPU fast.

glibc's malloc serves every buffer above its mmap threshold (dynamic, at most 32 MiB by
default) with a fresh `mmap` and returns it to the OS on `free`. XLA allocates and frees
its large temporaries on every call, so each call re-faults those pages; on a large matmul
that cost up to 4x here. Raising `MALLOC_MMAP_THRESHOLD_` and `MALLOC_TRIM_THRESHOLD_`
keeps such buffers in the heap. glibc reads them once, at process start, so they must be
in the environment *before* Python starts:

    eval "$(python -m gatedrnn.lab.runtime)"     # prints `export NAME=VALUE` lines
    python -m experiments.train ...

or re-exec the current process with them (what `experiments/benchmark.py` does):

    from gatedrnn.lab.runtime import reexec_with_malloc_env
    reexec_with_malloc_env()   # returns at once if already set; otherwise never returns

Caveat: threads other than the main one allocate from glibc's per-thread arenas, whose
heaps hold at most 64 MiB; larger buffers there are still mmapped whatever the threshold
(`MALLOC_ARENA_MAX=1` would avoid that at the cost of lock contention; not set here).
"""

from __future__ import annotations

import os
import sys

MALLOC_THRESHOLD_BYTES = 1 << 30  # 1 GiB: buffers below this stay in the heap after free

_MARKER = "GATEDRNN_MALLOC_ENV"


def malloc_env(threshold_bytes: int = MALLOC_THRESHOLD_BYTES) -> dict[str, str]:
    """The environment variables (name -> value) that keep large buffers in glibc's heap."""
    if threshold_bytes <= 0:
        raise ValueError(f"threshold_bytes must be positive, got {threshold_bytes}")
    value = str(int(threshold_bytes))
    return {"MALLOC_MMAP_THRESHOLD_": value, "MALLOC_TRIM_THRESHOLD_": value}


def malloc_env_active(env: dict[str, str] | None = None) -> bool:
    """Whether this process started with `malloc_env()`'s variables (any values)."""
    env = os.environ if env is None else env
    return all(name in env for name in malloc_env())


def reexec_with_malloc_env() -> None:
    """Re-executes this process with `malloc_env()` added, once; returns if already set.

    Uses the original command line (`sys.orig_argv`), so `python -m pkg.mod --flag` and
    `python path/to/script.py --flag` both come back as they were started. A marker
    variable guards against a loop should glibc or a wrapper drop the variables.
    """
    if malloc_env_active() or os.environ.get(_MARKER):
        return
    env = dict(os.environ)
    env.update(malloc_env())
    env[_MARKER] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


if __name__ == "__main__":
    for name, value in malloc_env().items():
        print(f"export {name}={value}")
