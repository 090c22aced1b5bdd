"""A user's own sequences as tasks `classify` and `regress` (tasks/generic.py): splits, scaling, messages."""

from __future__ import annotations

import re

import numpy as np
import pytest

from nvmlstm.tasks import TaskError, load_task


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_classify_splits_scales_and_counts_classes(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 5, 3)) * 4
    y = rng.integers(0, 3, size=100)
    t = load_task("classify", _write(tmp_path / "c.npz", X=X, y=y))
    assert (t.metric, t.input_size, t.output_size, t.per_step) == ("accuracy", 3, 3, False)
    assert [len(s[0]) for s in (t.train, t.valid, t.test)] == [70, 10, 20] == t.info["sizes"]
    # The fixed split: the same file gives the same test set, whatever else runs.
    assert np.array_equal(load_task("classify", tmp_path / "c.npz").test[1], t.test[1])
    # Divided by the largest |x| of the training split: in [-1, 1] there, exactly 1 at the peak.
    assert np.max(np.abs(t.train[0])) == pytest.approx(1.0)
    assert t.info["input_divisor"] > 1.0
    # Rows are whole sequences with their labels (the split permutes sequences, not values).
    row = t.test[0][0] * t.info["input_divisor"]
    k = int(np.argmin(np.abs(X - row).sum(axis=(1, 2))))
    assert np.allclose(X[k], row, atol=1e-5) and y[k] == t.test[1][0]


def test_regress_uses_given_splits_and_reports_original_units(tmp_path):
    rng = np.random.default_rng(1)
    parts = {}
    for s, n in (("train", 40), ("valid", 5), ("test", 7)):
        parts[f"X_{s}"] = rng.uniform(-0.5, 0.5, size=(n, 4, 2))
        parts[f"y_{s}"] = rng.uniform(10, 30, size=n)
    t = load_task("regress", _write(tmp_path / "r.npz", **parts))
    assert (t.metric, t.output_size) == ("rmse", 1)
    assert [len(s[0]) for s in (t.train, t.valid, t.test)] == [40, 5, 7]
    assert t.info["input_divisor"] == 1.0  # already within [-1, 1]: left as it is
    back = t.test[1].astype(np.float64) * t.y_scale + t.y_offset
    assert np.allclose(back, parts["y_test"], rtol=1e-6)


@pytest.mark.parametrize(
    "arrays, pattern",
    [
        ({"X": np.zeros((10, 2, 1))}, r".*: needs arrays X \(sequences, steps, inputs\) and y \(sequences,\); found X"),
        (
            {"X": np.zeros((10, 2)), "y": np.zeros(10, int)},
            r".*: X has shape \(10, 2\); expected \(sequences, steps, inputs\), none of them 0",
        ),
        (
            {"X": np.zeros((10, 2, 1)), "y": np.zeros(9, int)},
            r".*: y has shape \(9,\); expected \(10,\), one target per sequence",
        ),
        (
            {"X": np.zeros((10, 2, 1)), "y": np.full(10, 0.5)},
            r".*: classify needs integer class labels 0\.\.C-1 in y \(dtype float64\)",
        ),
        (
            {"X": np.full((10, 2, 1), np.nan), "y": np.zeros(10, int)},
            r".*: X must hold finite numbers \(dtype float64\)",
        ),
        (
            {"X_train": np.zeros((4, 2, 1)), "y_train": np.zeros(4, int)},
            r".*: has some of the split arrays but not X_valid, y_valid, X_test, y_test .*",
        ),
    ],
)
def test_bad_files_are_one_line(tmp_path, arrays, pattern):
    p = _write(tmp_path / "bad.npz", **arrays)
    with pytest.raises(TaskError) as e:
        load_task("classify", p)
    assert "\n" not in str(e.value)
    assert re.fullmatch(pattern, str(e.value)), str(e.value)


def test_missing_or_absent_data(tmp_path):
    with pytest.raises(TaskError, match=r"classify reads your own sequences: give --data FILE.npz"):
        load_task("classify")
    with pytest.raises(TaskError, match=r"data path not found|data file not found"):
        load_task("regress", tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(TaskError, match=r"junk.npz: not a readable .npz file with arrays X and y"):
        load_task("regress", tmp_path / "junk.npz")


def test_train_and_export_a_users_classification_task(tmp_path, capsys):
    pytest.importorskip("torch")
    from cli_helpers import run

    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 4, 2))
    p = _write(tmp_path / "mine.npz", X=X, y=(X[:, :, 0].sum(axis=1) > 0).astype(np.int64))
    rc, out, err = run(
        capsys,
        "train",
        "--task",
        "classify",
        "--data",
        p,
        "--mode",
        "qat",
        "--hidden",
        "4",
        "--epochs",
        "2",
        "--no-progress",
        "--out",
        tmp_path / "run",
    )
    assert (rc, err) == (0, ""), err
    m = re.search(r"classify qat: test accuracy ([0-9.]+), golden ([0-9.]+)", out)
    assert m and m.group(1) == m.group(2)  # the golden integer model scores what the export scored
    rc, _, err = run(
        capsys, "train", "--task", "regress", "--data", p, "--mode", "fp", "--seq-len", "3", "--out", tmp_path / "run2"
    )
    assert (rc, err) == (2, "nvmlstm train: error: --seq-len: regress sequences come from the data file as they are\n")
