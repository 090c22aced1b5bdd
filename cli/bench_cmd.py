"""``nvmlstm bench``: the efficiency model (`nvmlstm.bench`) of a config, a model or a generated RTL directory.

`add_bench_parser` registers the subcommand. The bench package never imports the hardware description; the
cycles per timestep come from here: for ``--config`` / ``--model`` from the properties of
`nvmlstm.hdl.accelerator.NvmLstmAccelerator` (the RTL's cycle formula), for ``--rtl`` from the directory's
manifest.json (and the digital area from its Yosys cell counts when it has them). Writes ``OUT/bench.json``,
``OUT/bench.md`` and PNG charts, all or nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nvmlstm.golden.config import DEFAULT_MACRO_LATENCY_CYC

from .argtypes import add_config_or_model
from .argtypes import any_int as _int
from .argtypes import pos_float as _pos_float

__all__ = ["add_bench_parser", "cmd_bench", "rtl_signoff_inputs"]


def add_bench_parser(sub) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to the subparsers action ``sub``."""
    b = sub.add_parser("bench", help="energy, area, latency and throughput of a build, against the literature")
    src = add_config_or_model(b, "config JSON", "quantized model MODEL.npz (its config)")
    src.add_argument(
        "--rtl",
        type=Path,
        help="RTL directory (`nvmlstm generate` output): its manifest's "
        "config, lanes, latencies and synthesis cell counts",
    )
    b.add_argument("--tech", type=Path, help="technology TOML (default: the packaged one, docs/efficiency.md)")
    b.add_argument(
        "--clock-mhz",
        type=_pos_float,
        help="clock frequency in MHz (default: with --rtl, the timing analysis of its sky130 sign-off, nominal "
        "min(target, tt fmax) and conservative min(target, ss fmax); else 200, said to be assumed)",
    )
    b.add_argument(
        "--lanes",
        type=_int,
        help="hidden-unit lanes, 1 to hidden_size (default hidden_size; not with --rtl, whose manifest has them)",
    )
    b.add_argument(
        "--macro-latency",
        type=_int,
        help=f"NVM macro read latency in cycles (default {DEFAULT_MACRO_LATENCY_CYC}; not with --rtl)",
    )
    b.add_argument("--no-charts", action="store_true", help="write bench.json and bench.md only")
    b.add_argument("--out", type=Path, required=True, help="output directory")
    b.set_defaults(func=cmd_bench)
    return b


def rtl_signoff_inputs(man: dict, where: str, clock_mhz: float | None):
    """The clock and the measured digital energy of an RTL directory's manifest (the bench command and the flow).

    Parameters
    ----------
    man : dict
        The manifest (`nvmlstm.bench.model.read_rtl_manifest`).
    where : str
        Its name, for the error messages.
    clock_mhz : float or None
        An explicit clock (``--clock-mhz``), or None for the manifest's timing analysis.

    Returns
    -------
    tuple
        (`nvmlstm.bench.signoff.ClockChoice`, `nvmlstm.bench.signoff.MeasuredDigital` or None).

    Raises
    ------
    nvmlstm.bench.signoff.SignoffEntryError
        A malformed ``signoff.timing`` or ``signoff.power`` (one line).
    """
    from nvmlstm.bench.signoff import SignoffEntryError, choose_clock, parse_power, parse_timing
    from nvmlstm.gen.liberty import CORNERS

    signoff = man.get("signoff")
    if signoff is None:
        return choose_clock(None, clock_mhz), None
    if not isinstance(signoff, dict):
        raise SignoffEntryError(f"{where}: signoff: expected a JSON object, not {type(signoff).__name__}")
    timing = parse_timing(signoff.get("timing"), where)
    measured = parse_power(
        signoff.get("power"),
        where,
        timestep_cyc=man["latency"]["timestep_cyc"]["value"],
        vdd_by_corner={k: c.vdd for k, c in CORNERS.items()},
    )
    return choose_clock(timing, clock_mhz), measured


def cmd_bench(args: argparse.Namespace) -> int:
    from nvmlstm.bench.model import read_rtl_manifest, timing_from_manifest
    from nvmlstm.bench.report import bench_report, write_bench_dir
    from nvmlstm.bench.signoff import choose_clock
    from nvmlstm.bench.technology import load_technology
    from nvmlstm.golden.config import LstmConfig, load_config
    from nvmlstm.golden.io import load_model
    from nvmlstm.hdl.accelerator import NvmLstmAccelerator

    from .errors import CliError
    from .timing import accelerator_timing

    tech = load_technology(args.tech)
    synthesis = signoff = measured = None
    if args.rtl is not None:
        if args.lanes is not None or args.macro_latency is not None:
            raise CliError(
                "--lanes and --macro-latency come from the RTL directory's manifest; do not combine them with --rtl"
            )
        man = read_rtl_manifest(args.rtl)
        cfg = LstmConfig.from_dict(man["config"], where=f"{args.rtl}/manifest.json config")
        built = timing_from_manifest(man)
        # The manifest's cycles are the build's; the sweeps rebuild the formula with its macro latency.
        formula = accelerator_timing(built.macro_latency)
        if formula(cfg, built.lanes) != built:
            raise CliError(
                f"{args.rtl}/manifest.json: latencies {built} differ from the cycle formula of this "
                f"version; regenerate the RTL directory"
            )
        lanes, synthesis, signoff = built.lanes, man.get("synthesis"), man.get("signoff")
        source = {"kind": "rtl", "dir": args.rtl.name}
        clock, measured = rtl_signoff_inputs(man, f"{args.rtl}/manifest.json", args.clock_mhz)
    else:
        if args.config is not None:
            cfg, source = load_config(args.config), {"kind": "config", "file": args.config.name}
        else:
            cfg, source = load_model(args.model).config, {"kind": "model", "file": args.model.name}
        macro_latency = DEFAULT_MACRO_LATENCY_CYC if args.macro_latency is None else args.macro_latency
        lanes = NvmLstmAccelerator.check_parameters(cfg, lanes=args.lanes, macro_latency=macro_latency)
        lanes = None if args.lanes is None else lanes
        formula = accelerator_timing(macro_latency)
        clock = choose_clock(None, args.clock_mhz)
    doc = bench_report(
        cfg,
        tech,
        formula,
        lanes=lanes,
        clock=clock,
        synthesis=synthesis,
        signoff=signoff,
        measured_digital=measured,
        source=source,
    )
    names = write_bench_dir(args.out, doc, charts=not args.no_charts)
    best = doc["ratios"]
    rw, ra = best["tops_per_w"].get("digital"), best["tops_per_mm2"].get("digital")
    print(f"wrote {args.out}: {', '.join(names)}")
    print(
        f"[bench] {doc['gops']:.4g} GOPS, {doc['tops_per_w']:.4g} TOPS/W, {doc['tops_per_mm2']:.4g} TOPS/mm^2, "
        f"{doc['latency_ns_per_step']:.4g} ns per step, arrays occupied {100 * doc['array_utilization']:.1f}% "
        f"of cycles"
        + (f"; vs best digital: {rw['ratio']:.3g}x TOPS/W" if rw else "")
        + (f", {ra['ratio']:.3g}x TOPS/mm^2" if ra else "")
    )
    print(f"[bench] {clock.text}")
    if "conservative" in doc["corners"]:
        c = doc["corners"]["conservative"]
        print(
            f"[bench] conservative ({c['clock_mhz']:.4g} MHz): {c['gops']:.4g} GOPS, {c['tops_per_mm2']:.4g} TOPS/mm^2"
        )
    d = doc["digital_energy_pj"]
    if d["measured"] is not None:
        print(
            f"[bench] digital energy: measured {d['measured']:.4g} pJ per timestep (sky130 "
            f"{d['measured_conditions']['corner']}), {d['measured_at_model_node']:.4g} pJ scaled to "
            f"{doc['feature_nm']:g} nm (model estimate {d['model']:.4g} pJ)"
        )
    return 0
