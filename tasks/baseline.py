"""What a model that learned nothing scores on a task: the line under which an imported model is suspect.

A float model imported with ``--init-from`` that scores near this line was almost always trained on inputs
scaled differently from the task's (every task feeds values in [-1, 1]; README, "Bring your own model");
training then says so in one line instead of silently fine-tuning it.
"""

from __future__ import annotations

import math

import numpy as np

from .loaders import HIGHER_IS_BETTER, TaskData

__all__ = ["chance_metric", "near_chance", "NEAR_CHANCE_FRACTION"]

#: A model is "near chance" when it closes less than this fraction of the gap between the chance metric and
#: a perfect one (accuracy 1; for bpc and rmse: 0).
NEAR_CHANCE_FRACTION = 0.1


def chance_metric(task: TaskData) -> float:
    """The metric of the best input-blind predictor fitted on the training split, scored on the validation split.

    accuracy: always the most frequent training class; bpc: the training split's character frequencies
    (unigram); rmse: always the mean training target (in the series' units).
    """
    ytr = np.asarray(task.train[1])
    yva = np.asarray(task.valid[1])
    if task.metric == "accuracy":
        return float(np.mean(yva == np.bincount(ytr.reshape(-1)).argmax()))
    if task.metric == "bpc":
        counts = np.bincount(ytr.reshape(-1), minlength=task.output_size).astype(np.float64) + 1.0  # add-one
        p = counts / counts.sum()
        return float(-np.mean(np.log(p[yva.reshape(-1)]))) / math.log(2.0)
    err = (yva.astype(np.float64) - float(np.mean(ytr))) * task.y_scale
    return float(np.sqrt(np.mean(err**2)))


def near_chance(task: TaskData, metric: float) -> bool:
    """Whether ``metric`` (on the validation split) closes less than `NEAR_CHANCE_FRACTION` of the gap from
    `chance_metric` to a perfect score."""
    c = chance_metric(task)
    if HIGHER_IS_BETTER[task.metric]:
        return metric < c + NEAR_CHANCE_FRACTION * (1.0 - c)
    return metric > (1.0 - NEAR_CHANCE_FRACTION) * c
