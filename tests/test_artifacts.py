"""The generic helpers of ``nvmlstm.artifacts``: deterministic PNGs, atomic writes, digests, the version."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zlib
from importlib import metadata

import pytest

from nvmlstm.artifacts import files, version
from nvmlstm.artifacts.files import json_sha256, sha256_bytes, sha256_file, write_bytes_atomic, write_text_atomic
from nvmlstm.artifacts.png import save_png
from nvmlstm.artifacts.version import NOT_INSTALLED, package_version


# --------------------------------------------------------------------------------------------------
# PNG
def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2))
    ax = fig.add_subplot()
    ax.plot([0, 1, 2, 3], [1, 3, 2, 4], marker="o", label="metric")
    ax.set_title("resilience")
    ax.legend()
    return fig


def _png_text_keys(data: bytes) -> list[str]:
    """The keys of every tEXt / iTXt / zTXt chunk of a PNG (checking each chunk's CRC)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    keys, pos = [], 8
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])[0] == zlib.crc32(kind + body)
        if kind in (b"tEXt", b"iTXt", b"zTXt"):
            keys.append(body.split(b"\0", 1)[0].decode("latin-1"))
        pos += 12 + n
    assert kind == b"IEND"
    return keys


def test_save_png_is_byte_identical_and_has_no_software_tag(tmp_path):
    save_png(_figure(), tmp_path / "a.png")
    save_png(_figure(), tmp_path / "b.png")
    a, b = (tmp_path / "a.png").read_bytes(), (tmp_path / "b.png").read_bytes()
    assert a == b
    assert "Software" not in _png_text_keys(a)
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.png"]  # no temporary file left


def test_the_software_tag_check_can_fail():
    """matplotlib's own savefig writes the Software tag that save_png removes."""
    buf = io.BytesIO()
    _figure().savefig(buf, format="png", dpi=90)
    assert "Software" in _png_text_keys(buf.getvalue())


# --------------------------------------------------------------------------------------------------
# Atomic writes
def test_write_bytes_atomic_writes_an_ordinary_file(tmp_path):
    path = tmp_path / "out.bin"
    write_bytes_atomic(path, b"old")
    write_bytes_atomic(path, b"new\x00bytes")
    assert path.read_bytes() == b"new\x00bytes"
    assert (path.stat().st_mode & 0o777) == 0o644
    write_text_atomic(path, "grüße\n")
    assert path.read_bytes() == "grüße\n".encode()
    assert os.listdir(tmp_path) == ["out.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "out.bin"
    path.write_bytes(b"the old contents")

    def refuse(src, dst):
        assert os.path.exists(src)  # the new bytes were in a temporary beside the target
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_bytes_atomic(path, b"the new contents")
    assert path.read_bytes() == b"the old contents"
    assert os.listdir(tmp_path) == ["out.bin"]


# --------------------------------------------------------------------------------------------------
# Digests
def test_sha256_file_equals_hashlib_of_the_bytes(tmp_path):
    data = os.urandom((5 << 19) + 7)  # 2.5 MiB + 7: several 1 MiB chunks and a partial one
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest() == sha256_bytes(data)
    assert sha256_file(path) != hashlib.sha256(data[:-1]).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sha256_file(empty) == hashlib.sha256(b"").hexdigest()


def test_json_sha256_is_independent_of_key_order():
    a = {"b": [1, 2, {"y": 1, "x": 2}], "a": {"k": "v", "j": None}}
    b = {"a": {"j": None, "k": "v"}, "b": [1, 2, {"x": 2, "y": 1}]}
    assert list(a) != list(b)
    assert json_sha256(a) == json_sha256(b)
    assert json_sha256(a) == hashlib.sha256(json.dumps(a, sort_keys=True).encode()).hexdigest()
    assert json_sha256(a) != json_sha256({**a, "b": [2, 1, {"x": 2, "y": 1}]})  # list order counts


# --------------------------------------------------------------------------------------------------
# Version
def test_package_version_is_the_installed_distributions(monkeypatch):
    assert package_version() == metadata.version("nvm-lstm")
    assert package_version() != NOT_INSTALLED

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(version.metadata, "version", missing)
    assert package_version() == NOT_INSTALLED
