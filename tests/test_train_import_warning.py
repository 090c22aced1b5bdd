"""An imported float model that scores near chance gets one warning line (its inputs were probably scaled
differently); a good one gets none. The chance line itself is checked on known data."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from nvmlstm.tasks import TaskData  # noqa: E402
from nvmlstm.tasks.baseline import chance_metric, near_chance  # noqa: E402


def test_chance_metric_of_each_kind():
    def td(metric, ytr, yva, out=3, y_scale=1.0):
        x = np.zeros((len(ytr), 1, 1), np.float32)
        return TaskData(
            "t",
            metric,
            1,
            out,
            False,
            (x, np.asarray(ytr)),
            (x[: len(yva)], np.asarray(yva)),
            (x, np.asarray(ytr)),
            y_scale=y_scale,
        )

    assert chance_metric(td("accuracy", [0, 1, 1, 2], [1, 1, 0, 2])) == 0.5  # always class 1
    # unigram with add-one: counts 1+1, 2+1, 1+1 over 7 -> p(1) = 3/7
    assert math.isclose(chance_metric(td("bpc", [0, 1, 1, 2], [1])), -math.log2(3 / 7))
    assert math.isclose(chance_metric(td("rmse", [0.0, 2.0], [1.0, 3.0], y_scale=2.0)), math.sqrt(((0**2) + 4**2) / 2))
    t = td("accuracy", [0, 1, 1, 2], [1, 1, 0, 2])
    assert near_chance(t, 0.5) and near_chance(t, 0.54) and not near_chance(t, 0.56)


def _runs(tmp_path, init):
    from nvmlstm.train.runner import TrainArgs, run_training

    lines: list[str] = []
    run_training(
        TrainArgs(
            task="digits",
            mode="ptq",
            out=str(tmp_path / f"ptq-{init.stem}"),
            hidden=8,
            init_from=str(init),
            progress=False,
        ),
        log=lines.append,
    )
    return [s for s in lines if s.startswith("warning:")]


def test_warning_for_a_model_near_chance_and_none_for_a_trained_one(tmp_path):
    from nvmlstm.train.runner import TrainArgs, run_training

    fp = tmp_path / "fp"
    run_training(
        TrainArgs(task="digits", mode="fp", out=str(fp), hidden=8, epochs=5, progress=False), log=lambda s: None
    )
    assert _runs(tmp_path, fp / "float_model.pt") == []
    # The same trained model, but fed inputs scaled 0..16 instead of [-1, 1]: weights that expect 16x larger
    # inputs are what a user with other scaling imports. Simulated by scaling its input weights by 1/16.
    sd = torch.load(fp / "float_model.pt", weights_only=True)
    sd = {k: (v / 16 if k == "lstm.weight_ih_l0" else v) for k, v in sd.items()}
    bad = tmp_path / "scaled.pt"
    torch.save(sd, bad)
    warn = _runs(tmp_path, bad)
    assert len(warn) == 1, warn
    assert warn[0].startswith(f"warning: the float model from {bad} scores accuracy ")
    assert "near chance" in warn[0] and "[-1, 1]" in warn[0]
