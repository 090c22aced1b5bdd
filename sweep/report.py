"""A finished sweep's files: sweep.csv, summary.csv, summary.json, summary.md and PNG plots.

Rows are in canonical order (labels as given, grid points in the order of the --axis options and their
values, trials in order), never completion order, and floats are written with ``repr``, so the CSV and JSON
files are byte-identical whatever the number of workers. PNGs are written without a Software/date tag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nvmlstm.artifacts.files import write_text_atomic
from nvmlstm.artifacts.png import save_png

from .evaluate import BIT_AXES, canonical_json
from .spec import SweepSpec, point_key

__all__ = ["write_reports", "summarize"]


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _csv_row(*cells: Any) -> str:
    return ",".join(_fmt(c) for c in cells)


#: The columns of `summarize`, in the order of summary.csv.
_SUMMARY_STATS = ("trials", "mean", "std", "min", "max")


def summarize(trials: list[float]) -> dict[str, Any]:
    """n, mean, std (population, ddof 0: a deterministic point has 0), min and max of trial metrics."""
    a = np.asarray(trials, dtype=np.float64)
    return {
        "trials": int(a.size),
        "mean": float(np.mean(a)),
        "std": float(np.std(a)),
        "min": float(np.min(a)),
        "max": float(np.max(a)),
    }


def _pretty(metric: str, v: float | None) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.2f}%" if metric == "accuracy" else f"{v:.4f}"


def write_reports(spec: SweepSpec, out: Path, results: dict[str, dict]) -> dict:
    """Assemble every output file of ``out`` from the per-point results; returns the summary document."""
    metric = spec.metric
    axis_names = [n for n, _ in spec.axes]
    baselines: dict[str, float | None] = {}
    for lab in spec.labels:
        j = next((b for b in spec.baseline_jobs if b["label"] == lab.name), None)
        baselines[lab.name] = None if j is None else results[f"baselines/{j['key']}"]["float_metric"]
    rows = [_csv_row("label", "source", *axis_names, "trial", "seed", metric, "model_sha256")]
    srows = [_csv_row("label", "source", *axis_names, *_SUMMARY_STATS, f"float_{metric}")]
    points = []
    for job in spec.jobs:
        rec = results[f"points/{job['key']}"]
        vals = [_fmt(job["point"][n]) for n in axis_names]
        for t in rec["trials"]:
            rows.append(
                _csv_row(job["label"], rec["source"], *vals, t["trial"], t["seed"], t["metric"], rec["model_sha256"])
            )
        s = summarize([t["metric"] for t in rec["trials"]])
        srows.append(
            _csv_row(job["label"], rec["source"], *vals, *(s[k] for k in _SUMMARY_STATS), baselines[job["label"]])
        )
        points.append(
            {
                "label": job["label"],
                "point": job["point"],
                "source": rec["source"],
                "model_sha256": rec["model_sha256"],
                "adc_steps": rec["adc_steps"],
                **s,
            }
        )
    pngs = _plots(spec, out, points, baselines)
    summary = {
        "task": spec.doc["task"],
        "metric": metric,
        "higher_is_better": spec.doc["higher_is_better"],
        "axes": spec.doc["axes"],
        "trials": spec.doc["trials"],
        "seed": spec.doc["seed"],
        "test_sequences": spec.doc["test_sequences"],
        "labels": [
            {
                "label": lab.name,
                "float_metric": baselines[lab.name],
                "own": {k: getattr(lab.base_config, k) for k in (*BIT_AXES, "array_rows")},
            }
            for lab in spec.labels
        ],
        "points": points,
        "plots": pngs,
    }
    write_text_atomic(out / "sweep.csv", "\n".join(rows) + "\n")
    write_text_atomic(out / "summary.csv", "\n".join(srows) + "\n")
    write_text_atomic(out / "summary.json", canonical_json(summary))
    write_text_atomic(out / "summary.md", _markdown(spec, summary))
    return summary


# --------------------------------------------------------------------------------------------------
def _markdown(spec: SweepSpec, s: dict) -> str:
    m = s["metric"]
    axes = [n for n, _ in spec.axes]
    lines = [
        f"# Sweep: {s['task']} {m} against {', '.join(axes)}",
        "",
        f"{s['trials']} Monte Carlo trials per noisy point (a noise-free point is deterministic: 1 trial), "
        f"seed {s['seed']}; test sequences: {s['test_sequences'] or 'all'}. Mean ± std over trials; "
        f"{'higher' if s['higher_is_better'] else 'lower'} is better.",
        "",
        "| label | files | own bits (w/dac/adc), array rows | float baseline (own float weights, unquantized) |",
        "|---|---|---|---|",
    ]
    for lab, info in zip(spec.labels, s["labels"]):
        o = info["own"]
        lines.append(
            f"| {lab.name} | {', '.join(f['file'] for f in lab.files)} | {o['weight_bits']}/{o['dac_bits']}/"
            f"{o['adc_bits']}, {o['array_rows']} | {_pretty(m, info['float_metric'])} |"
        )
    lines += [
        "",
        "The float baseline of a label is its own float weights (`float_model.npz` beside its model) through the "
        "float reference on the same test sequences. For a QAT run these are the float weights QAT trained (its "
        "4-bit model is their quantization), not a separately trained float model, so it can differ from the "
        "metric of a float (`--mode fp`) run.",
        "",
        f"| label | source | {' | '.join(axes)} | trials | {m} mean ± std | min | max |",
        "|---|---|" + "---|" * len(axes) + "---|---|---|---|",
    ]
    for p in s["points"]:
        lines.append(
            f"| {p['label']} | {p['source']} | "
            + " | ".join(_fmt(p["point"][a]) for a in axes)
            + f" | {p['trials']} | {_pretty(m, p['mean'])} ± {_pretty(m, p['std'])} | {_pretty(m, p['min'])} "
            f"| {_pretty(m, p['max'])} |"
        )
    lines.append("")
    for png in s["plots"]:
        lines += [f"![{png}]({png})", ""]
    return "\n".join(lines)


def _plots(spec: SweepSpec, out: Path, points: list[dict], baselines: dict) -> list[str]:
    """Metric against each axis (the other axes at their first value; one line per label, error bars = std
    over trials, float baselines dashed on bit axes) and, for a 2-D grid, a heat map per label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = spec.metric
    scale = 100.0 if m == "accuracy" else 1.0
    ylab = "accuracy (%)" if m == "accuracy" else m
    by = {(p["label"], point_key(p["point"])): p for p in points}
    first = {n: v[0] for n, v in spec.axes}
    files = []
    for name, vals in spec.axes:
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        for i, lab in enumerate(spec.labels):
            ps = [by[(lab.name, point_key({**first, name: v}))] for v in vals]
            color = f"C{i % 10}"
            ax.errorbar(
                list(vals),
                [scale * p["mean"] for p in ps],
                yerr=[scale * p["std"] for p in ps],
                marker="o",
                capsize=3,
                color=color,
                label=lab.name,
            )
            if name in BIT_AXES and baselines.get(lab.name) is not None:
                ax.axhline(
                    scale * baselines[lab.name], color=color, linestyle="--", linewidth=1, label=f"{lab.name} float"
                )
        others = [f"{k}={first[k]}" for k in first if k != name]
        ax.set_xlabel(name + (f"  ({', '.join(others)})" if others else ""))
        ax.set_ylabel(ylab)
        ax.set_title(f"{spec.doc['task']}: {m} vs {name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fname = f"{m}_vs_{name}.png"
        save_png(fig, out / fname)
        files.append(fname)
    if len(spec.axes) == 2:
        (n0, v0), (n1, v1) = spec.axes
        for lab in spec.labels:
            grid = np.array([[scale * by[(lab.name, point_key({n0: a, n1: b}))]["mean"] for b in v1] for a in v0])
            fig, ax = plt.subplots(figsize=(5.2, 4.0))
            im = ax.imshow(
                grid, origin="lower", aspect="auto", cmap="viridis" if spec.doc["higher_is_better"] else "viridis_r"
            )
            ax.set_xticks(range(len(v1)), [str(b) for b in v1])
            ax.set_yticks(range(len(v0)), [str(a) for a in v0])
            ax.set_xlabel(n1)
            ax.set_ylabel(n0)
            for (r, c), val in np.ndenumerate(grid):
                label = f"{val:.1f}" if m == "accuracy" else f"{val:.3f}"
                ax.text(c, r, label, ha="center", va="center", fontsize=7, color="white")
            fig.colorbar(im, ax=ax, label=ylab)
            ax.set_title(f"{lab.name}: {m} (mean over trials)")
            fig.tight_layout()
            fname = f"heatmap_{lab.name}.png"
            save_png(fig, out / fname)
            files.append(fname)
    return files
