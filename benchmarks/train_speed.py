"""Seconds per training epoch on digits (hidden 32, batch 64): QAT, our fp mode and a plain float
``torch.nn.LSTM`` + ``torch.nn.Linear``, with the same loop and the same optimizer, in one run.

Usage::

    .venv/bin/python benchmarks/train_speed.py [--repeats 7] [--threads 1 2] [--json out.json]

Every variant runs the identical epoch (the `train.runner` loop: shuffle, forward, cross-entropy at the last
step, backward, gradient clipping, Adam step) over the 1258 training sequences of digits. Variants are
interleaved within each repeat, so background load affects them alike; the median epoch time is reported.
Results go into docs/performance.md, "Training speed".
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from nvmlstm.golden.config import LstmConfig
from nvmlstm.train import ckernel
from nvmlstm.train.model import QuantLSTM
from nvmlstm.tasks import load_task
from nvmlstm.train.loss import task_loss


class PlainLSTM(torch.nn.Module):
    """The reference: a float nn.LSTM + nn.Linear, nothing else."""

    def __init__(self, I: int, H: int, O: int):
        super().__init__()
        self.lstm = torch.nn.LSTM(I, H, batch_first=True)
        self.head = torch.nn.Linear(H, O)

    def forward(self, x):
        # The usual classifier: the head on the last step only (as our modes do with last_only=True).
        return self.head(self.lstm(x)[0][:, -1:])


def epoch(model, opt, task, x, y, batch: int, gen: torch.Generator) -> None:
    model.train()
    perm = torch.randperm(len(x), generator=gen)
    for i in range(0, len(x), batch):
        idx = perm[i : i + batch]
        # The runner's call: digits is scored at the last step, so only that step's output is asked for.
        out = model(x[idx]) if isinstance(model, PlainLSTM) else model(x[idx], last_only=True)
        loss = task_loss(task, out, y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()


def measure(threads: int, repeats: int) -> dict:
    torch.set_num_threads(threads)
    task = load_task("digits")
    x, y = (torch.from_numpy(a) for a in task.train)
    cfg = LstmConfig(input_size=8, hidden_size=32, num_layers=1, output_size=10, weight_bits=4, dac_bits=4,
                     adc_bits=4, array_rows=32, array_cols=64)
    torch.manual_seed(0)
    qat = QuantLSTM(cfg, 1.0 / cfg.dac_max)
    qat.calibrate(task.train[0][:512])
    qat.quantized = True
    qat_noise = QuantLSTM(cfg, 1.0 / cfg.dac_max)
    qat_noise.calibrate(task.train[0][:512])
    qat_noise.quantized = True
    qat_noise.weight_noise, qat_noise.adc_noise = 0.05, 0.5
    fp = QuantLSTM(cfg, 1.0 / cfg.dac_max)
    plain = PlainLSTM(8, 32, 10)
    variants = {"plain nn.LSTM": plain, "fp mode": fp, "qat": qat, "qat + noise": qat_noise}
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in variants.items()}
    gen = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for k, m in variants.items():  # warm-up
        epoch(m, opts[k], task, x, y, 64, gen)
    for _ in range(repeats):
        for k, m in variants.items():
            t0 = time.perf_counter()
            epoch(m, opts[k], task, x, y, 64, gen)
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"threads": threads, "median_s": med, "all_s": times,
            "ratio_to_plain": {k: med[k] / med["plain nn.LSTM"] for k in med}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    # QAT uses the native kernel when it loads (else one stderr line says why): recorded with the results.
    native = ckernel.load() is not None
    res = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
           "epoch": "digits train split, 1258 sequences x 8 steps, hidden 32, batch 64, Adam",
           "native_kernel": native, "runs": []}
    print(f"native kernel: {'yes' if native else 'no (torch loop)'}")
    for th in args.threads:
        r = measure(th, args.repeats)
        res["runs"].append(r)
        print(f"threads {th}:")
        for k, v in r["median_s"].items():
            print(f"  {k:14s} {1000 * v:8.1f} ms/epoch  {r['ratio_to_plain'][k]:5.2f}x plain")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
