"""What a model that learned nothing scores on a task: the line under which an imported model is suspect.

A float model imported with ``--init-from`` that scores near this line was almost always trained on inputs
scaled differently from the task's (every task feeds values in [-1, 1]; README, "Bring your own model");
training then says so in one line instead of silently fine-tuning it.
"""

from __future__ import annotations

import math

import numpy as np

from .loaders import HIGHER_IS_BETTER, TaskData

__all__ = ["chance_metric", "near_chance", "reference_metrics", "NEAR_CHANCE_FRACTION"]

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


def reference_metrics(task: TaskData) -> dict[str, tuple[str, float]]:
    """Naive predictors scored on the test split: what a trained model's test metric is to be read against.

    Parameters
    ----------
    task : TaskData
        The loaded task.

    Returns
    -------
    dict
        Name -> (what the predictor does, its test metric). Every task has ``chance``: the best input-blind
        predictor fitted on the training split (as `chance_metric`, on the test split). ``timeseries`` also has
        ``persistence``: the next value predicted as the last input value (the window's last step, in the
        series' units), the usual naive forecast, which an RMSE is compared with.
    """
    ytr = np.asarray(task.train[1])
    xte, yte = np.asarray(task.test[0]), np.asarray(task.test[1])
    if task.metric == "accuracy":
        top = int(np.bincount(ytr.reshape(-1)).argmax())
        return {"chance": (f"always the most frequent training class ({top})", float(np.mean(yte == top)))}
    if task.metric == "bpc":
        counts = np.bincount(ytr.reshape(-1), minlength=task.output_size).astype(np.float64) + 1.0  # add-one
        p = counts / counts.sum()
        bpc = float(-np.mean(np.log(p[yte.reshape(-1)]))) / math.log(2.0)
        return {"chance": ("the training split's character frequencies (unigram)", bpc)}
    y = yte.astype(np.float64)
    mean = float(np.sqrt(np.mean(((y - float(np.mean(ytr))) * task.y_scale) ** 2)))
    out = {"chance": ("always the mean training target", mean)}
    if task.name == "timeseries":
        last = xte[:, -1, 0].astype(np.float64)  # the series' value just before the target, normalized like it
        out["persistence"] = (
            "the last input value (persistence)",
            float(np.sqrt(np.mean(((last - y) * task.y_scale) ** 2))),
        )
    return out
