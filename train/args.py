"""The arguments of a training run: `TrainArgs`, the one definition the CLI and the runner derive from.

Torch-free on purpose: ``nvmlstm train`` builds its parser (``--mode`` choices, defaults) from this module
before it knows whether PyTorch is installed, and the run directory's resume check (`RESUME_KEYS`) reads
the same fields. ``train/__init__.py`` imports the torch modules lazily so that importing this one does
not need torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from nvmlstm.tasks.generic import GENERIC_TASKS

__all__ = ["MODES", "TASK_DEFAULTS", "TrainArgs", "TrainError", "RESUME_KEYS", "check_args"]

#: The training modes: float, post-training quantization, (noise-aware) quantization-aware training.
MODES = ("fp", "ptq", "qat")

#: Per-task defaults: hidden size, epochs, batch size, learning rate, sequence length (the float model), and
#: the QAT recipe (docs/training.md, "The QAT recipe"): ``qat`` without --init-from first trains the float
#: model for ``fp_epochs`` epochs (a complete fp run in ``RUN_DIR/float``), then fine-tunes it quantized
#: for ``qat_epochs`` epochs at ``qat_lr`` with learned weight scales (``learn_weight_scales``).
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {
        "hidden": 32,
        "epochs": 60,
        "batch_size": 64,
        "lr": 1e-2,
        "seq_len": 8,
        "fp_epochs": 60,
        "qat_epochs": 30,
        "qat_lr": 1e-3,
        "learn_weight_scales": True,
    },
    "charlm": {
        "hidden": 128,
        "epochs": 10,
        "batch_size": 32,
        "lr": 5e-3,
        "seq_len": 64,
        "fp_epochs": 10,
        "qat_epochs": 6,
        "qat_lr": 2e-3,
        "learn_weight_scales": True,
    },
    "timeseries": {
        "hidden": 32,
        "epochs": 60,
        "batch_size": 64,
        "lr": 5e-3,
        "seq_len": 24,
        "fp_epochs": 60,
        "qat_epochs": 30,
        "qat_lr": 2e-3,
        "learn_weight_scales": True,
    },
    # A user's own sequences (tasks/generic.py): the digits recipe for classification, the series' for regression.
    "classify": {
        "hidden": 32,
        "epochs": 60,
        "batch_size": 64,
        "lr": 1e-2,
        "seq_len": None,
        "fp_epochs": 60,
        "qat_epochs": 30,
        "qat_lr": 1e-3,
        "learn_weight_scales": True,
    },
    "regress": {
        "hidden": 32,
        "epochs": 60,
        "batch_size": 64,
        "lr": 5e-3,
        "seq_len": None,
        "fp_epochs": 60,
        "qat_epochs": 30,
        "qat_lr": 2e-3,
        "learn_weight_scales": True,
    },
}

# Field metadata of the options that say how a run executes (where, with which output, how many threads),
# not what it computes: a resumed run may change them (`RESUME_KEYS` leaves them out).
_HOW = {"resume_may_change": True}


class TrainError(ValueError):
    """A user error in a training run (bad arguments, data, checkpoint or --init-from file)."""


@dataclass
class TrainArgs:
    """Arguments of a run (the CLI's options); ``None`` means the task default (`TASK_DEFAULTS`)."""

    task: str
    mode: str
    out: str = field(metadata=_HOW)
    data: str | None = None
    weight_bits: int = 4
    dac_bits: int = 4
    adc_bits: int = 4
    head_adc_bits: int | None = None
    array_rows: int = 32
    array_cols: int = 64
    weight_noise: float = 0.0
    adc_noise: float = 0.0
    epochs: int | None = None
    seed: int = 0
    hidden: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seq_len: int | None = None
    init_from: str | None = None
    resume: bool = field(default=False, metadata=_HOW)
    progress: bool = field(default=True, metadata=_HOW)
    threads: int | None = field(default=1, metadata=_HOW)
    #: qat without init_from: float pre-training epochs (0: QAT from scratch). None: the task default.
    fp_epochs: int | None = None
    #: qat: learned (LSQ) per-gate weight scales instead of max-abs ones. None: the task default.
    learn_weight_scales: bool | None = None
    #: charlm: input rows per character (its one-hot repeated). None: `nvmlstm.tasks.CHAR_REPEAT`, the
    #: loader's default, which sweeps and the flow read too.
    char_repeat: int | None = None

    def resolved(self) -> TrainArgs:
        """The arguments with every ``None`` replaced by its task default (`TASK_DEFAULTS`).

        In ``qat`` mode ``epochs`` and ``lr`` are those of the quantized phase: ``qat_epochs`` and, when it
        starts from a float model (``init_from`` or float pre-training), ``qat_lr``.

        Returns
        -------
        TrainArgs
            A new instance; ``self`` is unchanged.
        """
        d = TASK_DEFAULTS.get(self.task, {})
        out = dataclasses.replace(self)
        qat = self.mode == "qat"
        if out.fp_epochs is None:
            out.fp_epochs = d.get("fp_epochs", 0) if qat and self.init_from is None else 0
        if out.learn_weight_scales is None:
            out.learn_weight_scales = bool(d.get("learn_weight_scales", False)) if qat else False
        from_float = qat and (self.init_from is not None or (out.fp_epochs or 0) > 0)
        if out.epochs is None:
            out.epochs = d.get("qat_epochs", d.get("epochs")) if qat else d.get("epochs")
        if out.lr is None:
            out.lr = d.get("qat_lr", d.get("lr")) if from_float else d.get("lr")
        for k in ("hidden", "batch_size", "seq_len"):
            if getattr(out, k) is None:
                setattr(out, k, d.get(k))
        return out


#: The arguments a resumed run must share with its checkpoint: every `TrainArgs` field that changes what
#: the run computes (all but those marked `_HOW`), in field order (the first difference is reported).
RESUME_KEYS = tuple(f.name for f in dataclasses.fields(TrainArgs) if not f.metadata.get("resume_may_change"))


def check_args(a: TrainArgs) -> None:
    """Refuse resolved arguments (`TrainArgs.resolved`) that no run can use.

    Parameters
    ----------
    a : TrainArgs
        The resolved arguments.

    Raises
    ------
    TrainError
        The first bad argument, in one line naming its CLI option.
    """
    if a.task not in TASK_DEFAULTS:
        raise TrainError(f"unknown task {a.task!r}; choose from {', '.join(TASK_DEFAULTS)}")
    if a.mode not in MODES:
        raise TrainError(f"unknown mode {a.mode!r}; choose from {', '.join(MODES)}")
    for k in ("weight_noise", "adc_noise"):
        v = getattr(a, k)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise TrainError(f"--{k.replace('_', '-')} must be a finite number >= 0, not {v!r}")
    if (a.weight_noise or a.adc_noise) and a.mode != "qat":
        raise TrainError(
            "--weight-noise/--adc-noise inject noise during quantization-aware training: use them with --mode qat"
        )
    for k in ("epochs", "hidden", "batch_size", "seq_len", "fp_epochs"):
        v = getattr(a, k)
        if k == "seq_len" and a.task in GENERIC_TASKS:
            if v is not None:
                raise TrainError(f"--seq-len: {a.task} sequences come from the data file as they are")
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v < (0 if k in ("epochs", "fp_epochs") else 1):
            kind = " non-negative" if k in ("epochs", "fp_epochs") else " positive"
            raise TrainError(f"--{k.replace('_', '-')} must be a{kind} integer, not {v!r}")
    if not (isinstance(a.lr, (int, float)) and math.isfinite(a.lr) and a.lr > 0):
        raise TrainError(f"--lr must be a positive number, not {a.lr!r}")
    if a.fp_epochs and a.mode != "qat":
        raise TrainError("fp_epochs (float pre-training) belongs to --mode qat")
    if a.char_repeat is not None and a.task != "charlm":
        raise TrainError(f"--char-repeat belongs to the charlm task, not {a.task}")
    if a.fp_epochs and a.init_from is not None:
        raise TrainError("fp_epochs (float pre-training) and --init-from both give the float model; use one")
