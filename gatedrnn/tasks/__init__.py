"""Tasks: data on the fly plus the loss, one module per task family, in a registry a config names.

`base` (the `Task` protocol: what every task provides, and the optional members' defaults),
`registry` (`TASKS`, `make_task`), `data` (deterministic data streams and package data files),
and one module per family: `synthetic` (adding, copy memory, parity),
`digits` (sequential MNIST), `uea` (UEA time-series classification), `text` (character LM),
`textclass` (text classification), `forecast` (CO2), `anomaly` (ECG anomaly detection),
`music` (Bach chorales), `g2p` (grapheme-to-phoneme), `splits` (fixed-split classification).
"""

from gatedrnn.tasks.registry import TASKS, Task, make_task

__all__ = ["TASKS", "Task", "make_task"]
