"""``DIR/bench.json``, ``DIR/bench.md`` and the charts of one build, written atomically.

`bench_report` evaluates the build, compares it with the literature and sweeps ADC bits, array size,
hidden size and lanes (each sweep changes one parameter of the build; the cycles of every point come from
the caller's ``timing_fn``, the RTL's cycle formula). `write_bench_dir` writes the files; the same inputs
give byte-identical JSON and Markdown.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nvmlstm.artifacts.files import atomic_output_dir
from nvmlstm.artifacts.png import save_png
from nvmlstm.golden.config import LstmConfig

from .literature import load_literature, ratios
from .model import Timing, evaluate
from .technology import Technology

__all__ = ["bench_report", "sensitivity", "write_bench_dir", "render_markdown", "TimingFn", "FORMAT"]

FORMAT = "nvmlstm-bench"
SCHEMA_VERSION = 1

#: ``timing_fn(cfg, lanes)``: the RTL's cycles for a config and a lane count (``None``: hidden_size).
TimingFn = Callable[[LstmConfig, "int | None"], Timing]

_SWEEPS = {
    "adc_bits": [2, 3, 4, 5, 6, 7, 8],
    "array_size": [(16, 32), (32, 64), (64, 128), (128, 256), (256, 512)],
}
#: The hidden-size sweep, as multiples of the build's (the larger ones build big accelerators for their cycles).
_HIDDEN_FACTORS = (0.25, 0.5, 1, 2, 4)
_METRICS = ("tops_per_w", "tops_per_mm2", "array_utilization", "gops")


def _point(cfg: LstmConfig, tech: Technology, timing_fn: TimingFn, lanes: int | None, clock_mhz: float) -> dict:
    r = evaluate(cfg, tech, timing_fn(cfg, lanes), clock_mhz=clock_mhz)
    return {k: r[k] for k in _METRICS}


def sensitivity(
    cfg: LstmConfig, tech: Technology, timing_fn: TimingFn, *, lanes: int | None, clock_mhz: float
) -> dict[str, list[dict]]:
    """TOPS/W, TOPS/mm^2, utilization and GOPS as one parameter varies (the others as built). ``lanes``
    stays as built (clipped to the hidden size; ``None``: one lane per unit) except in the lanes sweep."""

    def lanes_for(c: LstmConfig) -> int | None:
        return None if lanes is None else min(lanes, c.hidden_size)

    out: dict[str, list[dict]] = {"adc_bits": [], "array_size": [], "hidden_size": [], "lanes": []}
    for b in _SWEEPS["adc_bits"]:
        c = cfg.replace(adc_bits=b, head_adc_bits=None if cfg.head_adc_bits is None else b)
        out["adc_bits"].append({"adc_bits": b, **_point(c, tech, timing_fn, lanes_for(c), clock_mhz)})
    for rows, cols in _SWEEPS["array_size"]:
        c = cfg.replace(array_rows=rows, array_cols=cols)
        out["array_size"].append(
            {"array_rows": rows, "array_cols": cols, **_point(c, tech, timing_fn, lanes_for(c), clock_mhz)}
        )
    for h in sorted({max(1, round(f * cfg.hidden_size)) for f in _HIDDEN_FACTORS}):
        c = cfg.replace(hidden_size=h)
        out["hidden_size"].append({"hidden_size": h, **_point(c, tech, timing_fn, lanes_for(c), clock_mhz)})
    H = cfg.hidden_size
    for n in sorted({1 << k for k in range(H.bit_length()) if 1 << k <= H} | {H}):
        out["lanes"].append({"lanes": n, **_point(cfg, tech, timing_fn, n, clock_mhz)})
    return out


def bench_report(
    cfg: LstmConfig,
    tech: Technology,
    timing_fn: TimingFn,
    *,
    lanes: int | None,
    clock_mhz: float,
    synthesis: Mapping[str, Any] | None = None,
    signoff: Mapping[str, Any] | None = None,
    source: Mapping[str, Any] | None = None,
    sweeps: bool = True,
) -> dict:
    """The whole bench.json document of one build (see docs/efficiency.md for every key)."""
    res = evaluate(cfg, tech, timing_fn(cfg, lanes), clock_mhz=clock_mhz, synthesis=synthesis, signoff=signoff)
    lit = load_literature()
    doc = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "source": dict(source or {}),
        **res,
        "ratios": ratios(res, lit),
        "literature": [
            {
                k: r[k]
                for k in ("kind", "design", "citation", "density", "verified", "gops", "tops_per_w", "tops_per_mm2")
            }
            for r in lit
        ],
    }
    if sweeps:
        doc["sensitivity"] = sensitivity(cfg, tech, timing_fn, lanes=lanes, clock_mhz=clock_mhz)
    return doc


def _g(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}g}"


def render_markdown(doc: Mapping[str, Any]) -> str:
    """bench.md: the headline numbers, the breakdowns and the comparison table."""
    c = doc["config"]
    lines = [
        "# Efficiency of one build (`nvmlstm bench`)",
        "",
        f"Config: I={c['input_size']} H={c['hidden_size']} L={c['num_layers']} O={c['output_size']}, "
        f"{c['weight_bits']}/{c['dac_bits']}/{c['adc_bits']} bits, {c['array_rows']}x{c['array_cols']} arrays; "
        f"lanes {doc['lanes']}, macro latency {doc['macro_latency']}, clock {doc['clock_mhz']:g} MHz, "
        f"{doc['feature_nm']:g} nm ({doc['technology']}).",
        "",
        "| metric | value |",
        "|---|---|",
        f"| ops per timestep ({doc['ops_convention']}) | {doc['ops_per_step']} |",
        f"| cycles per timestep | {doc['timing']['timestep_cyc']} |",
        f"| latency per timestep (ns) | {doc['latency_ns_per_step']:.4g} |",
        f"| throughput (GOPS) | {doc['gops']:.4g} |",
        f"| energy per timestep (pJ) | {doc['energy_pj_per_step']:.4g} |",
        f"| power (mW) | {doc['power_mw']:.4g} |",
        f"| area (mm^2) | {doc['area_mm2']:.4g} |",
        f"| TOPS/W | {doc['tops_per_w']:.4g} |",
        f"| TOPS/mm^2 | {doc['tops_per_mm2']:.4g} |",
        f"| array utilization (occupied by a read) | {100 * doc['array_utilization']:.1f}% |",
        f"| read-strobe fraction | {100 * doc['array_read_strobe_fraction']:.1f}% |",
        "",
        "Energy per timestep (pJ): " + ", ".join(f"{k} {v:.4g}" for k, v in doc["energy_breakdown_pj"].items()),
        "",
        "Area (um^2): "
        + ", ".join(f"{k} {v:.4g}" for k, v in doc["area_breakdown_um2"].items())
        + f" (digital: {doc['digital_area_source']})",
        "",
        "## Against the literature",
        "",
        "| kind | design | density | TOPS/W | TOPS/mm^2 | ours / theirs, TOPS/W | ours / theirs, TOPS/mm^2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in doc["literature"]:
        rw = None if r["tops_per_w"] is None else doc["tops_per_w"] / r["tops_per_w"]
        ra = None if r["tops_per_mm2"] is None else doc["tops_per_mm2"] / r["tops_per_mm2"]
        lines.append(
            f"| {r['kind']} | {r['design']} | {r['density']} | {_g(r['tops_per_w'])} | "
            f"{_g(r['tops_per_mm2'])} | {_g(rw)} | {_g(ra)} |"
        )
    lines += ["", "Ratios to the best entry of each kind:", ""]
    for metric, by_kind in doc["ratios"].items():
        for kind, b in by_kind.items():
            lines.append(f"* {metric}, best {kind} ({b['design']}, {b['value']:.3g}): {b['ratio']:.3g}x")
    lines += ["", "Every figure's source and the model's assumptions: docs/efficiency.md.", ""]
    return "\n".join(lines)


def _charts(doc: Mapping[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    colors = {"gpu": "tab:green", "fpga": "tab:orange", "asic": "tab:blue", "nvm": "tab:purple"}
    fig, ax = plt.subplots(figsize=(7, 5))
    for r in doc["literature"]:
        if r["tops_per_w"] is not None and r["tops_per_mm2"] is not None:
            ax.scatter(
                r["tops_per_w"],
                r["tops_per_mm2"],
                color=colors[r["kind"]],
                marker="o" if r["density"] == "dense" else "^",
            )
            ax.annotate(r["design"], (r["tops_per_w"], r["tops_per_mm2"]), fontsize=7)
    ax.scatter(doc["tops_per_w"], doc["tops_per_mm2"], color="red", marker="*", s=200)
    ax.annotate("this build", (doc["tops_per_w"], doc["tops_per_mm2"]), fontsize=8, color="red")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("TOPS/W")
    ax.set_ylabel("TOPS/mm^2")
    ax.set_title("Efficiency against the literature (rows with both figures)")
    fig.tight_layout()
    save_png(fig, out / "efficiency.png", dpi=100)
    names.append("efficiency.png")

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    e, a = doc["energy_breakdown_pj"], doc["area_breakdown_um2"]
    a1.barh(list(e), list(e.values()))
    a1.set_xlabel("pJ per timestep")
    a1.set_title("Energy")
    a2.barh(list(a), list(a.values()))
    a2.set_xscale("log")
    a2.set_xlabel("um^2")
    a2.set_title("Area")
    fig.tight_layout()
    save_png(fig, out / "breakdown.png", dpi=100)
    names.append("breakdown.png")

    if "sensitivity" in doc:
        s = doc["sensitivity"]
        fig, axes = plt.subplots(1, 4, figsize=(16, 4))
        for ax, (key, xkey) in zip(
            axes,
            [
                ("adc_bits", "adc_bits"),
                ("array_size", "array_rows"),
                ("hidden_size", "hidden_size"),
                ("lanes", "lanes"),
            ],
        ):
            xs = [p[xkey] for p in s[key]]
            ax.plot(xs, [p["tops_per_w"] for p in s[key]], "o-", label="TOPS/W")
            ax.plot(xs, [p["tops_per_mm2"] for p in s[key]], "s-", label="TOPS/mm^2")
            ax.plot(xs, [p["array_utilization"] for p in s[key]], "^-", label="utilization")
            ax.set_yscale("log")
            if key != "adc_bits":
                ax.set_xscale("log", base=2)
            ax.set_xlabel(xkey)
            ax.legend(fontsize=7)
        fig.tight_layout()
        save_png(fig, out / "sensitivity.png", dpi=100)
        names.append("sensitivity.png")
    return names


def write_bench_dir(out: str | Path, doc: Mapping[str, Any], *, charts: bool = True) -> list[str]:
    """Write bench.json, bench.md and (``charts``) the PNGs into ``out``, all or nothing."""
    with atomic_output_dir(out) as tmp:
        (tmp / "bench.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (tmp / "bench.md").write_text(render_markdown(doc), encoding="utf-8")
        names = ["bench.json", "bench.md"] + (_charts(doc, tmp) if charts else [])
    return names
