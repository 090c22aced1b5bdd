#!/usr/bin/env python3
"""Standard-cell area of the accelerator on sky130_fd_sc_hd, by block (docs/signoff.md).

Each point is ``nvmlstm generate --pdk sky130`` (no synthesis check) of a config and lane count: the top
mapped by Yosys to the generated Liberty subset (area only, timing not modelled), NVM macros excluded. The
table is the area in um^2 per block (`nvmlstm.gen.signoff.block_of`), the total, flip-flops and the mapping
wall time; the PNG shows the total against lanes (default config) and against hidden size (8 lanes).

    .venv/bin/python benchmarks/signoff_area.py                  # all points: docs/signoff_area.{json,png}
    .venv/bin/python benchmarks/signoff_area.py --points default-l1 h8-l8 --out runs/bench/signoff

The default config at 32 lanes takes about 6 minutes and 0.8 GB; the whole set about 20 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from nvmlstm.artifacts.png import save_png
from nvmlstm.gen import generate_rtl
from nvmlstm.golden import default_config

ROOT = Path(__file__).resolve().parent.parent

_D = default_config()
#: name -> (config, lanes): the default config at 1, 8 and 32 lanes, hidden sizes 8 and 16 at 8 lanes, and a
#: 2-layer H = 128 config at 8 lanes.
POINTS = {
    "default-l1": (_D, 1),
    "default-l8": (_D, 8),
    "default-l32": (_D, 32),
    "h8-l8": (replace(_D, hidden_size=8), 8),
    "h16-l8": (replace(_D, hidden_size=16), 8),
    "2layer-h128-l8": (replace(_D, hidden_size=128, num_layers=2), 8),
}


def measure(name: str) -> dict:
    cfg, lanes = POINTS[name]
    with tempfile.TemporaryDirectory(prefix="nvmlstm-area-") as tmp:
        t0 = time.monotonic()
        res = generate_rtl(Path(tmp) / "rtl", cfg, lanes=lanes, synth=False, pdk="sky130")
        wall = time.monotonic() - t0
    so = res.manifest["signoff"]
    return {
        "point": name,
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_layers,
        "lanes": lanes,
        "macros": len(res.manifest["macros"]),
        "cells": so["cells"],
        "flip_flops": so["flip_flops"],
        "area_um2": so["area_um2"],
        "area_by_block": so["area_by_block"],
        "mapping_seconds": round(res.seconds["signoff"], 1),
        "wall_seconds": round(wall, 1),
    }


def table(rows: list[dict]) -> str:
    blocks = sorted({b for r in rows for b in r["area_by_block"]})
    head = ["point", "H", "L", "lanes", "cells", "flip-flops", *blocks, "total um^2", "mapping s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["point"],
            r["hidden_size"],
            r["num_layers"],
            r["lanes"],
            r["cells"],
            r["flip_flops"],
            *[f"{r['area_by_block'].get(b, 0.0):,.0f}" for b in blocks],
            f"{r['area_um2']:,.0f}",
            f"{r['mapping_seconds']:.0f}",
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {r["point"]: r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    lanes = [by[p] for p in ("default-l1", "default-l8", "default-l32") if p in by]
    axes[0].plot([r["lanes"] for r in lanes], [r["area_um2"] / 1e6 for r in lanes], "o-")
    axes[0].set(
        xlabel="lanes (H = 32, 1 layer)",
        ylabel="standard-cell area (mm^2)",
        xscale="log",
        xticks=[1, 8, 32],
        xticklabels=["1", "8", "32"],
        title="area vs lanes",
    )
    hid = sorted((r for r in rows if r["lanes"] == 8 and r["num_layers"] == 1), key=lambda r: r["hidden_size"])
    axes[1].plot([r["hidden_size"] for r in hid], [r["area_um2"] / 1e6 for r in hid], "o-", label="1 layer")
    two = [r for r in rows if r["lanes"] == 8 and r["num_layers"] == 2]
    if two:
        axes[1].plot([r["hidden_size"] for r in two], [r["area_um2"] / 1e6 for r in two], "s", label="2 layers")
    axes[1].set(xlabel="hidden size (8 lanes)", ylabel="standard-cell area (mm^2)", title="area vs hidden size")
    axes[1].legend()
    fig.suptitle("sky130_fd_sc_hd area of the digital logic (NVM macros excluded; timing not modelled)")
    fig.tight_layout()
    save_png(fig, path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", nargs="+", choices=sorted(POINTS), default=list(POINTS))
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="directory of signoff_area.json/.png")
    args = ap.parse_args(argv)
    rows = []
    for name in args.points:
        print(f"mapping {name} ...", flush=True)
        rows.append(measure(name))
        print(
            f"  {rows[-1]['area_um2']:,.0f} um^2, {rows[-1]['flip_flops']} flip-flops, "
            f"{rows[-1]['mapping_seconds']:.0f} s",
            flush=True,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"machine": {"python": platform.python_version(), "cpu_count": __import__("os").cpu_count()}, "rows": rows}
    (args.out / "signoff_area.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    plot(rows, args.out / "signoff_area.png")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
