"""``nvmlstm sweep``: task metric against bit widths and analog non-idealities, Monte Carlo on Dask.

`add_sweep_parser` registers the subcommand; dask, matplotlib and the task data load only when it runs.
See docs/sweep.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .argtypes import nonneg_int as _nonneg_int
from .argtypes import pos_int as _pos_int

__all__ = ["add_sweep_parser", "cmd_sweep"]


def add_sweep_parser(sub) -> argparse.ArgumentParser:
    """Add the ``sweep`` subcommand to the subparsers action ``sub``."""
    from nvmlstm.tasks import TASKS

    s = sub.add_parser("sweep", help="metric against bit widths and non-idealities, Monte Carlo on Dask")
    s.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[LABEL=]PATH",
        help="run directory or model .npz (repeatable; same label + other bit widths: trained models)",
    )
    s.add_argument("--task", required=True, choices=TASKS, help="the models' task: " + " | ".join(TASKS))
    s.add_argument("--data", help="task data path (default: the shipped file)")
    s.add_argument("--seq-len", type=_pos_int, help="sequence length (default: the task's)")
    s.add_argument(
        "--axis",
        action="append",
        required=True,
        metavar="AXIS=V1,V2,...",
        help="weight_bits, dac_bits, adc_bits, weight_noise, read_noise, adc_noise, stuck_rate, "
        "array_rows (repeatable: a grid)",
    )
    s.add_argument("--trials", type=_pos_int, default=10, help="Monte Carlo trials per noisy point (default 10)")
    s.add_argument("--seed", type=_nonneg_int, default=0, help="base seed of every trial's draws (default 0)")
    s.add_argument("--test-sequences", type=_pos_int, help="only the first N test sequences (default all)")
    where = s.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_pos_int, help="local cluster of N worker processes (default: CPUs)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler, e.g. tcp://host:8786")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--out", type=Path, required=True, help="output directory (a rerun resumes it)")
    s.set_defaults(func=cmd_sweep)
    return s


def cmd_sweep(args: argparse.Namespace) -> int:
    from nvmlstm.sweep import build_spec, run_sweep

    spec = build_spec(
        task=args.task,
        models=args.model,
        axes=args.axis,
        trials=args.trials,
        seed=args.seed,
        data=args.data,
        seq_len=args.seq_len,
        test_sequences=args.test_sequences,
    )
    n_points, n_base = len(spec.jobs), len(spec.baseline_jobs)
    # The jobs the progress bar counts: one per (label, point) and one float baseline per label that has one.
    base = f" + {n_base} float baseline(s)" if n_base else ""
    print(
        f"sweep: {len(spec.labels)} label(s) x {len(spec.points)} point(s){base} = {n_points + n_base} jobs, "
        f"{args.trials} trials per noisy point -> {args.out}"
    )
    # Ctrl-C or a stop signal (a `SweepInterrupted` once results arrive) goes to the command's one line on stderr
    # (`nvmlstm.cli`): finished points are kept and a rerun resumes.
    s = run_sweep(spec, args.out, workers=args.workers, scheduler=args.scheduler, progress=not args.no_progress)
    print(f"wrote {args.out}: sweep.csv, summary.csv, summary.json, summary.md, {len(s['plots'])} plot(s)")
    return 0
