"""The task registry: `TASKS` (the name a config's `task` field gives -> a builder) and `make_task`.

What a task is and what the training system may call is `gatedrnn.tasks.base.Task` (re-exported
here). Batches are generated from (seed, step) alone, so a resumed run sees exactly the data an
uninterrupted run would, whatever the number of processes or devices.
"""

from __future__ import annotations

from typing import Callable

import ml_collections

from gatedrnn.tasks.anomaly import AnomalyDetectionTask
from gatedrnn.tasks.base import Task
from gatedrnn.tasks.digits import SequentialDigitsTask
from gatedrnn.tasks.forecast import CO2ForecastTask
from gatedrnn.tasks.g2p import G2PTask
from gatedrnn.tasks.music import ChoralesTask
from gatedrnn.tasks.synthetic import AddingTask, CopyMemoryTask, ParityTask
from gatedrnn.tasks.text import CharLMTask
from gatedrnn.tasks.textclass import TextClassificationTask
from gatedrnn.tasks.uea import UEAClassificationTask
from gatedrnn.validation import ConfigError, check_choice

TASKS: dict[str, Callable[[ml_collections.ConfigDict], Task]] = {
    "adding": AddingTask.from_config,
    "copy_memory": CopyMemoryTask.from_config,
    "parity": ParityTask.from_config,
    "sequential_mnist": SequentialDigitsTask.from_config,
    "uea_classification": UEAClassificationTask.from_config,
    "char_lm": CharLMTask.from_config,
    "co2_forecast": CO2ForecastTask.from_config,
    "g2p": G2PTask.from_config,
    "text_classification": TextClassificationTask.from_config,
    "anomaly_detection": AnomalyDetectionTask.from_config,
    "chorales": ChoralesTask.from_config,
}


def make_task(config: ml_collections.ConfigDict) -> Task:
    """Builds the task the config names (its own fields checked as it is built).

    ConfigError (one line): an unknown task, a bad task field, or model.bidirectional=True for a
    causal task (its backward direction would read the targets).
    """
    check_choice("task", config.task, TASKS)
    task = TASKS[config.task](config)
    if task.causal and config.model.get("bidirectional", False):
        raise ConfigError(f"model.bidirectional=True is not valid for the causal task {config.task!r} (its targets "
                          "are later inputs); use model.bidirectional=False")
    return task


__all__ = ["TASKS", "AddingTask", "Task", "make_task"]
