"""Float model files (`golden.io.save_float_model` / `load_float_model`): exact round trip, byte-stable,
every corruption a one-line `FileFormatError`; and a training run writes them beside ``float_model.pt``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from config_helpers import config_fields

from nvmlstm.golden.config import LstmConfig
from nvmlstm.golden.io import FileFormatError, load_float_model, read_npz, save_float_model, write_npz
from nvmlstm.golden.ptq import random_float_model


@pytest.fixture
def fm():
    cfg = LstmConfig(**config_fields((5, 6, 2, 3), (4, 4, 4), (8, 8)))
    return random_float_model(cfg, np.random.default_rng(7))


def _arrays(m):
    out = {}
    for l, fl in enumerate(m.layers):
        out |= {f"l{l}_w_ih": fl.w_ih, f"l{l}_w_hh": fl.w_hh, f"l{l}_bias": fl.bias}
    return out | {"head_w": m.head_w, "head_b": m.head_b}


def test_round_trip_is_exact_and_byte_stable(tmp_path, fm):
    p = tmp_path / "float_model.npz"
    save_float_model(fm, p, metadata={"task": "digits", "seed": 3})
    got, meta = load_float_model(p, with_metadata=True)
    assert meta == {"task": "digits", "seed": 3}
    a, b = _arrays(fm), _arrays(got)
    assert a.keys() == b.keys()
    for k in a:
        assert b[k].dtype == np.float64 and np.array_equal(a[k], b[k]), k
    first = (p.read_bytes(), p.with_suffix(".json").read_bytes())
    save_float_model(got, p, metadata={"task": "digits", "seed": 3})
    assert (p.read_bytes(), p.with_suffix(".json").read_bytes()) == first
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]  # no temporary files left


def _saved(tmp_path, fm):
    p = tmp_path / "f.npz"
    save_float_model(fm, p)
    return p


def test_edited_array_is_detected(tmp_path, fm):
    p = _saved(tmp_path, fm)
    arrays = read_npz(p)
    arrays["l1_w_hh"] = arrays["l1_w_hh"].copy()
    arrays["l1_w_hh"][0, 0] += 1e-12  # the smallest edit still changes the hash
    write_npz(p, arrays)
    with pytest.raises(FileFormatError, match=r"^.*f\.npz: array l1_w_hh does not match the sha256 in its manifest"):
        load_float_model(p)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(format="nvm-lstm-model"), r"format is 'nvm-lstm-model', expected 'nvm-lstm-float-model'"),
        (lambda d: d.update(schema_version=9), r"schema_version 9 is not supported"),
        (lambda d: d["shape"].update(hidden_size=7), r"arrays have shape .* the manifest says"),
        (lambda d: d["shape"].update(num_layers=1), r"arrays do not fit a 1-layer float model \(unexpected l1_bias"),
        (lambda d: d.update(float_model_sha256="0" * 64), r"float_model_sha256 in the manifest does not match"),
        (lambda d: d.pop("shape"), r"manifest key 'shape' must hold positive integers"),
    ],
)
def test_manifest_problems_are_one_line(tmp_path, fm, edit, message):
    p = _saved(tmp_path, fm)
    doc = json.loads(p.with_suffix(".json").read_text())
    edit(doc)
    p.with_suffix(".json").write_text(json.dumps(doc))
    with pytest.raises(FileFormatError, match=message) as exc:
        load_float_model(p)
    assert "\n" not in str(exc.value)


def test_missing_files_and_wrong_names(tmp_path, fm):
    with pytest.raises(FileFormatError, match=r"x\.npz: float model file not found$"):
        load_float_model(tmp_path / "x.npz")
    with pytest.raises(FileFormatError, match=r"must end in \.npz"):
        save_float_model(fm, tmp_path / "x.pt")
    p = _saved(tmp_path, fm)
    p.with_suffix(".json").unlink()
    with pytest.raises(FileFormatError, match=r"f\.json: manifest not found \(a nvm-lstm-float-model file"):
        load_float_model(p)


def test_wrong_dtype_is_rejected(tmp_path, fm):
    p = _saved(tmp_path, fm)
    arrays = read_npz(p)
    arrays["head_b"] = arrays["head_b"].astype(np.float32)
    write_npz(p, arrays)
    doc = json.loads(p.with_suffix(".json").read_text())
    from nvmlstm.golden.model import array_sha256

    doc["arrays"]["head_b"]["sha256"] = array_sha256(arrays["head_b"])
    p.with_suffix(".json").write_text(json.dumps(doc))
    with pytest.raises(FileFormatError, match=r"array head_b has dtype float32, expected float64"):
        load_float_model(p)


def test_training_run_writes_the_float_weights_of_its_state_dict(tmp_path):
    torch = pytest.importorskip("torch")
    from nvmlstm.train.runner import TrainArgs, run_training

    out = tmp_path / "run"
    run_training(
        TrainArgs(task="digits", mode="fp", out=str(out), epochs=1, hidden=8, progress=False), log=lambda s: None
    )
    fm, meta = load_float_model(out / "float_model.npz", with_metadata=True)
    assert meta["task"] == "digits" and meta["mode"] == "fp" and meta["config"]["hidden_size"] == 8
    sd = torch.load(out / "float_model.pt", weights_only=True)
    assert np.array_equal(fm.layers[0].w_ih, sd["lstm.weight_ih_l0"].double().numpy())
    assert np.array_equal(fm.layers[0].bias, (sd["lstm.bias_ih_l0"].double() + sd["lstm.bias_hh_l0"].double()).numpy())
    assert np.array_equal(fm.head_w, sd["head.weight"].double().numpy())
    shutil.rmtree(out)
