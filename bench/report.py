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

from .literature import digital_comparison, load_literature, ratios
from .model import Timing, at_clock, evaluate
from .signoff import ClockChoice, MeasuredDigital
from .technology import Technology

__all__ = ["bench_report", "sensitivity", "write_bench_dir", "render_markdown", "TimingFn", "FORMAT"]

FORMAT = "nvmlstm-bench"
SCHEMA_VERSION = 2  # 2: clock, corners, digital_energy_pj

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
    clock_mhz: float | None = None,
    clock: ClockChoice | None = None,
    synthesis: Mapping[str, Any] | None = None,
    signoff: Mapping[str, Any] | None = None,
    measured_digital: MeasuredDigital | None = None,
    source: Mapping[str, Any] | None = None,
    sweeps: bool = True,
) -> dict:
    """The whole bench.json document of one build (see docs/efficiency.md for every key).

    The clock is ``clock`` (`nvmlstm.bench.signoff.choose_clock`: with a timing analysis, nominal and
    conservative) or a plain ``clock_mhz`` (one of the two). The headline figures, the comparisons and the
    sweeps are at the nominal clock; ``corners`` has the clock-dependent figures at each clock.
    ``measured_digital`` replaces the model's digital energy of this build (the sweeps, other builds, keep
    the model's).
    """
    if (clock is None) == (clock_mhz is None):
        raise ValueError("give either clock or clock_mhz")
    if clock is None:
        clock = ClockChoice(clock_mhz, "given", f"clock: {clock_mhz:g} MHz (given)")
    res = evaluate(
        cfg,
        tech,
        timing_fn(cfg, lanes),
        clock_mhz=clock.mhz,
        synthesis=synthesis,
        signoff=signoff,
        measured_digital=measured_digital,
    )
    corners = {"nominal": at_clock(res, clock.mhz)}
    if clock.conservative_mhz is not None:
        corners["conservative"] = at_clock(res, clock.conservative_mhz)
    lit = load_literature()
    doc = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "source": dict(source or {}),
        **res,
        "clock": clock.to_dict(),
        "corners": corners,
        "ratios": ratios(res, lit),
        "vs_digital": digital_comparison(res, lit, tech.feature_nm),
        "literature": [
            {
                k: r[k]
                for k in ("kind", "design", "citation", "density", "verified", "gops", "tops_per_w", "tops_per_mm2")
            }
            for r in lit
        ],
    }
    if sweeps:
        doc["sensitivity"] = sensitivity(cfg, tech, timing_fn, lanes=lanes, clock_mhz=clock.mhz)
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
        *_clock_lines(doc),
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
        *_digital_energy_lines(doc),
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
    lines += ["", *_claim_lines(doc), "Every figure's source and the model's assumptions: docs/efficiency.md.", ""]
    return "\n".join(lines)


def _clock_lines(doc: Mapping[str, Any]) -> list[str]:
    """bench.md's clock: where it comes from and, with a timing analysis, the figures at each corner's clock."""
    clock = doc.get("clock")
    if clock is None:  # a document of schema 1
        return []
    lines = [f"{clock['text'][0].upper()}{clock['text'][1:]}.", ""]
    t = clock.get("timing")
    if t is not None:
        for name, c in t["corners"].items():
            p = c["critical_path"]
            lines.append(
                f"* {name} ({c.get('conditions') or name}): fmax {c['fmax_mhz']:.4g} MHz, worst setup slack "
                f"{c['wns_ns']:.3g} ns at the {t['clock_mhz']:g} MHz target ({'met' if c['met'] else 'violated'}); "
                f"critical path {p['start']} -> {p['end']}, {p['cells']} cells, {p['delay_ns']:.3g} ns"
            )
        lines.append("")
    corners = doc.get("corners") or {}
    if len(corners) > 1:
        names = list(corners)
        lines += [
            "| figure | " + " | ".join(f"{n} ({corners[n]['clock_mhz']:.4g} MHz)" for n in names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for key, label in (
            ("latency_ns_per_step", "latency per timestep (ns)"),
            ("gops", "throughput (GOPS)"),
            ("power_mw", "power (mW)"),
            ("tops_per_w", "TOPS/W"),
            ("tops_per_mm2", "TOPS/mm^2"),
        ):
            lines.append(f"| {label} | " + " | ".join(f"{corners[n][key]:.4g}" for n in names) + " |")
        lines += ["", "Every other figure below is at the nominal clock.", ""]
    return lines


def _digital_energy_lines(doc: Mapping[str, Any]) -> list[str]:
    """bench.md's digital energy: the model's estimate and, when measured, the sky130 figure and its scaling."""
    d = doc.get("digital_energy_pj")
    if d is None:
        return []
    if d["measured"] is None:
        return [
            f"Digital energy per timestep: {d['model']:.4g} pJ, the model's estimate ({d['model_basis']}); no "
            "measured periphery power (`nvmlstm power` on a `--pdk sky130` RTL directory adds it).",
            "",
        ]
    m, w = d["measured_conditions"], d["tops_per_w"]
    return [
        f"Digital energy per timestep: **measured** {d['measured']:.4g} pJ on the sky130 netlist ({m['corner']}, "
        f"{m['vdd']:g} V, {m['node_nm']:g} nm, {m['total_mw']:.4g} mW at {m['clock_mhz']:g} MHz; {m['activity']}), "
        f"scaled {d['scaling']}: {d['measured_at_model_node']:.4g} pJ, used for {d['covers']}. The model's "
        f"estimate was {d['model']:.4g} pJ ({d['model_basis']}); TOPS/W {w['measured']:.4g} with the measured "
        f"figure, {w['model']:.4g} with the estimate.",
        "",
    ]


def _claim_lines(doc: Mapping[str, Any]) -> list[str]:
    """bench.md's test of the paper's claim (``vs_digital``), at the designs' published nodes and at ours."""
    vs = doc.get("vs_digital") or {}
    lines = ["## The paper's claim (>= 2.4x TOPS/W, >= 40x TOPS/mm^2 of GPU, FPGA and ASIC designs)", ""]
    for metric, name in (("tops_per_w", "TOPS/W"), ("tops_per_mm2", "TOPS/mm^2")):
        c = vs.get(metric)
        if c is None:
            lines.append(f"* {name}: no digital design in the table has the figure")
            continue
        b, low = c["best"], c["at_our_node"]
        text = (
            f"* {name}: {b['ratio']:.3g}x the best digital design ({b['design']}, {_g(b['node_nm'])} nm): "
            f"{'holds' if c['holds'] else 'FAILS'} (claim {c['claim']:g}x); range over the {c['designs']} digital "
            f"designs with the figure {c['range'][0]:.3g}x to {c['range'][1]:.3g}x"
        )
        if low is not None:
            text += (
                f"; with every design scaled to {doc['feature_nm']:g} nm (classical scaling) the lowest is "
                f"{low['ratio']:.3g}x ({low['design']}): {'holds' if c['holds_at_our_node'] else 'FAILS'}"
            )
        lines.append(text)
    return [*lines, ""]


#: Colour of each kind of design in the charts (named in their legends).
KIND_COLORS = {"gpu": "tab:green", "fpga": "tab:orange", "asic": "tab:blue", "nvm": "tab:purple"}
#: Markers of the designs of one kind, in table order: every design has its own (colour, marker) legend entry,
#: so the chart needs no text next to its points (labels there overlapped where designs lie close together).
_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "h")


def efficiency_figure(doc: Mapping[str, Any]):
    """efficiency.png: TOPS/W against TOPS/mm^2 (log-log) of this build and of the literature, with the claim.

    Every design is a legend entry "KIND: design" in its kind's colour (`KIND_COLORS`); designs with TOPS/W
    only (FPGAs have no die area) are vertical dotted lines; the paper's claim (>= 2.4x and >= 40x the best
    digital design) is the dashed corner it says the build lands in.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.2), layout="constrained")
    used: dict[str, int] = {}
    for r in doc["literature"]:
        if r["tops_per_w"] is None:
            continue
        color, label = KIND_COLORS[r["kind"]], f"{r['kind'].upper()}: {r['design']}"
        if r["density"] != "dense":
            label += " (sparse-effective)"
        if r["tops_per_mm2"] is None:
            ax.axvline(r["tops_per_w"], color=color, linestyle=":", linewidth=1.2, label=label + ", TOPS/W only")
            continue
        marker = _MARKERS[used.get(r["kind"], 0) % len(_MARKERS)]
        used[r["kind"]] = used.get(r["kind"], 0) + 1
        ax.scatter(r["tops_per_w"], r["tops_per_mm2"], color=color, marker=marker, s=40, label=label)
    ax.scatter(doc["tops_per_w"], doc["tops_per_mm2"], color="red", marker="*", s=220, label="this build", zorder=3)
    vs = doc.get("vs_digital") or {}
    w, a = vs.get("tops_per_w"), vs.get("tops_per_mm2")
    if w is not None and a is not None:
        x0, y0 = w["claim"] * w["best"]["value"], a["claim"] * a["best"]["value"]
        ax.axvline(x0, color="0.4", linestyle="--", linewidth=1)
        ax.axhline(y0, color="0.4", linestyle="--", linewidth=1, label="paper's claim: 2.4x / 40x the best digital")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("TOPS/W (tera-operations per second per watt)")
    ax.set_ylabel("TOPS/mm^2 (tera-operations per second per mm^2)")
    ax.set_title(
        f"Efficiency against the literature\n(this build at {doc['feature_nm']:g} nm, the designs at their own node)"
    )
    ax.grid(alpha=0.3, which="both")
    fig.legend(loc="outside right upper", fontsize=7, frameon=False)
    return fig


def breakdown_figure(doc: Mapping[str, Any]):
    """breakdown.png: energy per timestep (pJ) and area (um^2, log) by component."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    e, a = doc["energy_breakdown_pj"], doc["area_breakdown_um2"]
    a1.barh(list(e), list(e.values()))
    a1.set_xlabel("energy per timestep (pJ)")
    a1.set_title("Energy")
    a2.barh(list(a), list(a.values()))
    a2.set_xscale("log")
    a2.set_xlabel(f"area (um^2 at {doc['feature_nm']:g} nm)")
    a2.set_title("Area")
    return fig


#: The sensitivity sweeps in chart order: (key in ``sensitivity``, x label).
_SWEEP_AXES = (
    ("adc_bits", "ADC bits (head ADCs too)"),
    ("array_size", "array size (rows x columns)"),
    ("hidden_size", "hidden size"),
    ("lanes", "lanes"),
)
#: The quantities of the sensitivity chart, one row each: (key, y label, factor, log scale).
_SWEEP_QUANTITIES = (
    ("tops_per_w", "TOPS/W", 1.0, True),
    ("tops_per_mm2", "TOPS/mm^2", 1.0, True),
    ("array_utilization", "array utilization (%)", 100.0, False),
)


def _sweep_x(key: str, points: list[dict]) -> list[float]:
    return [p["array_rows"] if key == "array_size" else p[key] for p in points]


def _as_built(key: str, doc: Mapping[str, Any]) -> float:
    c = doc["config"]
    return {"adc_bits": c["adc_bits"], "array_size": c["array_rows"], "hidden_size": c["hidden_size"]}.get(
        key, doc["lanes"]
    )


def sensitivity_figure(doc: Mapping[str, Any]):
    """sensitivity.png: one row per quantity (with its unit), one column per swept parameter, the build marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    s = doc["sensitivity"]
    fig, axes = plt.subplots(
        len(_SWEEP_QUANTITIES), len(_SWEEP_AXES), figsize=(14, 8), sharex="col", sharey="row", layout="constrained"
    )
    for col, (key, xlabel) in enumerate(_SWEEP_AXES):
        xs = _sweep_x(key, s[key])
        for row, (q, ylabel, factor, log) in enumerate(_SWEEP_QUANTITIES):
            ax = axes[row][col]
            ax.plot(xs, [factor * p[q] for p in s[key]], "o-", color=f"C{row}")
            ax.axvline(_as_built(key, doc), color="red", linestyle="--", linewidth=1, label="as built")
            if log:
                ax.set_yscale("log")
                # Plain numbers at 1-2-5 steps (20, 0.5), not 2x10^1: the default log labels are hard to read.
                ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0), numticks=8))
                ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
                ax.yaxis.set_minor_formatter(ticker.NullFormatter())
            if key != "adc_bits":
                ax.set_xscale("log", base=2)
            ax.grid(alpha=0.3, which="both")
            if col == 0:
                ax.set_ylabel(ylabel)
        bottom = axes[-1][col]
        bottom.set_xlabel(xlabel)
        if key == "array_size":
            bottom.set_xticks(xs, [f"{p['array_rows']}x{p['array_cols']}" for p in s[key]], fontsize=7)
        else:
            bottom.set_xticks(xs, [str(x) for x in xs])
        bottom.minorticks_off()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper right", fontsize=8, frameon=False)
    fig.suptitle("One parameter varied at a time, the others as built (red dashes: the build)", fontsize=10)
    return fig


def _charts(doc: Mapping[str, Any], out: Path) -> list[str]:
    names = ["efficiency.png", "breakdown.png"]
    save_png(efficiency_figure(doc), out / "efficiency.png", dpi=100)
    save_png(breakdown_figure(doc), out / "breakdown.png", dpi=100)
    if "sensitivity" in doc:
        save_png(sensitivity_figure(doc), out / "sensitivity.png", dpi=100)
        names.append("sensitivity.png")
    return names


def write_bench_dir(out: str | Path, doc: Mapping[str, Any], *, charts: bool = True) -> list[str]:
    """Write bench.json, bench.md and (``charts``) the PNGs into ``out``, all or nothing."""
    with atomic_output_dir(out) as tmp:
        (tmp / "bench.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (tmp / "bench.md").write_text(render_markdown(doc), encoding="utf-8")
        names = ["bench.json", "bench.md"] + (_charts(doc, tmp) if charts else [])
    return names
