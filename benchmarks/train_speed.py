"""Seconds per training epoch: QAT, our fp mode and a plain float ``torch.nn.LSTM`` + ``torch.nn.Linear``,
with the same loop and the same optimizer, in one run, side by side.

Usage::

    .venv/bin/python benchmarks/train_speed.py [--task charlm|digits] [--hidden H] [--char-repeat R] [--repeats 7]
        [--threads 1 2] [--default-malloc] [--eval] [--json out.json]

``--task charlm`` (default): the Shakespeare corpus, hidden 128 (the charlm default), batch 32, 64 steps, the
loss at every step, over the first 1,024 training windows (32 batches: an epoch of the full corpus is 15.3x
longer, the ratio the same). ``--task digits``: the 1258 training sequences of digits, hidden 32, batch 64,
the loss at the last step. Every variant runs the identical epoch (the `train.runner` loop: shuffle,
forward, cross-entropy, backward, gradient clipping, Adam step). Variants are interleaved within each
repeat, so background load affects them alike; the median epoch time is reported. Like ``nvmlstm train``
(`nvmlstm.train.run_training`), the process keeps freed memory for reuse (`nvmlstm.train.memory`);
``--default-malloc`` measures with the C library's default instead. Results go into docs/performance.md,
"Training speed".

``nvmlstm train`` runs its training steps on one thread whatever ``--threads`` says (the results then do not
depend on it: `nvmlstm.train.evaluate`); the epochs measured here at several thread counts show what that
costs. ``--eval`` also times what ``--threads`` does set: the integer evaluation of a QAT model
(`nvmlstm.train.evaluate.integer_outputs`, as after every QAT epoch) over the validation split (charlm: its
first 256 windows), median of ``--repeats``, at each thread count.
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

from nvmlstm.artifacts.files import write_text_atomic
from nvmlstm.golden.config import LstmConfig
from nvmlstm.tasks import load_task
from nvmlstm.train import ckernel
from nvmlstm.train.loss import task_loss
from nvmlstm.train.memory import keep_freed_memory
from nvmlstm.train.model import QuantLSTM


class PlainLSTM(torch.nn.Module):
    """The reference: a float nn.LSTM + nn.Linear, nothing else."""

    def __init__(self, I: int, H: int, O: int):
        super().__init__()
        self.lstm = torch.nn.LSTM(I, H, batch_first=True)
        self.head = torch.nn.Linear(H, O)

    def forward(self, x, last_only: bool = True):
        # The usual classifier: the head on the last step only (as our modes do with last_only=True).
        h = self.lstm(x)[0]
        return self.head(h[:, -1:] if last_only else h)


def epoch(model, opt, task, x, y, batch: int, gen: torch.Generator) -> None:
    model.train()
    perm = torch.randperm(len(x), generator=gen)
    for i in range(0, len(x), batch):
        idx = perm[i : i + batch]
        # The runner's call: digits is scored at the last step, so only that step's output is asked for.
        out = model(x[idx], last_only=not task.per_step)
        loss = task_loss(task, out, y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()


#: Per task: hidden size, batch size, training windows per measured epoch (None: all).
SETUP = {"charlm": (128, 32, 1024), "digits": (32, 64, None)}


def _config(task, H: int) -> LstmConfig:
    """The measured model: one layer of ``H`` units, 4/4/4 bits, 32 x 64 arrays."""
    return LstmConfig(
        input_size=task.input_size,
        hidden_size=H,
        num_layers=1,
        output_size=task.output_size,
        weight_bits=4,
        dac_bits=4,
        adc_bits=4,
        array_rows=32,
        array_cols=64,
    )


def measure(task_name: str, hidden: int | None, threads: int, repeats: int, char_repeat: int | None = None) -> dict:
    torch.set_num_threads(threads)
    task = load_task(task_name, **({"char_repeat": char_repeat} if char_repeat else {}))
    H, batch, n = SETUP[task_name]
    H = hidden or H
    x, y = (torch.from_numpy(a[:n]) for a in task.train)
    cfg = _config(task, H)
    torch.manual_seed(0)

    def qat_model(**attrs) -> QuantLSTM:
        """A calibrated QAT model with ``attrs`` set (noise levels, or one of the previous forms)."""
        m = QuantLSTM(cfg, 1.0 / cfg.dac_max)
        m.calibrate(task.train[0][:512])
        m.quantized = True
        for k, v in attrs.items():
            setattr(m, k, v)
        return m

    qat = qat_model()
    qat_noise = qat_model(weight_noise=0.05, adc_noise=0.5)
    qat_tiled = qat_model(segmented_gemm=False)  # the zero-padded side-by-side tile matrix
    qat_rows = qat_model(distinct_input_rows=False)  # every input row computed, repeated ones too
    qat_loop = qat_model(split_input_tiles=False)  # every row tile converted inside the recurrence
    fp = QuantLSTM(cfg, 1.0 / cfg.dac_max)
    plain = PlainLSTM(task.input_size, H, task.output_size)
    variants = {
        "plain nn.LSTM": plain,
        "fp mode": fp,
        "qat": qat,
        "qat, every input row": qat_rows,
        "qat, all tiles in the loop": qat_loop,
        "qat, tiled GEMM": qat_tiled,
        "qat + noise": qat_noise,
    }
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in variants.items()}
    gen = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for k, m in variants.items():  # warm-up
        epoch(m, opts[k], task, x, y, batch, gen)
    for _ in range(repeats):
        for k, m in variants.items():
            t0 = time.perf_counter()
            epoch(m, opts[k], task, x, y, batch, gen)
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "threads": threads,
        "task": task_name,
        "hidden": H,
        "batch": batch,
        "sequences": len(x),
        "steps": x.shape[1],
        "median_s": med,
        "all_s": times,
        "ratio_to_plain": {k: med[k] / med["plain nn.LSTM"] for k in med},
    }


def measure_eval(task_name: str, hidden: int | None, threads: int, repeats: int) -> dict:
    """Median seconds of the integer evaluation of the validation split on ``threads`` torch threads."""
    from nvmlstm.train.evaluate import integer_outputs

    task = load_task(task_name)
    H = hidden or SETUP[task_name][0]
    x = task.valid[0][:256]
    cfg = _config(task, H)
    torch.manual_seed(0)
    qm = QuantLSTM(cfg, 1.0 / cfg.dac_max).calibrate(task.train[0][:512])
    integer_outputs(qm, x[:8], threads)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        integer_outputs(qm, x, threads)
        times.append(time.perf_counter() - t0)
    return {"threads": threads, "sequences": len(x), "median_s": statistics.median(times), "all_s": times}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=sorted(SETUP), default="charlm")
    ap.add_argument("--hidden", type=int, help="hidden size (default: 128 charlm, 32 digits)")
    ap.add_argument("--char-repeat", type=int, help="charlm: input rows per character (default: the loader's, 4)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument(
        "--default-malloc",
        action="store_true",
        help="leave the C library's allocator settings alone (nvmlstm train changes them)",
    )
    ap.add_argument("--eval", action="store_true", help="also time the integer evaluation at each thread count")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    malloc = "default (--default-malloc)" if args.default_malloc else keep_freed_memory()
    # QAT uses the native kernel when it loads (else one stderr line says why): recorded with the results.
    native = ckernel.load() is not None
    res = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "native_kernel": native,
        "freed_memory_kept": malloc,
        "runs": [],
    }
    print(f"native kernel: {'yes' if native else 'no (torch loop)'}; freed memory kept for reuse: {malloc}")
    for th in args.threads:
        r = measure(args.task, args.hidden, th, args.repeats, args.char_repeat)
        res["runs"].append(r)
        print(
            f"{args.task}, hidden {r['hidden']}, {r['sequences']} sequences x {r['steps']} steps, batch "
            f"{r['batch']}, threads {th}:"
        )
        for k, v in r["median_s"].items():
            print(
                f"  {k:27s} {1000 * v:8.1f} ms/epoch  {r['ratio_to_plain'][k]:5.2f}x plain  "
                f"{v / r['median_s']['fp mode']:5.2f}x fp mode"
            )
    if args.eval:
        res["eval"] = []
        for th in args.threads:
            r = measure_eval(args.task, args.hidden, th, args.repeats)
            res["eval"].append(r)
            print(f"integer evaluation, {r['sequences']} validation sequences, threads {th}: {r['median_s']:.3f} s")
    if args.json:
        write_text_atomic(args.json, json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
