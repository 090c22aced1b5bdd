"""Reproduce docs/results.md: fp vs ptq vs qat at 4/4/4 bits on digits, charlm and timeseries, and the noise
study (plain QAT vs noise-aware QAT under programming and ADC noise, evaluated by the golden model).

Usage::

    .venv/bin/python benchmarks/train_results.py [--seeds 0 1 2] [--runs runs/train_results] [--docs docs]

Per task and seed: ``fp`` (float training, model selected on the validation split), ``ptq`` (golden.ptq of
that float model, calibrated on training sequences) and ``qat`` (quantization-aware fine-tuning from that
float model). Every quantized number is the golden integer model's metric on the test split (the PyTorch
evaluation path gives the same codes; each run checks it). Writes ``docs/results.json``,
``docs/results.png`` and ``docs/results.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from nvmlstm.golden.io import load_model, write_text_atomic
from nvmlstm.golden.nvm import NonIdealities
from nvmlstm.train.runner import TrainArgs, golden_outputs, run_training
from nvmlstm.tasks import load_task, metric_from_outputs

#: The repository (outputs go to its runs/ and docs/); the package comes from the environment, not from here.
ROOT = Path(__file__).resolve().parent.parent

#: Per task: float epochs / lr, QAT fine-tuning epochs / lr (hidden sizes and the rest: TASK_DEFAULTS).
PLAN = {
    "digits": {"fp": (60, 1e-2), "qat": (30, 1e-3)},
    "charlm": {"fp": (60, 5e-3), "qat": (30, 2e-3)},
    "timeseries": {"fp": (60, 5e-3), "qat": (30, 2e-3)},
}
#: Targets (docs/results.md): qat vs fp.
TARGETS = {"digits": "qat accuracy >= fp - 0.01", "charlm": "qat bpc <= 1.05 x fp",
           "timeseries": "qat rmse <= 1.10 x fp"}
#: Noise study on digits: noise-aware training levels and the evaluation grid (prog_noise, adc_noise LSB).
NOISE_TRAIN = {"weight_noise": 0.05, "adc_noise": 0.5}
NOISE_GRID = [(0.0, 0.0), (0.05, 0.0), (0.10, 0.0), (0.0, 0.5), (0.0, 1.0), (0.05, 0.5), (0.10, 1.0)]
NOISE_SEEDS = (0, 1, 2, 3, 4)


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
        kw["resume"] = (out / "checkpoint.pt").is_file()
    t0 = time.perf_counter()
    m = run_training(TrainArgs(out=str(out), progress=False, **kw), log=lambda s: None)
    print(f"  {name}: {m['metric_name']} {m['test_metric']:.4f} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "train_results")
    ap.add_argument("--docs", type=Path, default=ROOT / "docs")
    ap.add_argument("--tasks", nargs="+", default=list(PLAN))
    args = ap.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    results: dict = {"seeds": args.seeds, "bits": "4/4/4 (weight/DAC/ADC; head ADC 4)", "array": [32, 64],
                     "plan": PLAN, "tasks": {}, "python": platform.python_version()}
    for task in args.tasks:
        print(f"{task}:", flush=True)
        rows = {"fp": [], "ptq": [], "qat": [], "qat_float": [], "fp_seconds": [], "qat_seconds": []}
        for seed in args.seeds:
            fe, flr = PLAN[task]["fp"]
            qe, qlr = PLAN[task]["qat"]
            fp = _run(args.runs, f"{task}-fp-s{seed}", task=task, mode="fp", epochs=fe, lr=flr, seed=seed)
            fp_dir = str(args.runs / f"{task}-fp-s{seed}")
            ptq = _run(args.runs, f"{task}-ptq-s{seed}", task=task, mode="ptq", init_from=fp_dir, seed=seed)
            qat = _run(args.runs, f"{task}-qat-s{seed}", task=task, mode="qat", epochs=qe, lr=qlr, init_from=fp_dir,
                       seed=seed)
            for m in (ptq, qat):
                assert m["golden_matches_torch_eval"] and m["golden_test_metric"] == m["test_metric"]
            rows["fp"].append(fp["test_metric"])
            rows["ptq"].append(ptq["golden_test_metric"])
            rows["qat"].append(qat["golden_test_metric"])
            rows["fp_seconds"].append(fp["train_seconds"])
            rows["qat_seconds"].append(qat["train_seconds"])
            rows["metric"] = fp["metric_name"]
        mean = {k: float(np.mean(rows[k])) for k in ("fp", "ptq", "qat")}
        rows["mean"] = mean
        rows["std"] = {k: float(np.std(rows[k])) for k in ("fp", "ptq", "qat")}
        rows["target"] = TARGETS[task]
        rows["target_met"] = _target_met(task, mean["fp"], mean["qat"])
        results["tasks"][task] = rows

    if "digits" in args.tasks:
        print("noise study (digits):", flush=True)
        digits = load_task("digits")
        x, y = digits.test
        study: dict = {"train_noise": NOISE_TRAIN, "grid": NOISE_GRID, "eval_seeds": list(NOISE_SEEDS),
                       "qat": [], "qat_noise_aware": []}
        for seed in args.seeds:
            fe, flr = PLAN["digits"]["fp"]
            qe, qlr = PLAN["digits"]["qat"]
            fp_dir = str(args.runs / f"digits-fp-s{seed}")
            _run(args.runs, f"digits-qatnoise-s{seed}", task="digits", mode="qat", epochs=qe, lr=qlr,
                 init_from=fp_dir, seed=seed, **NOISE_TRAIN)
            for key, name in (("qat", f"digits-qat-s{seed}"), ("qat_noise_aware", f"digits-qatnoise-s{seed}")):
                qm = load_model(args.runs / name / "model.npz")
                accs = []
                for wn, an in NOISE_GRID:
                    vals = [metric_from_outputs(digits, golden_outputs(
                        qm, x, NonIdealities(prog_noise=wn, adc_noise=an, seed=s)), y) for s in NOISE_SEEDS]
                    accs.append(float(np.mean(vals)))
                study[key].append(accs)
        study["qat_mean"] = np.mean(study["qat"], axis=0).tolist()
        study["qat_noise_aware_mean"] = np.mean(study["qat_noise_aware"], axis=0).tolist()
        results["noise_study"] = study

    if "timeseries" in args.tasks:
        # Where the timeseries gap comes from (seed 0): the input DAC alone, and a wider head ADC.
        print("timeseries diagnostics:", flush=True)
        ts = load_task("timeseries")
        seed = args.seeds[0]
        fp_dir = args.runs / f"timeseries-fp-s{seed}"
        qe, qlr = PLAN["timeseries"]["qat"]
        h8 = _run(args.runs, f"timeseries-qat-head8-s{seed}", task="timeseries", mode="qat", epochs=qe, lr=qlr,
                  init_from=str(fp_dir), seed=seed, head_adc_bits=8)
        results["timeseries_diagnostics"] = {
            "seed": seed,
            "fp": results["tasks"]["timeseries"]["fp"][0],
            "fp_with_4bit_inputs": _fp_with_quantized_inputs(ts, fp_dir),
            "qat": results["tasks"]["timeseries"]["qat"][0],
            "qat_head_adc_8bit": h8["golden_test_metric"],
        }

    args.docs.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.docs / "results.json", json.dumps(results, indent=2, sort_keys=True) + "\n")
    _plot(results, args.docs / "results.png")
    write_text_atomic(args.docs / "results.md", render_markdown(results))
    print(f"wrote {args.docs / 'results.md'}, results.json, results.png")
    return 0


def _fp_with_quantized_inputs(task, fp_dir: Path) -> float:
    """The float model of ``fp_dir`` on inputs rounded to 4-bit DAC codes (code / 7): the DAC's share."""
    import torch

    from nvmlstm.golden.config import LstmConfig
    from nvmlstm.train.model import QuantLSTM
    from nvmlstm.train.runner import load_float_state_file

    cfg = LstmConfig(input_size=1, hidden_size=32, num_layers=1, output_size=1, weight_bits=4, dac_bits=4,
                     adc_bits=4, array_rows=32, array_cols=64)
    m = QuantLSTM(cfg, 1.0 / 7)
    m.load_float_state(load_float_state_file(fp_dir))
    m.eval()
    x, y = task.test
    with torch.no_grad():
        out = m(torch.from_numpy(np.round(x * 7) / 7).float()).double().numpy()
    return metric_from_outputs(task, out, y)


def _fmt(metric: str, v: float) -> str:
    return f"{100 * v:.2f}%" if metric == "accuracy" else f"{v:.3f}"


def render_markdown(r: dict) -> str:
    """docs/results.md from the results dict (the numbers are never typed by hand)."""
    seeds = ", ".join(map(str, r["seeds"]))
    lines = [
        "# Results: float vs post-training quantization vs quantization-aware training",
        "",
        "Generated by `benchmarks/train_results.py` (numbers in `results.json`, plot `results.png`); rerun it to",
        f"reproduce. Operating point: **4-bit NVM weights, 4-bit DAC, 4-bit ADC** (head ADC 4 bits too), "
        f"32 x 64 crossbar tiles, one LSTM layer. Seeds {seeds}; the table gives the mean over seeds "
        "(± standard deviation). Every ptq/qat number is the **golden integer model's** metric on the test "
        "split (`golden_forward`); the PyTorch evaluation path gives identical output codes in every run.",
        "",
        "| task | metric | fp | ptq 4/4/4 | qat 4/4/4 | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, t in r["tasks"].items():
        m = t["metric"]
        cell = lambda k: f"{_fmt(m, t['mean'][k])} ± {_fmt(m, t['std'][k])}"  # noqa: E731
        lines.append(f"| {task} | {m} | {cell('fp')} | {cell('ptq')} | {cell('qat')} | {t['target']} | "
                     f"{'yes' if t['target_met'] else '**no**'} |")
    lines += ["", "Per seed (fp / ptq / qat):", ""]
    for task, t in r["tasks"].items():
        m = t["metric"]
        per = "; ".join(f"seed {s}: {_fmt(m, a)} / {_fmt(m, b)} / {_fmt(m, c)}"
                        for s, a, b, c in zip(r["seeds"], t["fp"], t["ptq"], t["qat"]))
        lines.append(f"* {task}: {per}")
    lines += ["", "Training time per run (s, mean; 1 CPU thread): " + ", ".join(
        f"{task} fp {np.mean(t['fp_seconds']):.1f} / qat {np.mean(t['qat_seconds']):.1f}"
        for task, t in r["tasks"].items()) + "."]
    if "noise_study" in r:
        ns = r["noise_study"]
        lines += [
            "",
            "## Noise study (digits)",
            "",
            f"Plain QAT vs noise-aware QAT (trained with weight noise {ns['train_noise']['weight_noise']} of the "
            f"conductance range and ADC noise {ns['train_noise']['adc_noise']} LSB), both fine-tuned from the same "
            "float models, evaluated by the golden model with `NonIdealities` (programming noise drawn once per "
            f"chip, ADC noise per conversion); accuracy averaged over {len(ns['eval_seeds'])} noise draws and "
            f"the {len(r['seeds'])} seeds.",
            "",
            "| programming noise | ADC noise (LSB) | qat | noise-aware qat |",
            "|---|---|---|---|",
        ]
        for (wn, an), a, b in zip(ns["grid"], ns["qat_mean"], ns["qat_noise_aware_mean"]):
            lines.append(f"| {wn:g} | {an:g} | {100 * a:.2f}% | {100 * b:.2f}% |")
    if "timeseries_diagnostics" in r:
        d = r["timeseries_diagnostics"]
        lines += [
            "",
            f"## Where the timeseries gap comes from (seed {d['seed']})",
            "",
            "| model | test RMSE |",
            "|---|---|",
            f"| fp | {d['fp']:.3f} |",
            f"| fp with its inputs rounded to 4-bit DAC codes | {d['fp_with_4bit_inputs']:.3f} |",
            f"| qat 4/4/4 | {d['qat']:.3f} |",
            f"| qat 4/4/4 with an 8-bit head ADC (`--head-adc-bits 8`) | {d['qat_head_adc_8bit']:.3f} |",
        ]
    lines += ["", NOTES, ""]
    return "\n".join(lines)


NOTES = """## Observations

* **All three targets are met on the mean over seeds**, and PTQ at 4/4/4 is clearly worse than QAT on
  every task (digits: about 3 points of accuracy lost by PTQ, most recovered by QAT; charlm: PTQ costs
  about 20% in bpc, QAT about 3%; timeseries: PTQ about 15% in RMSE, QAT about 5%). This is the paper's
  finding: training through the 4-bit weight, DAC and ADC quantizers recovers close to float accuracy.
* **Per seed the digits target is not always met**: see the per-seed line above; on a 359-image test set
  one image is 0.28 points, and the validation split that selects the epoch has 180 images, so single
  seeds scatter by about a point. The mean is the meaningful number.
* **charlm** is data-limited: 6.5 kB of training text (`data/declaration.txt`) gives about 2.9 bpc even in
  float; every model is selected on the validation split (the float models stop improving after 40-50 of
  their 60 epochs).
  The comparison between modes, not the absolute bpc, is the result. A PTB-layout directory works with
  `--data` for a realistic corpus (not shipped; much longer runs).
* **timeseries**: the remaining ~5% gap is not the input DAC (the float model on 4-bit inputs loses
  almost nothing) and not the head ADC's coarse output grid (an 8-bit head ADC gives about the same
  RMSE): it is the 4-bit weights and ADC inside the recurrence. The series is synthetic and documented
  (`data/README.md`).
* **Noise**: noise-aware QAT (weight noise 0.05, ADC noise 0.5 LSB during training) gives up a fraction
  of a point without noise and keeps several points more accuracy under programming and ADC noise,
  up to about 12 points at 1 LSB of ADC noise; both degrade sharply at 0.1 of the conductance range
  plus 1 LSB.
* Training time: QAT epochs cost several times a float epoch (`docs/performance.md`, "Training speed");
  every run here takes well under a minute on one core.

See `docs/training.md` for the method (STE, learned ADC steps, noise injection, export).

## Efficiency against GPU, FPGA, ASIC and NVM designs

The paper's benchmark table (TOPS/W and TOPS/mm^2 of the default config and of a language-model-sized config,
2 layers of 650 units, against each published design, the ratio to the best digital one, every assumption
with its source, which assumption breaks the claim and by how much, and the arrays' utilization) is in
`docs/efficiency.md`, generated by `nvmlstm bench` and `benchmarks/efficiency_tables.py`."""


def _plot(r: dict, path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(r["tasks"])
    fig, axes = plt.subplots(1, len(tasks) + (1 if "noise_study" in r else 0), figsize=(3.4 * (len(tasks) + 1), 3.2))
    axes = np.atleast_1d(axes)
    for ax, task in zip(axes, tasks):
        t = r["tasks"][task]
        k = ["fp", "ptq", "qat"]
        scale = 100 if t["metric"] == "accuracy" else 1
        ax.bar(k, [scale * t["mean"][x] for x in k], yerr=[scale * t["std"][x] for x in k],
               color=["#777", "#d62728", "#1f77b4"])
        ax.set_title(f"{task} ({'accuracy %' if scale == 100 else t['metric']})")
        lo = min(scale * t["mean"][x] for x in k)
        hi = max(scale * t["mean"][x] for x in k)
        ax.set_ylim(lo - 0.3 * (hi - lo + 1e-9) - (2 if scale == 100 else 0.05 * lo), hi + 0.3 * (hi - lo + 1e-9))
    if "noise_study" in r:
        ax = axes[-1]
        ns = r["noise_study"]
        labels = [f"{wn:g}/{an:g}" for wn, an in ns["grid"]]
        xs = np.arange(len(labels))
        ax.plot(xs, 100 * np.asarray(ns["qat_mean"]), marker="o", label="qat")
        ax.plot(xs, 100 * np.asarray(ns["qat_noise_aware_mean"]), marker="s", label="noise-aware qat")
        ax.set_xticks(xs, labels, rotation=45, fontsize=7)
        ax.set_xlabel("prog noise / ADC noise (LSB)")
        ax.set_title("digits under noise (accuracy %)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    path.write_bytes(buf.getvalue())


if __name__ == "__main__":
    sys.exit(main())
