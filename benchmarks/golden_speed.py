"""Speed of the bit-exact golden model (`golden.golden_forward`) against float ``torch.nn.LSTM`` inference.

Usage::

    .venv/bin/python benchmarks/golden_speed.py [--repeats 7] [--json PATH] [--png PATH]

For each shape (input_size I, hidden H) the same batch of input DAC codes (``--batch`` sequences x
``--steps`` timesteps, uniform in [-dac_max, dac_max]) goes through

* the golden model with ``trace=False`` (inputs, h and output codes only) and with ``trace=True`` (every
  intermediate), on a random 1-layer model with a 10-output head, 4-bit weights/DAC/ADC and
  ``--array-rows`` x ``--array-cols`` tiles (`golden.random_model`, ADC steps calibrated on these inputs);
* ``torch.nn.LSTM(I, H, batch_first=True)`` in float32 under ``torch.no_grad()``, with the float weights of
  that same model, on ``codes / dac_max``, with torch's default thread count.

Each variant is timed in its own block of calls (``--warmup`` untimed calls, then ``--repeats`` timed ones),
and the blocks are cycled ``--blocks`` times so that slow drifts of background load hit all variants. Calls
of different libraries are not interleaved one by one: after a call, OpenBLAS (numpy) and OpenMP (torch)
worker threads keep spinning for a while, and on a 2-core machine that steals a core from the next call
of the other library (measured: torch up to 2x slower right after a golden call). The reported time is
the best of all timed calls of a variant (the median is recorded too). The ratio golden (trace off) / torch
is compared with ``--target`` (the issue's 1.5) and printed as met / missed; the script is a measurement,
not a test, and exits 0 either way. Results go into docs/performance.md, "Golden model speed".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from nvmlstm.artifacts.png import save_png
from nvmlstm.golden import LstmConfig, golden_forward, random_model

#: The repository (outputs go to its runs/ and docs/); the package comes from the environment, not from here.
ROOT = Path(__file__).resolve().parent.parent

VARIANTS = ("golden", "golden_trace", "torch")
LABELS = {"golden": "golden (trace=False)", "golden_trace": "golden (trace=True)", "torch": "torch.nn.LSTM"}


def parse_shape(text: str) -> tuple[int, int]:
    try:
        i, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must be IxH (e.g. 8x32), not {text!r}") from None
    if i < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"shape sizes must be positive, not {text!r}")
    return i, h


def torch_lstm_like(fm, I: int, H: int) -> torch.nn.LSTM:
    """A float32 ``nn.LSTM`` holding the float weights of the golden model's layer 0 (same gate order)."""
    lstm = torch.nn.LSTM(I, H, batch_first=True)
    layer = fm.layers[0]
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(np.asarray(layer.w_ih, dtype=np.float32)))
        lstm.weight_hh_l0.copy_(torch.from_numpy(np.asarray(layer.w_hh, dtype=np.float32)))
        lstm.bias_ih_l0.copy_(torch.from_numpy(np.asarray(layer.bias, dtype=np.float32)))
        lstm.bias_hh_l0.zero_()
    return lstm.eval()


def measure_shape(I: int, H: int, args: argparse.Namespace) -> dict:
    cfg = LstmConfig(
        input_size=I,
        hidden_size=H,
        num_layers=1,
        output_size=10,
        weight_bits=4,
        dac_bits=4,
        adc_bits=4,
        array_rows=args.array_rows,
        array_cols=args.array_cols,
    )
    rng = np.random.default_rng(args.seed)
    codes = rng.integers(-cfg.dac_max, cfg.dac_max + 1, size=(args.batch, args.steps, I), dtype=np.int64)
    model, fm = random_model(cfg, args.seed, codes)
    torch.manual_seed(args.seed)
    lstm = torch_lstm_like(fm, I, H)
    x_torch = torch.from_numpy(codes.astype(np.float32) / cfg.dac_max)

    def run_torch() -> None:
        with torch.no_grad():
            lstm(x_torch)

    runs: dict[str, Callable[[], object]] = {
        "golden": lambda: golden_forward(model, codes, trace=False),
        "golden_trace": lambda: golden_forward(model, codes, trace=True),
        "torch": run_torch,
    }
    # Sanity: both golden modes give the same outputs (the full bit-exactness check is tests/).
    plain, traced = runs["golden"](), runs["golden_trace"]()
    consistent = all(np.array_equal(plain[k], traced[k]) for k in ("inputs", "h", "outputs"))
    del plain, traced

    times: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for _ in range(args.blocks):
        for k in VARIANTS:
            for _ in range(args.warmup):
                runs[k]()
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                runs[k]()
                times[k].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    ratio = best["golden"] / best["torch"]
    return {
        "input_size": I,
        "hidden_size": H,
        "config": cfg.to_dict(),
        "row_tiles": cfg.row_tiles(cfg.layer_rows(0)),
        "outputs_consistent_trace_on_off": consistent,
        "best_ms": {k: 1e3 * v for k, v in best.items()},
        "median_ms": {k: 1e3 * statistics.median(v) for k, v in times.items()},
        "all_ms": {k: [1e3 * t for t in v] for k, v in times.items()},
        "ratio_golden_to_torch": ratio,
        "ratio_golden_trace_to_torch": best["golden_trace"] / best["torch"],
        "target_met": ratio <= args.target,
    }


def environment() -> dict:
    def git_commit() -> str | None:
        try:
            out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() or None

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "openblas_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("OPENBLAS")},
        "git_commit": git_commit(),
    }


def print_table(results: list[dict], target: float) -> None:
    head = (
        f"{'shape (I, H)':>13} {'tiles':>5}  {'golden ms':>9}  {'trace ms':>9}  {'torch ms':>9}  "
        f"{'golden/torch':>12}  {'trace/torch':>11}  target {target:g}x"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        b = r["best_ms"]
        verdict = "met" if r["target_met"] else "missed"
        print(
            f"{'({}, {})'.format(r['input_size'], r['hidden_size']):>13} {r['row_tiles']:>5}  {b['golden']:9.2f}  "
            f"{b['golden_trace']:9.2f}  {b['torch']:9.2f}  {r['ratio_golden_to_torch']:11.2f}x  "
            f"{r['ratio_golden_trace_to_torch']:10.2f}x  {verdict}"
        )


def plot(results: list[dict], target: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 4.0), squeeze=False)
    colors = {"golden": "tab:blue", "golden_trace": "tab:cyan", "torch": "tab:orange"}
    for ax, r in zip(axes[0], results):
        vals = [r["best_ms"][k] for k in VARIANTS]
        bars = ax.bar(range(len(VARIANTS)), vals, color=[colors[k] for k in VARIANTS])
        ax.set_yscale("log")
        ax.set_ylim(min(vals) / 3, max(vals) * 2)
        ax.axhline(target * r["best_ms"]["torch"], color="k", ls="--", lw=1, label=f"{target:g} x torch")
        for bar, v in zip(bars, vals):
            ax.annotate(f"{v:.2f}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(VARIANTS)), [LABELS[k].replace(" (", "\n(") for k in VARIANTS], fontsize=8)
        ax.set_title(
            f"I={r['input_size']}, H={r['hidden_size']}: golden/torch {r['ratio_golden_to_torch']:.2f}x", fontsize=10
        )
        ax.set_ylabel("ms per batch (best call)")
        ax.legend(fontsize=8, loc="upper right")
    b = results[0]["config"]
    fig.suptitle(
        f"golden_forward vs torch.nn.LSTM, batch {results[0]['batch']} x {results[0]['steps']} steps, "
        f"{b['weight_bits']}/{b['dac_bits']}/{b['adc_bits']} bits",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--shapes",
        type=parse_shape,
        nargs="+",
        default=[(8, 32), (64, 128)],
        help="IxH shapes to measure (default: 8x32 64x128)",
    )
    ap.add_argument("--batch", type=int, default=1024, help="sequences per batch")
    ap.add_argument("--steps", type=int, default=16, help="timesteps per sequence")
    ap.add_argument("--array-rows", type=int, default=128, help="tile rows (inputs per row tile)")
    ap.add_argument("--array-cols", type=int, default=128, help="tile columns")
    ap.add_argument("--repeats", type=int, default=7, help="timed calls per variant and block")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls per variant and block, first")
    ap.add_argument("--blocks", type=int, default=3, help="blocks of calls per variant, cycled")
    ap.add_argument("--seed", type=int, default=0, help="seed of the inputs, the model and torch")
    ap.add_argument("--target", type=float, default=1.5, help="target ratio golden (trace off) / torch")
    ap.add_argument("--json", type=Path, default=Path("runs/bench/golden_speed.json"), help="results file")
    ap.add_argument("--png", type=Path, default=Path("runs/bench/golden_speed.png"), help="bar chart")
    ap.add_argument("--no-png", action="store_true", help="skip the plot")
    args = ap.parse_args(argv)
    if min(args.batch, args.steps, args.repeats, args.blocks) < 1 or args.warmup < 0:
        ap.error("--batch, --steps, --repeats and --blocks must be positive and --warmup non-negative")

    results = []
    for I, H in args.shapes:
        r = measure_shape(I, H, args)
        r.update(batch=args.batch, steps=args.steps)
        results.append(r)
        print(f"measured I={I} H={H}", flush=True)
    print()
    print_table(results, args.target)
    out = {
        "benchmark": "golden_forward vs torch.nn.LSTM inference",
        "batch": args.batch,
        "steps": args.steps,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "blocks": args.blocks,
        "seed": args.seed,
        "target_ratio": args.target,
        "statistic": "best (minimum) of blocks x repeats timed calls; each variant timed in its own blocks of "
        "calls (warm-up call(s) first), blocks of the variants cycled",
        "environment": environment(),
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")
    if not args.no_png:
        plot(results, args.target, args.png)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
