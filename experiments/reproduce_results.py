"""The old name of `python -m experiments.results` in suite mode (kept for scripts that call it):
the same flags (`python -m experiments.results --help`) and the same library call,
`gatedrnn.lab.suite.results`.

  python -m experiments.reproduce_results --out=runs/suite --only=parity_lstm   # -> runs/suite/results.md
  python -m experiments.reproduce_results --out=runs/suite --table_only --write # and docs/results_suite.md

The tracked docs/results_suite.md (and --readme's block) is only rewritten with --write.
"""

from absl import app

from experiments.results import main

if __name__ == "__main__":
    app.run(main)
