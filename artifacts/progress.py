"""Progress bars that stay readable in a log file.

tqdm redraws its bar in place with carriage returns: on a terminal that is one line, but in a file (a CI log,
``nvmlstm flow > flow.log``, a batch scheduler's output) every redraw lands on the same line, which grows to
megabytes. `progress` gives a tqdm bar on a terminal and, on anything else, one plain line per update at most
every `LOG_INTERVAL_S` seconds (and one at the end), so a log shows how far a long step got and how fast.

A step that cannot count its progress (a Yosys mapping, a Verilator build: one subprocess for minutes) gets a
`heartbeat` instead: a line every `LOG_INTERVAL_S` seconds with the time elapsed and the time expected, so a log
shows the step is alive and how far it should be. `format_duration` writes those times.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["LOG_INTERVAL_S", "LineStream", "progress", "Heartbeat", "heartbeat", "format_duration"]

#: Seconds between two progress lines in a non-terminal stream (tqdm's ``mininterval`` there).
LOG_INTERVAL_S = 30.0

# What tqdm writes to redraw a line: carriage returns and the cursor-up escape of nested bars.
_REDRAW = re.compile(r"\r|\x1b\[A")


class LineStream:
    """A text stream for tqdm that turns each redraw into a line of its own.

    Parameters
    ----------
    stream : text stream
        Where the lines go (a log file, a pipe).
    """

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> int:
        # A redraw is "\r" + status; clearing a finished bar writes "\r" + spaces + "\r": keep only real text.
        for part in _REDRAW.split(text):
            part = part.strip()
            if part:
                self.stream.write(part + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def progress(
    total: int | None, desc: str, *, unit: str = "it", enabled: bool = True, initial: int = 0, file: Any = None
):
    """A tqdm bar: redrawn in place on a terminal, a line per `LOG_INTERVAL_S` seconds elsewhere.

    Parameters
    ----------
    total : int or None
        The number of steps (None: unknown).
    desc : str
        The bar's label.
    unit : str
        What a step is ("batch", "point").
    enabled : bool
        False: no output at all (tqdm's disabled bar: ``update`` is a no-op, ``n`` stays at ``initial``).
    initial : int
        Steps already done (a resumed run).
    file : text stream, optional
        Where the bar goes (default ``sys.stderr``, as tqdm's).

    Returns
    -------
    tqdm.tqdm
        Use as tqdm (``update``, ``close``, context manager).
    """
    from tqdm import tqdm

    file = sys.stderr if file is None else file
    isatty = getattr(file, "isatty", None)
    if isatty is not None and isatty():
        return tqdm(
            total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, leave=False, file=file,
            dynamic_ncols=True,
        )  # fmt: skip
    # Not a terminal: no in-place redraw. leave=True so the last line (100%, elapsed, rate) stays in the log.
    return tqdm(
        total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, leave=True,
        file=LineStream(file), mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S, ncols=160, ascii=True,
    )  # fmt: skip


def format_duration(seconds: float) -> str:
    """``seconds`` for a person: "45 s", "1 min 30 s", "2 h 5 min" (rounded to the second, to the minute
    from an hour)."""
    s = max(0, round(seconds))
    if s < 1:
        return "under 1 s"  # "about 0 s expected" would read as a promise of nothing
    if s < 60:
        return f"{s} s"
    if s < 3600:
        m, s = divmod(s, 60)
        return f"{m} min {s} s" if s else f"{m} min"
    h, m = divmod(round(seconds / 60), 60)
    return f"{h} h {m} min" if m else f"{h} h"


class Heartbeat:
    """Lines that show a long, silent step is alive: one every ``interval`` seconds from a daemon thread.

    Use it as a context manager around the step (`heartbeat`). The thread sleeps on a `threading.Event`
    (no polling) and is stopped and joined when the ``with`` block ends, however it ends (a return, an error,
    a KeyboardInterrupt), so no line follows the step's own messages.

    Parameters
    ----------
    say : callable
        Receives each line (``print`` in the CLI, an indenting logger in the flow).
    what : str
        The step, as in "still <what>: 1 min 30 s elapsed, about 4 min expected".
    expected_s : float or None
        The step's expected duration (None: lines without an expectation).
    interval : float, optional
        Seconds between two lines (default `LOG_INTERVAL_S`, read when the heartbeat is made).
    clock : callable
        Monotonic seconds (a parameter for the tests).
    """

    def __init__(
        self,
        say: Callable[[str], None],
        what: str,
        expected_s: float | None = None,
        *,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.say, self.what, self.expected_s, self.clock = say, what, expected_s, clock
        self.interval = LOG_INTERVAL_S if interval is None else interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = clock()
        self._t1: float | None = None

    @property
    def elapsed(self) -> float:
        """Seconds since the step started (until it ended, once it has)."""
        return (self.clock() if self._t1 is None else self._t1) - self._t0

    def line(self) -> str:
        """The heartbeat line for the time elapsed now."""
        text = f"still {self.what}: {format_duration(self.elapsed)} elapsed"
        if self.expected_s is None:
            return text
        if self.elapsed <= self.expected_s:
            return f"{text}, about {format_duration(self.expected_s)} expected"
        # Past the estimate: say so rather than promise a time already gone by.
        return f"{text}, longer than the {format_duration(self.expected_s)} expected"

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.say(self.line())
            except Exception:  # a broken log (a closed pipe) ends the beats quietly, not with a thread traceback
                return

    def __enter__(self) -> Heartbeat:
        self._t0 = self.clock()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat: {self.what}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._t1 = self.clock()
        self._stop.set()
        if self._thread is not None:
            # Daemon thread: a `say` stuck on a full pipe cannot hold the process; normally it is gone at once.
            self._thread.join(timeout=5.0)
        return None


def heartbeat(
    say: Callable[[str], None], what: str, expected_s: float | None = None, *, interval: float | None = None
) -> Heartbeat:
    """A `Heartbeat` context manager: ``with heartbeat(say, "mapping", 240.0) as hb: ...``; ``hb.elapsed``
    after the block is the step's duration."""
    return Heartbeat(say, what, expected_s, interval=interval)
