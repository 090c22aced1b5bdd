"""The generic helpers of ``nvmlstm.artifacts``: deterministic PNGs, atomic writes, digests, the version, progress."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import threading
import time
import zlib
from importlib import metadata

import pytest

from nvmlstm.artifacts import files, version
from nvmlstm.artifacts import progress as progress_mod
from nvmlstm.artifacts.files import json_sha256, sha256_bytes, sha256_file, write_bytes_atomic, write_text_atomic
from nvmlstm.artifacts.png import save_png
from nvmlstm.artifacts.progress import Heartbeat, LineStream, format_duration, heartbeat, progress
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


# --------------------------------------------------------------------------------------------------
# Progress: bars and heartbeats
class _Terminal(io.StringIO):
    """A stream that says it is a terminal (tqdm's in-place redraw goes there)."""

    def isatty(self) -> bool:
        return True


def _log_lines(text: str) -> list[str]:
    """The lines of a log, checked to be readable: no carriage return (a redraw in place), no escape sequence
    (the cursor-up of nested bars), every line ending with a newline, none longer than a screen."""
    assert "\r" not in text, f"carriage return in a log: {text[:120]!r}"
    assert "\x1b" not in text, f"escape sequence in a log: {text[:120]!r}"
    assert text.endswith("\n"), f"unterminated last line: {text[-120:]!r}"
    lines = text.splitlines()
    assert all(0 < len(ln) <= 200 for ln in lines), [ln for ln in lines if not 0 < len(ln) <= 200][:1]
    return lines


def _count_to(bar, n: int) -> None:
    with bar:
        for _ in range(n):
            bar.update(1)


def test_progress_writes_separate_lines_into_a_log():
    log = io.StringIO()
    _count_to(progress(500, "evaluating", unit="batch", file=log), 500)
    lines = _log_lines(log.getvalue())
    # A line when it starts and one at the end; 500 updates in far less than LOG_INTERVAL_S add none.
    assert len(lines) == 2, lines
    assert lines[0].startswith("evaluating:   0%")
    assert lines[-1].startswith("evaluating: 100%") and "500/500" in lines[-1]


def test_progress_in_a_log_writes_a_line_per_interval(monkeypatch):
    """With the interval at 0 every update is a line of its own, still no carriage return."""
    monkeypatch.setattr(progress_mod, "LOG_INTERVAL_S", 0.0)
    log = io.StringIO()
    _count_to(progress(5, "mapping", file=log), 5)
    lines = _log_lines(log.getvalue())
    assert [ln.split("|")[0].split(":")[1].strip() for ln in lines][-1] == "100%"
    assert len(lines) >= 5


def test_the_log_line_check_catches_raw_tqdm_output():
    """tqdm's own output into a file: redraws joined by carriage returns on one line, which the check refuses."""
    from tqdm import tqdm

    raw = io.StringIO()
    _count_to(tqdm(total=5, desc="evaluating", file=raw, mininterval=0, ascii=True), 5)
    assert "\r" in raw.getvalue()
    with pytest.raises(AssertionError, match="carriage return"):
        _log_lines(raw.getvalue())


def test_progress_on_a_terminal_is_tqdms_bar():
    from tqdm import tqdm

    tty = _Terminal()
    bar = progress(5, "training", file=tty)
    assert isinstance(bar, tqdm) and bar.fp is not None
    _count_to(bar, 5)
    assert "\r" in tty.getvalue()  # redrawn in place
    assert "training" in tty.getvalue()


def test_a_disabled_progress_writes_nothing():
    for stream in (io.StringIO(), _Terminal()):
        _count_to(progress(5, "quiet", file=stream, enabled=False), 5)
        assert stream.getvalue() == ""
        _count_to(progress(5, "loud", file=stream), 5)  # the same stream enabled: the check can fail
        assert "loud" in stream.getvalue()


def test_line_stream_splits_redraws_and_drops_blank_clears():
    out = io.StringIO()
    LineStream(out).write("\rstep 1\r\x1b[Astep 2\r          \r")
    assert out.getvalue() == "step 1\nstep 2\n"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "under 1 s"),
        (0.4, "under 1 s"),
        (1, "1 s"),
        (44.6, "45 s"),
        (60, "1 min"),
        (90, "1 min 30 s"),
        (3599, "59 min 59 s"),
        (7500, "2 h 5 min"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


class _Clock:
    """A clock the test moves: each heartbeat line reads the time it was set to."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _beats(n: int, *, expected_s=None, raise_exc: BaseException | None = None, interval: float = 0.005):
    """Run a heartbeat until it has said ``n`` lines (the clock advancing 30 s per line), then end the block
    (normally or by raising ``raise_exc``); returns the lines and the heartbeat."""
    clock, lines, enough = _Clock(), [], threading.Event()

    def say(text: str) -> None:
        lines.append(text)
        clock.now += 30.0
        if len(lines) >= n:
            enough.set()

    hb = Heartbeat(say, "mapping", expected_s, interval=interval, clock=clock)
    try:
        with hb:
            clock.now += 30.0
            assert enough.wait(timeout=60), "no heartbeat"
            if raise_exc is not None:
                raise raise_exc
    except BaseException as exc:  # the test's own exception, re-raised to the caller after the checks
        if exc is not raise_exc:
            raise
    hb.clock_used = clock
    return lines, hb


def test_heartbeat_says_elapsed_and_expected_time():
    lines, hb = _beats(3, expected_s=100.0)
    assert lines[:3] == [
        "still mapping: 30 s elapsed, about 1 min 40 s expected",
        "still mapping: 1 min elapsed, about 1 min 40 s expected",
        "still mapping: 1 min 30 s elapsed, about 1 min 40 s expected",
    ]
    assert not hb._thread.is_alive()
    took = hb.elapsed
    assert took >= 90.0
    hb.clock_used.now += 500.0
    assert hb.elapsed == took  # the step's duration, frozen when the block ended
    lines, _ = _beats(4, expected_s=60.0)
    assert lines[3] == "still mapping: 2 min elapsed, longer than the 1 min expected"
    lines, _ = _beats(1)
    assert lines[0] == "still mapping: 30 s elapsed"


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), RuntimeError("yosys failed")])
def test_heartbeat_stops_when_the_step_raises(exc):
    lines, hb = _beats(2, raise_exc=exc)
    assert not hb._thread.is_alive()
    said = len(lines)
    time.sleep(0.05)  # ten intervals: a thread still beating would have said more
    assert len(lines) == said


def test_the_stopped_heartbeat_check_catches_a_thread_left_running():
    """Without the stop (the ``with`` block's exit never run) the thread keeps beating: the checks above fail."""
    lines, enough = [], threading.Event()
    hb = Heartbeat(lambda text: (lines.append(text), enough.set()), "building", interval=0.005)
    hb.__enter__()
    try:
        assert enough.wait(timeout=60)
        said = len(lines)
        time.sleep(0.05)
        assert hb._thread.is_alive() and len(lines) > said
    finally:
        hb.__exit__(None, None, None)
    assert not hb._thread.is_alive()


def test_a_heartbeat_with_a_long_interval_says_nothing_for_a_quick_step():
    lines = []
    with heartbeat(lines.append, "synthesizing", 5.0) as hb:
        pass
    assert lines == [] and not hb._thread.is_alive()


def test_a_broken_log_ends_the_heartbeat_quietly(monkeypatch):
    """A ``say`` that raises (a closed pipe) stops the beats; no exception escapes the thread."""
    escaped, calls = [], []
    monkeypatch.setattr(threading, "excepthook", lambda args: escaped.append(args.exc_value))

    def broken(text: str) -> None:
        calls.append(text)
        raise BrokenPipeError("closed")

    with heartbeat(broken, "building", interval=0.005) as hb:
        hb._thread.join(timeout=60)  # it ends by itself after the first failed line
    assert len(calls) == 1 and escaped == []
    # The check can fail: an exception that does escape a thread is seen by the hook.
    raw = threading.Thread(target=broken, args=("x",))
    raw.start()
    raw.join()
    assert [type(e) for e in escaped] == [BrokenPipeError]
