"""Studies, results tables and the benchmark harness: what the scripts in `experiments/` run.

`studies` (gradient norms, gate activations, multi-seed studies), `results` (the results
suite and its tables), `benchmark` (the side-by-side speed harness behind
`experiments/benchmark.py`) and `runtime` (allocator settings for timing runs).
"""
