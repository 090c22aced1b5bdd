"""Quantization- and noise-aware training (PyTorch) that exports exactly what the hardware computes.

`train.model.QuantLSTM` trains in float (``fp``) or quantization-aware (``qat``) mode on the datapath of
``docs/datapath.md``; `QuantLSTM.export` gives the `golden.QuantizedModel`, and `train.exact.exact_forward`
evaluates it in PyTorch bit for bit like `golden.golden_forward`. `train.runner.run_training` is the
``nvmlstm train`` command. Imports: `golden` only. ``docs/training.md`` explains the design.

The torch modules are imported on first use (PEP 562 ``__getattr__``): `nvmlstm.train.args`, the one
definition of the run arguments, is imported by the CLI to build its parser, with or without PyTorch.
"""

import importlib

if __name__ != "nvmlstm.train":  # one name per module: never a second, top-level `train` (README, Layout)
    raise ImportError(f"the train/ folder is the package nvmlstm.train; import nvmlstm.train, not {__name__}")

from nvmlstm.tasks import TASKS, TaskError, load_task

from .args import TrainArgs, TrainError

__all__ = ["QuantLSTM", "StateDictError", "exact_forward"]  # torch modules (imported on first use)
__all__ += ["TrainArgs", "TrainError", "run_training"]  # the training run
__all__ += ["TASKS", "TaskError", "load_task"]  # tasks

# Names defined by the torch modules, and the module of each.
_LAZY = {"QuantLSTM": ".model", "StateDictError": ".model", "exact_forward": ".exact", "run_training": ".runner"}


def __getattr__(name: str):
    """Import a torch module's name on first use (a missing PyTorch raises ModuleNotFoundError here).

    Parameters
    ----------
    name : str
        An attribute of the package that is not yet defined.

    Returns
    -------
    object
        The name from its module (`_LAZY`), cached in the package afterwards.

    Raises
    ------
    AttributeError
        ``name`` is none of the lazily imported names (then ``from nvmlstm.train import exact`` imports the
        submodule, as for any package).
    """
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value
