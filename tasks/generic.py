"""A user's own sequences: classification (``classify``) or regression (``regress``) from one ``.npz`` file.

The file holds ``X`` (N, T, I) real inputs and ``y`` (N,) targets — integer class labels 0..C-1 for
``classify``, real values for ``regress`` (predicted from the last timestep) — or the three splits already made,
as ``X_train``/``y_train``, ``X_valid``/``y_valid``, ``X_test``/``y_test``. Without given splits the sequences are
split 70/10/20 after a permutation with the fixed seed `SPLIT_SEED`, so every training seed is scored on the same
test set.

Inputs: the DAC codes a model sees are ``round(x * dac_max)`` for x in [-1, 1]; inputs are divided by the
largest ``|x|`` of the training split when that exceeds 1 (recorded as ``info["input_divisor"]``), and values
beyond [-1, 1] in the other splits are clipped by the DAC. Regression targets are normalized to [-1, 1] with the
training split's range (``y_scale``, ``y_offset``), so the RMSE is reported in the file's own units.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

__all__ = ["GENERIC_TASKS", "SPLIT_SEED", "load_generic"]

#: Task name -> metric.
GENERIC_TASKS = {"classify": "accuracy", "regress": "rmse"}
SPLIT_SEED = 0
_SPLITS = ("train", "valid", "test")


def _read(path: Path, error: type[Exception]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise error(f"{path}: data file not found") from None
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise error(f"{path}: not a readable .npz file with arrays X and y ({type(exc).__name__})") from None


def _check(
    path: Path, xname: str, X: np.ndarray, yname: str, y: np.ndarray, metric: str, steps_inputs, error: type[Exception]
) -> None:
    """One array pair against the task's rules; ``steps_inputs``: the shape the other splits have, or None."""
    if X.ndim != 3 or 0 in X.shape:
        raise error(f"{path}: {xname} has shape {X.shape}; expected (sequences, steps, inputs), none of them 0")
    if not np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_ or not np.all(np.isfinite(X)):
        raise error(f"{path}: {xname} must hold finite numbers (dtype {X.dtype})")
    if steps_inputs is not None and X.shape[1:] != steps_inputs:
        raise error(f"{path}: {xname} has steps x inputs {X.shape[1:]}, X_train {steps_inputs}")
    if y.shape != (X.shape[0],):
        raise error(f"{path}: {yname} has shape {y.shape}; expected ({X.shape[0]},), one target per sequence")
    if metric == "accuracy":
        if not np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_):
            raise error(f"{path}: classify needs integer class labels 0..C-1 in {yname} (dtype {y.dtype})")
        if y.min() < 0:
            raise error(f"{path}: classify needs class labels 0..C-1 in {yname} (minimum {y.min()})")
    elif not np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_ or not np.all(np.isfinite(y)):
        raise error(f"{path}: regress needs finite real targets in {yname} (dtype {y.dtype})")


def _splits(path: Path, arrays: dict[str, np.ndarray], metric: str, error: type[Exception]) -> dict[str, tuple]:
    given = [s for s in _SPLITS if f"X_{s}" in arrays or f"y_{s}" in arrays]
    if given:
        need = [f"{a}_{s}" for s in _SPLITS for a in ("X", "y") if f"{a}_{s}" not in arrays]
        if need:
            raise error(
                f"{path}: has some of the split arrays but not {', '.join(need)} (give X and y, or "
                f"X_train, y_train, X_valid, y_valid, X_test, y_test)"
            )
        shape = None
        for s in _SPLITS:
            _check(path, f"X_{s}", arrays[f"X_{s}"], f"y_{s}", arrays[f"y_{s}"], metric, shape, error)
            shape = arrays["X_train"].shape[1:]
        return {s: (arrays[f"X_{s}"], arrays[f"y_{s}"]) for s in _SPLITS}
    if "X" not in arrays or "y" not in arrays:
        raise error(
            f"{path}: needs arrays X (sequences, steps, inputs) and y (sequences,); found "
            f"{', '.join(sorted(arrays)) or 'no arrays'}"
        )
    X, y = arrays["X"], arrays["y"]
    _check(path, "X", X, "y", y, metric, None, error)
    n = len(X)
    if n < 3:
        raise error(f"{path}: X has {n} sequences; the 70/10/20 split needs at least 3")
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_test, n_valid = max(1, int(round(0.2 * n))), max(1, int(round(0.1 * n)))
    te, va, tr = perm[:n_test], perm[n_test : n_test + n_valid], perm[n_test + n_valid :]
    return {"train": (X[tr], y[tr]), "valid": (X[va], y[va]), "test": (X[te], y[te])}


def load_generic(task: str, path: str | Path, task_data: type, error: type[Exception]):
    """Load ``path`` as task ``task`` (`GENERIC_TASKS`); returns ``task_data(...)`` (a `TaskData`).

    Every problem is one ``error`` line naming the file, the array and what was expected.
    """
    path = Path(path)
    metric = GENERIC_TASKS[task]
    splits = _splits(path, _read(path, error), metric, error)
    shape = splits["train"][0].shape[1:]
    checked = {s: (np.asarray(X, dtype=np.float64), np.asarray(y)) for s, (X, y) in splits.items()}
    Xtr = checked["train"][0]
    peak = float(np.max(np.abs(Xtr)))
    divisor = peak if peak > 1.0 else 1.0
    info = {
        "source": path.name,
        "format": "npz",
        "input_divisor": divisor,
        "split_seed": SPLIT_SEED,
        "sizes": [len(checked[s][0]) for s in _SPLITS],
    }
    if metric == "accuracy":
        classes = int(max(int(checked[s][1].max()) for s in _SPLITS)) + 1
        if classes < 2:
            raise error(f"{path}: classify needs at least 2 classes in y")
        out = {s: ((X / divisor).astype(np.float32), y.astype(np.int64)) for s, (X, y) in checked.items()}
        return task_data(
            task,
            metric,
            shape[1],
            classes,
            False,
            out["train"],
            out["valid"],
            out["test"],
            info=info | {"classes": classes},
        )
    ytr = checked["train"][1].astype(np.float64)
    lo, hi = float(ytr.min()), float(ytr.max())
    if hi <= lo:
        raise error(f"{path}: the training targets are constant; regress needs varying y")
    offset, scale = (hi + lo) / 2.0, (hi - lo) / 2.0
    out = {
        s: ((X / divisor).astype(np.float32), ((y.astype(np.float64) - offset) / scale).astype(np.float32))
        for s, (X, y) in checked.items()
    }
    return task_data(
        task,
        metric,
        shape[1],
        1,
        False,
        out["train"],
        out["valid"],
        out["test"],
        y_scale=scale,
        y_offset=offset,
        info=info,
    )
