"""Stopping a command and everything it started: Ctrl-C, SIGTERM and SIGHUP end the simulators too.

A command is stopped by Ctrl-C (SIGINT to its whole process group), by SIGTERM to it alone (what ``timeout``,
CI runners and batch schedulers send) or by SIGHUP (its terminal went away). Python's defaults handle only the
first: SIGTERM and SIGHUP end the process at once and orphan its children, and even on Ctrl-C the grandchildren
(the C++ compilers under Verilator's ``make``) outlive it. `install`, called by `nvmlstm.cli.main` for the
process's own command line (never for an in-process call, whose caller owns the other processes), makes all
three alike:

* the first stop signal raises `Stopped` (a `KeyboardInterrupt`) in the main thread, so the command unwinds as
  on Ctrl-C and prints its one line, with exit status 128 + the signal number (130, 143, 129);
* the process becomes a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``): a descendant whose parent dies
  (a compiler whose ``make`` was killed) is re-parented to this process instead of to init, so it is still
  found among the descendants;
* `stop_children` ends every descendant, found through ``/proc``: SIGTERM, then SIGKILL after `GRACE_S`
  (Icarus' ``vvp`` ends its simulation cleanly on SIGTERM); a process that ignores SIGTERM gets SIGKILL at once;
* a second stop signal while the first is being handled ends the process at once (descendants killed).

Worker threads cannot receive signals; they call `check` before starting anything new, so a stopped command
starts no simulator after the stop. All Linux-specific code of the project (prctl, ``/proc``) is in this
module; elsewhere the subreaper and the ``/proc`` scan degrade to nothing and only the direct children, which
`subprocess` kills itself, are ended.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "GRACE_S",
    "STOP_SIGNALS",
    "Proc",
    "Stopped",
    "check",
    "descendants",
    "exit_status",
    "finish",
    "install",
    "installed",
    "processes",
    "session_processes",
    "set_subreaper",
    "stop_children",
    "stop_signal",
    "terminate_descendants",
    "verb",
]

#: Seconds between SIGTERM and SIGKILL to a descendant that is still running.
GRACE_S = 2.0
#: Seconds `stop_children` keeps ending descendants (a worker thread may start one more before it sees the stop).
TIMEOUT_S = 15.0
#: The signals that stop a command (SIGHUP only where it exists).
STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)
_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


class Stopped(KeyboardInterrupt):
    """The command was stopped by signal ``signum`` (a `KeyboardInterrupt`: code that cleans up on Ctrl-C
    cleans up on SIGTERM too)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@dataclass(frozen=True)
class _State:
    installed: bool = False
    signum: int | None = None  # the first stop signal
    finishing: bool = False  # the command is done: a late signal is ignored


_state = _State()


def _set(**changes) -> None:
    # Only the main thread changes the state (install, the signal handler, finish), by replacing the whole
    # immutable record: worker threads read one consistent record, and no lock exists for the signal handler,
    # which runs in the main thread between any two bytecodes, to wait on.
    global _state
    _state = _State(**{**_state.__dict__, **changes})


def installed() -> bool:
    """Whether `install` is in effect (this process owns its command line and its descendants)."""
    return _state.installed


def stop_signal() -> int | None:
    """The signal that stopped the command, or None while it runs."""
    return _state.signum


def check() -> None:
    """Raise `Stopped` when the command has been stopped: called before starting a stage or a process."""
    if _state.signum is not None:
        raise Stopped(_state.signum)


def verb(signum: int | None) -> str:
    """How the one line says it: "interrupted" for Ctrl-C (or an unknown cause), else "stopped by SIGTERM"."""
    if signum is None or signum == signal.SIGINT:
        return "interrupted"
    return f"stopped by {signal.Signals(signum).name}"


def exit_status(signum: int | None) -> int:
    """128 + the signal number (the shell's convention); 130 when the cause is unknown (a plain Ctrl-C)."""
    return 128 + (signal.SIGINT if signum is None else signum)


# ---- /proc ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Proc:
    """One process as ``/proc/PID/stat`` shows it.

    Attributes
    ----------
    pid, ppid, sid : int
        Process, parent and session id.
    state : str
        ``R``, ``S``, ``D``, ``T``, ``Z`` (zombie: ended, not yet reaped), ...
    start : int
        Start time in clock ticks after boot: with ``pid``, an identity that survives pid reuse.
    name : str
        The executable's name (``comm``, at most 15 characters).
    """

    pid: int
    ppid: int
    sid: int
    state: str
    start: int
    name: str

    @property
    def alive(self) -> bool:
        """Not a zombie (a zombie has ended; only its exit status is left to collect)."""
        return self.state not in ("Z", "X")


def processes() -> list[Proc]:
    """Every process of the system (empty where there is no ``/proc``)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    out = []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses, so split after the last ")"
        close = text.rfind(")")
        fields = text[close + 2 :].split()
        comm = text[text.find("(") + 1 : close]
        try:
            out.append(Proc(int(name), int(fields[1]), int(fields[3]), fields[0], int(fields[19]), comm))
        except (IndexError, ValueError):
            continue
    return out


def descendants(pid: int | None = None) -> list[Proc]:
    """The live (non-zombie) descendants of ``pid`` (default this process), parents before children."""
    root = os.getpid() if pid is None else pid
    children: dict[int, list[Proc]] = {}
    for p in processes():
        children.setdefault(p.ppid, []).append(p)
    out, todo = [], [root]
    while todo:
        for p in children.get(todo.pop(0), []):
            if p.pid != root:
                todo.append(p.pid)
                if p.alive:
                    out.append(p)
    return out


def session_processes(sid: int) -> list[Proc]:
    """The live processes of session ``sid`` (a process started with ``start_new_session=True`` leads one, and
    everything it starts stays in it unless it makes a session of its own)."""
    return [p for p in processes() if p.sid == sid and p.alive]


def terminate_descendants(
    pid: int | None = None,
    *,
    until: Callable[[], bool] | None = None,
    grace: float = GRACE_S,
    timeout: float = TIMEOUT_S,
) -> list[Proc]:
    """End every descendant of ``pid`` (default this process): SIGTERM, SIGKILL after ``grace`` seconds.

    Parameters
    ----------
    pid : int, optional
        Whose descendants (default this process).
    until : callable, optional
        Also keep going until it returns True (the threads that may start a process have ended): a process
        started meanwhile is ended too.
    grace : float
        Seconds from SIGTERM to SIGKILL.
    timeout : float
        Give up after this many seconds.

    Returns
    -------
    list of Proc
        The processes that were signalled.
    """
    first_term: dict[tuple[int, int], float] = {}
    signalled: list[Proc] = []
    t0 = time.monotonic()
    while True:
        live = descendants(pid)
        if not live and (until is None or until()):
            return signalled
        now = time.monotonic()
        if now - t0 > timeout:
            return signalled
        for p in live:
            key = (p.pid, p.start)
            if key not in first_term:
                first_term[key] = now
                signalled.append(p)
                # One that ignores SIGTERM (multiprocessing's resource tracker) would only use up the grace.
                _kill(p.pid, signal.SIGKILL if _ignores_sigterm(p.pid) else signal.SIGTERM)
            elif now - first_term[key] > grace:
                _kill(p.pid, signal.SIGKILL)
        time.sleep(0.05)


def _ignores_sigterm(pid: int) -> bool:
    """Whether process ``pid`` ignores SIGTERM (the ``SigIgn`` mask of ``/proc/PID/status``)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            mask = next((int(ln.split()[1], 16) for ln in f if ln.startswith("SigIgn:")), 0)
    except (OSError, ValueError, IndexError):
        return False
    return bool(mask >> (signal.SIGTERM - 1) & 1)


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _reap() -> None:
    """Collect the exit status of ended children no one waits for (orphans re-parented here), so none stays a
    zombie. Only called once nothing of the command runs any more (``until`` of `stop_children` unset): a
    `subprocess` still waiting for its child would otherwise find it gone."""
    with contextlib.suppress(ChildProcessError, OSError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def stop_children(*, until: Callable[[], bool] | None = None, grace: float = GRACE_S) -> list[Proc]:
    """After a stop: `terminate_descendants` of this process, then collect the orphans that ended here, when
    `install` is in effect; nothing otherwise (an in-process call must not end its caller's other processes).

    A command that ends normally does not call it: what runs then (multiprocessing's resource tracker) ends
    with the interpreter.
    """
    if not _state.installed:
        return []
    ended = terminate_descendants(until=until, grace=grace)
    if until is None:
        _reap()
    return ended


# ---- installing -----------------------------------------------------------------------------------------------
def set_subreaper() -> bool:
    """Make this process the child subreaper of its descendants (Linux); False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _on_signal(signum: int, frame) -> None:
    state = _state
    if state.finishing:
        return  # the command is done; it ends with its own status
    if state.signum is None:
        _set(signum=signum)
        raise Stopped(signum)
    # A second stop while the first is handled: end now, and everything started.
    for _ in range(3):
        for p in descendants():
            _kill(p.pid, signal.SIGKILL)
    with contextlib.suppress(OSError, ValueError):
        os.write(2, f"nvmlstm: {verb(signum)} again; stopped at once\n".encode())
    os._exit(exit_status(signum))


def install() -> bool:
    """Handle the stop signals as described in the module docstring; returns False (and does nothing) outside
    the main thread. A signal that is ignored (SIGHUP under ``nohup``, SIGINT of a background job) stays
    ignored."""
    if threading.current_thread() is not threading.main_thread():
        return False
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _on_signal)
    set_subreaper()
    _set(installed=True, signum=None, finishing=False)
    return True


def finish() -> None:
    """The command is done: a stop signal from now on is ignored (the process ends with the command's status,
    not with a traceback from wherever the signal found it)."""
    if _state.installed:
        _set(finishing=True)
