"""The "before" rows of docs/signoff.md (timing and power): the RTL as it was before issue 20's pipeline work
(``hdl/`` of commit d2be8f1, extracted with ``git archive``) generated with today's ``gen/`` (mapping, STA),
and its periphery power measured like today's, with one change: OpenSTA 2.0.17 segfaults in ``report_power``
on these netlists (even with no activity set), so the power script sets OpenSTA's input default globally
first (``set_power_activity -global -activity 0.1 -duty 0.5``), which avoids the crash. ``--after`` measures
today's RTL the same way, for a like-for-like comparison.

    .venv/bin/python benchmarks/signoff_before.py --layers 1 --lanes 4 [--after]

Prints one JSON line: fmax and critical path per corner, cycles per timestep, cells, flip-flops, area, and the
power (tt, 200 MHz, the random-model vectors of signoff_timing.py's `golden_vectors`). About 2 minutes for
1 layer at 4 lanes.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The last commit before issue 20 changed hdl/.
BEFORE = "d2be8f1"
GLOBAL_DEFAULT = "set_power_activity -global -activity 0.1 -duty 0.5"


def use_old_hdl(work: Path) -> None:
    """Make ``nvmlstm.hdl`` the package of commit `BEFORE` (before anything imports it)."""
    tar = subprocess.run(["git", "archive", BEFORE, "hdl"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(tar)) as t:
        t.extractall(work, filter="data")
    import nvmlstm  # noqa: F401  (the parent package first)

    spec = importlib.util.spec_from_file_location(
        "nvmlstm.hdl", work / "hdl" / "__init__.py", submodule_search_locations=[str(work / "hdl")]
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["nvmlstm.hdl"] = mod
    spec.loader.exec_module(mod)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--lanes", type=int, default=4)
    ap.add_argument("--after", action="store_true", help="today's RTL instead of the one before issue 20")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nvmlstm-before-") as tmp:
        work = Path(tmp)
        if not args.after:
            use_old_hdl(work)
        from signoff_timing import golden_vectors  # after use_old_hdl: it imports nvmlstm.gen

        from nvmlstm.gen import generate_rtl
        from nvmlstm.gen.power import parse_power_report
        from nvmlstm.golden.config import default_config
        from nvmlstm.power_cmd import measure_power

        cfg = dataclasses.replace(default_config(), num_layers=args.layers)
        res = generate_rtl(work / "rtl", cfg, lanes=args.lanes, synth=False, pdk="sky130", clock_mhz=200.0)
        vec = golden_vectors(cfg, work)
        try:  # the simulation and the activity file; OpenSTA's report crashes on the "before" netlists
            measure_power(work / "rtl", vec, clock_mhz=200.0, work_dir=work / "power", log=lambda m: None)
        except Exception as exc:  # noqa: BLE001  (reported, then the global-default run below)
            print(f"nvmlstm power: {exc}", file=sys.stderr)
        lines = (work / "power" / "power_tt.tcl").read_text().splitlines()
        k = next(i for i, line in enumerate(lines) if line.startswith("create_clock"))
        lines.insert(k + 1, GLOBAL_DEFAULT)
        (work / "power" / "global.tcl").write_text("\n".join(lines) + "\n")
        proc = subprocess.run(
            ["sta", "-no_splash", "-exit", str(work / "power" / "global.tcl")],
            cwd=work / "rtl", capture_output=True, text=True,
        )  # fmt: skip
        power = parse_power_report(proc.stdout)
        man = res.manifest
        cyc = man["latency"]["timestep_cyc"]["value"]
        row = {
            "rtl": "after" if args.after else f"before ({BEFORE})",
            "layers": args.layers,
            "lanes": args.lanes,
            "timestep_cyc": cyc,
            "cells": man["signoff"]["cells"],
            "flip_flops": man["signoff"]["flip_flops"],
            "area_um2": man["signoff"]["area_um2"],
            "timing": {
                c: {"fmax_mhz": e["fmax_mhz"], "critical_path": e["critical_path"]}
                for c, e in man["signoff"]["timing"]["corners"].items()
            },
            "power_tt_200mhz_global_default": power,
            "energy_per_timestep_pj": round(power["total_mw"] * 5.0 * cyc, 1),
        }
        print(json.dumps(row))


if __name__ == "__main__":
    main()
