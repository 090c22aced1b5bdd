"""A training run's evaluations, the thread counts they run with, and the progress bar of the final one.

Thread counts (docs/training.md, "Reproducibility"): the training steps and every float evaluation run on
one torch thread (`TRAIN_THREADS`), whatever ``--threads`` says. A float sum's last bits depend on the order
of its terms, and torch and MKL split sums among threads. Measured with torch 2.13 (MKL) on a 2-core x86-64
VM, 1 vs 2 threads: MKL's matrix products with a small output (digits: the head's weight gradient, 10 x 32
over a batch of 64) and torch's reductions of more than 32,768 elements to one number (the gradients of the
learned ADC steps and weight scales) change in the last bits, and training amplifies them into other weights
(digits fp: test accuracy 0.9749 with 1 thread, 0.9721 with 2). MKL's strict reproducibility mode
(``MKL_CBWR=AUTO,STRICT``) made 1 and 2 threads agree there but not 3 or 4, so it is not relied on. One thread
is also as fast as two for these model sizes (docs/performance.md), so nothing is lost.

``--threads`` sets the threads of the integer evaluation (`integer_outputs`: QAT's validation after every
epoch, the test set of ptq and qat): float64 tensors holding integers, where every sum is exact in any order,
so its results are the same with any count. It is the slow part of evaluating charlm; whether more threads
speed it up depends on free cores (on the busy 2-core VM of docs/performance.md, 2 threads were slower).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from nvmlstm.artifacts.progress import progress
from nvmlstm.golden.model import QuantizedModel
from nvmlstm.golden.nvm import NonIdealities
from nvmlstm.golden.realio import golden_outputs, input_codes
from nvmlstm.tasks import TaskData, metric_from_outputs

from .exact import exact_forward
from .model import QuantLSTM

__all__ = [
    "TRAIN_THREADS",
    "NOISE_EVAL_SEEDS",
    "EVAL_CHUNK",
    "on_terminal",
    "torch_threads",
    "exact_outputs",
    "float_outputs",
    "integer_outputs",
    "valid_metric",
    "final_test_metrics",
]

#: torch threads of the training steps and the float evaluations (module docstring: why one).
TRAIN_THREADS = 1

#: Noisy golden evaluations: seeds of the NonIdealities draws averaged in metrics.json.
NOISE_EVAL_SEEDS = (0, 1, 2)

#: Sequences per call of the integer and golden evaluations: the progress bar moves after each. (The golden
#: model is also faster in such chunks: 384 charlm test windows 0.9-1.3 s instead of 3.8-4.1 s in one call.)
EVAL_CHUNK = 128


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` inside the block, the previous count restored after it."""
    prev = torch.get_num_threads()
    if n != prev:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != prev:
            torch.set_num_threads(prev)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


@torch.no_grad()
def float_outputs(model: QuantLSTM, x: np.ndarray, bar=None) -> np.ndarray:
    """Real outputs (float64) of the float model (``quantized`` off) on real inputs ``x``, on one thread."""
    model.eval()
    was = model.quantized
    model.quantized = False
    parts = []
    with torch_threads(TRAIN_THREADS):
        for s in _chunks(len(x), 1024):
            parts.append(model(torch.from_numpy(x[s])).numpy())
            if bar is not None:
                bar.update(s.stop - s.start)
    model.quantized = was
    return np.concatenate(parts).astype(np.float64)


def exact_outputs(qm: QuantizedModel, x: np.ndarray) -> np.ndarray:
    """Real outputs of the PyTorch integer evaluation path (output codes x output_scale; `exact_forward`
    bounds its own memory by evaluating in chunks of sequences)."""
    return exact_forward(qm, input_codes(qm, x)).numpy() * qm.output_scale


def integer_outputs(qm: QuantizedModel, x: np.ndarray, threads: int, bar=None) -> np.ndarray:
    """`exact_outputs` on ``threads`` torch threads (exact integer sums: the same with any count), in chunks
    of `EVAL_CHUNK` sequences (sequences are independent: the same outputs as one call), each moving ``bar``."""
    parts = []
    with torch_threads(threads):
        for s in _chunks(len(x), EVAL_CHUNK):
            parts.append(exact_outputs(qm, x[s]))
            if bar is not None:
                bar.update(s.stop - s.start)
    return np.concatenate(parts) if parts else exact_outputs(qm, x)


def _golden_chunked(qm: QuantizedModel, x: np.ndarray, bar) -> np.ndarray:
    """`golden_outputs` without non-idealities, in chunks of `EVAL_CHUNK` sequences (the same outputs: every
    sequence starts from cleared state), each moving ``bar``."""
    parts = []
    for s in _chunks(len(x), EVAL_CHUNK):
        parts.append(golden_outputs(qm, x[s]))
        bar.update(s.stop - s.start)
    return np.concatenate(parts) if parts else golden_outputs(qm, x)


def valid_metric(task: TaskData, model: QuantLSTM, quantized: bool, threads: int) -> float:
    """The validation metric: of the exported integer model when training quantized, else of the floats."""
    xv, yv = task.valid
    if quantized:
        return metric_from_outputs(task, integer_outputs(model.export(), xv, threads), yv)
    return metric_from_outputs(task, float_outputs(model, xv), yv)


def final_test_metrics(
    task: TaskData,
    model: QuantLSTM,
    qm: QuantizedModel | None,
    *,
    threads: int,
    noise: tuple[float, float],
    show: bool,
    desc: str,
) -> dict[str, Any]:
    """The test-set metrics of a finished run, under one progress bar (sequences x passes).

    Parameters
    ----------
    task : TaskData
    model : QuantLSTM
        The final float weights (best validation epoch).
    qm : QuantizedModel or None
        The exported integer model (ptq, qat); None (fp): the float metric only.
    threads : int
        torch threads of the integer evaluation (module docstring).
    noise : (float, float)
        The run's weight and ADC noise; either non-zero adds the noisy golden evaluations
        (`NOISE_EVAL_SEEDS`).
    show : bool
        Draw the bar (``--no-progress``: no output).
    desc : str
        The bar's label.

    Returns
    -------
    dict
        ``float_test_metric``; with ``qm`` also ``test_metric`` (the PyTorch integer path),
        ``golden_test_metric``, ``golden_matches_torch_eval``, ``model_sha256``, ``adc_steps`` and, with
        noise, ``golden_noisy_test_metric(s)``.
    """
    xte, yte = task.test
    noisy = qm is not None and any(noise)
    passes = 1 if qm is None else 3 + (len(NOISE_EVAL_SEEDS) if noisy else 0)
    with progress(passes * len(xte), desc, unit="seq", enabled=show) as bar:
        bar.set_postfix_str("float model", refresh=False)
        m: dict[str, Any] = {"float_test_metric": metric_from_outputs(task, float_outputs(model, xte, bar), yte)}
        if qm is None:
            return m
        bar.set_postfix_str("integer model (PyTorch)", refresh=False)
        exact = integer_outputs(qm, xte, threads, bar)
        m["test_metric"] = metric_from_outputs(task, exact, yte)
        bar.set_postfix_str("golden model", refresh=False)
        golden = _golden_chunked(qm, xte, bar)
        m["golden_test_metric"] = metric_from_outputs(task, golden, yte)
        m["golden_matches_torch_eval"] = bool(np.array_equal(golden, exact))
        m["model_sha256"] = qm.digest()
        m["adc_steps"] = [lp.adc_step for lp in qm.layers] + [qm.head.adc_step]
        if noisy:
            vals = []
            for i, s in enumerate(NOISE_EVAL_SEEDS):
                # One call per draw: the noise is drawn for the whole split, so chunks would change it.
                bar.set_postfix_str(f"golden model with noise, draw {i + 1}/{len(NOISE_EVAL_SEEDS)}", refresh=True)
                ni = NonIdealities(prog_noise=noise[0], adc_noise=noise[1], seed=s)
                vals.append(metric_from_outputs(task, golden_outputs(qm, xte, ni), yte))
                bar.update(len(xte))
            m["golden_noisy_test_metric"] = float(np.mean(vals))
            m["golden_noisy_test_metrics"] = vals
    return m


def on_terminal() -> bool:
    """Whether progress bars go to a terminal (`nvmlstm.artifacts.progress.progress` writes to stderr)."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())
