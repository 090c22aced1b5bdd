"""Model and vector files (golden/io.py, golden/model.py): round trips, determinism, atomic writes and the
rejection of every kind of bad file with a message that names the file and the problem."""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from config_helpers import small_config

from nvmlstm.artifacts.files import atomic_output_dir
from nvmlstm.golden.config import REQUIRED_KEYS, LstmConfig
from nvmlstm.golden.io import (
    FileFormatError,
    load_model,
    load_vectors,
    save_model,
    save_vectors,
    vector_descriptions,
    write_npz,
)
from nvmlstm.golden.lstm import golden_forward
from nvmlstm.golden.model import HeadParams, LayerParams, ModelError, QuantizedModel, array_sha256

# Two layers, several row tiles per matrix (K = 3+4+1 = 8 and 4+4+1 = 9 rows on 4-row arrays).
CFG = small_config(hidden_size=4, array_cols=8)


def make_arrays(cfg: LstmConfig = CFG, seed: int = 0) -> dict[str, np.ndarray]:
    """The arrays of a valid random model, in the documented dtypes and shapes (docs/datapath.md section 12)."""
    rng = np.random.default_rng(seed)
    wm = cfg.weight_max
    out: dict[str, np.ndarray] = {}
    for l in range(cfg.num_layers):
        out[f"l{l}_weights"] = rng.integers(-wm, wm + 1, (4 * cfg.hidden_size, cfg.layer_rows(l))).astype(np.int16)
        out[f"l{l}_adc_step"] = np.array(int(rng.integers(1, 20)), dtype=np.int64)
        out[f"l{l}_gate_scale"] = rng.integers(1, cfg.scale_max + 1, 4).astype(np.int64)
    out["head_weights"] = rng.integers(-wm, wm + 1, (cfg.output_size, cfg.hidden_size + 1)).astype(np.int16)
    out["head_adc_step"] = np.array(int(rng.integers(1, 20)), dtype=np.int64)
    out["input_scale"] = np.array(0.125, dtype=np.float64)
    out["output_scale"] = np.array(0.75, dtype=np.float64)
    return out


def make_model(cfg: LstmConfig = CFG, seed: int = 0) -> QuantizedModel:
    a = make_arrays(cfg, seed)
    layers = tuple(
        LayerParams(a[f"l{l}_weights"], int(a[f"l{l}_adc_step"]), a[f"l{l}_gate_scale"]) for l in range(cfg.num_layers)
    )
    return QuantizedModel(
        cfg,
        layers,
        HeadParams(a["head_weights"], int(a["head_adc_step"])),
        float(a["input_scale"]),
        float(a["output_scale"]),
    )


def write_model_by_hand(
    npz: Path, arrays: dict[str, np.ndarray], *, config=None, model_sha256: str = "0" * 64, **doc_changes
) -> Path:
    """A model file written with numpy and json only: a manifest consistent with ``arrays`` (correct sha256
    of every array), so only the deliberate defect is wrong."""
    np.savez(npz, **arrays)
    doc = {
        "format": "nvm-lstm-model",
        "schema_version": 1,
        "config": CFG.to_dict() if config is None else config,
        "arrays": {
            k: {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": array_sha256(a)} for k, a in arrays.items()
        },
        "model_sha256": model_sha256,
        "metadata": {},
    }
    doc.update(doc_changes)
    manifest = npz.with_suffix(".json")
    manifest.write_text(json.dumps(doc))
    return manifest


def rx(path) -> str:
    return re.escape(str(path))


def assert_rejected(npz: Path, named: Path, message: str) -> None:
    """``load_model(npz)`` raises FileFormatError with exactly ``{named}: {message}`` (``message`` a regex)."""
    with pytest.raises(FileFormatError, match=f"^{rx(named)}: {message}$"):
        load_model(npz)


@pytest.fixture
def saved(tmp_path):
    """A valid model saved with save_model: (model, npz path, manifest path)."""
    model = make_model()
    npz = tmp_path / "m.npz"
    manifest = save_model(model, npz, metadata={"note": "test"})
    return model, npz, manifest


# --------------------------------------------------------------------------------------------------
# Round trips
def test_model_round_trip(saved):
    model, npz, manifest = saved
    assert manifest == npz.with_suffix(".json") and manifest.exists()
    loaded, meta = load_model(npz, with_metadata=True)
    assert meta == {"note": "test"}
    assert loaded.config == model.config
    want = make_arrays()
    got = loaded.arrays()
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        assert got[k].shape == want[k].shape, k  # scalars stay 0-d (adc_step, scales)
        assert np.array_equal(got[k], want[k]), k
    assert loaded.digest() == model.digest()
    assert isinstance(load_model(str(npz)), QuantizedModel)


def test_model_file_contents_follow_the_documented_format(saved):
    model, npz, manifest = saved
    doc = json.loads(manifest.read_text())
    assert doc["format"] == "nvm-lstm-model" and doc["schema_version"] == 1
    assert LstmConfig.from_dict(doc["config"]) == CFG
    assert doc["model_sha256"] == model.digest()
    with np.load(npz, allow_pickle=False) as z:
        assert sorted(z.files) == sorted(doc["arrays"])
        for k in z.files:
            a = z[k]
            e = doc["arrays"][k]
            assert (a.dtype.str, list(a.shape), array_sha256(a)) == (e["dtype"], e["shape"], e["sha256"]), k
        assert z["l0_weights"].dtype == np.int16 and z["l0_weights"].shape == (16, 8)
        assert z["l1_weights"].shape == (16, 9)
        assert z["head_weights"].dtype == np.int16 and z["head_weights"].shape == (2, 5)
        assert z["l1_gate_scale"].dtype == np.int64 and z["l1_gate_scale"].shape == (4,)
        for k in ("l0_adc_step", "l1_adc_step", "head_adc_step"):
            assert z[k].dtype == np.int64 and z[k].shape == (), k
        for k in ("input_scale", "output_scale"):
            assert z[k].dtype == np.float64 and z[k].shape == (), k


def test_save_model_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    save_model(make_model(), a / "m.npz", metadata={"x": 1})
    save_model(make_model(), b / "m.npz", metadata={"x": 1})
    for name in ("m.npz", "m.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert sorted(p.name for p in a.iterdir()) == ["m.json", "m.npz"]  # no temporary files left


def test_digest_depends_on_every_array_and_the_config():
    base = make_model()
    other_seed = make_model(seed=1)
    assert base.digest() != other_seed.digest()
    a = make_arrays()
    a["output_scale"] = np.array(0.5)
    assert QuantizedModel.from_arrays(CFG, a).digest() != base.digest()
    cfg2 = CFG.replace(cell_bits=12)  # same array shapes, different chip
    assert QuantizedModel.from_arrays(cfg2, make_arrays()).digest() != base.digest()
    assert make_model().digest() == base.digest()


def _trace(model: QuantizedModel, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    dm = model.config.dac_max
    x = rng.integers(-dm, dm + 1, (3, 5, model.config.input_size))
    return golden_forward(model, x, trace=True)


def test_vectors_round_trip(tmp_path):
    model = make_model()
    trace = _trace(model)
    save_vectors(tmp_path, model, trace, metadata={"k": [1, 2]})
    doc, arrays = load_vectors(tmp_path)
    assert doc["format"] == "nvm-lstm-vectors" and doc["schema_version"] == 1
    assert doc["config"] == CFG
    assert doc["model_sha256"] == model.digest()
    assert (doc["sequences"], doc["steps"]) == (3, 5)
    assert doc["metadata"] == {"k": [1, 2]}
    desc = vector_descriptions(CFG)
    assert set(arrays) == set(desc) == set(doc["arrays"])
    for k in desc:
        assert arrays[k].dtype == np.int32, k
        assert np.array_equal(arrays[k], trace[k]), k
        assert doc["arrays"][k]["description"] == desc[k] and desc[k], k
    assert arrays["inputs"].shape == (3, 5, 3)
    assert arrays["l1_adc"].shape == (3, 5, 3, 16)  # 9 rows on 4-row arrays: 3 row tiles
    assert arrays["head_adc"].shape == (3, 5, 2, 2)
    # the same contents give the same bytes
    other = tmp_path / "again"
    other.mkdir()
    save_vectors(other, model, trace, metadata={"k": [1, 2]})
    for name in ("vectors.npz", "vectors.json"):
        assert (other / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_save_vectors_needs_a_full_trace(tmp_path):
    model = make_model()
    x = np.zeros((1, 2, 3), dtype=np.int64)
    short = golden_forward(model, x, trace=False)
    with pytest.raises(ValueError, match=r"^trace lacks head_adc, l0_acc, .*: run golden_forward with trace=True$"):
        save_vectors(tmp_path, model, short)
    assert list(tmp_path.iterdir()) == []


def test_load_vectors_rejects_missing_trace_array(tmp_path):
    model = make_model()
    trace = _trace(model)
    save_vectors(tmp_path, model, trace)
    # rewrite both files consistently without l1_c
    doc = json.loads((tmp_path / "vectors.json").read_text())
    del doc["arrays"]["l1_c"]
    (tmp_path / "vectors.json").write_text(json.dumps(doc))
    with np.load(tmp_path / "vectors.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "l1_c"}
    np.savez(tmp_path / "vectors.npz", **arrays)
    with pytest.raises(FileFormatError, match=f"^{rx(tmp_path / 'vectors.npz')}: missing array l1_c$"):
        load_vectors(tmp_path)


def test_load_vectors_rejects_edited_array_and_wrong_format(tmp_path):
    model = make_model()
    save_vectors(tmp_path, model, _trace(model))
    with np.load(tmp_path / "vectors.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["outputs"] = arrays["outputs"].copy()
    arrays["outputs"][0, 0, 0] += 1
    np.savez(tmp_path / "vectors.npz", **arrays)
    with pytest.raises(
        FileFormatError,
        match=f"^{rx(tmp_path / 'vectors.npz')}: array outputs does not match the "
        r"sha256 in its manifest \(corrupted or edited\)$",
    ):
        load_vectors(tmp_path)
    doc = json.loads((tmp_path / "vectors.json").read_text())
    doc["format"] = "nvm-lstm-model"
    (tmp_path / "vectors.json").write_text(json.dumps(doc))
    with pytest.raises(
        FileFormatError,
        match=f"^{rx(tmp_path / 'vectors.json')}: format is 'nvm-lstm-model', expected 'nvm-lstm-vectors'$",
    ):
        load_vectors(tmp_path)
    with pytest.raises(FileFormatError, match=f"^{rx(tmp_path / 'nowhere' / 'vectors.json')}: manifest not found"):
        load_vectors(tmp_path / "nowhere")


# --------------------------------------------------------------------------------------------------
# write_npz
def test_write_npz_deterministic_and_readable(tmp_path):
    arrays = {
        "b": np.arange(6, dtype=np.int16).reshape(2, 3).T,
        "a": np.array(3, dtype=np.int64),
        "c": np.array([0.5, -1.0]),
        "big": np.arange(1000, dtype=np.int32),
    }
    p1, p2 = tmp_path / "one.npz", tmp_path / "two.npz"
    write_npz(p1, arrays)
    write_npz(p2, dict(reversed(list(arrays.items()))))  # insertion order does not matter
    assert p1.read_bytes() == p2.read_bytes()
    write_npz(p1, arrays)  # rewriting the same path gives the same bytes again
    assert p1.read_bytes() == p2.read_bytes()
    with np.load(p1, allow_pickle=False) as z:
        assert sorted(z.files) == ["a", "b", "big", "c"]
        for k, v in arrays.items():
            assert z[k].dtype == v.dtype and z[k].shape == v.shape and np.array_equal(z[k], v), k
    with zipfile.ZipFile(p1) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == ["a.npy", "b.npy", "big.npy", "c.npy"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.npz", "two.npz"]
    assert os.stat(p1).st_mode & 0o777 == 0o644


def test_write_npz_failure_keeps_the_old_file(tmp_path):
    p = tmp_path / "x.npz"
    write_npz(p, {"a": np.arange(3)})
    before = p.read_bytes()
    with pytest.raises(ValueError):
        write_npz(p, {"a": np.arange(3), "obj": np.array([object()], dtype=object)})  # pickles are refused
    assert p.read_bytes() == before
    assert [q.name for q in tmp_path.iterdir()] == ["x.npz"]


# --------------------------------------------------------------------------------------------------
# Bad model files: each one rejected, naming the file and what is wrong
def test_model_missing_manifest(saved):
    _, npz, manifest = saved
    manifest.unlink()
    assert_rejected(npz, manifest, r"manifest not found \(a nvm-lstm-model file is an \.npz plus its \.json manifest\)")


def test_model_file_not_found(tmp_path):
    assert_rejected(tmp_path / "none.npz", tmp_path / "none.npz", "model file not found")


def test_model_manifest_not_json(saved):
    _, npz, manifest = saved
    manifest.write_text('{"format": "nvm-lstm-model",\n "schema_version": 1,\n oops}')
    message = "manifest is not valid JSON: Expecting property name enclosed in double quotes at line 3 column 2"
    assert_rejected(npz, manifest, message)


def test_model_manifest_not_utf8(saved):
    _, npz, manifest = saved
    manifest.write_bytes(b"\x80{}")
    assert_rejected(npz, manifest, "manifest is not UTF-8 text \\(byte 0\\)")


def test_model_manifest_not_an_object(saved):
    _, npz, manifest = saved
    manifest.write_text("[]")
    assert_rejected(npz, manifest, "manifest must be a JSON object")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format": "nvm-lstm-vectors"}, "format is 'nvm-lstm-vectors', expected 'nvm-lstm-model'"),
        ({"format": None}, "format is None, expected 'nvm-lstm-model'"),
        ({"schema_version": 2}, r"schema_version 2 is not supported \(this version reads 1\)"),
        ({"schema_version": "1"}, r"schema_version '1' is not supported \(this version reads 1\)"),
        ({"arrays": []}, "manifest key 'arrays' is missing or not an object"),
        ({"config": None}, "manifest key 'config' is missing or not an object"),
    ],
    ids=["format", "format-none", "schema-2", "schema-str", "arrays", "config"],
)
def test_model_manifest_header_errors(saved, change, message):
    _, npz, manifest = saved
    doc = json.loads(manifest.read_text())
    doc.update(change)
    manifest.write_text(json.dumps(doc))
    assert_rejected(npz, manifest, message)


def test_model_invalid_config_in_manifest(saved):
    _, npz, manifest = saved
    doc = json.loads(manifest.read_text())
    doc["config"]["hidden_size"] = 0
    manifest.write_text(json.dumps(doc))
    assert_rejected(npz, manifest, "config: hidden_size must be a positive integer, not 0")
    del doc["config"]["hidden_size"]
    manifest.write_text(json.dumps(doc))
    assert_rejected(npz, manifest, "config: missing required key 'hidden_size'")


def test_model_config_that_does_not_fit_the_arrays(tmp_path):
    npz = tmp_path / "m.npz"
    write_model_by_hand(npz, make_arrays(), config=CFG.replace(hidden_size=5).to_dict())
    assert_rejected(npz, npz, "layer 0 weights: shape \\(16, 8\\), expected \\(20, 9\\)")


def test_model_array_missing_from_npz(saved):
    _, npz, _ = saved
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files if k != "l1_gate_scale"}
    np.savez(npz, **arrays)
    assert_rejected(npz, npz, "array l1_gate_scale listed in the manifest but missing")


def test_model_extra_array_in_npz(saved):
    _, npz, _ = saved
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["zz_extra"] = np.zeros(3)
    np.savez(npz, **arrays)
    assert_rejected(npz, npz, "array zz_extra not listed in the manifest")


def test_model_unexpected_array_even_with_consistent_manifest(tmp_path):
    npz = tmp_path / "m.npz"
    arrays = make_arrays()
    arrays["l2_weights"] = arrays["l1_weights"]
    write_model_by_hand(npz, arrays)
    assert_rejected(npz, npz, "unexpected array l2_weights")
    del arrays["l2_weights"], arrays["head_adc_step"], arrays["l0_gate_scale"]
    write_model_by_hand(npz, arrays)
    assert_rejected(npz, npz, "missing arrays l0_gate_scale, head_adc_step")


def test_model_edited_weight_fails_sha256(saved):
    _, npz, _ = saved
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    w = arrays["l0_weights"].copy()
    w[5, 2] = 1 if w[5, 2] != 1 else 2  # still a valid code: only the hash can tell
    arrays["l0_weights"] = w
    np.savez(npz, **arrays)  # the old manifest stays
    assert_rejected(npz, npz, r"array l0_weights does not match the sha256 in its manifest \(corrupted or edited\)")


def test_model_manifest_entry_without_sha256(saved):
    _, npz, manifest = saved
    doc = json.loads(manifest.read_text())
    del doc["arrays"]["head_weights"]["sha256"]
    manifest.write_text(json.dumps(doc))
    assert_rejected(npz, npz, "manifest entry for array head_weights has no sha256")


@pytest.mark.parametrize(
    "name, value, message",
    [
        (
            "l1_weights",
            lambda a: _set(a, (3, 4), CFG.weight_max + 1),
            r"layer 1 weights: value 8 at index \(3, 4\) is outside \[-7, 7\]",
        ),
        (
            "head_weights",
            lambda a: _set(a, (1, 0), -CFG.weight_max - 1),
            r"head weights: value -8 at index \(1, 0\) is outside \[-7, 7\]",
        ),
        (
            "l0_gate_scale",
            lambda a: _set(a, (2,), 4096),
            r"layer 0 gate_scale: value 4096 at index \(2,\) is outside \[0, 4095\]",
        ),
        (
            "l0_adc_step",
            lambda a: np.array(0, dtype=np.int64),
            r"layer 0 adc_step: value 0 at index \(\) is outside \[1, 65535\]",
        ),
        (
            "head_adc_step",
            lambda a: np.array(65536, dtype=np.int64),
            r"head adc_step: value 65536 at index \(\) is outside \[1, 65535\]",
        ),
        ("head_weights", lambda a: a[:, :4].copy(), r"head weights: shape \(2, 4\), expected \(2, 5\)"),
        ("l0_adc_step", lambda a: a.reshape(1), r"layer 0 adc_step: shape \(1,\), expected \(\)"),
        ("l1_weights", lambda a: a.astype(np.float64), "layer 1 weights: dtype float64 is not an integer dtype"),
        ("l0_gate_scale", lambda a: a > 0, "layer 0 gate_scale: dtype bool is not an integer dtype"),
        ("input_scale", lambda a: np.array(np.nan), "input_scale must be positive and finite, not nan"),
        ("output_scale", lambda a: np.array(-1.0), r"output_scale must be positive and finite, not -1\.0"),
        (
            "input_scale",
            lambda a: np.array(1, dtype=np.int64),
            r"input_scale: expected a float scalar, got dtype int64 shape \(\)",
        ),
        (
            "output_scale",
            lambda a: np.array([1.0]),
            r"output_scale: expected a float scalar, got dtype float64 shape \(1,\)",
        ),
    ],
    ids=[
        "code-high",
        "code-low",
        "gate-scale",
        "adc-step-0",
        "adc-step-big",
        "shape",
        "scalar-shape",
        "float-dtype",
        "bool-dtype",
        "nan-scale",
        "negative-scale",
        "int-scale",
        "scale-shape",
    ],
)
def test_model_bad_array_with_consistent_manifest(tmp_path, name, value, message):
    npz = tmp_path / "m.npz"
    arrays = make_arrays()
    arrays[name] = value(arrays[name])
    write_model_by_hand(npz, arrays)  # every sha256 correct: the content itself is what is wrong
    assert_rejected(npz, npz, message)


def _set(a: np.ndarray, index: tuple, v: int) -> np.ndarray:
    a = a.copy()
    a[index] = v
    return a


def test_model_sha256_mismatch(saved):
    _, npz, manifest = saved
    doc = json.loads(manifest.read_text())
    doc["model_sha256"] = make_model(seed=1).digest()
    manifest.write_text(json.dumps(doc))
    assert_rejected(npz, npz, "model_sha256 in the manifest does not match the model")


def test_model_by_hand_with_correct_digest_loads(tmp_path):
    # the hand-written file helper is itself correct: with the right digest it loads
    npz = tmp_path / "m.npz"
    write_model_by_hand(npz, make_arrays(), model_sha256=make_model().digest())
    assert load_model(npz).digest() == make_model().digest()


def test_model_file_name_must_end_in_npz(tmp_path):
    for name in ("model", "model.json", "model.npz.bak"):
        with pytest.raises(FileFormatError, match=f"^{rx(tmp_path / name)}: a model file name must end in \\.npz$"):
            save_model(make_model(), tmp_path / name)
        assert_rejected(tmp_path / name, tmp_path / name, "a model file name must end in \\.npz")
    assert list(tmp_path.iterdir()) == []


def test_model_npz_not_a_zip(saved):
    _, npz, _ = saved
    npz.write_bytes(b"this is not a zip archive\n" * 10)
    assert_rejected(npz, npz, "not a readable \\.npz file \\(.+\\)")
    npz.write_bytes(b"")
    with pytest.raises(FileFormatError, match=f"^{rx(npz)}: not a readable \\.npz file"):
        load_model(npz)


def test_model_truncated_npz(saved):
    _, npz, _ = saved
    data = npz.read_bytes()
    npz.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match=f"^{rx(npz)}: not a readable \\.npz file"):
        load_model(npz)


# --------------------------------------------------------------------------------------------------
# QuantizedModel construction
def _layers(a, n):
    return tuple(LayerParams(a[f"l{l}_weights"], a[f"l{l}_adc_step"], a[f"l{l}_gate_scale"]) for l in range(n))


def test_quantized_model_errors():
    a = make_arrays()
    head = HeadParams(a["head_weights"], a["head_adc_step"])
    with pytest.raises(ModelError, match=r"^model has 1 layers, config says num_layers=2$"):
        QuantizedModel(CFG, _layers(a, 1), head)
    with pytest.raises(ModelError, match=r"^config must be an LstmConfig, not dict$"):
        QuantizedModel(CFG.to_dict(), _layers(a, 2), head)  # type: ignore[arg-type]
    layers = list(_layers(a, 2))
    layers[1] = LayerParams(a["l1_weights"], 0, a["l1_gate_scale"])
    with pytest.raises(ModelError, match=r"^layer 1 adc_step: value 0 at index \(\) is outside \[1, 65535\]$"):
        QuantizedModel(CFG, tuple(layers), head)
    layers[1] = LayerParams(a["l1_weights"], 3, np.array([1, 2, 3, 4096]))
    with pytest.raises(ModelError, match=r"^layer 1 gate_scale: value 4096 at index \(3,\) is outside \[0, 4095\]$"):
        QuantizedModel(CFG, tuple(layers), head)
    layers[1] = LayerParams(a["l1_weights"], 3, np.array([1, -2, 3, 4]))
    with pytest.raises(ModelError, match=r"^layer 1 gate_scale: value -2 at index \(1,\) is outside \[0, 4095\]$"):
        QuantizedModel(CFG, tuple(layers), head)
    with pytest.raises(ModelError, match=r"^head adc_step: value -1 at index \(\) is outside \[1, 65535\]$"):
        QuantizedModel(CFG, _layers(a, 2), HeadParams(a["head_weights"], -1))
    with pytest.raises(ModelError, match=r"^input_scale must be positive and finite, not 0\.0$"):
        QuantizedModel(CFG, _layers(a, 2), head, input_scale=0.0)
    with pytest.raises(ModelError, match=r"^output_scale must be a number, not 'big'$"):
        QuantizedModel(CFG, _layers(a, 2), head, output_scale="big")  # type: ignore[arg-type]
    with pytest.raises(ModelError, match=r"^output_scale must be positive and finite, not inf$"):
        QuantizedModel(CFG, _layers(a, 2), head, output_scale=float("inf"))


def test_quantized_model_owns_read_only_copies():
    a = make_arrays()
    w = a["l0_weights"].astype(np.int64)  # any integer dtype is accepted and stored as int16
    layers = (LayerParams(w, 5, a["l0_gate_scale"]), LayerParams(a["l1_weights"], 6, a["l1_gate_scale"]))
    m = QuantizedModel(CFG, layers, HeadParams(a["head_weights"], 7))
    assert m.layers[0].weights.dtype == np.int16
    before = m.digest()
    w[0, 0] = 99  # the caller's array changes ...
    assert m.layers[0].weights[0, 0] == a["l0_weights"][0, 0]  # ... the model does not
    assert m.digest() == before
    with pytest.raises(ValueError):
        m.layers[0].weights[0, 0] = 1


# --------------------------------------------------------------------------------------------------
# atomic_output_dir
class Boom(Exception):
    pass


def test_atomic_output_dir_failure_leaves_nothing(tmp_path):
    out = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(Boom):
        with atomic_output_dir(out) as tmp:
            assert tmp.parent == out.parent and tmp != out
            (tmp / "vectors.npz").write_bytes(b"half")
            raise Boom()
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # created parent directories removed, no temp dir anywhere


def test_atomic_output_dir_failure_keeps_existing_parent_and_dir(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "vectors.npz").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output_dir(out) as tmp:
            (tmp / "vectors.npz").write_bytes(b"new")
            raise KeyboardInterrupt  # any exception, not only errors
    assert (out / "vectors.npz").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == ["vectors.npz"]


def test_atomic_output_dir_success_new_dir(tmp_path):
    out = tmp_path / "a" / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "x.txt").write_text("x")
        assert not out.exists()  # nothing visible until the block succeeds
    assert (out / "x.txt").read_text() == "x"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["out"]
    assert os.stat(out).st_mode & 0o777 == 0o755


def test_atomic_output_dir_success_into_existing_dir_replaces_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "vectors.npz").write_bytes(b"old")
    (out / "keep.txt").write_text("unrelated")
    with atomic_output_dir(out) as tmp:
        (tmp / "vectors.npz").write_bytes(b"new")
        (tmp / "model.npz").write_bytes(b"m")
    assert (out / "vectors.npz").read_bytes() == b"new"
    assert (out / "model.npz").read_bytes() == b"m"
    assert (out / "keep.txt").read_text() == "unrelated"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_output_dir_refuses_a_file(tmp_path):
    out = tmp_path / "out"
    out.write_text("I am a file")
    with pytest.raises(FileExistsError, match=f"^{rx(out)}: exists and is not a directory$"):
        with atomic_output_dir(out):
            pass  # pragma: no cover
    assert out.read_text() == "I am a file"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


# --------------------------------------------------------------------------------------------------
# An outside tool writes a model file from docs/datapath.md section 12 alone
def _doc_array_sha256(a: np.ndarray) -> str:
    """Section 12, "Array hash", as written: dtype string, repr of the shape tuple, C-order LE bytes."""
    import hashlib

    h = hashlib.sha256()
    h.update(a.dtype.str.encode("ascii"))
    h.update(repr(tuple(a.shape)).encode("ascii"))
    h.update(a.astype(a.dtype.newbyteorder("<")).tobytes(order="C"))
    return h.hexdigest()


def _write_model_from_the_document(path: Path, cfg_keys: dict, arrays: dict) -> None:
    import hashlib

    full_cfg = {
        "head_adc_bits": None,
        "lut_bits": 8,
        "lut_frac": 4,
        "frac_bits": 7,
        "cell_bits": 11,
        "scale_bits": 12,
        "scale_shift": 6,
        "adc_step_bits": 16,
        "weight_mapping": "differential",
        **cfg_keys,
    }
    hashes = {k: _doc_array_sha256(a) for k, a in arrays.items()}
    model_sha = hashlib.sha256(
        json.dumps({"config": full_cfg, "arrays": hashes}, sort_keys=True).encode("utf-8")
    ).hexdigest()
    np.savez(path, **arrays)
    manifest = {
        "format": "nvm-lstm-model",
        "schema_version": 1,
        "config": cfg_keys,
        "model_sha256": model_sha,
        "arrays": {k: {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": hashes[k]} for k, a in arrays.items()},
    }
    path.with_suffix(".json").write_text(json.dumps(manifest))


def test_model_file_written_from_the_document_alone_loads(tmp_path):
    cfg_keys = {k: getattr(CFG, k) for k in REQUIRED_KEYS}
    arrays = make_arrays()
    _write_model_from_the_document(tmp_path / "outside.npz", cfg_keys, arrays)
    model = load_model(tmp_path / "outside.npz")
    assert model.config == CFG
    for k, a in model.arrays().items():
        assert np.array_equal(a, arrays[k]) and a.dtype == arrays[k].dtype, k
    # The loader checks the hashes: an edited array under the old model_sha256 is refused.
    arrays["l0_gate_scale"] = arrays["l0_gate_scale"].copy()
    arrays["l0_gate_scale"][0] += 1
    _write_model_from_the_document(tmp_path / "edited.npz", cfg_keys, arrays)
    doc = json.loads((tmp_path / "edited.json").read_text())
    doc["model_sha256"] = json.loads((tmp_path / "outside.json").read_text())["model_sha256"]
    (tmp_path / "edited.json").write_text(json.dumps(doc))
    with pytest.raises(FileFormatError, match=r"model_sha256 in the manifest does not match the model"):
        load_model(tmp_path / "edited.npz")
