"""``nvmlstm train``: quantization- and noise-aware training (the `train` package) from the command line.

`add_train_parser` registers the subcommand on the ``nvmlstm`` parser; torch and the training code are
imported only when the command runs, so the other subcommands start (and install) without them. PyTorch is
not a dependency of the package (an unpinned ``torch`` pulls a multi-GB CUDA build): without it, the
command is one line saying how to install the CPU build (`TORCH_INSTALL_HINT`), exit status 2.

The options mirror `nvmlstm.train.args.TrainArgs` (torch-free), the one definition: ``--mode`` takes its
`MODES`, the defaults are its field defaults, and `train_args` maps the parsed options onto its fields.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from nvmlstm.train.args import MODES, TrainArgs  # torch-free: the parser is built without PyTorch

from .argtypes import int_in as _int_in
from .argtypes import nonneg_float as _nonneg_float
from .argtypes import pos_float as _pos_float

__all__ = ["add_train_parser", "cmd_train", "train_args", "MODES", "TORCH_INSTALL_HINT"]

#: How to install the PyTorch the project is tested with (the CPU build; the Makefile's TORCH_SPEC default).
TORCH_INSTALL_HINT = "pip install torch==2.13.0"

# The CLI's defaults are TrainArgs' (None there: the task default, which the help names).
_DEFAULT = {f.name: f.default for f in dataclasses.fields(TrainArgs) if f.default is not dataclasses.MISSING}


def add_train_parser(sub) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to the subparsers action ``sub``."""
    bits = _int_in(2, 16)
    t = sub.add_parser("train", help="train fp / ptq / qat (noise-aware) models and export the quantized model")
    from nvmlstm.tasks import TASKS  # numpy only: no torch while the parser is built

    def with_default(flag: str, kind, help_: str, metavar: str | None = None) -> None:
        """An option whose default is that of the `TrainArgs` field of the same name."""
        t.add_argument(flag, type=kind, default=_DEFAULT[flag[2:].replace("-", "_")], metavar=metavar, help=help_)

    t.add_argument(
        "--task",
        required=True,
        choices=TASKS,
        help=" | ".join(TASKS) + " (classify, regress: your "
        'own sequences in --data FILE.npz, README "Bring your own model and data")',
    )
    t.add_argument(
        "--data",
        type=Path,
        help="charlm: text file or directory with ptb.{train,valid,test}.txt; timeseries: CSV "
        "(last column); default: the file shipped in data/; classify/regress: an .npz with X "
        "(sequences, steps, inputs) and y (sequences,)",
    )
    t.add_argument(
        "--mode",
        required=True,
        choices=MODES,
        help="fp: float; ptq: post-training quantization; qat: quantization-aware training",
    )
    with_default("--weight-bits", bits, "NVM weight bits (default %(default)s)")
    with_default("--dac-bits", bits, "input DAC bits (default %(default)s)")
    with_default("--adc-bits", bits, "column ADC bits (default %(default)s)")
    t.add_argument("--head-adc-bits", type=bits, help="ADC bits of the dense head (default: --adc-bits)")
    with_default("--array-rows", _int_in(2, 65536), "crossbar tile rows (default %(default)s)")
    with_default("--array-cols", _int_in(2, 65536), "crossbar tile columns (default %(default)s)")
    with_default(
        "--weight-noise", _nonneg_float, "qat: programming noise, std as a fraction of the conductance range", "S"
    )
    with_default("--adc-noise", _nonneg_float, "qat: ADC noise std in LSB", "S")
    epochs = _int_in(0, 1_000_000)
    t.add_argument(
        "--epochs",
        type=epochs,
        help="training epochs (qat: of the quantized phase; default: per task, docs/training.md)",
    )
    t.add_argument(
        "--fp-epochs",
        type=epochs,
        help="qat without --init-from: float pre-training epochs first (0: QAT from scratch; default: per task)",
    )
    t.add_argument(
        "--no-learn-weight-scales",
        dest="learn_weight_scales",
        action="store_false",
        default=None,
        help="qat: max-abs per-gate weight scales instead of learned (LSQ-style) ones",
    )
    t.add_argument(
        "--char-repeat",
        type=_int_in(1, 64),
        help="charlm: input rows per character, its one-hot repeated (default 4, docs/training.md)",
    )
    with_default(
        "--seed", _int_in(0, 2**31 - 1), "seed of the initialization, shuffling and noise (default %(default)s)"
    )
    t.add_argument("--hidden", type=_int_in(1, 4096), help="hidden units (default: per task)")
    t.add_argument("--batch-size", type=_int_in(1, 1_000_000), help="default: per task")
    t.add_argument("--lr", type=_pos_float, help="Adam learning rate (default: per task)")
    t.add_argument("--seq-len", type=_int_in(1, 100_000), help="charlm/timeseries sequence length")
    t.add_argument(
        "--init-from", help="float run directory (its float_model.pt) or an nn.LSTM+nn.Linear state dict .pt"
    )
    t.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    with_default(
        "--threads",
        _int_in(0, 1024),
        "torch CPU threads of the integer-model evaluation (default %(default)s; 0 = torch's default); training "
        "itself always runs on one thread, so results do not depend on it (docs/training.md, Reproducibility)",
    )
    t.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    t.add_argument("--out", type=Path, required=True, help="run directory")
    t.set_defaults(func=cmd_train)
    return t


def train_args(args: argparse.Namespace) -> TrainArgs:
    """The `TrainArgs` of parsed ``nvmlstm train`` options: every field from the option of the same name.

    Parameters
    ----------
    args : argparse.Namespace
        The namespace `add_train_parser`'s parser returns.

    Returns
    -------
    TrainArgs
    """
    # The options whose value is not the field's as parsed: paths as strings, the negated flag, 0 threads.
    converted = {
        "out": str(args.out),
        "data": None if args.data is None else str(args.data),
        "progress": not args.no_progress,
        "threads": args.threads or None,
    }
    return TrainArgs(
        **{
            f.name: converted[f.name] if f.name in converted else getattr(args, f.name)
            for f in dataclasses.fields(TrainArgs)
        }
    )


def cmd_train(args: argparse.Namespace) -> int:
    """Run ``nvmlstm train`` (`nvmlstm.train.runner.run_training`) and print its one result line.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options (`add_train_parser`).

    Returns
    -------
    int
        0 (errors raise).

    Raises
    ------
    CliError
        PyTorch is missing (`TORCH_INSTALL_HINT`) or the native kernel is required but unavailable.
    """
    from .errors import CliError

    try:
        import torch  # noqa: F401  (only to tell a missing PyTorch from other import errors)
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        raise CliError(
            f"PyTorch is not installed; install the CPU build it is tested with: {TORCH_INSTALL_HINT}"
        ) from None
    from nvmlstm.train.ckernel import KernelUnavailable
    from nvmlstm.train.runner import run_training

    try:
        m = run_training(train_args(args))
    except KernelUnavailable as exc:  # NVMLSTM_REQUIRE_CKERNEL=1 without a usable kernel
        raise CliError(str(exc)) from None
    line = f"{m['task']} {m['mode']}: test {m['metric_name']} {m['test_metric']:.4f}"
    if "golden_test_metric" in m:
        line += f", golden {m['golden_test_metric']:.4f}"
    if "golden_noisy_test_metric" in m:
        line += f", golden with noise {m['golden_noisy_test_metric']:.4f}"
    print(f"{line}; wrote {args.out}")
    return 0
