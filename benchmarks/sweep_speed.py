"""Sweep speed: Monte Carlo trials per second of ``nvmlstm sweep`` with 1 and 2 Dask workers, and the golden
model's share of the time (docs/performance.md, "Sweep speed").

Usage::

    .venv/bin/python benchmarks/sweep_speed.py [--trials 10] [--repeats 3] [--hidden 32]

The model is a random, ADC-calibrated digits model of the default hardware config (I = 8 inputs, H = 32,
4/4/4 bits, 32 x 64 arrays; torch-free: the evaluation cost does not depend on the weights' values). The
sweep is 8 noisy points (weight_noise 0.05, 0.1 x adc_noise 0.25, 0.5, 0.75, 1.0), ``--trials`` trials each,
on the whole digits test split (359 sequences x 8 steps). Timed: (a) the jobs run serially in this process
without Dask, with the time inside ``golden_forward`` measured separately (the golden share); (b) the same
sweep on a local cluster of 1 and 2 workers, cluster start-up and the reports (CSV, JSON, plots) excluded and
reported apart; best of
``--repeats``. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import nvmlstm.sweep.evaluate as ev
import nvmlstm.sweep.run as sweep_run
from nvmlstm.golden.config import default_config
from nvmlstm.golden.io import save_float_model, save_model
from nvmlstm.golden.ptq import quantize_model, random_float_model
from nvmlstm.sweep import build_spec, local_cluster, run_sweep
from nvmlstm.tasks import load_task

AXES = ["weight_noise=0.05,0.1", "adc_noise=0.25,0.5,0.75,1.0"]


def _model_dir(root: Path, hidden: int) -> Path:
    td = load_task("digits")
    cfg = default_config().replace(hidden_size=hidden)
    fm = random_float_model(cfg, np.random.default_rng(0), gain=1.5)
    xtr = td.train[0][:256].astype(np.float64)
    qm = quantize_model(fm, cfg, xtr, input_scale=1 / cfg.dac_max)
    d = root / "model"
    d.mkdir()
    save_model(qm, d / "model.npz", metadata={"task": "digits", "mode": "ptq", "seed": 0})
    save_float_model(fm, d / "float_model.npz", metadata={"task": "digits", "mode": "fp", "config": cfg.to_dict()})
    return d


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=32)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sweep_speed-"))
    try:
        mdir = _model_dir(root, args.hidden)
        spec = build_spec(task="digits", models=[str(mdir)], axes=AXES, trials=args.trials)
        n_trials = len(spec.jobs) * args.trials
        # (a) serial, in process, golden time measured
        real = ev.golden_forward
        spent = [0.0]

        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return real(*a, **k)
            finally:
                spent[0] += time.perf_counter() - t

        ev.point_model(spec.jobs[0])  # load task data and model once, as a warm worker has
        best_serial, best_golden = float("inf"), 0.0
        for _ in range(args.repeats):
            ev.golden_forward = timed
            spent[0] = 0.0
            t0 = time.perf_counter()
            for j in spec.jobs:
                ev.evaluate_point(j)
            dt = time.perf_counter() - t0
            ev.golden_forward = real
            if dt < best_serial:
                best_serial, best_golden = dt, spent[0]
        res = {
            "trials": n_trials,
            "serial_s": best_serial,
            "golden_s": best_golden,
            "golden_share": best_golden / best_serial,
            "workers": {},
        }
        # (b) Dask, 1 and 2 workers; the reports (CSV, JSON, plots) are timed apart
        real_reports = sweep_run.write_reports
        report_s = [0.0]

        def timed_reports(*a, **k):
            t = time.perf_counter()
            try:
                return real_reports(*a, **k)
            finally:
                report_s[0] = time.perf_counter() - t

        sweep_run.write_reports = timed_reports
        for w in (1, 2):
            t0 = time.perf_counter()
            with local_cluster(w) as client:
                startup = time.perf_counter() - t0
                best = float("inf")
                csv = None
                for r in range(args.repeats + 1):  # the first run warms the workers (task data, model)
                    out = root / f"w{w}-{r}"
                    t = time.perf_counter()
                    run_sweep(spec, out, client=client, progress=False, log=lambda s: None)
                    dt = time.perf_counter() - t - report_s[0]
                    text = (out / "sweep.csv").read_bytes()
                    assert csv is None or text == csv
                    csv = text
                    if r > 0:
                        best = min(best, dt)
            res["workers"][w] = {
                "startup_s": startup,
                "sweep_s": best,
                "trials_per_s": n_trials / best,
                "reports_s": report_s[0],
            }
        res["identical_csv_1_vs_2"] = (root / "w1-1" / "sweep.csv").read_bytes() == (
            root / "w2-1" / "sweep.csv"
        ).read_bytes()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(res, indent=2))
    print()
    print(
        f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}; "
        f"{len(spec.jobs)} points x {args.trials} trials = {n_trials} trials, H = {args.hidden}."
    )
    print()
    print("| run | time (s) | trials / s |")
    print("|---|---|---|")
    print(f"| serial in process (no Dask) | {res['serial_s']:.2f} | {n_trials / res['serial_s']:.1f} |")
    for w, r in res["workers"].items():
        print(
            f"| Dask, {w} worker{'s' if w > 1 else ''} (start-up {r['startup_s']:.1f} s, reports "
            f"{r['reports_s']:.1f} s excluded) | "
            f"{r['sweep_s']:.2f} | {r['trials_per_s']:.1f} |"
        )
    print()
    print(
        f"golden_forward: {res['golden_s']:.2f} s of {res['serial_s']:.2f} s serial = "
        f"{100 * res['golden_share']:.0f}% of the time; 1 vs 2 workers byte-identical sweep.csv: "
        f"{res['identical_csv_1_vs_2']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
