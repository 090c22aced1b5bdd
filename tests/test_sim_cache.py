"""The simulator build cache (`nvmlstm.sim.build`): bounded, cleared on request, safe beside other processes.

The entries here are fakes (directories with the cache's names, a ``build.json`` whose time stamp is the last use
and a payload of a chosen size), so no simulator runs; `build` itself runs with a fake cocotb runner.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from nvmlstm.sim import build as B
from nvmlstm.sim.errors import BuildError, SimStopped
from nvmlstm.sim.simulators import SimTool

NOW = 1_900_000_000.0  # the present of every test (time.time() style), far from any real file's time stamp
DAY = 86400.0


def _key(i: int) -> str:
    return f"{i:024x}"


def _entry(root: Path, i: int, *, used_ago: float, size: int = 1000, kind: str = "verilator") -> Path:
    """A complete fake build, last used ``used_ago`` seconds before `NOW`, holding ``size`` bytes of payload."""
    p = root / f"{kind}-{_key(i)}"
    p.mkdir(parents=True)
    (p / "Vtop").write_bytes(b"\0" * size)
    (p / "build.json").write_text("{}")
    os.utime(p / "build.json", (NOW - used_ago, NOW - used_ago))
    return p


def _age(path: Path, ago: float) -> Path:
    os.utime(path, (NOW - ago, NOW - ago))
    return path


def _names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def _building(root: Path, i: int, *, pid: int | None, ago: float = 60.0) -> Path:
    """The temporary directory of a build in progress (``mkdtemp`` name), owned by ``pid`` (None: no owner file)."""
    p = root / f".verilator-{_key(i)}.ab_12cd"
    p.mkdir(parents=True)
    (p / "Vtop__ALL.o").write_bytes(b"\0" * 500)
    if pid is not None:
        (p / B.OWNER_FILE).write_text(json.dumps({"pid": pid, "host": B.socket.gethostname()}))
    return _age(p, ago)


# --------------------------------------------------------------------------------------------------
# Where and how big
def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NVMLSTM_SIM_CACHE", str(tmp_path / "c"))
    assert B.cache_root() == tmp_path / "c"
    monkeypatch.delenv("NVMLSTM_SIM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert B.cache_root() == tmp_path / "xdg" / "nvmlstm" / "sim"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert B.cache_root() == Path.home() / ".cache" / "nvmlstm" / "sim"


def test_the_size_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(B.CACHE_MB_ENV, raising=False)
    assert B.cache_max_bytes() == B.CACHE_MAX_BYTES
    monkeypatch.setenv(B.CACHE_MB_ENV, "50")
    assert B.cache_max_bytes() == 50_000_000
    monkeypatch.setenv(B.CACHE_MB_ENV, "0")
    assert B.cache_max_bytes() == 0
    for bad in ("-5", "1.5", "lots"):
        monkeypatch.setenv(B.CACHE_MB_ENV, bad)
        with pytest.raises(BuildError) as err:
            B.cache_max_bytes()
        assert (
            str(err.value) == f"NVMLSTM_SIM_CACHE_MB={bad!r}: expected a whole number of megabytes (0: no size limit)"
        )


def test_cache_entries_lists_complete_builds_most_recent_first(tmp_path):
    _entry(tmp_path, 1, used_ago=300, size=100)
    _entry(tmp_path, 2, used_ago=100, size=2000, kind="icarus-gates")
    _building(tmp_path, 3, pid=os.getpid())
    (tmp_path / f"verilator-{_key(4)}").mkdir()  # no build.json: not a build
    entries = B.cache_entries(tmp_path)
    assert [e.path.name for e in entries] == [f"icarus-gates-{_key(2)}", f"verilator-{_key(1)}"]
    assert [e.bytes for e in entries] == [2002, 102]  # payload + "{}"
    assert B.cache_entries(tmp_path / "missing") == []


# --------------------------------------------------------------------------------------------------
# Trimming
def test_trim_keeps_the_most_recently_used_builds(tmp_path):
    for i in range(6):
        _entry(tmp_path, i, used_ago=3600 * (i + 1))  # entry 0 the most recently used
    removed = B.trim_cache(tmp_path, max_entries=4, max_bytes=0, now=NOW)
    assert sorted(e.path.name for e in removed) == [f"verilator-{_key(4)}", f"verilator-{_key(5)}"]
    assert _names(tmp_path) == [f"verilator-{_key(i)}" for i in range(4)]  # no .evicted- left behind


def test_trim_bounds_the_bytes(tmp_path):
    for i in range(5):
        _entry(tmp_path, i, used_ago=3600 * (i + 1), size=10_000)
    B.trim_cache(tmp_path, max_entries=48, max_bytes=25_000, now=NOW)
    assert _names(tmp_path) == [f"verilator-{_key(0)}", f"verilator-{_key(1)}"]
    assert sum(e.bytes for e in B.cache_entries(tmp_path)) <= 25_000
    assert B.trim_cache(tmp_path, max_entries=48, max_bytes=25_000, now=NOW) == []  # within the limits now


def test_trim_keeps_builds_used_within_the_grace_time(tmp_path):
    """A build used a moment ago may be about to run in another process: kept even beyond the limits."""
    for i in range(4):
        _entry(tmp_path, i, used_ago=60 * (i + 1))
    _entry(tmp_path, 9, used_ago=2 * B.CACHE_GRACE_S)
    B.trim_cache(tmp_path, max_entries=2, max_bytes=0, now=NOW)
    assert _names(tmp_path) == [f"verilator-{_key(i)}" for i in range(4)]
    B.trim_cache(tmp_path, max_entries=2, max_bytes=0, now=NOW + B.CACHE_GRACE_S)  # later: trimmed
    assert _names(tmp_path) == [f"verilator-{_key(0)}", f"verilator-{_key(1)}"]


def test_trim_removes_leftovers_and_leaves_live_builds_and_foreign_files(tmp_path):
    _entry(tmp_path, 1, used_ago=10)
    (tmp_path / f"failed-verilator-{_key(2)}").mkdir()
    (tmp_path / f"failed-verilator-{_key(2)}" / "build.log").write_text("error\n")
    _age(tmp_path / f"failed-verilator-{_key(2)}", 3600)  # a recent failure: its log is kept for a day
    (tmp_path / f"failed-icarus-{_key(3)}").mkdir()
    _age(tmp_path / f"failed-icarus-{_key(3)}", 2 * DAY)  # an old one: removed
    (tmp_path / f".evicted-verilator-{_key(4)}-0a1b2c3d").mkdir()  # an interrupted removal: removed
    live = _building(tmp_path, 5, pid=os.getpid())
    dead = _building(tmp_path, 6, pid=_dead_pid())
    ownerless_young = _building(tmp_path, 7, pid=None, ago=60)
    ownerless_old = _building(tmp_path, 8, pid=None, ago=2 * DAY)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "verilator-not-a-key").mkdir()
    keep = [f"verilator-{_key(1)}", f"failed-verilator-{_key(2)}", live.name, ownerless_young.name]
    keep += ["notes.txt", "verilator-not-a-key"]
    B.trim_cache(tmp_path, now=NOW)
    assert _names(tmp_path) == sorted(keep)
    assert not dead.exists() and not ownerless_old.exists()


def test_trim_is_safe_when_processes_trim_at_once(tmp_path):
    """Several trims of one cache at once (each process trims after its build): no error, the limit holds,
    and the builds kept are the most recently used."""
    for i in range(40):
        _entry(tmp_path, i, used_ago=3600 * (i + 1), size=2000)
    errors = []

    def trim():
        try:
            B.trim_cache(tmp_path, max_entries=10, max_bytes=0, now=NOW)
        except Exception as exc:  # collected: an exception in a thread would not fail the test by itself
            errors.append(exc)

    threads = [threading.Thread(target=trim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _names(tmp_path) == [f"verilator-{_key(i)}" for i in range(10)]


def test_a_build_is_renamed_away_before_it_is_deleted(tmp_path, monkeypatch):
    """Another process never finds a half-deleted build under its own name (where `build` would reuse it)."""
    for i in range(3):
        _entry(tmp_path, i, used_ago=3600 * (i + 1))
    seen = []
    real_rmtree = B.shutil.rmtree

    def rmtree(path, *args, **kwargs):
        seen.append((Path(path).name, (tmp_path / Path(path).name.split("-", 1)[1].rsplit("-", 1)[0]).exists()))
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(B.shutil, "rmtree", rmtree)
    B.trim_cache(tmp_path, max_entries=1, max_bytes=0, now=NOW)
    assert len(seen) == 2
    assert all(name.startswith(".evicted-verilator-") and not still_there for name, still_there in seen)


def test_the_rename_check_catches_an_in_place_delete(tmp_path, monkeypatch):
    """The check above fails for a removal that deletes the build where it is (what `_discard` avoids)."""
    p = _entry(tmp_path, 0, used_ago=3600)
    seen = []
    real_rmtree = B.shutil.rmtree

    def rmtree(path, *args, **kwargs):
        seen.append((Path(path).name, Path(path).exists()))
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(B.shutil, "rmtree", rmtree)
    monkeypatch.setattr(B, "_discard", lambda path: (B.shutil.rmtree(path), True)[1])
    B.trim_cache(tmp_path, max_entries=0, max_bytes=0, now=NOW)
    assert seen == [(p.name, True)]
    assert not all(name.startswith(".evicted-") for name, _ in seen)


# --------------------------------------------------------------------------------------------------
# Clearing
def test_clear_removes_every_build_but_live_ones_and_foreign_files(tmp_path):
    root = tmp_path / "sim"
    for i in range(3):
        _entry(root, i, used_ago=10, size=1_000_000)  # used a moment ago: clearing removes them all the same
    (root / f"failed-verilator-{_key(7)}").mkdir()
    (root / f"failed-verilator-{_key(7)}" / "build.log").write_text("error\n")
    live = _building(root, 5, pid=os.getpid())
    _building(root, 6, pid=_dead_pid())
    (root / "notes.txt").write_text("mine")
    res = B.clear_cache(root)
    assert (res.removed, res.leftovers, res.in_progress) == (3, 2, 1)
    assert res.freed_bytes >= 3_000_000
    assert _names(root) == sorted([live.name, "notes.txt"])
    assert res.summary() == (
        f"simulator build cache {root}: removed 3 builds and 2 leftovers of failed or interrupted builds (3.0 MB); "
        "left 1 build in progress alone"
    )


def test_clear_removes_the_emptied_directory(tmp_path):
    root = tmp_path / "sim"
    _entry(root, 0, used_ago=10)
    res = B.clear_cache(root)
    assert not root.exists()
    assert res.summary() == f"simulator build cache {root}: removed 1 build (0.0 MB)"
    again = B.clear_cache(root)  # nothing there: nothing to do, no error
    assert (again.removed, again.leftovers, again.freed_bytes) == (0, 0, 0)


def test_clear_uses_the_default_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NVMLSTM_SIM_CACHE", str(tmp_path / "c"))
    _entry(tmp_path / "c", 0, used_ago=10)
    assert B.clear_cache().removed == 1


# --------------------------------------------------------------------------------------------------
# build(), with a fake runner: the messages, the cache trim, a failed build keeps only its log
class _FakeRunner:
    """cocotb's runner as `build` uses it: ``build(**kwargs)`` makes the build directory, ``commands``."""

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.commands = [["iverilog", "-o", "sim.vvp"]]

    def build(self, *, build_dir, log_file, **_kwargs):
        Path(log_file).write_text("compiling\n" + ("error: syntax\n" if self.fail else ""))
        (Path(build_dir) / "big.o").write_bytes(b"\0" * 100_000)  # what a build leaves and the cache drops
        if self.fail:
            raise SystemExit(1)
        (Path(build_dir) / "sim.vvp").write_text("#! vvp\n")


@pytest.fixture
def fake_design(tmp_path, monkeypatch):
    rtl = tmp_path / "rtl"
    rtl.mkdir()
    (rtl / "top.v").write_text("module nvm_lstm_top;\nendmodule\n" * 50)
    (rtl / "filelist.f").write_text("top.v\n")
    manifest = {"filelists": {"simulation": "filelist.f"}}
    tool = SimTool("icarus", "/usr/bin/iverilog", (12, 0), "Icarus Verilog version 12.0 (fake)")
    runners = []

    def make_runner(*_args, **_kwargs):
        runners.append(_FakeRunner(fail=getattr(make_runner, "fail", False)))
        return runners[-1]

    monkeypatch.setattr(B.cocotb_adapter, "make_runner", make_runner)
    return rtl, manifest, tool, make_runner


def test_build_says_its_estimate_and_time_and_reuses_the_entry(tmp_path, fake_design):
    rtl, manifest, tool, _ = fake_design
    msgs = []
    info = B.build(rtl, manifest, tool, cache=tmp_path / "cache", log=msgs.append)
    assert not info.cached
    assert msgs[0].startswith("building icarus model of rtl (100 lines of Verilog; about ")
    assert msgs[0].endswith(" expected) ...")
    assert msgs[1].startswith("built in ") and msgs[1].endswith(str(info.dir))
    assert sorted(p.name for p in info.dir.iterdir()) == ["build.json", "build.log", "sim.vvp"]  # pruned
    again = B.build(rtl, manifest, tool, cache=tmp_path / "cache", log=msgs.append)
    assert again.cached and again.dir == info.dir and len(msgs) == 2


def test_build_trims_the_cache_after_a_new_build(tmp_path, fake_design, monkeypatch):
    rtl, manifest, tool, _ = fake_design
    cache = tmp_path / "cache"
    old = [_entry(cache, i, used_ago=B.CACHE_GRACE_S + 3600 * (i + 1)) for i in range(3)]
    for p in old:  # real time stamps: build() trims at the real present
        t = os.stat(p / "build.json").st_mtime - NOW + B.time.time()
        os.utime(p / "build.json", (t, t))
    monkeypatch.setattr(B, "CACHE_ENTRIES", 2)
    msgs = []
    info = B.build(rtl, manifest, tool, cache=cache, log=msgs.append)
    assert _names(cache) == sorted([info.dir.name, old[0].name])
    assert msgs[-1].startswith(f"build cache {cache}: removed the 2 least recently used builds (")
    assert msgs[-1].endswith(f") to stay within 2 builds and {B._mb(B.CACHE_MAX_BYTES)}")


def test_a_bad_size_limit_fails_before_building(tmp_path, fake_design, monkeypatch):
    rtl, manifest, tool, _ = fake_design
    monkeypatch.setenv(B.CACHE_MB_ENV, "big")
    with pytest.raises(BuildError, match="NVMLSTM_SIM_CACHE_MB='big'"):
        B.build(rtl, manifest, tool, cache=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_failed_build_keeps_only_its_log(tmp_path, fake_design):
    rtl, manifest, tool, make_runner = fake_design
    make_runner.fail = True
    cache = tmp_path / "cache"
    with pytest.raises(BuildError) as err:
        B.build(rtl, manifest, tool, cache=cache)
    (failed,) = cache.iterdir()
    assert failed.name.startswith("failed-icarus-")
    assert [p.name for p in failed.iterdir()] == ["build.log"]  # not the objects (~150 MB for Verilator)
    assert f"log {failed / 'build.log'}: error: syntax" in str(err.value)


def test_a_killed_build_is_stopped_not_failed(tmp_path, fake_design, monkeypatch):
    """A build command ended by a signal (SIGTERM from `timeout`, a scheduler): `SimStopped`, no failed log."""
    rtl, manifest, tool, _ = fake_design

    def killed(self, *, log_file, **_kwargs):
        Path(log_file).write_text("compiling\n")
        raise RuntimeError("Command failed with return code: -15")

    monkeypatch.setattr(_FakeRunner, "build", killed)
    with pytest.raises(SimStopped) as err:
        B.build(rtl, manifest, tool, cache=tmp_path / "cache")
    assert str(err.value) == f"the icarus build of {rtl} was ended by SIGTERM: nothing built"
    assert _names(tmp_path / "cache") == []


def test_an_interrupted_build_leaves_nothing(tmp_path, fake_design, monkeypatch):
    rtl, manifest, tool, _ = fake_design

    def interrupted(self, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_FakeRunner, "build", interrupted)
    with pytest.raises(KeyboardInterrupt):
        B.build(rtl, manifest, tool, cache=tmp_path / "cache")
    assert _names(tmp_path / "cache") == []
    assert [t.name for t in threading.enumerate() if t.name.startswith("heartbeat")] == []


# --------------------------------------------------------------------------------------------------
# make clean-cache
REPO = Path(__file__).resolve().parents[1]


def _make(*args: str, env: dict) -> subprocess.CompletedProcess:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    base = {k: v for k, v in os.environ.items() if k not in ("NVMLSTM_SIM_CACHE", "XDG_CACHE_HOME", "MAKEFLAGS")}
    return subprocess.run(
        ["make", "--no-print-directory", "clean-cache", *args],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_make_clean_cache_clears_the_cache(tmp_path):
    root = tmp_path / "c"
    _entry(root, 0, used_ago=10, size=2_000_000)
    (root / "notes.txt").write_text("mine")
    proc = _make(env={"NVMLSTM_SIM_CACHE": str(root)})
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == f"simulator build cache {root}: removed 1 build (2.0 MB)\n"
    assert _names(root) == ["notes.txt"]


def test_make_clean_cache_without_the_venv(tmp_path):
    """After `make clean` (no venv): the default directory is removed whole; a $NVMLSTM_SIM_CACHE directory,
    which may hold anything, is refused with one line."""
    home = tmp_path / "home"
    _entry(home / ".cache" / "nvmlstm" / "sim", 0, used_ago=10)
    (home / ".cache" / "other").mkdir()
    proc = _make(f"VENV={tmp_path / 'no-venv'}", env={"HOME": str(home)})
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == f"removed the simulator build cache {home}/.cache/nvmlstm/sim\n"
    assert _names(home / ".cache") == ["nvmlstm", "other"] and _names(home / ".cache" / "nvmlstm") == []
    mine = tmp_path / "mine"
    _entry(mine, 0, used_ago=10)
    proc = _make(f"VENV={tmp_path / 'no-venv'}", env={"HOME": str(home), "NVMLSTM_SIM_CACHE": str(mine)})
    assert proc.returncode == 2 and proc.stderr.count("\n") <= 2  # the line and make's own
    assert proc.stderr.startswith(f"make clean-cache: no {tmp_path / 'no-venv'} to clear {mine} safely")
    assert _names(mine) == [f"verilator-{_key(0)}"]
