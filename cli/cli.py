"""The ``nvmlstm`` command line: a thin layer over the packages; every error is one line and exit status 2."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nvmlstm.artifacts.version import package_version
from nvmlstm.golden.config import DEFAULT_MACRO_LATENCY_CYC

from .argtypes import add_config_or_model
from .argtypes import any_int as _int
from .argtypes import nonneg_int as _nonneg_int
from .argtypes import pos_float as _pos_float
from .argtypes import pos_int as _pos_int
from .errors import CliError

__all__ = ["main"]


# ------------------------------------------------------------------------------------------------
def _load_inputs(path: Path, cfg) -> np.ndarray:
    from nvmlstm.golden.lstm import check_input_codes

    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CliError(f"{path}: inputs file not found") from None
    except (ValueError, OSError) as exc:
        raise CliError(f"{path}: not a readable .npy file ({exc})") from None
    if not isinstance(arr, np.ndarray):
        raise CliError(f"{path}: expected a .npy array of input codes, not an .npz archive")
    return check_input_codes(arr, cfg, where=str(path))


def _print_coverage(cov: dict) -> None:
    for name, stats in cov.items():
        print(
            f"  {name}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items())
        )


def cmd_golden(args: argparse.Namespace) -> int:
    from nvmlstm.golden.config import load_config
    from nvmlstm.golden.io import load_model
    from nvmlstm.golden.ptq import random_model
    from nvmlstm.golden.vectors import input_rng, random_inputs, write_golden_dir

    if args.config is not None:
        if not args.random_weights:
            raise CliError("--config needs --random-weights (or give a trained model with --model MODEL.npz)")
        cfg = load_config(args.config)
        model = None
    else:
        if args.random_weights:
            raise CliError("--random-weights goes with --config, not with --model")
        model = load_model(args.model)
        cfg = model.config
    if args.inputs is not None:
        if args.sequences is not None or args.steps is not None:
            raise CliError("--inputs gives the sequences; do not combine it with --sequences/--steps")
        inputs = _load_inputs(args.inputs, cfg)
        source = {"kind": "file", "file": args.inputs.name}
    else:
        S = 8 if args.sequences is None else args.sequences
        T = 16 if args.steps is None else args.steps
        inputs = random_inputs(cfg, input_rng(args.seed), S, T)
        source = {"kind": "random-uniform", "seed": args.seed}
    if model is None:
        model, _ = random_model(cfg, args.seed, inputs)
        model_source = {"kind": "random", "seed": args.seed}
    else:
        model_source = {"kind": "file", "file": Path(args.model).name}
    meta = {"generator": "nvmlstm golden", "inputs": source, "model": model_source}
    cov = write_golden_dir(args.out, model, inputs, metadata=meta)
    S, T, _ = inputs.shape
    print(
        f"wrote {args.out}/vectors.npz, vectors.json, model.npz, model.json: {S} sequences x {T} steps, "
        f"model {model.digest()[:16]}"
    )
    _print_coverage(cov)
    return 0


def cmd_flow(args: argparse.Namespace) -> int:
    """The main job: train, export, vectors, Verilog, simulations, efficiency, noise sweep, report."""
    from .flow import FlowArgs, FlowError, run_flow
    from .flow import fmt_metric as fmt

    sims = tuple(s.strip() for s in args.simulators.split(",") if s.strip())
    a = FlowArgs(
        out=str(args.out),
        task=args.task,
        data=None if args.data is None else str(args.data),
        config=None if args.config is None else str(args.config),
        simulators=sims,
        pdk=args.pdk,
        lanes=args.lanes,
        seed=args.seed,
        epochs=args.epochs,
        hidden=args.hidden,
        vectors=args.vectors,
        sweep_trials=args.sweep_trials,
        workers=args.workers,
        progress=not args.no_progress,
    )
    try:
        rep = run_flow(a, log=lambda m: print(f"[flow] {m}", flush=True))
    except FlowError as exc:
        raise CliError(str(exc)) from None
    m = rep["metric_name"]
    print(
        f"[flow] {m}: fp {fmt(rep['fp_metric'], m)}, qat {fmt(rep['qat_metric'], m)}, golden "
        f"{fmt(rep['golden_metric'], m)}; "
        f"RTL bit exact: {rep['rtl_bit_exact']} ({rep['values_compared']} values, "
        f"{', '.join(rep['simulators']) or 'no simulator'}); gate level: {rep['gate_level_bit_exact']}"
    )
    if rep["skipped"]:
        print(f"[flow] skipped: {', '.join(rep['skipped'])} (report.md says why and how to install)")
    print(f"[flow] next: open {args.out}/report.md")
    failed = rep["rtl_bit_exact"] is False and rep["simulators"] or rep["gate_level_bit_exact"] is False
    return 1 if failed else 0


def cmd_generate(args: argparse.Namespace) -> int:
    """Tape-out RTL: the accelerator top, the macro model and stub, file lists, waivers, weight images, manifest."""
    from nvmlstm.gen import GenError, generate_rtl
    from nvmlstm.gen.rtl import timing_summary
    from nvmlstm.golden.config import load_config
    from nvmlstm.golden.io import load_model

    if args.config is not None:
        cfg, model, model_name = load_config(args.config), None, None
    else:
        model, model_name = load_model(args.model), Path(args.model).name
        cfg = model.config
    try:
        res = generate_rtl(
            args.out,
            cfg,
            model=model,
            model_name=model_name,
            lanes=args.lanes,
            macro_latency=args.macro_latency,
            synth=not args.no_synth,
            lint=args.lint,
            pdk=args.pdk,
            clock_mhz=args.clock_mhz,
            log=lambda msg: print(f"[generate] {msg}"),
        )
    except GenError as exc:
        raise CliError(str(exc)) from None
    man = res.manifest
    lat = {k: v["value"] for k, v in man["latency"].items() if "value" in v}
    print(
        f"wrote {args.out}: {len(man['files']) + 1} files, {len(man['macros'])} macros, lanes {man['lanes']}, "
        f"timestep {lat['timestep_cyc']} cycles, {res.seconds['total']:.1f} s"
    )
    if man.get("signoff"):
        so = man["signoff"]
        print(
            f"signoff ({so['pdk']}): {so['cells']} standard cells, {so['flip_flops']} flip-flops, "
            f"{so['area_um2']:.1f} um^2 (macros excluded)"
        )
        print(f"timing: {timing_summary(so.get('timing'))}")
    return 0


class _UsageError(Exception):
    """A command-line syntax error; reported as one line like every other error (no usage dump)."""


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        raise _UsageError(f"{self.prog}: error: {message}")


def _add_golden_parser(sub) -> None:
    """``nvmlstm golden``."""
    g = sub.add_parser("golden", help="write reference vectors (and the model) from the golden model")
    add_config_or_model(
        g, "config JSON (with --random-weights)", "quantized model MODEL.npz (with MODEL.json beside it)"
    )
    g.add_argument("--random-weights", action="store_true", help="random model for --config, ADC-calibrated")
    g.add_argument("--seed", type=_nonneg_int, default=0, help="seed of the random weights and inputs (default 0)")
    g.add_argument("--sequences", type=_pos_int, help="random input sequences (default 8)")
    g.add_argument("--steps", type=_pos_int, help="timesteps per random sequence (default 16)")
    g.add_argument("--inputs", type=Path, help="input codes as .npy (sequences, steps, input_size) instead of random")
    g.add_argument("--out", type=Path, required=True, help="output directory")
    g.set_defaults(func=cmd_golden)


def _add_flow_parser(sub) -> None:
    """``nvmlstm flow``."""
    f = sub.add_parser(
        "flow",
        help="the whole story on a task: train fp and 4-bit QAT, Verilog, bit-exact "
        "simulation, gate level, efficiency, noise sweep, report",
    )
    f.add_argument(
        "--task",
        default="digits",
        help="digits | charlm | timeseries | classify | regress (default "
        "digits; classify/regress need --data FILE.npz)",
    )
    f.add_argument("--data", type=Path, help="the task's data file or directory (default: the shipped data)")
    f.add_argument(
        "--config",
        type=Path,
        help="config JSON whose bit widths, array size and hidden size to "
        "train for (its input/output sizes must match the task)",
    )
    f.add_argument(
        "--simulators",
        default="icarus,verilator",
        help="comma-separated simulators to compare on (default icarus,verilator; a missing one is "
        "reported as skipped)",
    )
    f.add_argument(
        "--pdk",
        choices=("auto", "sky130", "none"),
        default="auto",
        help="standard-cell mapping and gate-level simulation: auto (when the sky130 data is "
        "installed), sky130 (required), none",
    )
    f.add_argument("--lanes", type=_pos_int, default=4, help="hidden-unit lanes of the RTL (default 4)")
    f.add_argument("--seed", type=_nonneg_int, default=0, help="training and sweep seed (default 0)")
    f.add_argument("--epochs", type=_nonneg_int, help="training epochs of each run (default: the task's)")
    f.add_argument("--hidden", type=_pos_int, help="hidden units (default: the task's or --config's)")
    f.add_argument("--vectors", type=_pos_int, default=16, help="test sequences simulated on the RTL (default 16)")
    f.add_argument("--sweep-trials", type=_pos_int, default=3, help="Monte Carlo trials per sweep point (default 3)")
    f.add_argument("--workers", type=_pos_int, default=1, help="Dask worker processes of the sweep (default 1)")
    f.add_argument("--no-progress", action="store_true", help="no progress bars")
    f.add_argument(
        "--out",
        type=Path,
        default=Path("runs/flow"),
        help="flow directory: new, empty or an earlier flow's (default runs/flow)",
    )
    f.set_defaults(func=cmd_flow)


def _add_generate_parser(sub) -> None:
    """``nvmlstm generate``."""
    r = sub.add_parser("generate", help="write tape-out Verilog, macro model/stub, file lists and manifest")
    add_config_or_model(
        r, "config JSON (no weight images)", "quantized model MODEL.npz: its config, plus one weight image per macro"
    )
    r.add_argument("--out", type=Path, required=True, help="RTL directory (new, empty, or an earlier output)")
    r.add_argument("--lanes", type=_int, help="hidden-unit lanes, 1 to hidden_size (default hidden_size)")
    r.add_argument(
        "--macro-latency",
        type=_int,
        default=DEFAULT_MACRO_LATENCY_CYC,
        help=f"NVM macro read latency in cycles (default {DEFAULT_MACRO_LATENCY_CYC})",
    )
    r.add_argument("--no-synth", action="store_true", help="skip the Yosys synthesis check (no cell counts)")
    r.add_argument("--lint", action="store_true", help="also run verilator --lint-only -Wall and iverilog -g2012")
    r.add_argument(
        "--pdk",
        choices=("sky130",),
        help="also map the top to the PDK's standard cells: gate-level netlist, area, static timing (docs/signoff.md)",
    )
    r.add_argument(
        "--clock-mhz",
        type=_pos_float,
        default=200.0,
        help="with --pdk: the clock of the delay-driven mapping and the timing analysis, MHz (default 200)",
    )
    r.set_defaults(func=cmd_generate)


def build_parser() -> argparse.ArgumentParser:
    p = _ArgumentParser(
        prog="nvmlstm",
        description="NVM-array LSTM: from quantization-aware training to "
        "bit-exact Verilog. `nvmlstm COMMAND --help` describes a command.",
    )
    p.add_argument(
        "--version", action="version", version=f"nvmlstm {package_version()}", help="print the version and exit"
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    _add_golden_parser(sub)
    _add_flow_parser(sub)
    _add_generate_parser(sub)

    from .train_cmd import add_train_parser  # torch is imported only when `train` runs

    add_train_parser(sub)

    from .sim_cmd import add_sim_parser  # cocotb and the simulators are used only when `sim` runs

    add_sim_parser(sub)

    from .power_cmd import add_power_parser  # simulators and OpenSTA are used only when `power` runs

    add_power_parser(sub)

    from .bench_cmd import add_bench_parser  # amaranth (cycle formula) and matplotlib load only when `bench` runs

    add_bench_parser(sub)

    from .sweep_cmd import add_sweep_parser  # dask, matplotlib and the task data load only when `sweep` runs

    add_sweep_parser(sub)
    return p


class _QuietStdout:
    """stdout that turns silent when its reader goes away (``nvmlstm ... | head``): the command finishes its
    work and its files instead of dying on a broken pipe."""

    def __init__(self, stream):
        self._stream = stream
        self._closed = False

    def write(self, text: str) -> int:
        if not self._closed:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._closed = True
        return len(text)

    def flush(self) -> None:
        if not self._closed:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._closed = True

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _interrupted(args: argparse.Namespace, argv: Sequence[str], signum: int | None = None) -> str:
    """The one line printed when the command is stopped (Ctrl-C, SIGTERM, SIGHUP: ``signum``, None for a plain
    `KeyboardInterrupt`); for ``train``, with the command that continues the run."""
    from . import stopping

    line = f"nvmlstm {args.command}: {stopping.verb(signum)}"
    if args.command == "train":
        import shlex

        if (Path(args.out) / "checkpoint.pt").is_file():
            again = [*argv] if "--resume" in argv else [*argv, "--resume"]
            line += f"; continue with: {shlex.join(['nvmlstm', *again])}"
        else:
            line += " before the first checkpoint; nothing to resume"
    elif args.command == "flow":
        line += f"; finished stages are kept and reused by: {' '.join(['nvmlstm', *argv])}"
    elif args.command == "sweep":
        line += f"; finished points are kept in {args.out}; rerun the same command to resume"
    return line


def main(argv: Sequence[str] | None = None) -> int:
    """The ``nvmlstm`` command: ``argv`` (default ``sys.argv[1:]``) -> exit status.

    Called without ``argv`` it is the process's own command line: the stop signals (SIGTERM, SIGHUP besides
    Ctrl-C) then stop it and every process it started (`nvmlstm.stopping`). An in-process call with ``argv``
    (the tests) leaves the caller's signal handlers and processes alone.
    """
    from . import stopping

    own_process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    real_stdout = sys.stdout
    quiet = sys.stdout = _QuietStdout(real_stdout)
    if own_process:
        stopping.install()
    try:
        return _run(argv)
    except KeyboardInterrupt as exc:  # before a command started (while the parser loads)
        print(f"nvmlstm: {stopping.verb(getattr(exc, 'signum', None))}", file=sys.stderr)
        return stopping.exit_status(getattr(exc, "signum", None))
    finally:
        stopping.finish()
        sys.stdout = real_stdout
        if quiet._closed and not real_stdout.isatty():
            # Python flushes stdout again at exit: point it at /dev/null so that flush cannot fail either.
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), real_stdout.fileno())


def _run(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version print and exit 0
        return int(exc.code or 0)
    if args.command is None:  # `nvmlstm` alone: the list of commands
        parser.print_help()
        return 0
    from . import stopping

    try:
        return args.func(args)
    except KeyboardInterrupt as exc:  # Ctrl-C or a stop signal (`stopping.Stopped`), or raised while stopping
        return _stopped(args, argv, getattr(exc, "signum", None) or stopping.stop_signal())
    except Exception as exc:
        if stopping.stop_signal() is not None:
            # Raised while the stop unwound the command (a simulator ended by it, a closed pool): the stop's.
            return _stopped(args, argv, stopping.stop_signal())
        if isinstance(exc, (CliError, ValueError, OSError)):
            print(f"nvmlstm {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise


def _stopped(args: argparse.Namespace, argv: list[str], signum: int | None) -> int:
    """End what the stopped command started, print its one line on stderr, return 128 + the signal number."""
    from . import stopping

    stopping.stop_children()
    # After Ctrl-C the terminal shows "^C" where the cursor was: the line starts on a line of its own.
    lead = "\n" if signum in (None, signal.SIGINT) else ""
    print(f"{lead}{_interrupted(args, argv, signum)}", file=sys.stderr)
    return stopping.exit_status(signum)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
