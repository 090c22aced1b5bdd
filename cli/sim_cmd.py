"""``nvmlstm sim``: the cocotb regression of a generated RTL directory against golden vectors.

`add_sim_parser` registers the subcommand; `sim` (and cocotb, numpy) are imported only when it runs. Exit
status: 0 when every compared value matched and every beat arrived, 1 when the simulation found a
difference (the first one is printed), 2 for anything that stopped it from running (one line on stderr: a
vector directory that does not belong to the RTL directory, a missing simulator with how to install it, a
failed build, a simulator killed on its own: no result, never a mismatch). Stopped itself (Ctrl-C, SIGTERM),
the command ends its simulator and exits 130 / 143 with one line (`nvmlstm.stopping`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .argtypes import nonneg_int as _nonneg_int
from .argtypes import number_in as _number_in
from .argtypes import pos_float as _pos_float

__all__ = ["add_sim_parser", "cmd_sim"]


def add_sim_parser(sub) -> argparse.ArgumentParser:
    """Add the ``sim`` subcommand to the subparsers action ``sub``."""
    s = sub.add_parser("sim", help="simulate generated Verilog against golden vectors, bit for bit (cocotb)")
    s.add_argument("--rtl", type=Path, required=True, help="RTL directory (`nvmlstm generate` output)")
    s.add_argument(
        "--vectors", type=Path, required=True, help="vector directory (`nvmlstm golden` output: vectors and model)"
    )
    s.add_argument("--simulator", required=True, choices=("icarus", "verilator"), help="icarus | verilator")
    s.add_argument(
        "--waves",
        action="store_true",
        help="always record waveforms (VCD on Icarus, FST on Verilator); by default only a failing "
        "run is re-run with them",
    )
    s.add_argument("--report", type=Path, help="write the JSON report here")
    s.add_argument("--seed", type=_nonneg_int, default=0, help="seed of every random stall and split (default 0)")
    prob = _number_in(0, 0.95)
    for flag, kind, default, metavar, help_ in (  # the stress of the run (`sim.Stress`)
        (
            "--gap-prob",
            prob,
            0.0,
            "P",
            "probability per waiting cycle that no input beat is offered (0 to 0.95, default 0)",
        ),
        ("--backpressure-prob", prob, 0.0, "P", "probability per cycle that out.ready is low (0 to 0.95, default 0)"),
        ("--idle-max", _nonneg_int, 0, "N", "up to N idle cycles between sequences (default 0: back to back)"),
        (
            "--split-prob",
            _number_in(0, 1),
            0.0,
            "P",
            "probability that a sequence runs as two chunks, the second without clear (default 0)",
        ),
    ):
        s.add_argument(flag, type=kind, default=default, metavar=metavar, help=help_)
    s.add_argument(
        "--work-dir",
        type=Path,
        help="keep the run's files here (default: a temporary directory, kept only on failure or with --waves)",
    )
    s.add_argument(
        "--gate-level",
        action="store_true",
        help="simulate the sky130 gate-level netlist (`nvmlstm generate --pdk sky130`)",
    )
    s.add_argument(
        "--sdf",
        metavar="CORNER",
        choices=("tt", "ss"),
        help="with --gate-level, on icarus: annotate OpenSTA's SDF of this corner (nvm_lstm_top.CORNER.sdf) on the "
        "foundry's timing cell models and run at the analysed clock period",
    )
    s.add_argument(
        "--clock-ns",
        type=_pos_float,
        metavar="P",
        help="clock period in ns (default: with --sdf the manifest's analysed period signoff.timing.period_ns if "
        "the corner meets it, else 1000/fmax of the corner; without, 10)",
    )
    s.add_argument("--cache", type=Path, help="build cache (default $NVMLSTM_SIM_CACHE or ~/.cache/nvmlstm/sim)")
    s.set_defaults(func=cmd_sim)
    return s


def cmd_sim(args: argparse.Namespace) -> int:
    from nvmlstm.sim import SimError, Stress, run_regression

    from . import stopping

    try:
        stress = Stress(
            seed=args.seed,
            gap_prob=args.gap_prob,
            backpressure_prob=args.backpressure_prob,
            idle_max=args.idle_max,
            split_prob=args.split_prob,
        )
        rep = run_regression(
            args.rtl,
            args.vectors,
            args.simulator,
            stress=stress,
            waves=True if args.waves else "on-failure",
            report=args.report,
            work_dir=args.work_dir,
            cache=args.cache,
            gate_level=args.gate_level,
            sdf_corner=args.sdf,
            clock_ns=args.clock_ns,
            log=lambda m: print(f"[sim] {m}"),
        )
    except SimError as exc:
        if stopping.stop_signal() is not None:
            raise  # the simulator ended because the command was stopped: the stop's one line, not an error
        print(f"nvmlstm sim: error: {exc}", file=sys.stderr)
        return 2
    b, c = rep["beats"], rep["cycles"]
    print(
        f"[sim] {rep['simulator']}{' gate-level' if rep.get('gate_level') else ''}: {rep['values_compared']} "
        f"values compared ({b['received']} of {b['expected']} "
        f"beats, {rep['sequences']} sequences x {rep['steps']} steps); cycles at done {c['done_sum']}, "
        f"{c['simulated']} simulated, {rep['sim_seconds']:.1f} s"
    )
    sdf = rep.get("sdf")
    if sdf is not None:
        n = sdf["annotation_message_count"]
        print(
            f"[sim] SDF {sdf['corner']}: {sdf['cells']} cells, {sdf['iopaths']} IOPATHs annotated at a "
            f"{sdf['clock_ns']} ns clock ({sdf['clock_source']}); "
            + (f"{n} annotation warnings, first: {sdf['annotation_messages'][0]}" if n else "no annotation warnings")
        )
        if sdf["skipped_cells"]:  # the macros: their behavioral model has no specify paths to annotate
            print(f"[sim] SDF {sdf['corner']}: not annotated (behavioral models): {sdf['skipped_cells']}")
    if rep["first_mismatch"] is not None:
        print(
            f"[sim] MISMATCH: {rep['mismatches']} of {rep['values_compared']} values differ; first at "
            f"{rep['first_mismatch_text']}"
        )
    if b["missing"] or b["extra"] or b["duplicate"]:
        print(f"[sim] beats: {b['missing']} missing, {b['extra']} extra, {b['duplicate']} twice")
    for err in rep["protocol_errors"][:3]:
        print(f"[sim] protocol: {err}")
    if rep.get("waves"):
        print(f"[sim] waveforms: {rep['waves']}")
    elif rep.get("waves_error"):
        print(f"[sim] no waveforms: {rep['waves_error']}")
    if not rep["passed"] and rep.get("run_dir"):
        print(f"[sim] run files (log, settings): {rep['run_dir']}")
    if args.report is not None:
        print(f"[sim] report: {args.report}")
    print(f"[sim] {'PASS: bit exact' if rep['passed'] else 'FAIL'}")
    return 0 if rep["passed"] else 1
