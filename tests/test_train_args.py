"""The lists that mirror the training arguments derive from one definition, `nvmlstm.train.args.TrainArgs`:
the resume check's keys, the CLI's options and defaults, the modes; and the task registry (`nvmlstm.tasks`)
and the training recipes (`TASK_DEFAULTS`) name the same tasks."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")  # like every test_train_* file (test_train_without_torch.py counts them as skipped)

from nvmlstm.tasks import METRICS, TASKS  # noqa: E402
from nvmlstm.train import runner  # noqa: E402
from nvmlstm.train.args import MODES, RESUME_KEYS, TASK_DEFAULTS, TrainArgs  # noqa: E402
from nvmlstm.train_cmd import TORCH_INSTALL_HINT, add_train_parser, train_args  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nvmlstm")
    add_train_parser(p.add_subparsers(dest="command"))
    return p


def test_the_task_registry_and_the_training_recipes_name_the_same_tasks():
    assert set(TASKS) == set(TASK_DEFAULTS) == set(METRICS)
    # Every recipe sets the same entries (TrainArgs.resolved reads them by name).
    keys = {frozenset(d) for d in TASK_DEFAULTS.values()}
    assert len(keys) == 1, keys


def test_resume_keys_are_the_fields_that_change_what_a_run_computes():
    names = [f.name for f in dataclasses.fields(TrainArgs)]
    assert [k for k in names if k not in RESUME_KEYS] == ["out", "resume", "progress", "threads"]
    assert list(RESUME_KEYS) == [k for k in names if k in RESUME_KEYS]  # field order: the first difference
    assert runner.MODES is MODES and runner.TASK_DEFAULTS is TASK_DEFAULTS and runner.TrainArgs is TrainArgs


def test_the_cli_defaults_are_trainargs_defaults():
    args = _parser().parse_args(["train", "--task", "digits", "--mode", "fp", "--out", "run"])
    assert train_args(args) == TrainArgs(task="digits", mode="fp", out="run")
    train = add_train_parser(argparse.ArgumentParser().add_subparsers())
    mode = next(a for a in train._actions if a.dest == "mode")
    assert tuple(mode.choices) == MODES


# Every option of `nvmlstm train` as (its words on the command line, its TrainArgs field, the value it gives),
# each value away from the field's default.
EVERY_OPTION = [
    ("--task charlm", "task", "charlm"),
    ("--mode qat", "mode", "qat"),
    ("--out r", "out", "r"),
    ("--data d.txt", "data", "d.txt"),
    ("--weight-bits 5", "weight_bits", 5),
    ("--dac-bits 6", "dac_bits", 6),
    ("--adc-bits 7", "adc_bits", 7),
    ("--head-adc-bits 8", "head_adc_bits", 8),
    ("--array-rows 16", "array_rows", 16),
    ("--array-cols 48", "array_cols", 48),
    ("--weight-noise 0.1", "weight_noise", 0.1),
    ("--adc-noise 0.2", "adc_noise", 0.2),
    ("--epochs 3", "epochs", 3),
    ("--fp-epochs 2", "fp_epochs", 2),
    ("--no-learn-weight-scales", "learn_weight_scales", False),
    ("--char-repeat 2", "char_repeat", 2),
    ("--seed 9", "seed", 9),
    ("--hidden 12", "hidden", 12),
    ("--batch-size 7", "batch_size", 7),
    ("--lr 0.5", "lr", 0.5),
    ("--seq-len 11", "seq_len", 11),
    ("--init-from f.pt", "init_from", "f.pt"),
    ("--resume", "resume", True),
    ("--threads 0", "threads", None),
    ("--no-progress", "progress", False),
]


def test_every_cli_option_reaches_its_field():
    argv = ["train", *(word for words, _, _ in EVERY_OPTION for word in words.split())]
    got = train_args(_parser().parse_args(argv))
    want = TrainArgs(**{field: value for _, field, value in EVERY_OPTION})
    assert got == want
    # Every field differs from its default here: no option is left out of the mapping.
    default = TrainArgs(task="digits", mode="fp", out="run")
    assert [f.name for f in dataclasses.fields(TrainArgs) if getattr(got, f.name) == getattr(default, f.name)] == []


def test_one_torch_install_hint():
    """The hint installs the build the Makefile installs (its TORCH_SPEC default), and the flow says the same."""
    import re
    from pathlib import Path

    import nvmlstm.flow as flow

    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    spec = re.search(r"^TORCH_SPEC \?= (\S+)$", makefile, re.M).group(1)
    assert TORCH_INSTALL_HINT == f"pip install {spec}"
    assert flow.TORCH_INSTALL_HINT is TORCH_INSTALL_HINT


def test_the_arguments_import_without_torch():
    code = (
        "import sys\nsys.modules['torch'] = None\nimport nvmlstm.train as t\nfrom nvmlstm.train.args import MODES\n"
        "print(MODES, t.TrainArgs.__name__)\n"
        "try:\n    t.QuantLSTM\nexcept ModuleNotFoundError as e:\n    print('lazy', e.name)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert (res.returncode, res.stdout) == (0, "('fp', 'ptq', 'qat') TrainArgs\nlazy torch\n"), res.stderr
