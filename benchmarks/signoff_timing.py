"""Static timing and power of the sky130 sign-off (docs/signoff.md, "Static timing", "Power"): fmax at tt and
ss, the critical path, cells and area of the default config at 4 and 32 lanes and of a 2-layer config, from
`nvmlstm generate --pdk sky130 --clock-mhz F`; with ``--power``, the periphery power at tt and the target clock
from `nvmlstm power` on random-weight golden vectors (seed 0, 3 sequences x 8 timesteps). Writes
docs/signoff_timing.json.

    .venv/bin/python benchmarks/signoff_timing.py [--points default-l4,2layer-h32-l4,default-l32] [--clock-mhz 200]
        [--power]

The default config at 32 lanes maps for about 5 minutes and its power simulation takes about 10; the other
points take about a minute each, and 2 minutes more with ``--power``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

from nvmlstm.artifacts.files import write_text_atomic
from nvmlstm.cli import main as cli_main
from nvmlstm.gen import generate_rtl
from nvmlstm.golden.config import default_config
from nvmlstm.power_cmd import measure_power

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "signoff_timing.json"

#: name -> (config changes from the default, lanes)
POINTS = {
    "default-l4": ({}, 4),
    "default-l32": ({}, 32),
    "2layer-h32-l4": ({"num_layers": 2}, 4),
}


#: The power run's vectors: random weights (ADC-calibrated) and inputs of this seed and size.
VECTORS = ("--random-weights", "--seed", "0", "--sequences", "3", "--steps", "8")


def golden_vectors(cfg, work: Path) -> Path:
    """Write the power run's vectors (`VECTORS`) for ``cfg`` into ``work/vec`` (via ``work/cfg.json``)."""
    (work / "cfg.json").write_text(cfg.to_json())
    if cli_main(["golden", "--config", str(work / "cfg.json"), *VECTORS, "--out", str(work / "vec")]):
        raise SystemExit(f"{work}: the golden vectors could not be written")
    return work / "vec"


def measure(name: str, clock_mhz: float, power: bool) -> dict:
    """Generate the point with OpenSTA and return its timing, cells and area (and its power)."""
    changes, lanes = POINTS[name]
    cfg = dataclasses.replace(default_config(), **changes)
    with tempfile.TemporaryDirectory(prefix="nvmlstm-timing-") as tmp:
        t0 = time.monotonic()
        res = generate_rtl(Path(tmp) / "rtl", cfg, lanes=lanes, synth=False, pdk="sky130", clock_mhz=clock_mhz)
        seconds = time.monotonic() - t0
        pw = None
        if power:
            vec = golden_vectors(cfg, Path(tmp))
            t1 = time.monotonic()
            pw = measure_power(Path(tmp) / "rtl", vec, corner="tt", clock_mhz=clock_mhz)
            pw["seconds"] = round(time.monotonic() - t1, 1)
    so = res.manifest["signoff"]
    timing = so["timing"]
    row = {
        "point": name,
        "hidden": cfg.hidden_size,
        "layers": cfg.num_layers,
        "lanes": lanes,
        "clock_mhz": clock_mhz,
        "cells": so["cells"],
        "flip_flops": so["flip_flops"],
        "area_um2": so["area_um2"],
        "seconds": round(seconds, 1),
    }
    if isinstance(timing, dict):
        for corner, e in timing["corners"].items():
            row[f"{corner}_fmax_mhz"] = e["fmax_mhz"]
            row[f"{corner}_wns_ns"] = e["wns_ns"]
            row[f"{corner}_critical_path"] = e["critical_path"]
    else:
        row["timing"] = timing
    if pw is not None:
        row["power_tt"] = pw
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", default=",".join(POINTS), help="comma-separated names of POINTS")
    ap.add_argument("--clock-mhz", type=float, default=200.0)
    ap.add_argument("--power", action="store_true", help="also measure the periphery power (nvmlstm power, tt)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    rows = []
    for name in args.points.split(","):
        row = measure(name, args.clock_mhz, args.power)
        print(json.dumps(row))
        rows.append(row)
    command = "benchmarks/signoff_timing.py" + (" --power" if args.power else "")
    doc = {"command": command, "clock_mhz": args.clock_mhz, "rows": rows}
    write_text_atomic(args.out, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
