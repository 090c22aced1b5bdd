"""The three offline tasks: digit classification, character language modelling, time-series forecasting.

numpy only (no torch): training, sweeps and the flow read the same data and score with the same metric.

Every task gives real-valued inputs in [-1, 1] (so the input DAC code is ``round(x * dac_max)`` and
``input_scale = 1 / dac_max``), targets, and its metric. Splits are deterministic: they depend on the data
alone (and a fixed split seed for digits), never on the training seed, so runs with different seeds are
scored on the same test set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nvmlstm.golden.textfile import read_text_file

from .. import data as _data_package
from .generic import GENERIC_TASKS, load_generic

__all__ = [
    "TaskError",
    "TaskData",
    "TASKS",
    "METRICS",
    "HIGHER_IS_BETTER",
    "FLOAT_TOLERANCE",
    "load_task",
    "metric_from_outputs",
    "DEFAULT_DATA",
    "SMALL_DATA",
    "TEXT_SPLIT",
    "CHAR_REPEAT",
    "DIGITS_SPLIT_SEED",
]

#: Task name -> name of its metric.
METRICS = {"digits": "accuracy", "charlm": "bpc", "timeseries": "rmse", **GENERIC_TASKS}
TASKS = tuple(METRICS)
#: Whether a larger metric is better.
HIGHER_IS_BETTER = {"accuracy": True, "bpc": False, "rmse": False}
#: How far a quantized model's metric may be from the float one and still "reach floating-point accuracy":
#: 1 point of accuracy, 5% of bpc or rmse (docs/resilience.md; the flow's report and the resilience figures).
FLOAT_TOLERANCE = {"accuracy": 0.01, "bpc": 0.05, "rmse": 0.05}

_DATA_DIR = Path(_data_package.__file__).resolve().parent  # the shipped data sets (package nvmlstm.data)
DEFAULT_DATA = {"charlm": _DATA_DIR / "tinyshakespeare.txt", "timeseries": _DATA_DIR / "sunspots.csv"}
#: Small shipped files for fast tests (not defaults): 8 kB of text and a 2,400-value synthetic series.
SMALL_DATA = {"charlm": _DATA_DIR / "declaration.txt", "timeseries": _DATA_DIR / "cycles.csv"}
#: Contiguous split of a single charlm text file, by characters, in order: train / valid / test fractions.
TEXT_SPLIT = (0.90, 0.05, 0.05)
#: charlm input rows per character (its one-hot repeated; docs/training.md, "The QAT recipe"). The weights
#: of a gate share one scale across input and recurrent rows; a one-hot input drives a single row, so its
#: weights must be large and set the scale, leaving the recurrent weights ~2 bits of 4. Repeating the
#: one-hot 4 times lets each copy be 4x smaller: the recurrent weights get the finer codes.
CHAR_REPEAT = 4
DIGITS_SPLIT_SEED = 0
PTB_FILES = ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")


class TaskError(ValueError):
    """Task data that cannot be used (missing, unreadable, too short); the message says which and why."""


@dataclass
class TaskData:
    """Inputs (S, T, I) float32 in [-1, 1] and targets of the train / valid / test splits.

    ``per_step``: the loss and metric use the head output at every timestep (charlm); otherwise only at the
    last timestep. ``y_scale``/``y_offset`` map a normalized regression output back to original units.
    """

    name: str
    metric: str
    input_size: int
    output_size: int
    per_step: bool
    train: tuple[np.ndarray, np.ndarray]
    valid: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    y_scale: float = 1.0
    y_offset: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
def _digits(seed: int = DIGITS_SPLIT_SEED) -> TaskData:
    from sklearn.datasets import load_digits

    d = load_digits()
    # Each 8x8 image is read row by row: 8 timesteps of 8 pixels; pixels 0..16 scaled to [-1, 1] so the
    # input uses the whole signed DAC range (15 levels at 4 bits, not 8).
    x = (d.data.reshape(-1, 8, 8) / 8.0 - 1.0).astype(np.float32)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(0.2 * len(y)))
    n_valid = int(round(0.1 * len(y)))
    te, va, tr = perm[:n_test], perm[n_test : n_test + n_valid], perm[n_test + n_valid :]
    return TaskData(
        "digits",
        "accuracy",
        8,
        10,
        False,
        (x[tr], y[tr]),
        (x[va], y[va]),
        (x[te], y[te]),
        info={"source": "sklearn.datasets.load_digits", "split_seed": seed, "sizes": [len(tr), len(va), len(te)]},
    )


def _read_text(path: Path) -> str:
    return read_text_file(path, TaskError, "data file")


def _char_windows(ids: np.ndarray, T: int, stride: int, V: int, repeat: int = 1) -> tuple[np.ndarray, np.ndarray]:
    starts = np.arange(0, len(ids) - T, stride)
    idx = starts[:, None] + np.arange(T)[None, :]
    x = np.zeros((len(starts), T, V), dtype=np.float32)
    np.put_along_axis(x, ids[idx][..., None], 1.0, axis=2)  # one-hot: DAC codes 0 / dac_max
    if repeat > 1:
        x = np.tile(x, (1, 1, repeat))  # input row v + k V (k < repeat) carries character v
    return x, ids[idx + 1].astype(np.int64)


def _charlm(path: Path, seq_len: int, repeat: int = 1) -> TaskData:
    if path.is_dir():
        missing = [f for f in PTB_FILES if not (path / f).is_file()]
        if missing:
            raise TaskError(
                f"{path}: a charlm data directory needs {', '.join(PTB_FILES)}; missing {', '.join(missing)}"
            )
        parts = [_read_text(path / f) for f in PTB_FILES]
        layout = "ptb"
    else:
        text = _read_text(path)
        # Contiguous 90/5/5 split (TEXT_SPLIT), in order: the model is scored on text it has not seen, and
        # 5% of the Shakespeare corpus (~56k characters) already scores bpc to +-0.01.
        a = int(TEXT_SPLIT[0] * len(text))
        b = int((TEXT_SPLIT[0] + TEXT_SPLIT[1]) * len(text))
        parts = [text[:a], text[a:b], text[b:]]
        layout = "file"
    names = ("train", "valid", "test")
    for name, part in zip(names, parts):
        if len(part) < seq_len + 1:
            raise TaskError(
                f"{path}: the {name} split has {len(part)} characters, fewer than the sequence length + 1 "
                f"({seq_len + 1}); give more text or a shorter --seq-len"
            )
    vocab = "".join(sorted(set("".join(parts))))
    V = len(vocab)
    lut = {ch: i for i, ch in enumerate(vocab)}
    ids = [np.fromiter((lut[ch] for ch in p), dtype=np.int64, count=len(p)) for p in parts]
    # Every split's windows tile its text once (stride T), as language models train: an epoch sees every
    # training character once (overlapping windows cost 4x per epoch for no better model per second), and
    # every test character after the first of a window is predicted exactly once.
    train = _char_windows(ids[0], seq_len, seq_len, V, repeat)
    valid = _char_windows(ids[1], seq_len, seq_len, V, repeat)
    test = _char_windows(ids[2], seq_len, seq_len, V, repeat)
    return TaskData(
        "charlm",
        "bpc",
        V * repeat,
        V,
        True,
        train,
        valid,
        test,
        info={
            "source": str(path),
            "layout": layout,
            "vocab": vocab,
            "seq_len": seq_len,
            "chars": [len(p) for p in parts],
            "char_repeat": repeat,
        },
    )


def _timeseries(path: Path, seq_len: int) -> TaskData:
    text = _read_text(path)
    rows = [r for r in text.splitlines() if r.strip()]
    values = []
    for n, row in enumerate(rows):
        cell = row.split(",")[-1].strip()
        try:
            values.append(float(cell))
        except ValueError:
            if n == 0:
                continue  # a header line
            raise TaskError(f"{path}: line {n + 1}: {cell!r} is not a number (the last column is the series)") from None
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise TaskError(f"{path}: the series contains NaN or infinity")
    # Chronological 70/15/15 split; windows of seq_len values predict the next value.
    n = len(v)
    a, b = int(0.7 * n), int(0.85 * n)
    need = seq_len + 1
    for name, lo, hi in (("train", 0, a), ("valid", a, b), ("test", b, n)):
        if hi - lo < need:
            raise TaskError(
                f"{path}: the {name} split has {hi - lo} values, fewer than the sequence length + 1 "
                f"({need}); give a longer series or a shorter --seq-len"
            )
    lo_v, hi_v = float(v[:a].min()), float(v[:a].max())
    if hi_v <= lo_v:
        raise TaskError(f"{path}: the training part of the series is constant")
    # Normalize with the training range to [-1, 1] (the DAC's range); later values may fall outside.
    offset, scale = (hi_v + lo_v) / 2.0, (hi_v - lo_v) / 2.0
    z = ((v - offset) / scale).astype(np.float32)

    def windows(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        # Windows of the split's values; the test windows may start in the previous split (their inputs
        # are past values), but every target lies in the split.
        starts = np.arange(max(0, lo - seq_len), hi - seq_len)
        idx = starts[:, None] + np.arange(seq_len)[None, :]
        return z[idx][..., None], z[starts + seq_len]

    return TaskData(
        "timeseries",
        "rmse",
        1,
        1,
        False,
        windows(0, a),
        windows(a, b),
        windows(b, n),
        y_scale=scale,
        y_offset=offset,
        info={"source": str(path), "values": n, "seq_len": seq_len, "split": [a, b - a, n - b]},
    )


def load_task(
    name: str, data: str | Path | None = None, *, seq_len: int | None = None, char_repeat: int | None = None
) -> TaskData:
    """Load task ``name`` (`TASKS`) from ``data`` (default: the shipped file) with sequences of ``seq_len``.

    ``char_repeat`` (charlm; default `CHAR_REPEAT`): every character drives that many input rows (its one-hot
    repeated), so ``input_size`` is ``char_repeat`` x the vocabulary.
    """
    if name == "digits":
        if data is not None:
            raise TaskError("digits reads sklearn's bundled digits; it takes no --data")
        if seq_len not in (None, 8):
            raise TaskError("digits sequences are the 8 rows of an image; --seq-len must be 8")
        return _digits()
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    if name in GENERIC_TASKS:  # the user's own sequences (tasks/generic.py)
        if data is None:
            raise TaskError(
                f"{name} reads your own sequences: give --data FILE.npz with arrays X (sequences, "
                f"steps, inputs) and y (sequences,)"
            )
        return load_generic(name, data, TaskData, TaskError)
    path = Path(data) if data is not None else DEFAULT_DATA[name]
    if not path.exists():
        raise TaskError(f"{path}: data path not found")
    if name == "charlm":
        char_repeat = CHAR_REPEAT if char_repeat is None else char_repeat
        if isinstance(char_repeat, bool) or not (isinstance(char_repeat, int) and char_repeat >= 1):
            raise TaskError(f"char_repeat must be a positive integer, not {char_repeat!r}")
        return _charlm(path, 64 if seq_len is None else seq_len, char_repeat)
    return _timeseries(path, 24 if seq_len is None else seq_len)


# --------------------------------------------------------------------------------------------------
def _log_softmax(o: np.ndarray) -> np.ndarray:
    m = np.max(o, axis=-1, keepdims=True)
    z = o - m
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def metric_from_outputs(task: TaskData, out: np.ndarray, y: np.ndarray) -> float:
    """The task metric of real outputs ``out`` (S, T, O) against targets ``y`` (float64 arithmetic).

    accuracy: fraction of argmax(last-step output) == label (ties: the first maximum, as numpy and the
    golden output codes); bpc: mean cross-entropy in bits over every predicted character; rmse: root mean
    square error of the last-step prediction in the series' original units.
    """
    o = np.asarray(out, dtype=np.float64)
    if task.metric == "accuracy":
        return float(np.mean(np.argmax(o[:, -1], axis=1) == np.asarray(y)))
    if task.metric == "bpc":
        lp = _log_softmax(o.reshape(-1, o.shape[-1]))
        yy = np.asarray(y).reshape(-1)
        nll = -lp[np.arange(len(yy)), yy]
        return float(np.mean(nll)) / math.log(2.0)
    err = (o[:, -1, 0] - np.asarray(y, dtype=np.float64)) * task.y_scale
    return float(np.sqrt(np.mean(err**2)))
