"""Activity-based power of the mapped netlist: switching activity from a gate-level VCD, OpenSTA's
``report_power`` with that activity.

`read_activity` reads the VCD of a gate-level simulation (Icarus, the build's ``nvmlstm_waves`` module) with
``vcd.reader`` (pyvcd) and counts, per cell pin, the transitions and the time spent high inside a window of
the run: ``"busy"`` (from the first rise of ``start`` to the last fall of ``done``) or ``"idle"`` (from the
last fall of ``done`` to the end of the dump). `power_commands` turns them into OpenSTA commands,
`parse_power_report` reads the totals back. No simulation happens here: ``nvmlstm power``
(`nvmlstm.power_cmd`) runs it and passes the VCD in.

Activity unit: OpenSTA's ``set_power_activity -activity`` is transitions per clock period (its Power.cc
divides it by the period of the pin's clock; a clock pin is 2.0), so a pin's activity is its transitions in
the window divided by the clock cycles in the window; its duty is the fraction of the window it is high.

This OpenSTA (2.0.17) drops ``set_power_activity -pins`` (its Tcl reads an unset variable and keeps input
pins only), and its propagation overwrites what is set on the output pins in the fan-out cone of the input
ports. The commands therefore call ``sta::set_power_pin_activity`` on every pin, input and output, of every
cell the VCD has (a register whose D pin has an activity keeps its Q's), and give the input ports their
simulated activity; in the input ports' cone up to the first registers OpenSTA's own propagation of those
activities stands. docs/signoff.md describes the method and its limits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import GenError

__all__ = [
    "PowerError",
    "Activity",
    "read_activity",
    "read_activities",
    "power_commands",
    "parse_power_report",
    "WINDOWS",
]
__all__ += ["ACTIVITY_MARK"]

#: The windows `read_activity` can measure over.
WINDOWS = ("busy", "idle")
#: The line the activity commands print: ``<mark> <pins set> <pins in design> <ports set>``.
ACTIVITY_MARK = "nvmlstm-activity"


class PowerError(GenError):
    """The VCD, the activity or the power report could not be used; the message is one line."""


@dataclass(frozen=True)
class Activity:
    """Switching activity of one window of a simulation.

    Parameters
    ----------
    window : str
        ``"busy"`` or ``"idle"`` (`WINDOWS`).
    start_ps, end_ps : int
        The window, in VCD time (ps with Icarus' ``1ps`` timescale).
    cycles : int
        Rising clock edges in the window (``start_ps`` < t <= ``end_ps``).
    toggles : dict
        Pin name (``inst/port`` with the instance path below the top joined by ``/``, ``port[i]`` per bit of a
        vector; a top-level port by its own name) -> transitions between settled 0 and 1 values.
    high_ps : dict
        The same names -> time spent at 1 in the window (ps).
    """

    window: str
    start_ps: int
    end_ps: int
    cycles: int
    toggles: dict[str, int] = field(repr=False)
    high_ps: dict[str, int] = field(repr=False)

    def per_cycle(self, name: str) -> tuple[float, float]:
        """(activity in transitions per clock period, duty) of pin ``name``."""
        if name not in self.toggles:
            raise PowerError(f"no simulated activity for pin {name!r}")
        span = max(self.end_ps - self.start_ps, 1)
        return self.toggles[name] / max(self.cycles, 1), self.high_ps[name] / span


# --------------------------------------------------------------------------------------------------
# VCD
class _Counters:
    """Per-bit settled value, time of the last settled change, time high and transitions, as plain lists
    (faster per change than numpy scalars); changes of one timestamp settle when the time moves on, so a
    zero-width pulse inside one timestamp counts nothing."""

    def __init__(self):
        self.value: list[int] = []  # 0, 1 or -1 (x/z)
        self.known: list[int] = []  # last known 0/1 value (-1: none yet)
        self.since: list[int] = []
        self.high: list[int] = []
        self.toggles: list[int] = []
        self.pending: dict[int, list[int]] = {}  # slot base -> bit values of this timestamp

    def add(self, width: int) -> int:
        base = len(self.value)
        for lst, v in ((self.value, -1), (self.known, -1), (self.since, 0), (self.high, 0), (self.toggles, 0)):
            lst.extend([v] * width)
        return base

    def settle(self, now: int) -> None:
        value, known, since, high, toggles = self.value, self.known, self.since, self.high, self.toggles
        for base, bits in self.pending.items():
            for i, b in enumerate(bits):
                s = base + i
                old = value[s]
                if b == old:
                    continue
                if old == 1:
                    high[s] += now - since[s]
                value[s], since[s] = b, now
                if b >= 0:
                    if known[s] >= 0 and known[s] != b:
                        toggles[s] += 1
                    known[s] = b
        self.pending.clear()

    def snapshot(self, now: int) -> tuple[list[int], list[int]]:
        high = [h + (now - t if v == 1 else 0) for h, t, v in zip(self.high, self.since, self.value)]
        return list(self.toggles), high


#: `_Scan.change`'s shortcut for scalar changes.
_SCALAR_BITS = {"0": [0], "1": [1]}


def _bits(value, width: int) -> list[int]:
    """A VCD value as bits, least significant first (-1 for x/z); pyvcd gives ints or strings."""
    if isinstance(value, int):
        return [(value >> i) & 1 for i in range(width)]
    text = str(value).lower()
    text = text.rjust(width, "0" if text[:1] in ("0", "1") else text[:1])[-width:]
    return [1 if c == "1" else 0 if c == "0" else -1 for c in reversed(text)]


def _names(scope: list[str], ref: str, bit_index, size: int) -> list[str]:
    """The pin name of each bit (least significant first) of variable ``ref`` in ``scope`` (top first): OpenSTA's
    full name, the instance path below the top and the port joined by ``/``."""
    base = "/".join([*scope[1:], ref])
    if size == 1 and not isinstance(bit_index, tuple):
        return [base if bit_index is None else f"{base}[{bit_index}]"]
    msb, lsb = bit_index if isinstance(bit_index, tuple) else (size - 1, 0)
    step = 1 if lsb <= msb else -1
    return [f"{base}[{lsb + i * step}]" for i in range(size)]


@dataclass
class _Scan:
    """The state of one pass over a VCD."""

    counters: _Counters = field(default_factory=_Counters)
    slots: dict[str, tuple[int, int]] = field(default_factory=dict)  # id code -> (counter base, width)
    names: list[str] = field(default_factory=list)
    name_slots: list[int] = field(default_factory=list)  # the counter of each name's bit
    marks: dict[str, str] = field(default_factory=dict)  # id code of clk/start/done -> which
    last: dict[str, int] = field(default_factory=dict)
    clock_edges: list[int] = field(default_factory=list)
    start_ps: int | None = None
    done_falls: list[int] = field(default_factory=list)
    snap_start: tuple | None = None
    snap_done: tuple | None = None
    now: int = 0

    def declare(self, scope: list[str], var) -> None:
        names = _names(scope, var.reference, var.bit_index, var.size)
        # Variables sharing an id code are one net seen from several scopes (a net and the cell pins on it):
        # one set of counters per code, expanded to every name at the end (a clock edge is one update, not
        # one per flip-flop pin).
        slot = self.slots.get(var.id_code)
        if slot is None:
            slot = self.slots[var.id_code] = (self.counters.add(len(names)), len(names))
        elif slot[1] != len(names):
            raise PowerError(f"VCD id code {var.id_code!r} declared with {slot[1]} and {len(names)} bits")
        self.names.extend(names)
        self.name_slots.extend(range(slot[0], slot[0] + len(names)))
        if len(scope) == 1 and var.size == 1 and var.reference in ("clk", "start", "done"):
            self.marks[var.id_code] = var.reference

    def change(self, code: str, value) -> None:
        slot = self.slots.get(code)
        if slot is not None:
            # a scalar 0/1 (most changes of a gate-level dump) needs no parsing; pyvcd gives it as a str
            bits = _SCALAR_BITS.get(value) if type(value) is str else None
            base, width = slot
            self.counters.pending[base] = bits if bits is not None and width == 1 else _bits(value, width)
        which = self.marks.get(code)
        if which is None:
            return
        bit, prev = _bits(value, 1)[0], self.last.get(code)
        self.last[code] = bit
        if which == "clk" and bit == 1 and prev == 0:
            self.clock_edges.append(self.now)
        elif which == "start" and bit == 1 and prev != 1 and self.start_ps is None:
            # prev None: the dump's first value (a dump begun at the rise, `nvmlstm.sim.build.ICARUS_WAVES`)
            self.start_ps = self.now
            self.snap_start = "pending"
        elif which == "done" and bit == 0 and prev == 1:
            self.done_falls.append(self.now)
            self.snap_done = "pending"

    def advance(self, time: int) -> None:
        self.counters.settle(self.now)
        if self.snap_start == "pending":
            self.snap_start = self.counters.snapshot(self.now)
        if self.snap_done == "pending":
            self.snap_done = self.counters.snapshot(self.now)
        self.now = time


def _scan(path: Path) -> _Scan:
    from vcd.reader import TokenKind, VCDParseError, tokenize

    scan, scope = _Scan(), []
    try:
        with open(path, "rb") as f:
            for tok in tokenize(f):
                kind = tok.kind
                if kind is TokenKind.CHANGE_SCALAR:
                    scan.change(tok.scalar_change.id_code, tok.scalar_change.value)
                elif kind is TokenKind.CHANGE_VECTOR:
                    scan.change(tok.vector_change.id_code, tok.vector_change.value)
                elif kind is TokenKind.CHANGE_TIME:
                    scan.advance(tok.time_change)
                elif kind is TokenKind.SCOPE:
                    scope.append(tok.scope.ident)
                elif kind is TokenKind.UPSCOPE:
                    scope.pop()
                elif kind is TokenKind.VAR:
                    scan.declare(scope, tok.var)
    except (VCDParseError, ValueError, IndexError, KeyError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PowerError(f"{path}: not a readable VCD ({why})") from None
    except OSError as exc:
        raise PowerError(f"{path}: cannot read the VCD ({exc.strerror or exc})") from None
    scan.advance(scan.now)  # settle the last timestamp
    return scan


def read_activity(vcd_path: str | Path, window: str = "busy") -> Activity:
    """Per-pin transitions and time high in one window of a gate-level VCD (`read_activities`)."""
    if window not in WINDOWS:
        raise PowerError(f"window must be one of {', '.join(WINDOWS)}, not {window!r}")
    return read_activities(vcd_path)[window]


def read_activities(vcd_path: str | Path) -> dict[str, Activity]:
    """Per-pin transitions and time high in both windows of a gate-level VCD, from one pass.

    Parameters
    ----------
    vcd_path : path
        The VCD (top scope ``nvm_lstm_top`` with the ports ``clk``, ``start`` and ``done``).

    Returns
    -------
    dict
        ``"busy"``: from the first rise of ``start`` to the last fall of ``done`` (the sequences, with any
        idle cycles between them); ``"idle"``: from the last fall of ``done`` to the end of the dump.
        Each an `Activity`.

    Raises
    ------
    PowerError
        One line: the file is not a VCD, lacks the top's ``clk``/``start``/``done``, or the window is empty.
    """
    path = Path(vcd_path)
    scan = _scan(path)
    missing = sorted({"clk", "start", "done"} - set(scan.marks.values()))
    if missing:
        raise PowerError(f"{path}: no top-level {', '.join(missing)} in the VCD (not a run of the generated top)")
    if scan.start_ps is None or not scan.done_falls:
        raise PowerError(f"{path}: the run never started and finished a sequence (no start rise, done fall)")
    end = scan.counters.snapshot(scan.now)
    spans = {
        "busy": (scan.start_ps, scan.done_falls[-1], scan.snap_start, scan.snap_done),
        "idle": (scan.done_falls[-1], scan.now, scan.snap_done, end),
    }
    out = {}
    for window, (t0, t1, first, last) in spans.items():
        cycles = sum(1 for t in scan.clock_edges if t0 < t <= t1)
        toggles = {n: last[0][k] - first[0][k] for n, k in zip(scan.names, scan.name_slots)}
        high = {n: last[1][k] - first[1][k] for n, k in zip(scan.names, scan.name_slots)}
        out[window] = Activity(window, t0, t1, cycles, toggles, high)
    if out["busy"].cycles == 0:
        raise PowerError(f"{path}: the busy window ({scan.start_ps} to {scan.done_falls[-1]}) holds no clock cycle")
    return out


# --------------------------------------------------------------------------------------------------
# OpenSTA
def write_activity_file(activity: Activity, path: str | Path) -> int:
    """Write ``name<TAB>activity<TAB>duty`` per pin (sorted, deterministic) for `power_commands`; returns
    the number of lines."""
    lines = []
    for name in sorted(activity.toggles):
        if "\t" in name or "\n" in name:
            raise PowerError(f"pin name {name!r} holds a tab or newline")
        act, duty = activity.per_cycle(name)
        lines.append(f"{name}\t{act:.6g}\t{min(max(duty, 0.0), 1.0):.6g}\n")
    Path(path).write_text("".join(lines), encoding="utf-8")
    return len(lines)


def _tcl_quote(text: str) -> str:
    if re.search(r"[{}\\]", text):
        raise PowerError(f"path {text!r} holds a brace or backslash")
    return "{" + text + "}"


def power_commands(activity_file: str | Path, *, digits: int = 6) -> list[str]:
    """OpenSTA commands, to run after the design is linked and the clock defined: set every pin's activity
    and duty from ``activity_file`` (`write_activity_file`), print ``ACTIVITY_MARK`` with the counts, and
    ``report_power``.

    Clock pins keep OpenSTA's clock activity (2.0 per period); pins the file does not name keep OpenSTA's
    defaults (the input default 0.1 per period, duty 0.5, or its propagation from the input ports).
    """
    return [
        "set nvm_act [dict create]",
        f"set nvm_f [open {_tcl_quote(str(activity_file))} r]",
        'while {[gets $nvm_f nvm_line] >= 0} { set nvm_v [split $nvm_line "\\t"]; '
        "dict set nvm_act [lindex $nvm_v 0] [lrange $nvm_v 1 2] }",
        "close $nvm_f",
        "set nvm_set 0",
        "set nvm_pins 0",
        # every leaf pin of the hierarchy (``*/*`` alone would be the top's cells only; the lanes are modules)
        "foreach nvm_pin [get_pins -hierarchical *] { if {[$nvm_pin is_hierarchical]} continue; "
        "incr nvm_pins; set nvm_k [get_full_name $nvm_pin]; "
        "if {[dict exists $nvm_act $nvm_k]} { lassign [dict get $nvm_act $nvm_k] nvm_a nvm_d; "
        "sta::set_power_pin_activity $nvm_pin $nvm_a $nvm_d; incr nvm_set } }",
        "set nvm_ports 0",
        "foreach nvm_port [all_inputs] { set nvm_k [get_full_name $nvm_port]; "
        "if {[dict exists $nvm_act $nvm_k]} { lassign [dict get $nvm_act $nvm_k] nvm_a nvm_d; "
        "sta::set_power_input_port_activity $nvm_port $nvm_a $nvm_d; incr nvm_ports } }",
        f'puts "{ACTIVITY_MARK} $nvm_set $nvm_pins $nvm_ports"',
        f"report_power -digits {int(digits)}",
    ]


_NUM = r"([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
_TOTAL = re.compile(rf"^Total\s+{_NUM}\s+{_NUM}\s+{_NUM}\s+{_NUM}", re.MULTILINE)
_MARK = re.compile(rf"^{ACTIVITY_MARK} (\d+) (\d+) (\d+)$", re.MULTILINE)


def parse_power_report(text: str) -> dict:
    """The design totals of OpenSTA's ``report_power`` (watts in the report) in mW, and the activity counts
    the commands printed: ``internal_mw``, ``switching_mw``, ``leakage_mw``, ``total_mw``, ``pins_set``,
    ``pins``, ``ports_set``.

    Raises
    ------
    PowerError
        The text holds no ``Total`` row (OpenSTA failed or printed something else).
    """
    m = _TOTAL.search(text)
    if m is None:
        tail = " / ".join(line.strip() for line in text.strip().splitlines()[-2:])
        raise PowerError(f"OpenSTA printed no power report ({tail or 'no output'})")
    out = {k: float(v) * 1e3 for k, v in zip(("internal_mw", "switching_mw", "leakage_mw", "total_mw"), m.groups())}
    mark = _MARK.search(text)
    if mark is not None:
        out.update(zip(("pins_set", "pins", "ports_set"), map(int, mark.groups())))
    return out


def report_section(text: str) -> str:
    """The ``report_power`` table of OpenSTA's output (from the ``Group`` header to the percentages), the
    deterministic part written to ``power_<corner>.rpt``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Group"):
            return "\n".join(lines[i : i + 12]).rstrip() + "\n"
    raise PowerError("OpenSTA printed no power report table")


__all__ += ["write_activity_file", "report_section"]
