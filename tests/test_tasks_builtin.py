"""The built-in tasks (tasks/loaders.py, tasks/baseline.py): fixed splits, exact metrics, one-line errors.

Splits are checked on small files whose every window is known by hand: sizes, that the splits partition the
data (nothing shared, nothing lost), that each split holds the part it documents, and that two loads are
equal. Metrics and the chance line are checked against values computed by hand on tiny outputs.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from nvmlstm.tasks import SMALL_DATA, TaskData, TaskError, load_task, metric_from_outputs
from nvmlstm.tasks.baseline import NEAR_CHANCE_FRACTION, chance_metric, near_chance


def _same(a: TaskData, b: TaskData) -> bool:
    return all(np.array_equal(x, y) for s in ("train", "valid", "test") for x, y in zip(getattr(a, s), getattr(b, s)))


def _sorted_rows(a: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1)
    return a[np.lexsort(a.T[::-1])]


# --------------------------------------------------------------------------------------------------
# Splits
def test_digits_split_partitions_the_data_set_deterministically():
    from sklearn.datasets import load_digits

    t = load_task("digits")
    assert (t.metric, t.input_size, t.output_size, t.per_step) == ("accuracy", 8, 10, False)
    sizes = [len(s[0]) for s in (t.train, t.valid, t.test)]
    assert sizes == [1258, 180, 359] == t.info["sizes"]  # 70 / 10 / 20 of 1797 images
    assert all(len(x) == len(y) for x, y in (t.train, t.valid, t.test))
    # Together the splits are the data set, each image with its label, exactly once.
    d = load_digits()
    full = np.column_stack([d.data / 8.0 - 1.0, d.target]).astype(np.float64)
    got = np.concatenate([np.column_stack([x.reshape(len(x), -1), y]) for x, y in (t.train, t.valid, t.test)])
    assert np.array_equal(_sorted_rows(got), _sorted_rows(full))
    assert t.train[0].min() == -1.0 and t.train[0].max() == 1.0
    assert _same(t, load_task("digits"))


def test_charlm_split_is_contiguous_and_windows_tile_each_part(tmp_path):
    text = "abcdefghij" * 20  # 200 characters: 180 / 10 / 10
    path = tmp_path / "t.txt"
    path.write_text(text)
    t = load_task("charlm", path, seq_len=4, char_repeat=2)
    assert t.info["chars"] == [180, 10, 10] and t.info["vocab"] == "abcdefghij"
    assert (t.metric, t.input_size, t.output_size, t.per_step) == ("bpc", 20, 10, True)
    assert [s[0].shape for s in (t.train, t.valid, t.test)] == [(44, 4, 20), (2, 4, 20), (2, 4, 20)]
    for (x, y), start in ((t.train, 0), (t.valid, 180), (t.test, 190)):
        assert np.array_equal(x[..., :10], x[..., 10:])  # the one-hot, repeated
        assert np.all(x.sum(axis=2) == 2.0)
        for k in range(len(x)):
            lo = start + 4 * k
            assert "".join(t.info["vocab"][i] for i in x[k, :, :10].argmax(axis=1)) == text[lo : lo + 4]
            assert "".join(t.info["vocab"][i] for i in y[k]) == text[lo + 1 : lo + 5]
    assert _same(t, load_task("charlm", path, seq_len=4, char_repeat=2))


def test_timeseries_split_is_chronological_with_targets_inside_each_split(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("t,value\n" + "".join(f"{i},{i}\n" for i in range(100)))  # the values 0..99
    t = load_task("timeseries", path, seq_len=5)
    assert t.info["split"] == [70, 15, 15]
    # Normalized with the training range 0..69: offset 34.5, scale 34.5.
    assert (t.y_offset, t.y_scale) == (34.5, 34.5)
    for (x, y), first, last in ((t.train, 5, 69), (t.valid, 70, 84), (t.test, 85, 99)):
        back = np.round(y.astype(np.float64) * t.y_scale + t.y_offset).astype(int)
        assert back.tolist() == list(range(first, last + 1))  # disjoint targets, none lost
        inputs = np.round(x[..., 0].astype(np.float64) * t.y_scale + t.y_offset).astype(int)
        assert np.array_equal(inputs, back[:, None] - np.arange(5, 0, -1)[None, :])  # the 5 values before
    assert _same(t, load_task("timeseries", path, seq_len=5))


def test_shipped_small_files_load_the_same_twice():
    for name in ("charlm", "timeseries"):
        a, b = load_task(name, SMALL_DATA[name], seq_len=16), load_task(name, SMALL_DATA[name], seq_len=16)
        assert _same(a, b) and a.info == b.info
        assert min(len(s[0]) for s in (a.train, a.valid, a.test)) > 0


# --------------------------------------------------------------------------------------------------
# Metrics
def _task(metric: str, *, output_size: int = 3, y_scale: float = 1.0, train_y=(0,), valid_y=(0,)) -> TaskData:
    empty = np.zeros((len(train_y), 1, 1), np.float32)
    return TaskData(
        "t",
        metric,
        1,
        output_size,
        metric == "bpc",
        (empty, np.asarray(train_y)),
        (np.zeros((len(valid_y), 1, 1), np.float32), np.asarray(valid_y)),
        (empty, np.asarray(train_y)),
        y_scale=y_scale,
    )


def test_accuracy_uses_the_last_step_and_the_first_maximum():
    out = np.zeros((4, 2, 3))
    out[:, 0, 2] = 9.0  # the first step says class 2 everywhere: ignored
    out[0, 1] = [1, 0, 0]
    out[1, 1] = [0, 1, 0]
    out[2, 1] = [0, 5, 5]  # a tie: the first maximum, class 1
    out[3, 1] = [0, 0, 1]
    assert metric_from_outputs(_task("accuracy"), out, np.array([0, 1, 1, 0])) == 0.75
    assert metric_from_outputs(_task("accuracy"), out, np.array([0, 1, 2, 2])) == 0.75


def test_bits_per_character_is_the_mean_cross_entropy_in_bits():
    # Outputs [0, ln 3]: probabilities 1/4 and 3/4; targets 0 (2 bits) and 1 (2 - log2 3 bits), per step.
    out = np.array([[[0.0, math.log(3.0)], [0.0, math.log(3.0)]]])
    got = metric_from_outputs(_task("bpc", output_size=2), out, np.array([[0, 1]]))
    assert got == pytest.approx((2.0 + 2.0 - math.log2(3.0)) / 2, rel=1e-12, abs=0)
    uniform = metric_from_outputs(_task("bpc", output_size=4), np.full((2, 3, 4), 7.0), np.zeros((2, 3), int))
    assert uniform == pytest.approx(2.0, rel=1e-12, abs=0)


def test_rmse_is_in_the_series_units():
    out = np.array([[[9.0], [1.5]], [[9.0], [-2.0]]])  # last steps 1.5 and -2.0 against 0: errors 3, 4 units
    assert metric_from_outputs(_task("rmse", y_scale=2.0), out, np.zeros(2)) == math.sqrt((9 + 16) / 2)
    assert metric_from_outputs(_task("rmse", y_scale=2.0), out, np.array([1.5, -2.0])) == 0.0


def test_chance_metric_of_each_kind():
    acc = _task("accuracy", train_y=[0, 1, 1, 2], valid_y=[1, 1, 0, 2])  # always class 1
    assert chance_metric(acc) == 0.5
    # bpc: add-one training frequencies [3+1, 1+1, 0+1] / 7, scored on valid characters 0 and 2.
    bpc = _task("bpc", train_y=[[0, 0], [0, 1]], valid_y=[[0, 2]])
    assert chance_metric(bpc) == pytest.approx((math.log2(7 / 4) + math.log2(7)) / 2, rel=1e-12, abs=0)
    # rmse: always the training mean 2; errors (0, 2) x y_scale 0.5.
    rmse = _task("rmse", y_scale=0.5, train_y=[1.0, 3.0], valid_y=[2.0, 4.0])
    assert chance_metric(rmse) == math.sqrt(0.5)


def test_near_chance_is_a_tenth_of_the_gap_to_perfect():
    assert NEAR_CHANCE_FRACTION == 0.1
    acc = _task("accuracy", train_y=[0, 1, 1, 2], valid_y=[1, 1, 0, 2])  # chance 0.5: line at 0.55
    assert near_chance(acc, 0.54) and not near_chance(acc, 0.56)
    rmse = _task("rmse", y_scale=0.5, train_y=[1.0, 3.0], valid_y=[2.0, 4.0])  # chance sqrt(.5): line 0.9x
    c = math.sqrt(0.5)
    assert near_chance(rmse, 0.91 * c) and not near_chance(rmse, 0.89 * c)


# --------------------------------------------------------------------------------------------------
# Corrupt or unusable inputs: one TaskError naming the file and what is wrong
def _csv(tmp_path, body: str):
    path = tmp_path / "s.csv"
    path.write_text(body)
    return path


@pytest.mark.parametrize(
    "make, pattern",
    [
        (
            lambda d: _csv(d, "v\n" + "1\n" * 40 + "x\n"),
            r".*s\.csv: line 42: 'x' is not a number \(the last column is the series\)",
        ),
        (
            lambda d: _csv(d, "".join(f"{v}\n" for v in [1.0] * 20 + ["nan"] + [2.0] * 20)),
            r".*s\.csv: the series contains NaN or infinity",
        ),
        (
            lambda d: _csv(d, "3\n" * 70 + "".join(f"{i}\n" for i in range(30))),
            r".*s\.csv: the training part of the series is constant",
        ),
        (
            lambda d: _csv(d, "".join(f"{i}\n" for i in range(20))),
            r".*s\.csv: the valid split has 3 values, fewer than the sequence length \+ 1 \(6\); give a longer series "
            r"or a shorter --seq-len",
        ),
    ],
)
def test_a_corrupt_series_is_one_task_error(tmp_path, make, pattern):
    with pytest.raises(TaskError) as info:
        load_task("timeseries", make(tmp_path), seq_len=5)
    assert re.fullmatch(pattern, str(info.value)), str(info.value)


def test_unusable_task_arguments_are_task_errors(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("x" * 100)  # 90 / 5 / 5 characters
    cases = [
        (
            lambda: load_task("charlm", short, seq_len=8),
            f"{short}: the valid split has 5 characters, fewer than the sequence length + 1 (9); give more text "
            f"or a shorter --seq-len",
        ),
        (lambda: load_task("charlm", short, seq_len=2, char_repeat=0), "char_repeat must be a positive integer, not 0"),
        (
            lambda: load_task("charlm", short, seq_len=2, char_repeat=True),
            "char_repeat must be a positive integer, not True",
        ),
        (
            lambda: load_task("charlm", tmp_path, seq_len=2),
            f"{tmp_path}: a charlm data directory needs ptb.train.txt, ptb.valid.txt, ptb.test.txt; missing "
            f"ptb.train.txt, ptb.valid.txt, ptb.test.txt",
        ),
        (lambda: load_task("timeseries", tmp_path / "none.csv"), f"{tmp_path / 'none.csv'}: data path not found"),
        (lambda: load_task("digits", short), "digits reads sklearn's bundled digits; it takes no --data"),
        (lambda: load_task("digits", seq_len=7), "digits sequences are the 8 rows of an image; --seq-len must be 8"),
        (lambda: load_task("mnist"), "unknown task 'mnist'; choose from digits, charlm, timeseries, classify, regress"),
    ]
    for call, message in cases:
        with pytest.raises(TaskError) as info:
            call()
        assert str(info.value) == message
