"""Quantization- and noise-aware training (PyTorch) that exports exactly what the hardware computes.

`train.model.QuantLSTM` trains in float (``fp``) or quantization-aware (``qat``) mode on the datapath of
``docs/datapath.md``; `QuantLSTM.export` gives the `golden.QuantizedModel`, and `train.exact.exact_forward`
evaluates it in PyTorch bit for bit like `golden.golden_forward`. `train.runner.run_training` is the
``nvmlstm train`` command. Imports: `golden` only. ``docs/training.md`` explains the design.
"""

if __name__ != "nvmlstm.train":  # one name per module: never a second, top-level `train` (README, Layout)
    raise ImportError(f"the train/ folder is the package nvmlstm.train; import nvmlstm.train, not {__name__}")

from .exact import exact_forward
from .model import QuantLSTM, StateDictError
from .runner import TrainArgs, TrainError, run_training
from nvmlstm.tasks import TASKS, TaskError, load_task

__all__ = ["QuantLSTM", "StateDictError", "exact_forward", "TrainArgs", "TrainError", "run_training", "TASKS",
           "TaskError", "load_task"]
