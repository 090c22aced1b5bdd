"""The training loss of each task (torch); the metric that scores runs is numpy (`nvmlstm.tasks`)."""

from __future__ import annotations

import torch

from nvmlstm.tasks import TaskData

__all__ = ["task_loss"]


def task_loss(task: TaskData, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Training loss on real outputs ``out`` (B, T, O): cross-entropy (nats) or MSE (normalized units).

    Tasks scored at the last step use ``out[:, -1]`` only, so ``out`` may hold just that step (T = 1).
    """
    if task.metric == "accuracy":
        return torch.nn.functional.cross_entropy(out[:, -1], y)
    if task.metric == "bpc":
        return torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
    return torch.nn.functional.mse_loss(out[:, -1, 0], y)
