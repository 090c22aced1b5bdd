"""Reproduce docs/results.md: fp vs ptq vs qat at 4/4/4 bits on digits, charlm (Shakespeare) and timeseries
(yearly sunspots), plus qat/fp on charlm against the hidden size and the weight/ADC bits.

Usage::

    .venv/bin/python benchmarks/train_results.py [--seeds 0 1 2] [--charlm-seeds 0 1 2] [--no-table]
        [--runs runs/train_results] [--docs docs]

Per task and seed, one ``nvmlstm train --mode qat`` run with **no further options** -- the default recipe
(`nvmlstm.train.runner.TASK_DEFAULTS`, docs/training.md "The QAT recipe"): it trains the float model first
(``RUN_DIR/float``: the ``fp`` number) and fine-tunes it quantized (the ``qat`` number); ``ptq`` is
`golden.ptq` of that same float model (``--mode ptq --init-from RUN_DIR/float``). Every quantized number
is the golden integer model's metric on the test split (the PyTorch evaluation path gives the same codes;
each run checks it). The charlm table (seed 0): hidden 64 / 128 / 256 with the same recipe, and weight +
ADC bits 3 / 4 / 5 (DAC 4 bits) fine-tuned from the hidden-128 float model. Writes ``docs/results.json``,
``docs/results.png`` and ``docs/results.md``. Finished runs are reused, interrupted ones resumed.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from nvmlstm.artifacts.files import write_text_atomic
from nvmlstm.artifacts.png import save_png
from nvmlstm.train.runner import TASK_DEFAULTS, TrainArgs, run_training

#: The repository (outputs go to its runs/ and docs/); the package comes from the environment, not from here.
ROOT = Path(__file__).resolve().parent.parent

TASKS = ("digits", "charlm", "timeseries")
#: Targets (docs/results.md): qat vs fp.
TARGETS = {
    "digits": "qat accuracy >= fp - 0.01",
    "charlm": "qat bpc <= 1.05 x fp",
    "timeseries": "qat rmse <= 1.10 x fp",
}
TABLE_HIDDEN = (64, 128, 256)
TABLE_BITS = (3, 4, 5)


def _target_met(task: str, fp: float, qat: float) -> bool:
    if task == "digits":
        return qat >= fp - 0.01
    if task == "charlm":
        return qat <= 1.05 * fp
    return qat <= 1.10 * fp


def _run(runs: Path, name: str, **kw) -> dict:
    out = runs / name
    if (out / "metrics.json").is_file():  # already done (the script can be rerun after an interruption)
        return json.loads((out / "metrics.json").read_text())
    if out.exists():
        kw["resume"] = True
    t0 = time.perf_counter()
    m = run_training(TrainArgs(out=str(out), progress=False, **kw), log=lambda s: None)
    print(f"  {name}: {m['metric_name']} {m['test_metric']:.4f} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return m


def _check(m: dict) -> float:
    """The golden test metric of a quantized run (which must equal the PyTorch evaluation's)."""
    assert m["golden_matches_torch_eval"] and m["golden_test_metric"] == m["test_metric"]
    return float(m["golden_test_metric"])


def _recipe_and_ptq(runs: Path, task: str, seed: int, tag: str = "", **kw) -> dict:
    """One default-recipe qat run (float phase included) and the ptq of its float model."""
    qat = _run(runs, f"{task}-qat{tag}-s{seed}", task=task, mode="qat", seed=seed, **kw)
    fdir = runs / f"{task}-qat{tag}-s{seed}" / "float"
    ptq = _run(runs, f"{task}-ptq{tag}-s{seed}", task=task, mode="ptq", seed=seed, init_from=str(fdir), **kw)
    return {
        "fp": float(qat["float_run"]["test_metric"]),
        "ptq": _check(ptq),
        "qat": _check(qat),
        "fp_seconds": qat["float_run"]["train_seconds"],
        "qat_seconds": qat["train_seconds"],
        "qat_best_epoch": qat["best_epoch"],
        "adc_steps": qat["adc_steps"],
        "metric": qat["metric_name"],
    }


def _bits_run(runs: Path, seed: int, bits: int) -> dict:
    """charlm hidden 128: the seed's float model fine-tuned (qat) and post-training quantized at weight and
    ADC bits ``bits`` (DAC 4 bits)."""
    fdir = runs / f"charlm-qat-s{seed}" / "float"
    fp = json.loads((fdir / "metrics.json").read_text())["test_metric"]
    if bits == 4:  # the 4/4/4 cell is the seed's main recipe run (the same fine-tuning of the same float model)
        r = _recipe_and_ptq(runs, "charlm", seed)
        return {"fp": r["fp"], "ptq": r["ptq"], "qat": r["qat"]}
    kw = {"weight_bits": bits, "adc_bits": bits}
    qat = _run(runs, f"charlm-qat-b{bits}-s{seed}", task="charlm", mode="qat", seed=seed, init_from=str(fdir), **kw)
    ptq = _run(runs, f"charlm-ptq-b{bits}-s{seed}", task="charlm", mode="ptq", seed=seed, init_from=str(fdir), **kw)
    return {"fp": float(fp), "ptq": _check(ptq), "qat": _check(qat)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of digits and timeseries")
    ap.add_argument("--charlm-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "train_results")
    ap.add_argument("--docs", type=Path, default=ROOT / "docs")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    ap.add_argument("--no-table", action="store_true", help="skip the charlm hidden-size / bits table")
    ap.add_argument("--table-hidden", type=int, nargs="*", default=list(TABLE_HIDDEN), choices=TABLE_HIDDEN)
    ap.add_argument("--table-bits", type=int, nargs="*", default=list(TABLE_BITS), choices=TABLE_BITS)
    args = ap.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    recipe = {
        t: {
            k: TASK_DEFAULTS[t][k]
            for k in (
                "hidden",
                "fp_epochs",
                "lr",
                "qat_epochs",
                "qat_lr",
                "batch_size",
                "seq_len",
                "learn_weight_scales",
            )
        }
        for t in TASKS
    }
    results: dict = {
        "bits": "4/4/4 (weight/DAC/ADC; head ADC 4)",
        "array": [32, 64],
        "recipe": recipe,
        "tasks": {},
        "python": platform.python_version(),
    }
    for task in args.tasks:
        print(f"{task}:", flush=True)
        seeds = args.charlm_seeds if task == "charlm" else args.seeds
        rows: dict = {
            "seeds": seeds,
            "fp": [],
            "ptq": [],
            "qat": [],
            "fp_seconds": [],
            "qat_seconds": [],
            "qat_best_epoch": [],
        }
        for seed in seeds:
            r = _recipe_and_ptq(args.runs, task, seed)
            for k in ("fp", "ptq", "qat", "fp_seconds", "qat_seconds", "qat_best_epoch"):
                rows[k].append(r[k])
            rows["metric"] = r["metric"]
        rows["mean"] = {k: float(np.mean(rows[k])) for k in ("fp", "ptq", "qat")}
        rows["std"] = {k: float(np.std(rows[k])) for k in ("fp", "ptq", "qat")}
        rows["target"] = TARGETS[task]
        rows["target_met"] = _target_met(task, rows["mean"]["fp"], rows["mean"]["qat"])
        results["tasks"][task] = rows

    if not args.no_table and "charlm" in args.tasks:
        seed = args.charlm_seeds[0]
        print(f"charlm table (seed {seed}):", flush=True)
        hidden = {}
        for H in args.table_hidden:
            hidden[H] = (
                _recipe_and_ptq(args.runs, "charlm", seed)
                if H == TASK_DEFAULTS["charlm"]["hidden"]
                else _recipe_and_ptq(args.runs, "charlm", seed, tag=f"-h{H}", hidden=H)
            )
        bits = {b: _bits_run(args.runs, seed, b) for b in args.table_bits}
        results["charlm_table"] = {
            "seed": seed,
            "hidden": {str(k): _table_row(v) for k, v in hidden.items()},
            "bits": {str(k): _table_row(v) for k, v in bits.items()},
        }

    # What the full plan (3 seeds per task, every table cell) has and this invocation did not run.
    missing = [
        f"{t}: {len(results['tasks'][t]['seeds'])} seed(s) of 3"
        for t in results["tasks"]
        if len(results["tasks"][t]["seeds"]) < 3
    ]
    missing += [f"{t}: not run" for t in TASKS if t not in results["tasks"]]
    if "charlm" in args.tasks:
        ct = results.get("charlm_table", {"hidden": {}, "bits": {}})
        missing += [f"charlm table hidden {h}: not run" for h in TABLE_HIDDEN if str(h) not in ct["hidden"]]
        missing += [f"charlm table {b} bits: not run" for b in TABLE_BITS if str(b) not in ct["bits"]]
    results["not_run"] = missing
    args.docs.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.docs / "results.json", json.dumps(results, indent=2, sort_keys=True) + "\n")
    _plot(results, args.docs / "results.png")
    write_text_atomic(args.docs / "results.md", render_markdown(results))
    print(f"wrote {args.docs / 'results.md'}, results.json, results.png")
    return 0


def _table_row(r: dict) -> dict:
    return {
        "fp": r["fp"],
        "ptq": r["ptq"],
        "qat": r["qat"],
        "qat_over_fp": r["qat"] / r["fp"],
        "ptq_over_fp": r["ptq"] / r["fp"],
    }


def _fmt(metric: str, v: float) -> str:
    return f"{100 * v:.2f}%" if metric == "accuracy" else f"{v:.3f}"


def _ratio(task: str, t: dict, k: str) -> str:
    if t["metric"] == "accuracy":
        return f"{100 * (t['mean'][k] - t['mean']['fp']):+.2f} points"
    return f"{t['mean'][k] / t['mean']['fp']:.3f}x"


def render_markdown(r: dict) -> str:
    """docs/results.md from the results dict (the numbers are never typed by hand)."""
    rc = r["recipe"]
    lines = [
        "# Results: float vs post-training quantization vs quantization-aware training",
        "",
        "Generated by `benchmarks/train_results.py` (numbers in `results.json`, plot `results.png`); rerun it to",
        "reproduce. Operating point: **4-bit NVM weights, 4-bit DAC, 4-bit ADC** (head ADC 4 bits too), 32 x 64",
        "crossbar tiles, one LSTM layer. Data (`data/README.md`): **charlm** the Shakespeare corpus",
        "(`data/tinyshakespeare.txt`, 1.1 MB, contiguous 90/5/5 split), **timeseries** the yearly sunspot numbers",
        "1700-2008 (`data/sunspots.csv`, chronological 70/15/15), **digits** scikit-learn's 8x8 digits.",
        "",
        "Every qat number is one `nvmlstm train --task TASK --mode qat --seed S` run with no further options (the",
        "default recipe, `docs/training.md`): it trains the float model (the **fp** column: that run's `float/`",
        "phase) and fine-tunes it quantized; **ptq** is `golden.ptq` of the same float model. Every ptq/qat number",
        "is the **golden integer model's** metric on the test split (`golden_forward`); the PyTorch evaluation",
        "path gives identical output codes in every run. Mean over seeds ± standard deviation.",
        "",
        "| task | metric | hidden | seeds | fp | ptq 4/4/4 | qat 4/4/4 | ptq vs fp | qat vs fp | target | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task, t in r["tasks"].items():
        m = t["metric"]
        cell = lambda k, m=m, t=t: f"{_fmt(m, t['mean'][k])} ± {_fmt(m, t['std'][k])}"  # noqa: E731
        lines.append(
            f"| {task} | {m} | {rc[task]['hidden']} | {len(t['seeds'])} | {cell('fp')} | {cell('ptq')} | "
            f"{cell('qat')} | {_ratio(task, t, 'ptq')} | {_ratio(task, t, 'qat')} | {t['target']} | "
            f"{'yes' if t['target_met'] else '**no**'} |"
        )
    if r.get("not_run"):
        lines += [
            "",
            "**Not run** (compute: one shared CPU core within the time available; the script runs them "
            "when invoked with the defaults): " + "; ".join(r["not_run"]) + ".",
        ]
    lines += ["", "Per seed (fp / ptq / qat):", ""]
    for task, t in r["tasks"].items():
        m = t["metric"]
        per = "; ".join(
            f"seed {s}: {_fmt(m, a)} / {_fmt(m, b)} / {_fmt(m, c)}"
            for s, a, b, c in zip(t["seeds"], t["fp"], t["ptq"], t["qat"])
        )
        lines.append(f"* {task}: {per}")
    lines += [
        "",
        "Recipe per task (`TASK_DEFAULTS`): "
        + "; ".join(
            f"{task} hidden {c['hidden']}, float {c['fp_epochs']} epochs at lr {c['lr']:g}, qat {c['qat_epochs']} "
            f"epochs at lr {c['qat_lr']:g}, batch {c['batch_size']}"
            + (", learned weight scales" if c["learn_weight_scales"] else "")
            for task, c in rc.items()
        )
        + ".",
    ]
    lines += [
        "",
        "Training time per run (s, mean; 1 CPU thread, shared machine): "
        + ", ".join(
            f"{task} fp {np.mean(t['fp_seconds']):.0f} / qat {np.mean(t['qat_seconds']):.0f}"
            for task, t in r["tasks"].items()
        )
        + ".",
    ]
    if "charlm_table" in r:
        ct = r["charlm_table"]
        lines += [
            "",
            f"## charlm: where 4 bits stops being enough (seed {ct['seed']}, one seed per cell)",
            "",
            "Hidden size, at 4/4/4 (each row its own float model, same recipe):",
            "",
            "| hidden | fp bpc | ptq bpc | qat bpc | ptq / fp | qat / fp |",
            "|---|---|---|---|---|---|",
        ]
        for k, v in ct["hidden"].items():
            lines.append(
                f"| {k} | {v['fp']:.3f} | {v['ptq']:.3f} | {v['qat']:.3f} | {v['ptq_over_fp']:.3f} | "
                f"{v['qat_over_fp']:.3f} |"
            )
        lines += [
            "",
            "Weight and ADC bits (DAC 4 bits, head ADC = ADC bits), hidden 128, all from the same float model:",
            "",
            "| weight / ADC bits | fp bpc | ptq bpc | qat bpc | ptq / fp | qat / fp |",
            "|---|---|---|---|---|---|",
        ]
        for k, v in ct["bits"].items():
            lines.append(
                f"| {k} | {v['fp']:.3f} | {v['ptq']:.3f} | {v['qat']:.3f} | {v['ptq_over_fp']:.3f} | "
                f"{v['qat_over_fp']:.3f} |"
            )
    lines += ["", NOTES, ""]
    return "\n".join(lines)


NOTES = """See `docs/training.md` for the method (STE, learned ADC steps and weight scales, the recipe and what
each ingredient bought) and `docs/performance.md`, "Training speed", for the cost of a QAT epoch.

## Resilience sweeps

Metric against bits and against programming and ADC noise (plain vs noise-aware QAT, evaluated by the
golden model with `NonIdealities`) is in `docs/resilience.md` ("Resilience sweeps"), generated by
`benchmarks/resilience_figures.py`.

## Efficiency against GPU, FPGA, ASIC and NVM designs

The paper's benchmark table (TOPS/W and TOPS/mm^2 of the default config and of a language-model-sized config,
2 layers of 650 units, against each published design, the ratio to the best digital one, every assumption
with its source, which assumption breaks the claim and by how much, and the arrays' utilization) is in
`docs/efficiency.md`, generated by `nvmlstm bench` and `benchmarks/efficiency_tables.py`."""


def _plot(r: dict, path: Path) -> None:

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(r["tasks"])
    extra = 1 if "charlm_table" in r else 0
    fig, axes = plt.subplots(1, len(tasks) + extra, figsize=(3.4 * (len(tasks) + extra), 3.2))
    axes = np.atleast_1d(axes)
    for ax, task in zip(axes, tasks):
        t = r["tasks"][task]
        k = ["fp", "ptq", "qat"]
        scale = 100 if t["metric"] == "accuracy" else 1
        ax.bar(
            k,
            [scale * t["mean"][x] for x in k],
            yerr=[scale * t["std"][x] for x in k],
            color=["#777", "#d62728", "#1f77b4"],
        )
        ax.set_title(f"{task} ({'accuracy %' if scale == 100 else t['metric']})")
        lo = min(scale * t["mean"][x] for x in k)
        hi = max(scale * t["mean"][x] for x in k)
        ax.set_ylim(lo - 0.3 * (hi - lo + 1e-9) - (2 if scale == 100 else 0.05 * lo), hi + 0.3 * (hi - lo + 1e-9))
    if extra:
        ax = axes[-1]
        ct = r["charlm_table"]
        for key, label, marker in (("hidden", "hidden (4/4/4)", "o"), ("bits", "weight/ADC bits (H=128)", "s")):
            xs = list(ct[key])
            ax.plot(range(len(xs)), [ct[key][x]["qat_over_fp"] for x in xs], marker=marker, label=f"qat, {label}")
            ax.plot(
                range(len(xs)), [ct[key][x]["ptq_over_fp"] for x in xs], marker=marker, ls=":", label=f"ptq, {label}"
            )
        ax.axhline(1.05, color="k", lw=0.7, ls="--")
        ax.set_xticks(range(3), ["64 / 3", "128 / 4", "256 / 5"])
        ax.set_xlabel("hidden / bits")
        ax.set_ylabel("bpc / fp bpc")
        ax.set_title("charlm: quantized / float")
        ax.legend(fontsize=6)
    fig.tight_layout()
    save_png(fig, path)


if __name__ == "__main__":
    sys.exit(main())
