"""nvmlstm train end to end: accuracy of a short QAT run, PyTorch eval == golden bit for bit on whole test
sets, bit-exact resume, the state-dict import through the CLI, and the one-line error contract."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # torch is optional: without it these tests are skipped

from config_helpers import digits_resume_argv  # noqa: E402

from nvmlstm.cli import main  # noqa: E402
from nvmlstm.golden.io import load_model  # noqa: E402
from nvmlstm.golden.lstm import golden_forward  # noqa: E402
from nvmlstm.golden.realio import input_codes as _codes  # noqa: E402  (the one definition)
from nvmlstm.tasks import SMALL_DATA, load_task  # noqa: E402
from nvmlstm.train.exact import exact_forward  # noqa: E402
from nvmlstm.train.runner import TrainArgs, run_training  # noqa: E402


def _run(tmp_path: Path, name: str, **kw) -> tuple[Path, dict]:
    out = tmp_path / name
    m = run_training(TrainArgs(out=str(out), progress=False, **kw))
    return out, m


@pytest.fixture(scope="module")
def digits_qat(tmp_path_factory):
    """A short QAT run on digits from scratch (the default 4/4/4, H=32, 32x64 arrays), timed."""
    t0 = time.perf_counter()
    out, m = _run(tmp_path_factory.mktemp("digits"), "qat", task="digits", mode="qat", epochs=20, seed=0, fp_epochs=0)
    return out, m, time.perf_counter() - t0


def test_short_qat_on_digits_reaches_90_percent_within_a_minute(digits_qat):
    out, m, seconds = digits_qat
    assert m["metric_name"] == "accuracy"
    assert m["test_metric"] >= 0.90, m["test_metric"]
    assert seconds < 60.0
    assert m["golden_test_metric"] == m["test_metric"]
    for f in ("model.npz", "model.json", "metrics.json", "curve.png", "checkpoint.pt", "float_model.pt"):
        assert (out / f).is_file(), f
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["test_metric"] == m["test_metric"]
    assert len(on_disk["history"]) == 20


def test_pytorch_eval_equals_golden_on_the_full_digits_test_set(digits_qat):
    out, m, _ = digits_qat
    qm = load_model(out / "model.npz")
    x, y = load_task("digits").test
    codes = _codes(qm, x)
    assert codes.shape == (359, 8, 8)
    torch_codes = exact_forward(qm, codes).numpy()
    gold = golden_forward(qm, codes, trace=False)["outputs"]
    assert np.array_equal(torch_codes, gold)  # every output code of every step of every test image
    assert np.array_equal(np.argmax(torch_codes[:, -1], 1), np.argmax(gold[:, -1], 1))
    assert m["golden_matches_torch_eval"] is True


@pytest.mark.parametrize("task,kw", [("charlm", {"hidden": 16, "seq_len": 32}), ("timeseries", {"hidden": 12})])
def test_pytorch_eval_equals_golden_on_other_tasks(tmp_path, task, kw):
    # The small shipped files keep this fast; the recipe's two phases: 2 float epochs, then 1 QAT epoch.
    data = str(SMALL_DATA[task])
    out, m = _run(tmp_path, task, task=task, mode="qat", epochs=1, fp_epochs=2, seed=1, data=data, **kw)
    assert m["golden_matches_torch_eval"] is True  # whole test split, computed by run_training
    assert m["golden_test_metric"] == m["test_metric"]
    assert m["float_run"]["epochs"] == 2 and (out / "float" / "float_model.pt").is_file()
    assert m["learn_weight_scales"] is True  # the recipe's default
    qm = load_model(out / "model.npz")
    x, _ = load_task(task, data, seq_len=kw.get("seq_len")).test
    idx = np.random.default_rng(0).choice(len(x), size=min(16, len(x)), replace=False)
    codes = _codes(qm, x[idx])
    assert np.array_equal(exact_forward(qm, codes).numpy(), golden_forward(qm, codes, trace=False)["outputs"])


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    # Noise-aware QAT: shuffling, weight noise and ADC noise all draw random numbers across epochs.
    kw = dict(task="digits", mode="qat", epochs=3, seed=5, hidden=8, weight_noise=0.05, adc_noise=0.3, fp_epochs=0)
    full, m_full = _run(tmp_path, "full", **kw)
    part = tmp_path / "part"
    r = run_training(TrainArgs(out=str(part), progress=False, **kw), stop_after_epoch=1)
    assert r == {"interrupted_after_epoch": 1}
    assert not (part / "model.npz").exists()
    m_res = run_training(TrainArgs(out=str(part), progress=False, resume=True, **kw), log=lambda s: None)
    a = torch.load(full / "float_model.pt")
    b = torch.load(part / "float_model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (full / "model.npz").read_bytes() == (part / "model.npz").read_bytes()
    assert m_res["test_metric"] == m_full["test_metric"]
    assert [h["train_loss"] for h in m_res["history"]] == [h["train_loss"] for h in m_full["history"]]


def test_recipe_resume_after_the_float_phase_gives_the_same_model(tmp_path):
    # The default qat recipe: float pre-training in RUN_DIR/float, then QAT from its best weights. Interrupted
    # in the QAT phase and resumed, it ends with the same model as an uninterrupted run.
    kw = dict(task="digits", mode="qat", epochs=2, fp_epochs=2, seed=3, hidden=8)
    full, m_full = _run(tmp_path, "full", **kw)
    part = tmp_path / "part"
    assert run_training(TrainArgs(out=str(part), progress=False, **kw), stop_after_epoch=1, log=lambda s: None) == {
        "interrupted_after_epoch": 1
    }
    assert (part / "float" / "metrics.json").is_file() and not (part / "model.npz").exists()
    m_res = run_training(TrainArgs(out=str(part), progress=False, resume=True, **kw), log=lambda s: None)
    assert (full / "model.npz").read_bytes() == (part / "model.npz").read_bytes()
    assert m_res["test_metric"] == m_full["test_metric"]
    float_metrics = json.loads((full / "float" / "metrics.json").read_text())
    assert m_full["float_run"]["test_metric"] == float_metrics["test_metric"]


def test_init_from_a_torch_state_dict_through_the_cli(tmp_path, capsys):
    torch.manual_seed(0)
    lstm, head = torch.nn.LSTM(8, 16), torch.nn.Linear(16, 10)
    sd = tmp_path / "float.pt"
    torch.save({"lstm": lstm.state_dict(), "head": head.state_dict()}, sd)
    out = tmp_path / "ptq"
    rc = main(
        [
            "train",
            "--task",
            "digits",
            "--mode",
            "ptq",
            "--hidden",
            "16",
            "--init-from",
            str(sd),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs"] == 0  # ptq from a given float model: no training
    saved = torch.load(out / "float_model.pt")
    assert torch.equal(saved["lstm.weight_hh_l0"], lstm.weight_hh_l0.detach())
    assert m["golden_matches_torch_eval"] is True


def _error(capsys, tmp_path, argv, pattern):
    out = tmp_path / "run"
    rc = main(["train", *argv, "--out", str(out), "--no-progress"])
    cap = capsys.readouterr()
    assert rc == 2
    assert cap.out == ""
    assert cap.err.count("\n") == 1, cap.err
    line = cap.err.rstrip("\n")
    assert line.startswith("nvmlstm train: error: ")
    assert re.search(pattern, line), line
    assert not out.exists()


@pytest.mark.parametrize(
    "argv,pattern",
    [
        (
            ["--task", "charlm", "--mode", "fp", "--data", "/nonexistent/text.txt"],
            r"/nonexistent/text.txt: data path not found",
        ),
        (
            ["--task", "charlm", "--mode", "fp", "--data", str(SMALL_DATA["charlm"]), "--seq-len", "900"],
            r"fewer than the sequence length \+ 1 \(901\)",
        ),
        (["--task", "poetry", "--mode", "fp"], r"argument --task: invalid choice: 'poetry'"),
        (
            ["--task", "digits", "--mode", "qat", "--adc-bits", "17"],
            r"argument --adc-bits: expected an integer from 2 to 16",
        ),
        (["--task", "digits", "--mode", "qat", "--weight-bits", "1"], r"argument --weight-bits"),
        (["--task", "digits", "--mode", "fp", "--resume"], r"no checkpoint to resume from"),
        (["--task", "digits", "--mode", "fp", "--adc-noise", "0.5"], r"use them with --mode qat"),
        (["--task", "timeseries", "--mode", "fp", "--seq-len", "400"], r"the train split has 216 values"),
        (
            ["--task", "timeseries", "--mode", "fp", "--data", str(SMALL_DATA["timeseries"]), "--seq-len", "400"],
            r"the valid split has 360 values",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, pattern):
    _error(capsys, tmp_path, argv, pattern)


def test_init_from_of_another_config_is_one_line(capsys, tmp_path):
    torch.manual_seed(0)
    sd = tmp_path / "h24.pt"
    torch.save({"lstm": torch.nn.LSTM(8, 24).state_dict(), "head": torch.nn.Linear(24, 10).state_dict()}, sd)
    _error(
        capsys,
        tmp_path,
        ["--task", "digits", "--mode", "qat", "--hidden", "16", "--init-from", str(sd)],
        r"lstm.weight_ih_l0 has shape \(96, 8\), this network needs \(64, 8\)",
    )
    bad = tmp_path / "junk.pt"
    bad.write_text("not a state dict")
    _error(
        capsys,
        tmp_path,
        ["--task", "digits", "--mode", "qat", "--init-from", str(bad)],
        r"not a readable PyTorch state dict",
    )


def test_resume_with_other_arguments_is_refused(capsys, tmp_path):
    out = tmp_path / "run"
    r = run_training(
        TrainArgs(task="digits", mode="fp", out=str(out), epochs=2, hidden=4, progress=False), stop_after_epoch=1
    )
    assert r == {"interrupted_after_epoch": 1}
    rc = main(digits_resume_argv(8, out))
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "--resume: hidden is 8 but the checkpoint" in err


def test_unreadable_task_data_is_one_line(tmp_path):
    """Task data goes through the project's one text reader: the same wording as config files and manifests."""
    from nvmlstm.tasks import TaskError

    bad = tmp_path / "series.csv"
    bad.write_bytes(b"\xff1,2\n")
    with pytest.raises(TaskError, match=rf"^{re.escape(str(bad))}: data file is not UTF-8 text \(byte 0\)$"):
        load_task("timeseries", bad)
    with pytest.raises(TaskError, match=rf"^{re.escape(str(tmp_path))}: cannot read data file: Is a directory$"):
        load_task("timeseries", tmp_path)
