"""Model and vector files: versioned, hashed, deterministic, written atomically.

Model: ``NAME.npz`` (arrays, see `QuantizedModel.arrays`) plus ``NAME.json`` (manifest)::

    {"format": "nvm-lstm-model", "schema_version": 1, "config": {...},
     "arrays": {"l0_weights": {"dtype": "<i2", "shape": [128, 41], "sha256": "..."}, ...},
     "model_sha256": "...", "metadata": {...}}

Vectors: ``DIR/vectors.npz`` plus ``DIR/vectors.json`` (see `VECTOR_ARRAYS` and `golden.lstm` for the
arrays). Every ``.npz`` is written with fixed zip timestamps and sorted, uncompressed members, so the same
contents give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nvmlstm.artifacts.files import write_bytes_atomic, write_text_atomic

from .config import ConfigError, LstmConfig
from .model import FloatLayer, FloatModel, ModelError, QuantizedModel, array_sha256
from .textfile import read_json_file

__all__ = [
    "FileFormatError",
    "MODEL_FORMAT",
    "VECTORS_FORMAT",
    "SCHEMA_VERSION",
    "write_npz",
    "read_npz",
    "save_model",
    "load_model",
    "save_vectors",
    "load_vectors",
    "vector_descriptions",
    "FLOAT_MODEL_FORMAT",
    "save_float_model",
    "load_float_model",
]

MODEL_FORMAT = "nvm-lstm-model"
VECTORS_FORMAT = "nvm-lstm-vectors"
FLOAT_MODEL_FORMAT = "nvm-lstm-float-model"
SCHEMA_VERSION = 1
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class FileFormatError(ValueError):
    """A model or vector file is missing, unreadable, of another format/version, or corrupted."""


# ------------------------------------------------------------------------------------------------
# Deterministic npz and atomic writes
def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an ``.npz`` readable by ``numpy.load``, byte-identical for identical contents,
    atomically (a temporary file renamed over ``path``)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arrays[name], order="C"), version=(1, 0), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, member.getvalue())
    write_bytes_atomic(Path(path), buf.getvalue())


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise FileFormatError(f"{path}: file not found") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise FileFormatError(f"{path}: not a readable .npz file ({exc})") from None


def _json_text(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


# ------------------------------------------------------------------------------------------------
# Manifests
def _array_entries(arrays: Mapping[str, np.ndarray], descriptions: Mapping[str, str] | None = None) -> dict:
    entries = {}
    for k in sorted(arrays):
        a = np.asarray(arrays[k], order="C")
        e = {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": array_sha256(a)}
        if descriptions is not None:
            e["description"] = descriptions.get(k, "")
        entries[k] = e
    return entries


def _manifest_header(path: Path, fmt: str) -> dict:
    """A manifest's JSON object, checked for its format name and schema version (every file kind)."""
    doc = read_json_file(
        path, FileFormatError, "manifest", missing_hint=f" (a {fmt} file is an .npz plus its .json manifest)"
    )
    if not isinstance(doc, dict):
        raise FileFormatError(f"{path}: manifest must be a JSON object")
    if doc.get("format") != fmt:
        raise FileFormatError(f"{path}: format is {doc.get('format')!r}, expected {fmt!r}")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise FileFormatError(
            f"{path}: schema_version {doc.get('schema_version')!r} is not supported (this version reads "
            f"{SCHEMA_VERSION})"
        )
    return doc


def _read_manifest(path: Path, fmt: str) -> dict:
    doc = _manifest_header(path, fmt)
    for key in ("config", "arrays"):
        if not isinstance(doc.get(key), dict):
            raise FileFormatError(f"{path}: manifest key {key!r} is missing or not an object")
    return doc


def _check_arrays(npz_path: Path, arrays: Mapping[str, np.ndarray], listed: Mapping[str, Any]) -> None:
    missing = sorted(set(listed) - set(arrays))
    if missing:
        raise FileFormatError(
            f"{npz_path}: array{'s' if len(missing) > 1 else ''} {', '.join(missing)} listed in "
            f"the manifest but missing"
        )
    extra = sorted(set(arrays) - set(listed))
    if extra:
        raise FileFormatError(
            f"{npz_path}: array{'s' if len(extra) > 1 else ''} {', '.join(extra)} not listed in the manifest"
        )
    for k in sorted(listed):
        entry = listed[k]
        if not isinstance(entry, dict) or "sha256" not in entry:
            raise FileFormatError(f"{npz_path}: manifest entry for array {k} has no sha256")
        if array_sha256(arrays[k]) != entry["sha256"]:
            raise FileFormatError(
                f"{npz_path}: array {k} does not match the sha256 in its manifest (corrupted or edited)"
            )


def _config_from_manifest(path: Path, doc: dict) -> LstmConfig:
    try:
        return LstmConfig.from_dict(doc["config"], where=f"{path}: config")
    except ConfigError as exc:
        raise FileFormatError(str(exc)) from None


# ------------------------------------------------------------------------------------------------
# Models
def _manifest_path(npz: Path) -> Path:
    return npz.with_suffix(".json")


def save_model(model: QuantizedModel, path: str | Path, *, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``path`` (``.npz``) and its manifest ``path`` with suffix ``.json``; returns the manifest path."""
    path = Path(path)
    if path.suffix != ".npz":
        raise FileFormatError(f"{path}: a model file name must end in .npz")
    arrays = model.arrays()
    doc = {
        "format": MODEL_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "config": model.config.to_dict(),
        "arrays": _array_entries(arrays),
        "model_sha256": model.digest(),
        "metadata": dict(metadata or {}),
    }
    write_npz(path, arrays)
    write_text_atomic(_manifest_path(path), _json_text(doc))
    return _manifest_path(path)


def load_model(path: str | Path, *, with_metadata: bool = False) -> QuantizedModel | tuple[QuantizedModel, dict]:
    """Read and validate a model file; every problem is a `FileFormatError` naming the file and what is wrong."""
    path = Path(path)
    if path.suffix != ".npz":
        raise FileFormatError(f"{path}: a model file name must end in .npz")
    if not path.exists():
        raise FileFormatError(f"{path}: model file not found")
    doc = _read_manifest(_manifest_path(path), MODEL_FORMAT)
    cfg = _config_from_manifest(_manifest_path(path), doc)
    arrays = read_npz(path)
    _check_arrays(path, arrays, doc["arrays"])
    try:
        model = QuantizedModel.from_arrays(cfg, arrays)
    except ModelError as exc:
        raise FileFormatError(f"{path}: {exc}") from None
    if doc.get("model_sha256") != model.digest():
        raise FileFormatError(f"{path}: model_sha256 in the manifest does not match the model")
    if with_metadata:
        meta = doc.get("metadata", {})
        return model, meta if isinstance(meta, dict) else {}
    return model


# ------------------------------------------------------------------------------------------------
# Float models (the float weights a run was trained to: PTQ input of sweeps, without torch)
def _float_arrays(fm: FloatModel) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for l, fl in enumerate(fm.layers):
        for k in ("w_ih", "w_hh", "bias"):
            out[f"l{l}_{k}"] = np.asarray(getattr(fl, k), dtype=np.float64)
    out["head_w"] = np.asarray(fm.head_w, dtype=np.float64)
    out["head_b"] = np.asarray(fm.head_b, dtype=np.float64)
    return out


def _float_digest(arrays: Mapping[str, np.ndarray]) -> str:
    doc = {k: array_sha256(arrays[k]) for k in sorted(arrays)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def save_float_model(fm: FloatModel, path: str | Path, *, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write float model ``fm`` to ``path`` (``.npz``, float64 arrays ``l{l}_w_ih``, ``l{l}_w_hh``,
    ``l{l}_bias``, ``head_w``, ``head_b``) and its manifest ``path`` with suffix ``.json``, atomically and
    byte-identically for identical contents; returns the manifest path."""
    path = Path(path)
    if path.suffix != ".npz":
        raise FileFormatError(f"{path}: a float model file name must end in .npz")
    arrays = _float_arrays(fm)
    doc = {
        "format": FLOAT_MODEL_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "shape": {
            "input_size": fm.input_size,
            "hidden_size": fm.hidden_size,
            "num_layers": len(fm.layers),
            "output_size": fm.output_size,
        },
        "arrays": _array_entries(arrays),
        "float_model_sha256": _float_digest(arrays),
        "metadata": dict(metadata or {}),
    }
    write_npz(path, arrays)
    write_text_atomic(_manifest_path(path), _json_text(doc))
    return _manifest_path(path)


def load_float_model(path: str | Path, *, with_metadata: bool = False) -> FloatModel | tuple[FloatModel, dict]:
    """Read and validate a float model file (`save_float_model`); every problem is a one-line
    `FileFormatError` naming the file and what is wrong."""
    path = Path(path)
    if path.suffix != ".npz":
        raise FileFormatError(f"{path}: a float model file name must end in .npz")
    if not path.exists():
        raise FileFormatError(f"{path}: float model file not found")
    mpath = _manifest_path(path)
    doc = _manifest_header(mpath, FLOAT_MODEL_FORMAT)
    shape = doc.get("shape")
    keys = ("input_size", "hidden_size", "num_layers", "output_size")
    if not isinstance(shape, dict) or not all(
        isinstance(shape.get(k), int) and not isinstance(shape.get(k), bool) and shape[k] >= 1 for k in keys
    ):
        raise FileFormatError(f"{mpath}: manifest key 'shape' must hold positive integers {', '.join(keys)}")
    if not isinstance(doc.get("arrays"), dict):
        raise FileFormatError(f"{mpath}: manifest key 'arrays' is missing or not an object")
    arrays = read_npz(path)
    _check_arrays(path, arrays, doc["arrays"])
    L = shape["num_layers"]
    expected = [f"l{l}_{k}" for l in range(L) for k in ("w_ih", "w_hh", "bias")] + ["head_w", "head_b"]
    missing = [k for k in expected if k not in arrays]
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        what = f"missing {', '.join(missing)}" if missing else f"unexpected {', '.join(extra)}"
        raise FileFormatError(f"{path}: arrays do not fit a {L}-layer float model ({what})")
    for k in expected:
        if arrays[k].dtype != np.float64:
            raise FileFormatError(f"{path}: array {k} has dtype {arrays[k].dtype}, expected float64")
    try:
        fm = FloatModel(
            tuple(FloatLayer(arrays[f"l{l}_w_ih"], arrays[f"l{l}_w_hh"], arrays[f"l{l}_bias"]) for l in range(L)),
            arrays["head_w"],
            arrays["head_b"],
        )
    except ModelError as exc:
        raise FileFormatError(f"{path}: {exc}") from None
    got = {"input_size": fm.input_size, "hidden_size": fm.hidden_size, "num_layers": L, "output_size": fm.output_size}
    if got != {k: shape[k] for k in keys}:
        raise FileFormatError(f"{path}: arrays have shape {got}, the manifest says {shape}")
    if doc.get("float_model_sha256") != _float_digest(arrays):
        raise FileFormatError(f"{path}: float_model_sha256 in the manifest does not match the arrays")
    if with_metadata:
        meta = doc.get("metadata", {})
        return fm, meta if isinstance(meta, dict) else {}
    return fm


# ------------------------------------------------------------------------------------------------
# Vectors
def vector_descriptions(cfg: LstmConfig) -> dict[str, str]:
    """What each array of a vector file holds (stored in ``vectors.json``)."""
    d = {
        "inputs": "input DAC codes x_t (sequences, steps, input_size)",
        "outputs": "output codes: head ADC codes summed over row tiles (sequences, steps, output_size)",
        "h": "last layer h_t DAC codes (sequences, steps, hidden_size)",
        "head_adc": "head ADC codes per row tile (sequences, steps, head_row_tiles, output_size)",
    }
    for l in range(cfg.num_layers):
        d[f"l{l}_adc"] = f"layer {l} ADC codes per row tile and column, gates i,f,g,o (sequences, steps, row_tiles, 4H)"
        d[f"l{l}_acc"] = f"layer {l} ADC codes summed over row tiles (sequences, steps, 4H)"
        d[f"l{l}_idx"] = f"layer {l} activation-table index (sequences, steps, 4H)"
        d[f"l{l}_gates"] = f"layer {l} gate outputs, {cfg.frac_bits} fractional bits (sequences, steps, 4H)"
        d[f"l{l}_c"] = f"layer {l} cell state c_t, {cfg.frac_bits} fractional bits (sequences, steps, H)"
        d[f"l{l}_tanh_c"] = f"layer {l} tanh(c_t), {cfg.frac_bits} fractional bits (sequences, steps, H)"
        d[f"l{l}_h"] = f"layer {l} h_t DAC codes (sequences, steps, H)"
    return d


def save_vectors(
    out_dir: str | Path,
    model: QuantizedModel,
    trace: Mapping[str, np.ndarray],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write ``vectors.npz`` and ``vectors.json`` into the existing directory ``out_dir``."""
    out_dir = Path(out_dir)
    cfg = model.config
    desc = vector_descriptions(cfg)
    missing = sorted(set(desc) - set(trace))
    if missing:
        raise ValueError(f"trace lacks {', '.join(missing)}: run golden_forward with trace=True")
    arrays = {k: np.asarray(trace[k], dtype=np.int32) for k in desc}
    S, T = arrays["inputs"].shape[:2]
    doc = {
        "format": VECTORS_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "config": cfg.to_dict(),
        "model_sha256": model.digest(),
        "sequences": int(S),
        "steps": int(T),
        "initial_state": "every sequence starts from cleared state: c = 0, h = 0 in every layer",
        "arrays": _array_entries(arrays, desc),
        "metadata": dict(metadata or {}),
    }
    write_npz(out_dir / "vectors.npz", arrays)
    write_text_atomic(out_dir / "vectors.json", _json_text(doc))


def load_vectors(vec_dir: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and validate ``vectors.npz`` + ``vectors.json``; returns (manifest, arrays)."""
    vec_dir = Path(vec_dir)
    doc = _read_manifest(vec_dir / "vectors.json", VECTORS_FORMAT)
    cfg = _config_from_manifest(vec_dir / "vectors.json", doc)
    arrays = read_npz(vec_dir / "vectors.npz")
    _check_arrays(vec_dir / "vectors.npz", arrays, doc["arrays"])
    missing = sorted(set(vector_descriptions(cfg)) - set(arrays))
    if missing:
        raise FileFormatError(
            f"{vec_dir / 'vectors.npz'}: missing array{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
        )
    doc["config"] = cfg
    return doc, arrays
