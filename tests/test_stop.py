"""A stopped command stops its simulators: Ctrl-C (SIGINT to the process group) and SIGTERM to the command alone,
sent to a real ``nvmlstm sim`` and ``nvmlstm flow`` while Icarus or Verilator runs, end it within seconds with one
line on stderr, exit status 130 / 143, and no process left in its session; a simulator killed on its own is
reported as stopped, never as a mismatch, and is never re-run with waveforms.

The /proc helpers the checks rely on (`nvmlstm.stopping`) are tested first, against a deliberately orphaned
``sleep``, so a checker that saw nothing would fail here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nvmlstm import stopping
from nvmlstm.sim.errors import killed_by
from nvmlstm.sim.runner import ended_early

# Scheduling hint (tests/conftest.py): about 3 minutes, most of it the flow's training and Verilator's builds.
pytestmark = pytest.mark.slow(3)

#: ``nvmlstm`` as a terminal runs it: Ctrl-C not ignored, even when these tests run as a background job (which
#: starts with SIGINT ignored, inherited by every child, and `nvmlstm.stopping.install` keeps an ignored signal so).
NVMLSTM = [
    sys.executable,
    "-c",
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from nvmlstm.cli import main; sys.exit(main())",
]
#: Process names (``comm``) of the simulators and of the Verilator build's compilers.
VVP, VTOP, COMPILER, VERILATING = ("vvp",), ("nvm_lstm_top",), ("cc1plus",), ("verilator_bin",)


def _wait_gone(pids: list[int], seconds: float = 10.0) -> list[int]:
    """The pids among ``pids`` still alive (not zombies) after up to ``seconds``."""
    t0 = time.monotonic()
    while True:
        alive = {p.pid for p in stopping.processes() if p.alive}
        left = [p for p in pids if p in alive]
        if not left or time.monotonic() - t0 > seconds:
            return left
        time.sleep(0.05)


def _session_left(sid: int) -> list[stopping.Proc]:
    """The processes still running in session ``sid`` after a short settling time; the test ends them (they are
    its own: started in that session) so that a failing test leaves nothing behind either."""
    t0 = time.monotonic()
    while (left := stopping.session_processes(sid)) and time.monotonic() - t0 < 3:
        time.sleep(0.05)
    for p in left:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


# ---- the /proc helpers and the stop machinery, on plain processes -------------------------------------------------
def test_the_session_check_sees_an_orphan():
    # sh starts a sleep in the background and exits: the sleep is an orphan (re-parented away from sh), still in
    # the session that sh led. A check that missed it would pass every stop test below.
    sh = subprocess.Popen(
        ["sh", "-c", "sleep 300 & echo $!"], start_new_session=True, stdout=subprocess.PIPE, text=True
    )
    orphan = int(sh.stdout.readline())
    sh.wait(timeout=30)
    sh.stdout.close()
    left = _session_left(sh.pid)  # also ends it
    assert [(p.pid, p.name) for p in left] == [(orphan, "sleep")]
    assert all(p.ppid != sh.pid for p in left)
    assert _wait_gone([orphan]) == []
    assert stopping.session_processes(sh.pid) == []


def test_proc_parses_names_with_spaces_and_parentheses(tmp_path):
    odd = tmp_path / "a) b (c"
    odd.symlink_to("/bin/sleep")
    p = subprocess.Popen([str(odd), "300"])
    try:
        me = next(q for q in stopping.descendants() if q.pid == p.pid)
        assert (me.name, me.ppid, me.state in "RSD", me.sid) == ("a) b (c", os.getpid(), True, os.getsid(0))
    finally:
        p.kill()
        p.wait()


_ADOPT = textwrap.dedent(
    """
    import os, signal, subprocess, time
    from nvmlstm import stopping
    assert stopping.install()
    # An orphan: its parent sh exits at once; as the subreaper, this process adopts it.
    subprocess.run(["sh", "-c", "sleep 300 & echo $! > orphan.pid"], check=True)
    orphan = int(open("orphan.pid").read())
    # A child that ignores SIGTERM (inherited across exec): SIGKILL at once.
    deaf = subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 300"])
    # One that catches SIGTERM and goes on (starting new children): only the SIGKILL after the grace ends it.
    loop = "trap 'echo' TERM; while :; do sleep 0.1; done"
    stubborn = subprocess.Popen(["sh", "-c", loop], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    print("adopted", [p.ppid for p in stopping.processes() if p.pid == orphan] == [os.getpid()])
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
    except stopping.Stopped as exc:
        print("stopped", exc.signum, stopping.stop_signal(), stopping.verb(exc.signum), stopping.exit_status(15))
    try:
        stopping.check()
    except KeyboardInterrupt:
        print("check raises")
    t0 = time.monotonic()
    ended = stopping.stop_children(grace=0.5)
    print("ended", sorted({p.name for p in ended}), "left", stopping.descendants())
    print("waited for the grace", time.monotonic() - t0 >= 0.5)
    """
)


def test_a_stop_signal_raises_once_and_stop_children_ends_orphans_and_the_deaf(tmp_path):
    p = subprocess.Popen(
        [sys.executable, "-c", _ADOPT], cwd=tmp_path, start_new_session=True, stdout=subprocess.PIPE, text=True
    )
    try:
        out, _ = p.communicate(timeout=60)
    finally:
        left = _session_left(p.pid)
    assert p.returncode == 0, out
    assert out.splitlines() == [
        "adopted True",
        "stopped 15 15 stopped by SIGTERM 143",
        "check raises",
        "ended ['sh', 'sleep'] left []",
        "waited for the grace True",
    ]
    assert left == []


_TWICE = textwrap.dedent(
    """
    import os, signal, time
    from nvmlstm import stopping
    stopping.install()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)
    except KeyboardInterrupt:
        os.kill(os.getpid(), signal.SIGTERM)  # a second stop while the first is handled: out at once
        time.sleep(30)
    print("not reached")
    """
)


def test_a_second_stop_signal_ends_the_process_at_once():
    res = subprocess.run([sys.executable, "-c", _TWICE], capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stdout, res.stderr) == (143, "", "nvmlstm: stopped by SIGTERM again; stopped at once\n")


def test_in_process_calls_leave_the_signal_handlers_alone(monkeypatch, tmp_path, capsys):
    import nvmlstm.cli as cli_mod

    seen = []
    monkeypatch.setattr(cli_mod, "cmd_golden", lambda args: seen.append(signal.getsignal(signal.SIGTERM)) or 0)
    before = signal.getsignal(signal.SIGTERM)
    assert cli_mod.main(["golden", "--config", str(tmp_path / "c.json"), "--random-weights", "--out", "o"]) == 0
    assert seen == [before] and not stopping.installed()


def test_killed_by_reads_the_return_code_cocotb_reports(tmp_path):
    # The message format is cocotb's: run a command that kills itself through the runner's own command loop.
    from nvmlstm.sim.cocotb_adapter import make_runner

    runner = make_runner("icarus")
    runner.env = dict(os.environ)
    for script, expect in (("kill -TERM $$", "SIGTERM"), ("kill -KILL $$", "SIGKILL"), ("exit 3", None)):
        with pytest.raises(RuntimeError) as info:
            runner._execute_cmds([["/bin/sh", "-c", script]], tmp_path)
        assert killed_by(info.value) == expect, str(info.value)
    assert killed_by(subprocess.CalledProcessError(-2, ["x"])) == "SIGINT"
    assert killed_by(RuntimeError("something else")) is None


_RESULTS = (
    '<?xml version="1.0" encoding="utf-8"?><testsuites name="cocotb tests"><testsuite name="nvmlstm.sim.tb" '
    'errors="0" failures="1" skipped="0" tests="1"><testcase classname="nvmlstm.sim.tb" name="regression">'
    '<failure message="cocotb expected it would shut down the simulation, but the simulation ended prematurely." '
    'type="{kind}">...</failure></testcase></testsuite></testsuites>'
)


def test_ended_early_reads_cocotbs_results(tmp_path):
    f = tmp_path / "results.xml"
    f.write_text(_RESULTS.format(kind="SimFailure"))
    assert ended_early(f)
    f.write_text(_RESULTS.format(kind="AssertionError"))  # a failing testbench: a real result
    assert not ended_early(f)
    f.write_text("<testsuites")
    assert not ended_early(f)
    assert not ended_early(tmp_path / "missing.xml")


# ---- real commands -------------------------------------------------------------------------------------------------
def _stop(
    argv: list, wait_for: tuple[str, ...], how: str, tmp: Path, *, after: float = 1.5, env: dict | None = None
) -> dict:
    """Start ``nvmlstm *argv`` in a session of its own, wait until a process named in ``wait_for`` runs in it (and
    ``after`` seconds more), then stop it: ``how`` = "INT" (Ctrl-C: SIGINT to the whole process group), "TERM"
    (SIGTERM to the command alone) or "SIM" (SIGTERM to the awaited process alone). Returns the exit status,
    stdout, stderr, the seconds from signal to exit and the processes left in the session."""
    out, err = tmp / "stdout.txt", tmp / "stderr.txt"
    with open(out, "w") as fo, open(err, "w") as fe:
        p = subprocess.Popen(
            [*NVMLSTM, *map(str, argv)],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=fo,
            stderr=fe,
            # As a user runs it: not "under pytest" (cocotb's runner changes its behaviour when it sees this).
            env={k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"} | (env or {}),
        )
    try:
        t0 = time.monotonic()
        target = None
        while target is None:
            target = next((q for q in stopping.session_processes(p.pid) if q.name in wait_for), None)
            if p.poll() is not None or time.monotonic() - t0 > 600:
                pytest.fail(f"no {wait_for} ran (exit {p.returncode}): {out.read_text()[-800:]} {err.read_text()}")
            time.sleep(0.05)
        time.sleep(after)
        running = {q.name for q in stopping.session_processes(p.pid)}
        assert p.poll() is None and set(wait_for) & running, f"finished before the stop: {running}"
        t_signal = time.monotonic()
        if how == "INT":
            os.killpg(p.pid, signal.SIGINT)
        else:
            os.kill(target.pid if how == "SIM" else p.pid, signal.SIGTERM)
        try:
            rc = p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 60 s after SIG{how}: {running}")
        seconds = time.monotonic() - t_signal
    finally:
        left = _session_left(p.pid)
        if p.poll() is None:
            p.kill()
            p.wait()
    return {
        "rc": rc,
        "out": out.read_text(),
        "err": err.read_text(),
        "seconds": seconds,
        "left": [(q.pid, q.name) for q in left],
        "running": running,
    }


def _assert_stopped(r: dict, how: str, command: str, ending: str = "") -> None:
    """Exit 130 (Ctrl-C) or 143 (SIGTERM), exactly one line on stderr and it names the stop, nothing of it on
    stdout, no process left, no failure or waveform re-run reported."""
    rc, line = (130, "interrupted") if how == "INT" else (143, "stopped by SIGTERM")
    assert r["left"] == [], r
    assert r["rc"] == rc, r
    assert [ln for ln in r["err"].splitlines() if ln.strip()] == [f"nvmlstm {command}: {line}{ending}"], r["err"]
    for word in ("interrupted", "stopped", "MISMATCH", "FAIL", "re-running with waveforms"):
        assert word not in r["out"], r["out"]


@pytest.fixture(scope="module")
def long_case(tmp_path_factory):
    """The regression case "multitile" (RTL identical to tests/test_regression.py's, so its builds are shared)
    with 40 sequences x 30 steps (400 for Verilator): several seconds of simulation on either simulator."""
    from nvmlstm.golden.vectors import input_rng, random_inputs, write_golden_dir
    from nvmlstm.sim.cases import case_by_name

    root = tmp_path_factory.mktemp("stop")
    case = case_by_name("multitile")
    model = case.write_vectors(root / "short")
    write_golden_dir(root / "long", model, random_inputs(case.cfg(), input_rng(5), 40, 30), metadata={})
    # Verilator simulates 40 x 30 in about a second (a fresh CI machine finished before the stop): ten times more.
    write_golden_dir(root / "longer", model, random_inputs(case.cfg(), input_rng(5), 400, 30), metadata={})
    case.write_rtl(root / "rtl", model)
    return root


def _built(simulator: str, case: Path) -> None:
    """Build (or find cached) the case's model, so the stop lands in the simulation rather than the build."""
    from nvmlstm.sim import run_regression, simulator_or_skip

    simulator_or_skip(simulator)
    assert run_regression(case / "rtl", case / "short", simulator)["passed"]


@pytest.mark.parametrize("simulator, names", [("icarus", VVP), ("verilator", VTOP)])
@pytest.mark.parametrize("how", ["INT", "TERM"])
def test_sim_stops_with_its_simulator(long_case, simulator, names, how, tmp_path):
    _built(simulator, long_case)
    vectors = long_case / ("longer" if simulator == "verilator" else "long")
    argv = ["sim", "--rtl", long_case / "rtl", "--vectors", vectors, "--simulator", simulator]
    r = _stop(argv, names, how, tmp_path, after=0.5 if simulator == "verilator" else 1.5)
    _assert_stopped(r, how, "sim")


def test_sim_stops_the_verilator_build_and_its_compilers(long_case, tmp_path):
    from nvmlstm.sim import simulator_or_skip

    simulator_or_skip("verilator")
    cache = tmp_path / "cache"
    argv = ["sim", "--rtl", long_case / "rtl", "--vectors", long_case / "long", "--simulator", "verilator"]
    r = _stop([*argv, "--cache", cache], COMPILER, "TERM", tmp_path, after=0.5)
    assert {"make", "cc1plus"} <= r["running"]  # grandchildren of the command: what SIGTERM used to orphan
    _assert_stopped(r, "TERM", "sim")
    assert [p.name for p in cache.iterdir()] == []  # no half-built entry


def test_a_simulator_killed_alone_is_stopped_not_a_mismatch(long_case, tmp_path):
    _built("icarus", long_case)
    argv = ["sim", "--rtl", long_case / "rtl", "--vectors", long_case / "long", "--simulator", "icarus"]
    for after in (0.2, 4.0):  # before the testbench starts (vvp dies of it), and during the run (vvp ends it)
        r = _stop([*argv, "--work-dir", tmp_path / f"work{after}"], VVP, "SIM", tmp_path, after=after)
        assert r["rc"] == 2 and r["left"] == [], r
        assert r["err"].startswith("nvmlstm sim: error: the icarus simulator ") and r["err"].count("\n") == 1, r
        assert "no result (not a mismatch)" in r["err"]
        assert "re-running" not in r["out"] and not (tmp_path / f"work{after}" / "waves").exists()


FLOW = ["flow", "--task", "digits", "--hidden", "4", "--epochs", "2", "--lanes", "2", "--vectors", "64"]
FLOW += ["--sweep-trials", "2", "--pdk", "none", "--no-progress"]


@pytest.fixture(scope="module")
def flow_dir(tmp_path_factory):
    """One flow directory for every flow test: the first pays for training and generation, the others reuse them
    and go straight to the simulation (which, stopped each time, never finishes)."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    return tmp_path_factory.mktemp("stopflow") / "run"


@pytest.mark.parametrize(
    "simulator, names, how, after",
    [
        ("icarus", VVP, "TERM", 2.0),
        ("icarus", VVP, "INT", 2.0),
        ("verilator", COMPILER, "TERM", 0.5),  # in the build: make and the compilers are the command's grandchildren
        ("verilator", VERILATING, "INT", 0.5),
    ],
)
def test_flow_stops_with_its_simulator(flow_dir, simulator, names, how, after, tmp_path):
    from nvmlstm.sim import simulator_or_skip

    simulator_or_skip(simulator)
    argv = [*FLOW, "--simulators", simulator, "--out", flow_dir]
    # An empty build cache: the Verilator build runs (and is stopped) every time.
    r = _stop(argv, names, how, tmp_path, after=after, env={"NVMLSTM_SIM_CACHE": str(tmp_path / "cache")})
    again = " ".join(["nvmlstm", *map(str, argv)])
    _assert_stopped(r, how, "flow", f"; finished stages are kept and reused by: {again}")
    assert f"[flow] sim_{simulator}: running" in r["out"]
    state = (flow_dir / "flow_state.json").read_text()
    assert f'"sim_{simulator}"' not in state  # no record of a stopped stage: the next run starts it again
