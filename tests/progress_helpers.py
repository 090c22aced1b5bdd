"""A stand-in for a long step that checks its heartbeat: shared by the synthesis and mapping tests."""

from __future__ import annotations

import threading
import time


class HeartbeatProbe:
    """Collects a step's log lines with the heartbeat interval shortened to 10 ms.

    ``failing(exc)`` is a stand-in for the step: it waits for two heartbeat lines, then raises ``exc``.
    ``assert_silent()`` checks that no line came after the step ended (a heartbeat left running would add some).
    """

    def __init__(self, monkeypatch):
        from nvmlstm.artifacts import progress

        monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.01)
        self.lines: list[str] = []
        self._beats = threading.Semaphore(0)

    def say(self, text: str) -> None:
        self.lines.append(text)
        if text.startswith("still "):
            self._beats.release()

    def failing(self, exc: Exception):
        def step(*a, **k):
            assert self._beats.acquire(timeout=60) and self._beats.acquire(timeout=60), "no heartbeat"
            raise exc

        return step

    def assert_silent(self) -> None:
        said = len(self.lines)
        time.sleep(0.1)  # ten intervals
        assert len(self.lines) == said
