"""``nvmlstm train``: quantization- and noise-aware training (the `train` package) from the command line.

`add_train_parser` registers the subcommand on the ``nvmlstm`` parser; torch and the training code are
imported only when the command runs, so the other subcommands start (and install) without them. PyTorch is
not a dependency of the package (an unpinned ``torch`` pulls a multi-GB CUDA build): without it, the
command is one line saying how to install the CPU build (`TORCH_INSTALL`), exit status 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .argtypes import int_in as _int_in
from .argtypes import nonneg_float as _nonneg_float
from .argtypes import pos_float as _pos_float

__all__ = ["add_train_parser", "cmd_train", "TORCH_INSTALL"]

#: How to install the PyTorch the project is tested with (the CPU build; the Makefile's TORCH_SPEC default).
TORCH_INSTALL = "pip install torch==2.13.0"

MODES = ("fp", "ptq", "qat")


def add_train_parser(sub) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to the subparsers action ``sub``."""
    bits = _int_in(2, 16)
    t = sub.add_parser("train", help="train fp / ptq / qat (noise-aware) models and export the quantized model")
    from nvmlstm.tasks import TASKS  # numpy only: no torch while the parser is built

    t.add_argument("--task", required=True, choices=TASKS, help=" | ".join(TASKS) + " (classify, regress: your "
                   "own sequences in --data FILE.npz, README \"Bring your own model and data\")")
    t.add_argument("--data", type=Path,
                   help="charlm: text file or directory with ptb.{train,valid,test}.txt; timeseries: CSV "
                        "(last column); default: the file shipped in data/; classify/regress: an .npz with X "
                        "(sequences, steps, inputs) and y (sequences,)")
    t.add_argument("--mode", required=True, choices=MODES,
                   help="fp: float; ptq: post-training quantization; qat: quantization-aware training")
    t.add_argument("--weight-bits", type=bits, default=4, help="NVM weight bits (default 4)")
    t.add_argument("--dac-bits", type=bits, default=4, help="input DAC bits (default 4)")
    t.add_argument("--adc-bits", type=bits, default=4, help="column ADC bits (default 4)")
    t.add_argument("--head-adc-bits", type=bits, help="ADC bits of the dense head (default: --adc-bits)")
    t.add_argument("--array-rows", type=_int_in(2, 65536), default=32, help="crossbar tile rows (default 32)")
    t.add_argument("--array-cols", type=_int_in(2, 65536), default=64, help="crossbar tile columns (default 64)")
    t.add_argument("--weight-noise", type=_nonneg_float, default=0.0, metavar="S",
                   help="qat: programming noise, std as a fraction of the conductance range")
    t.add_argument("--adc-noise", type=_nonneg_float, default=0.0, metavar="S", help="qat: ADC noise std in LSB")
    t.add_argument("--epochs", type=_int_in(0, 1_000_000),
                   help="training epochs (qat: of the quantized phase; default: per task, docs/training.md)")
    t.add_argument("--fp-epochs", type=_int_in(0, 1_000_000),
                   help="qat without --init-from: float pre-training epochs first (0: QAT from scratch; default: "
                        "per task)")
    t.add_argument("--no-learn-weight-scales", dest="learn_weight_scales", action="store_false", default=None,
                   help="qat: max-abs per-gate weight scales instead of learned (LSQ-style) ones")
    t.add_argument("--char-repeat", type=_int_in(1, 64),
                   help="charlm: input rows per character, its one-hot repeated (default 4, docs/training.md)")
    t.add_argument("--seed", type=_int_in(0, 2**31 - 1), default=0,
                   help="seed of the initialization, shuffling and noise (default 0)")
    t.add_argument("--hidden", type=_int_in(1, 4096), help="hidden units (default: per task)")
    t.add_argument("--batch-size", type=_int_in(1, 1_000_000), help="default: per task")
    t.add_argument("--lr", type=_pos_float, help="Adam learning rate (default: per task)")
    t.add_argument("--seq-len", type=_int_in(1, 100_000), help="charlm/timeseries sequence length")
    t.add_argument("--init-from", help="float run directory (its float_model.pt) or an nn.LSTM+nn.Linear state dict .pt")
    t.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    t.add_argument("--threads", type=_int_in(0, 1024), default=1,
                   help="torch CPU threads (default 1: fastest for these small models; 0 = torch's default)")
    t.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    t.add_argument("--out", type=Path, required=True, help="run directory")
    t.set_defaults(func=cmd_train)
    return t


def cmd_train(args: argparse.Namespace) -> int:
    from .errors import CliError

    try:
        import torch  # noqa: F401  (only to tell a missing PyTorch from other import errors)
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        raise CliError(f"PyTorch is not installed; install the CPU build it is tested with: {TORCH_INSTALL}") from None
    from nvmlstm.train.ckernel import KernelUnavailable
    from nvmlstm.train.runner import TrainArgs, run_training

    a = TrainArgs(
        task=args.task, mode=args.mode, out=str(args.out), data=None if args.data is None else str(args.data),
        weight_bits=args.weight_bits, dac_bits=args.dac_bits, adc_bits=args.adc_bits,
        head_adc_bits=args.head_adc_bits, array_rows=args.array_rows, array_cols=args.array_cols,
        weight_noise=args.weight_noise, adc_noise=args.adc_noise, epochs=args.epochs, seed=args.seed,
        hidden=args.hidden, batch_size=args.batch_size, lr=args.lr, seq_len=args.seq_len,
        init_from=args.init_from, resume=args.resume, progress=not args.no_progress,
        fp_epochs=args.fp_epochs, learn_weight_scales=args.learn_weight_scales, char_repeat=args.char_repeat,
        threads=args.threads or None,
    )
    try:
        m = run_training(a)
    except KernelUnavailable as exc:  # NVMLSTM_REQUIRE_CKERNEL=1 without a usable kernel
        raise CliError(str(exc)) from None
    line = f"{m['task']} {m['mode']}: test {m['metric_name']} {m['test_metric']:.4f}"
    if "golden_test_metric" in m:
        line += f", golden {m['golden_test_metric']:.4f}"
    if "golden_noisy_test_metric" in m:
        line += f", golden with noise {m['golden_noisy_test_metric']:.4f}"
    print(f"{line}; wrote {args.out}")
    return 0
