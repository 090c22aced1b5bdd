"""Command-line polish: the command list, --version, help on every option, Ctrl-C, a closed stdout, and
`golden` refusing someone else's directory."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from cli_helpers import run

from nvmlstm.cli import build_parser

EXE = Path(sys.executable).with_name("nvmlstm")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_nvmlstm_alone_lists_every_command(capsys):
    rc, out, err = run(capsys)
    assert (rc, err) == (0, "")
    names = _subcommands(build_parser())
    assert {"golden", "flow", "generate", "train", "sim", "bench"} <= set(names)
    for name in names:
        assert f"    {name} " in out, name


def test_version(capsys):
    rc, out, err = run(capsys, "--version")
    assert (rc, out, err) == (0, f"nvmlstm {version('nvm-lstm')}\n", "")


def test_every_option_of_every_subcommand_has_help():
    parser = build_parser()
    missing = [
        f"{name} {'/'.join(a.option_strings) or a.dest}"
        for name, sp in [("nvmlstm", parser), *_subcommands(parser).items()]
        for a in sp._actions
        if not isinstance(a, argparse._SubParsersAction) and not (a.help or "").strip()
    ]
    assert missing == []


def test_the_help_checker_sees_a_missing_help():
    # The checker above can fail: an option without help text is found.
    p = argparse.ArgumentParser()
    p.add_argument("--bare")
    assert [a.dest for a in p._actions if not (a.help or "").strip()] == ["bare"]


def test_ctrl_c_is_one_line(capsys, monkeypatch, tmp_path):
    import nvmlstm.cli as cli_mod

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_mod, "cmd_golden", interrupted)
    rc, out, err = run(capsys, "golden", "--config", tmp_path / "c.json", "--random-weights", "--out", tmp_path / "o")
    assert rc == 130
    assert err == "\nnvmlstm golden: interrupted\n"


def test_ctrl_c_in_train_names_the_resume_command(capsys, monkeypatch, tmp_path):
    pytest.importorskip("torch")
    import nvmlstm.train.runner as runner

    out = tmp_path / "run"

    def interrupted(a, **kw):
        Path(a.out).mkdir()
        (Path(a.out) / "checkpoint.pt").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_training", interrupted)
    rc, _, err = run(capsys, "train", "--task", "digits", "--mode", "fp", "--epochs", "3", "--out", out)
    assert rc == 130
    assert err == (
        f"\nnvmlstm train: interrupted; continue with: nvmlstm train --task digits --mode fp --epochs 3 "
        f"--out {out} --resume\n"
    )
    monkeypatch.setattr(runner, "run_training", lambda a, **kw: (_ for _ in ()).throw(KeyboardInterrupt))
    rc, _, err = run(capsys, "train", "--task", "digits", "--mode", "fp", "--out", tmp_path / "fresh")
    assert (rc, err) == (130, "\nnvmlstm train: interrupted before the first checkpoint; nothing to resume\n")


def _small_config(path: Path) -> Path:
    """A small valid config file at ``path``."""
    shape = dict(input_size=3, hidden_size=4, num_layers=1, output_size=2, weight_bits=4, dac_bits=4, adc_bits=4)
    path.write_text(json.dumps({**shape, "array_rows": 8, "array_cols": 8}))
    return path


def _into_closed_pipe(*cmd) -> subprocess.CompletedProcess:
    """Run ``cmd`` with its stdout into ``head -c 1``, which closes the pipe after one byte; pipefail
    reports the command's own exit status."""
    return subprocess.run(
        ["bash", "-c", 'set -o pipefail; "$@" | head -c 1 >/dev/null', "sh", *cmd],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_closed_stdout_is_not_an_error(tmp_path):
    cfg = _small_config(tmp_path / "c.json")
    out = tmp_path / "vec"
    for cmd in (
        [str(EXE), "--help"],
        [str(EXE), "golden", "--config", str(cfg), "--random-weights", "--sequences", "2", "--out", str(out)],
    ):
        res = _into_closed_pipe(*cmd)
        assert (res.returncode, res.stderr) == (0, ""), res.stderr
    assert (out / "vectors.npz").is_file()  # the work was finished although nobody read the output
    # Without the guard the same pipe is an error (the check can fail): a plain print into a closed pipe.
    res = _into_closed_pipe(sys.executable, "-c", "import sys\nfor i in range(100000): print('x' * 80)")
    assert res.returncode != 0 and "BrokenPipeError" in res.stderr


def test_golden_refuses_someone_elses_directory(capsys, tmp_path):
    cfg = _small_config(tmp_path / "c.json")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    rc, stdout, err = run(capsys, "golden", "--config", cfg, "--random-weights", "--out", out)
    assert (rc, stdout) == (2, "")
    assert err == (
        f"nvmlstm golden: error: {out}: directory is not empty and not an earlier `nvmlstm golden` "
        f"output (found notes.txt); give a new or empty directory\n"
    )
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    # Its own earlier output is rewritten in place.
    (out / "notes.txt").unlink()
    assert run(capsys, "golden", "--config", cfg, "--random-weights", "--out", out)[0] == 0
    assert run(capsys, "golden", "--config", cfg, "--random-weights", "--seed", "1", "--out", out)[0] == 0
