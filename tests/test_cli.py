"""The ``nvmlstm`` command line: outputs, determinism, the one-line error contract, no leftovers."""

from __future__ import annotations

import getpass
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_command_error, assert_error, run

from nvmlstm.cli import main
from nvmlstm.golden.config import REQUIRED_KEYS, default_config
from nvmlstm.golden.io import load_model, load_vectors

FILES = ("vectors.npz", "vectors.json", "model.npz", "model.json")

# The built-in default (I=8, H=32, L=1, O=10, 4/4/4 bits, 32x64 arrays): two row tiles per matrix.
DEFAULT = default_config().to_dict()


def write_config(path: Path, **changes) -> Path:
    cfg = {k: DEFAULT[k] for k in REQUIRED_KEYS}
    cfg.update(changes)
    path.write_text(json.dumps(cfg))
    return path


def golden(capsys, cfg: Path, out: Path, *extra) -> str:
    rc, stdout, err = run(capsys, "golden", "--config", cfg, "--random-weights", "--out", out, *extra)
    assert (rc, err) == (0, ""), err
    return stdout


def file_bytes(d: Path) -> dict[str, bytes]:
    return {n: (d / n).read_bytes() for n in FILES}


@pytest.fixture
def cfg_file(tmp_path) -> Path:
    return write_config(tmp_path / "config.json")


@pytest.fixture
def first_run(tmp_path, cfg_file, capsys) -> Path:
    out = tmp_path / "first"
    golden(capsys, cfg_file, out, "--seed", "3", "--sequences", "4", "--steps", "6")
    return out


# --------------------------------------------------------------------------------------------------
# golden: what it writes
def test_golden_writes_the_four_files(tmp_path, cfg_file, capsys):
    out = tmp_path / "vec"
    stdout = golden(capsys, cfg_file, out, "--seed", "1", "--sequences", "3", "--steps", "5")
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "vec"]  # no temp dirs
    assert "3 sequences x 5 steps" in stdout
    doc, arrays = load_vectors(out)
    model = load_model(out / "model.npz")
    assert doc["config"] == model.config == default_config()
    assert doc["model_sha256"] == model.digest()
    assert (doc["sequences"], doc["steps"]) == (3, 5)
    assert arrays["inputs"].shape == (3, 5, 8)
    assert arrays["outputs"].shape == (3, 5, 10)
    assert arrays["l0_adc"].shape == (3, 5, 2, 128)


def test_golden_default_sequences_and_steps(tmp_path, cfg_file, capsys):
    out = tmp_path / "vec"
    golden(capsys, cfg_file, out)
    doc, arrays = load_vectors(out)
    assert (doc["sequences"], doc["steps"]) == (8, 16)  # the documented defaults


def test_golden_same_arguments_give_identical_bytes(tmp_path, cfg_file, capsys, first_run):
    args = ("--seed", "3", "--sequences", "4", "--steps", "6")
    second = tmp_path / "second"
    golden(capsys, cfg_file, second, *args)
    assert file_bytes(first_run) == file_bytes(second)
    # running again into the existing directory replaces the files with the same bytes
    before = file_bytes(first_run)
    golden(capsys, cfg_file, first_run, *args)
    assert file_bytes(first_run) == before
    assert sorted(p.name for p in first_run.iterdir()) == sorted(FILES)


def test_golden_different_seed_gives_different_vectors(tmp_path, cfg_file, capsys, first_run):
    other = tmp_path / "other"
    golden(capsys, cfg_file, other, "--seed", "4", "--sequences", "4", "--steps", "6")
    _, a = load_vectors(first_run)
    _, b = load_vectors(other)
    assert not np.array_equal(a["inputs"], b["inputs"])
    assert not np.array_equal(a["outputs"], b["outputs"])
    assert load_model(first_run / "model.npz").digest() != load_model(other / "model.npz").digest()


def test_golden_from_model_file_reproduces_the_vectors(tmp_path, capsys, first_run):
    again = tmp_path / "again"
    rc, _, err = run(
        capsys,
        "golden",
        "--model",
        first_run / "model.npz",
        "--seed",
        "3",
        "--sequences",
        "4",
        "--steps",
        "6",
        "--out",
        again,
    )
    assert (rc, err) == (0, "")
    assert (again / "vectors.npz").read_bytes() == (first_run / "vectors.npz").read_bytes()
    assert (again / "model.npz").read_bytes() == (first_run / "model.npz").read_bytes()
    doc_a = json.loads((first_run / "vectors.json").read_text())
    doc_b = json.loads((again / "vectors.json").read_text())
    assert doc_a["arrays"] == doc_b["arrays"] and doc_a["model_sha256"] == doc_b["model_sha256"]
    assert doc_b["metadata"]["model"] == {"kind": "file", "file": "model.npz"}


def test_golden_inputs_file(tmp_path, capsys, first_run):
    x = np.array([[[7, -7, 0, 1, 2, 3, -1, 5]], [[-7, -7, -7, -7, 7, 7, 7, 7]]], dtype=np.int16)  # (2, 1, 8)
    xf = tmp_path / "x.npy"
    np.save(xf, x)
    out = tmp_path / "fromfile"
    rc, _, err = run(capsys, "golden", "--model", first_run / "model.npz", "--inputs", xf, "--out", out)
    assert (rc, err) == (0, "")
    doc, arrays = load_vectors(out)
    assert (doc["sequences"], doc["steps"]) == (2, 1)
    assert arrays["inputs"].tolist() == x.tolist()
    assert doc["metadata"]["inputs"] == {"kind": "file", "file": "x.npy"}
    # also with a random model from a config
    out2 = tmp_path / "fromfile2"
    golden(capsys, tmp_path / "config.json", out2, "--inputs", xf)
    assert load_vectors(out2)[1]["inputs"].tolist() == x.tolist()


def test_golden_files_hold_no_paths_users_or_times(tmp_path, capsys):
    # run from another working directory with a nested relative --out
    cfg = write_config(tmp_path / "config.json")
    xf = tmp_path / "inputs.npy"
    np.save(xf, np.zeros((1, 2, 8), dtype=np.int64))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        golden(capsys, cfg, Path("sub") / "out", "--seed", "2", "--sequences", "2", "--steps", "3")
        rc, _, err = run(
            capsys,
            "golden",
            "--model",
            tmp_path / "sub" / "out" / "model.npz",
            "--inputs",
            xf,
            "--out",
            tmp_path / "abs",
        )
        assert (rc, err) == (0, "")
    finally:
        os.chdir(cwd)
    user = getpass.getuser()
    now = time.time()
    texts = [
        (d / n).read_text()
        for d in (tmp_path / "sub" / "out", tmp_path / "abs")
        for n in ("vectors.json", "model.json")
    ]
    for text in texts:
        assert str(tmp_path) not in text
        assert os.path.expanduser("~") not in text or os.path.expanduser("~") == "/"
        strings: list[str] = []
        numbers: list[float] = []
        _walk(json.loads(text), strings, numbers)
        for s in strings:
            assert not s.startswith("/"), s
            assert not re.search(rf"(^|[^A-Za-z0-9]){re.escape(user)}([^A-Za-z0-9]|$)", s), s
            assert not re.search(r"\d{4}-\d\d-\d\d|\d\d:\d\d(:\d\d)?", s), s
        for v in numbers:  # no epoch seconds or milliseconds of the last ten years
            assert not (now - 3.2e8 < v < now + 1e5), v
            assert not (1e3 * (now - 3.2e8) < v < 1e3 * (now + 1e5)), v


def _walk(doc, strings, numbers):
    if isinstance(doc, dict):
        for k, v in doc.items():
            strings.append(k)
            _walk(v, strings, numbers)
    elif isinstance(doc, list):
        for v in doc:
            _walk(v, strings, numbers)
    elif isinstance(doc, str):
        strings.append(doc)
    elif isinstance(doc, (int, float)) and not isinstance(doc, bool):
        numbers.append(float(doc))


# --------------------------------------------------------------------------------------------------
# golden: errors (exit 2, one line, no DIR)
def golden_file_error(capsys, args: list, out: Path, file: Path, message: str) -> str:
    """``nvmlstm golden *args --out out`` fails by the error contract with ``{file}: {message}`` (a regex)."""
    return assert_command_error(capsys, "golden", args, out, rf"{re.escape(str(file))}: {message}")


def test_error_missing_config(tmp_path, capsys):
    out, missing = tmp_path / "out", tmp_path / "nope.json"
    golden_file_error(capsys, ["--config", missing, "--random-weights"], out, missing, "config file not found")


def test_error_bad_config(tmp_path, capsys):
    out = tmp_path / "out"
    bad = write_config(tmp_path / "bad.json", adc_bits=1)
    args = ["--config", bad, "--random-weights"]
    golden_file_error(capsys, args, out, bad, "adc_bits must be an integer from 2 to 16, not 1")
    bad.write_text('{"input_size": 8,}')
    golden_file_error(capsys, args, out, bad, "config file is not valid JSON: .* at line 1 column 18")
    bad.write_bytes(b"\xff\xfe{}")
    golden_file_error(capsys, args, out, bad, r"config file is not UTF-8 text \(byte 0\)")


def test_error_config_without_random_weights(tmp_path, cfg_file, capsys):
    message = r"--config needs --random-weights \(or give a trained model with --model MODEL\.npz\)"
    assert_command_error(capsys, "golden", ["--config", cfg_file], tmp_path / "out", message)


def test_error_random_weights_with_model(tmp_path, capsys, first_run):
    message = "--random-weights goes with --config, not with --model"
    assert_command_error(
        capsys, "golden", ["--model", first_run / "model.npz", "--random-weights"], tmp_path / "out", message
    )


def test_error_inputs_with_sequences(tmp_path, cfg_file, capsys):
    xf = tmp_path / "x.npy"
    np.save(xf, np.zeros((1, 1, 8), dtype=np.int64))
    message = "--inputs gives the sequences; do not combine it with --sequences/--steps"
    for extra in (["--sequences", "2"], ["--steps", "2"]):
        args = ["--config", cfg_file, "--random-weights", "--inputs", xf, *extra]
        assert_command_error(capsys, "golden", args, tmp_path / "out", message)


def test_error_inputs_out_of_dac_range(tmp_path, cfg_file, capsys):
    x = np.zeros((3, 4, 8), dtype=np.int32)
    x[2, 1, 5] = 8
    x[2, 3, 0] = -9
    out, xf = tmp_path / "out", tmp_path / "x.npy"
    args = ["--config", cfg_file, "--random-weights", "--inputs", xf]
    outside = r"is outside the 4-bit DAC range \[-7, 7\]"
    np.save(xf, x)
    golden_file_error(capsys, args, out, xf, f"code 8 at sequence 2, step 1, input 5 {outside}")
    x[2, 1, 5] = 0  # the next bad one
    np.save(xf, x)
    golden_file_error(capsys, args, out, xf, f"code -9 at sequence 2, step 3, input 0 {outside}")


@pytest.mark.parametrize(
    "arr, pattern",
    [
        (
            np.zeros((2, 3, 7), dtype=np.int64),
            r"shape \(2, 3, 7\), expected \(sequences, steps, 8\) with at least one "
            r"sequence and one step",
        ),
        (np.zeros((3, 8), dtype=np.int64), r"shape \(3, 8\), expected \(sequences, steps, 8\)"),
        (np.zeros((0, 3, 8), dtype=np.int64), r"shape \(0, 3, 8\), expected \(sequences, steps, 8\)"),
        (np.zeros((1, 3, 8)), r"dtype float64 is not an integer dtype \(DAC codes are integers\)"),
    ],
    ids=["features", "ndim", "empty", "float"],
)
def test_error_inputs_wrong_shape_or_dtype(tmp_path, cfg_file, capsys, arr, pattern):
    out, xf = tmp_path / "out", tmp_path / "x.npy"
    np.save(xf, arr)
    golden_file_error(capsys, ["--config", cfg_file, "--random-weights", "--inputs", xf], out, xf, f"{pattern}.*")


def test_error_inputs_file_unreadable(tmp_path, cfg_file, capsys):
    out = tmp_path / "out"
    args = ["--config", cfg_file, "--random-weights", "--inputs"]
    xf = tmp_path / "x.npy"
    golden_file_error(capsys, [*args, xf], out, xf, "inputs file not found")
    xf.write_bytes(b"garbage")
    golden_file_error(capsys, [*args, xf], out, xf, r"not a readable \.npy file \(.*\)")
    xz = tmp_path / "x.npz"
    np.savez(xz, x=np.zeros((1, 1, 8), dtype=np.int64))
    golden_file_error(capsys, [*args, xz], out, xz, r"expected a \.npy array of input codes, not an \.npz archive")


def test_error_corrupted_model_file(tmp_path, capsys, first_run):
    out = tmp_path / "out"
    model = first_run / "model.npz"
    with np.load(model) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["head_weights"] = arrays["head_weights"].copy()
    arrays["head_weights"][0, 0] = 1 if arrays["head_weights"][0, 0] != 1 else 2
    np.savez(model, **arrays)
    sha = r"array head_weights does not match the sha256 in its manifest \(corrupted or edited\)"
    golden_file_error(capsys, ["--model", model], out, model, sha)
    model.write_bytes(b"\x00" * 100)
    golden_file_error(capsys, ["--model", model], out, model, r"not a readable \.npz file \(.*\)")
    (first_run / "model.json").unlink()
    golden_file_error(capsys, ["--model", model], out, first_run / "model.json", "manifest not found .*")


def test_error_usage_is_one_line_too(tmp_path, cfg_file, capsys):
    out = tmp_path / "out"
    assert_error(
        capsys,
        ["golden", "--out", out],
        r"nvmlstm golden: error: one of the arguments --config --model is required",
        absent=out,
    )
    assert_error(
        capsys,
        ["golden", "--config", cfg_file, "--random-weights", "--out", out, "--steps", "0"],
        r"nvmlstm golden: error: argument --steps: expected a positive integer, not 0",
        absent=out,
    )
    assert_error(
        capsys,
        ["golden", "--config", cfg_file, "--random-weights", "--out", out, "--seed", "-1"],
        r"nvmlstm golden: error: argument --seed: expected a non-negative integer, not '-1'",
        absent=out,
    )
    assert_command_error(
        capsys,
        "golden",
        ["--config", cfg_file, "--model", "m.npz"],
        out,
        r"argument --model: not allowed with argument --config",
    )


def test_error_out_is_a_file(tmp_path, cfg_file, capsys):
    out = tmp_path / "out"
    out.write_text("keep me")
    rc, _, err = run(capsys, "golden", "--config", cfg_file, "--random-weights", "--out", out)
    assert rc == 2
    assert err == f"nvmlstm golden: error: {out}: exists and is not a directory\n"
    assert out.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "out"]


def test_subprocess_entry_point(tmp_path, cfg_file):
    """The installed command behaves like main(): files, exit status 0; one stderr line and 2 on error."""
    exe = Path(sys.executable).with_name("nvmlstm")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "nvmlstm.cli"]

    def entry_point(*argv):
        return subprocess.run([*cmd, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120)

    args = ["golden", "--config", str(cfg_file), "--random-weights", "--seed", "3", "--sequences", "4", "--steps", "6"]
    out = tmp_path / "sp"
    ok = entry_point(*args, "--out", str(out))
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    # the same bytes as an in-process run with the same arguments
    ref = tmp_path / "inproc"
    assert main([*args, "--out", str(ref)]) == 0
    assert file_bytes(out) == file_bytes(ref)
    bad = entry_point(
        "golden", "--config", str(tmp_path / "missing.json"), "--random-weights", "--out", str(tmp_path / "bad")
    )
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr == f"nvmlstm golden: error: {tmp_path / 'missing.json'}: config file not found\n"
    assert not (tmp_path / "bad").exists()


# --------------------------------------------------------------------------------------------------
# Coverage of the datapath by the default vectors
def test_default_vectors_exercise_the_datapath(tmp_path, cfg_file, capsys):
    out = tmp_path / "cov"
    golden(capsys, cfg_file, out, "--seed", "0")  # default config, random model, default 8 x 16 inputs
    doc, arrays = load_vectors(out)
    cfg = doc["config"]
    adc = arrays["l0_adc"]
    codes, counts = np.unique(adc, return_counts=True)
    hist = dict(zip(codes.tolist(), counts.tolist()))
    assert set(hist) <= set(range(-cfg.adc_max, cfg.adc_max + 1))
    assert cfg.adc_max in hist and -cfg.adc_max in hist and 0 in hist  # both rails and zero
    assert len(hist) >= 10
    rails = hist[cfg.adc_max] + hist[-cfg.adc_max]
    assert rails < 0.5 * adc.size  # not all saturated
    idx = arrays["l0_idx"]
    assert idx.min() >= cfg.lut_min and idx.max() <= cfg.lut_max
    assert np.any(idx == cfg.lut_min) or np.any(idx == cfg.lut_max)  # some indices at the table ends
    assert not np.all((idx == cfg.lut_min) | (idx == cfg.lut_max))
    head = arrays["head_adc"]
    assert np.abs(head).max() <= cfg.head_adc_max
    assert np.unique(arrays["outputs"]).size >= 5
    assert np.unique(arrays["l0_h"]).size >= 10
    # the coverage summary in the metadata agrees with the arrays
    cov = doc["metadata"]["coverage"]["l0"]
    assert cov["adc_distinct"] == len(hist)
    assert cov["adc_rail_fraction"] == pytest.approx(rails / adc.size)
    assert cov["adc_zero_fraction"] == pytest.approx(hist[0] / adc.size)
