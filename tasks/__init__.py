"""The tasks (data, splits, metrics) that training, sweeps and the flow share; numpy only, imports golden.

See `nvmlstm.tasks.loaders` for the data sets and their fixed splits, and ``data/README.md`` for provenance.
"""

if __name__ != "nvmlstm.tasks":  # one name per module: never a second, top-level `tasks` (README, Layout)
    raise ImportError(f"the tasks/ folder is the package nvmlstm.tasks; import nvmlstm.tasks, not {__name__}")

from .loaders import (
    CHAR_REPEAT,
    DEFAULT_DATA,
    DIGITS_SPLIT_SEED,
    FLOAT_TOLERANCE,
    HIGHER_IS_BETTER,
    METRICS,
    SMALL_DATA,
    TASKS,
    TEXT_SPLIT,
    TaskData,
    TaskError,
    load_task,
    metric_from_outputs,
)

__all__ = [
    "CHAR_REPEAT",
    "DEFAULT_DATA",
    "SMALL_DATA",
    "TEXT_SPLIT",
    "DIGITS_SPLIT_SEED",
    "HIGHER_IS_BETTER",
    "FLOAT_TOLERANCE",
    "METRICS",
    "TASKS",
    "TaskData",
    "TaskError",
    "load_task",
    "metric_from_outputs",
]
