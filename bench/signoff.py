"""The clock and the digital energy of a build from its sky130 sign-off (manifest ``signoff.timing`` / ``.power``).

`parse_timing` and `parse_power` read and check the entries `nvmlstm generate --pdk sky130` (static timing with
OpenSTA) and `nvmlstm power` (activity-based power) write into an RTL directory's manifest.json; a malformed
entry is one `SignoffEntryError` line naming the file, the key and what was expected. `choose_clock` turns the
timing (or an explicit ``--clock-mhz``, or nothing) into the clocks the efficiency figures are computed at:
the nominal clock, min(target, tt fmax), and the conservative one, min(target, ss fmax). Imports: golden only
(the corner voltages come from the caller, which may import the generator's corner table).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "DEFAULT_CLOCK_MHZ",
    "SignoffEntryError",
    "ClockChoice",
    "MeasuredDigital",
    "parse_timing",
    "parse_power",
    "choose_clock",
]

#: The clock every figure used before the timing sign-off, still the one assumed without an analysis.
DEFAULT_CLOCK_MHZ = 200.0
#: Relative tolerance of the consistency checks (fmax against period and slack, total against its parts):
#: the entries are rounded when written (OpenSTA prints powers to 3 digits), and a real inconsistency is far larger.
_REL_TOL = 0.02
_CORNERS = ("tt", "ss")


class SignoffEntryError(ValueError):
    """A ``signoff.timing`` or ``signoff.power`` entry is malformed (one line: file, key, expected)."""


def _number(where: str, key: str, v: Any, *, positive: bool = True) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (positive and v <= 0):
        raise SignoffEntryError(f"{where}: {key}: expected a finite number{' > 0' if positive else ''}, not {v!r}")
    return float(v)


def _table(where: str, key: str, v: Any) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise SignoffEntryError(f"{where}: {key}: expected a JSON object, not {type(v).__name__} {v!r:.60}")
    return v


def _field(where: str, key: str, table: Mapping[str, Any], name: str) -> Any:
    if name not in table:
        raise SignoffEntryError(f"{where}: {key}.{name}: missing")
    return table[name]


def _agree(where: str, key: str, value: float, expected: float, how: str) -> None:
    if abs(value - expected) > _REL_TOL * abs(expected):
        raise SignoffEntryError(f"{where}: {key}: {value:g} disagrees with {how} = {expected:.6g}")


def _timing_corner(where: str, key: str, c: Mapping[str, Any], period_ns: float) -> dict:
    """One corner of ``signoff.timing.corners``: its numbers checked, fmax against the period, slack and met."""
    n = {f: _number(where, f"{key}.{f}", _field(where, key, c, f), positive=False) for f in ("wns_ns", "fmax_mhz")}
    if n["fmax_mhz"] <= 0:
        raise SignoffEntryError(f"{where}: {key}.fmax_mhz: expected a finite number > 0, not {n['fmax_mhz']!r}")
    met = _field(where, key, c, "met")
    if not isinstance(met, bool):
        raise SignoffEntryError(f"{where}: {key}.met: expected true or false, not {met!r}")
    if met != (n["wns_ns"] >= 0):
        raise SignoffEntryError(f"{where}: {key}.met: {met} contradicts wns_ns {n['wns_ns']:g} (met means >= 0)")
    if period_ns - n["wns_ns"] <= 0:
        raise SignoffEntryError(f"{where}: {key}.wns_ns: {n['wns_ns']:g} leaves no path delay (period {period_ns:g})")
    # fmax is where the worst slack is zero with the port budgets scaled with the period (gen/sta.py
    # settled_fmax_mhz), so it is 1000 / (period - wns) only when a register-to-register path is the worst. What
    # holds always: a met corner's fmax is at least that first estimate (and so at least the clock), a violated
    # corner's is below the clock.
    first = 1e3 / (period_ns - n["wns_ns"])
    if met and n["fmax_mhz"] < first * (1 - _REL_TOL):
        raise SignoffEntryError(
            f"{where}: {key}.fmax_mhz: {n['fmax_mhz']:g} is below 1000 / (period_ns - wns_ns) = {first:.6g}"
            " (a met corner's fmax is at least that)"
        )
    if not met and n["fmax_mhz"] > 1e3 / period_ns * (1 + _REL_TOL):
        raise SignoffEntryError(
            f"{where}: {key}.fmax_mhz: {n['fmax_mhz']:g} is above the clock, {1e3 / period_ns:.6g} MHz, of a corner"
            " that does not meet it"
        )
    path = _table(where, f"{key}.critical_path", _field(where, key, c, "critical_path"))
    crit = {f: _field(where, f"{key}.critical_path", path, f) for f in ("start", "end", "cells", "delay_ns")}
    for f in ("start", "end"):
        if not isinstance(crit[f], str) or not crit[f]:
            raise SignoffEntryError(f"{where}: {key}.critical_path.{f}: expected a non-empty string, not {crit[f]!r}")
    if isinstance(crit["cells"], bool) or not isinstance(crit["cells"], int) or crit["cells"] < 0:
        raise SignoffEntryError(f"{where}: {key}.critical_path.cells: expected an integer >= 0, not {crit['cells']!r}")
    crit["delay_ns"] = _number(where, f"{key}.critical_path.delay_ns", crit["delay_ns"], positive=False)
    return {**n, "met": met, "critical_path": crit, "conditions": c.get("conditions")}


def parse_timing(entry: Any, where: str) -> dict | None:
    """The checked summary of a manifest's ``signoff.timing``, or None when there was no analysis.

    Parameters
    ----------
    entry : object
        The manifest's ``signoff.timing``: absent (None), a string (the analysis was not made: the Liberty had
        no timing, or OpenSTA was missing and the string says how to install it), or the analysis (a dict).
    where : str
        The manifest's name, for the error messages.

    Returns
    -------
    dict or None
        ``tool``, ``clock_mhz`` (the target), ``period_ns`` and ``corners`` (``tt``, ``ss``: ``wns_ns``,
        ``fmax_mhz``, ``met``, ``critical_path``, ``conditions``).

    Raises
    ------
    SignoffEntryError
        A dict that lacks a key, has a wrong type or contradicts itself (fmax against period and slack).
    """
    if entry is None or isinstance(entry, str):
        return None
    key = "signoff.timing"
    t = _table(where, key, entry)
    clock = _number(where, f"{key}.clock_mhz", _field(where, key, t, "clock_mhz"))
    period = _number(where, f"{key}.period_ns", _field(where, key, t, "period_ns"))
    _agree(where, f"{key}.period_ns", period, 1e3 / clock, "1000 / clock_mhz")
    corners = _table(where, f"{key}.corners", _field(where, key, t, "corners"))
    out = {}
    for name in _CORNERS:
        c = _table(where, f"{key}.corners.{name}", _field(where, f"{key}.corners", corners, name))
        out[name] = _timing_corner(where, f"{key}.corners.{name}", c, period)
    return {"tool": t.get("tool"), "clock_mhz": clock, "period_ns": period, "corners": out}


@dataclass(frozen=True)
class MeasuredDigital:
    """The standard-cell periphery's energy per timestep, measured by `nvmlstm power` on the sky130 netlist.

    Attributes
    ----------
    energy_pj : float
        Energy per timestep at the power run's clock, corner and node (``energy_per_timestep_pj``).
    total_mw, leakage_mw : float
        The reported total and leakage power.
    clock_mhz : float
        The clock of the power run.
    corner : str
        The library corner (``tt``).
    vdd : float
        The corner's supply voltage (1.80 V at tt).
    timestep_cyc : int
        Cycles per timestep the energy is for.
    activity : str
        Where the switching activity comes from.
    """

    energy_pj: float
    total_mw: float
    leakage_mw: float
    clock_mhz: float
    corner: str
    vdd: float
    timestep_cyc: int
    activity: str

    def to_dict(self) -> dict:
        return asdict(self)


def parse_power(
    entry: Any, where: str, *, timestep_cyc: int, vdd_by_corner: Mapping[str, float]
) -> MeasuredDigital | None:
    """The checked ``signoff.power`` of a manifest, or None when it has none.

    Parameters
    ----------
    entry : object
        The manifest's ``signoff.power`` (`nvmlstm power`), or None.
    where : str
        The manifest's name, for the error messages.
    timestep_cyc : int
        The manifest's cycles per timestep: a power entry for another count is stale.
    vdd_by_corner : mapping
        Corner name -> supply voltage (V) of the characterized libraries.

    Raises
    ------
    SignoffEntryError
        A missing key, a wrong type, an unknown corner, a total that is not the sum of its parts, an energy that
        is not total power x timestep time, or a timestep count other than the manifest's.
    """
    if entry is None:
        return None
    key = "signoff.power"
    p = _table(where, key, entry)
    corner = _field(where, key, p, "corner")
    if corner not in vdd_by_corner:
        raise SignoffEntryError(f"{where}: {key}.corner: expected one of {', '.join(vdd_by_corner)}, not {corner!r}")
    n = {
        f: _number(where, f"{key}.{f}", _field(where, key, p, f), positive=f not in ("leakage_mw", "switching_mw"))
        for f in ("clock_mhz", "internal_mw", "switching_mw", "leakage_mw", "total_mw", "energy_per_timestep_pj")
    }
    cyc = _field(where, key, p, "timestep_cyc")
    if cyc != timestep_cyc or isinstance(cyc, bool):
        raise SignoffEntryError(
            f"{where}: {key}.timestep_cyc: {cyc!r}, but the manifest's latency is {timestep_cyc} cycles per "
            f"timestep (a stale power entry: run `nvmlstm power` again)"
        )
    parts = n["internal_mw"] + n["switching_mw"] + n["leakage_mw"]
    _agree(where, f"{key}.total_mw", n["total_mw"], parts, "internal_mw + switching_mw + leakage_mw")
    # mW x ns = pJ: the total power over one timestep's cycles at the run's clock.
    e = n["total_mw"] * timestep_cyc * 1e3 / n["clock_mhz"]
    _agree(where, f"{key}.energy_per_timestep_pj", n["energy_per_timestep_pj"], e, "total_mw x timestep_cyc / clock")
    activity = p.get("activity")
    return MeasuredDigital(
        energy_pj=n["energy_per_timestep_pj"],
        total_mw=n["total_mw"],
        leakage_mw=n["leakage_mw"],
        clock_mhz=n["clock_mhz"],
        corner=corner,
        vdd=float(vdd_by_corner[corner]),
        timestep_cyc=timestep_cyc,
        activity=activity.get("source", "") if isinstance(activity, Mapping) else "",
    )


@dataclass(frozen=True)
class ClockChoice:
    """The clock of the efficiency figures, where it comes from, and the conservative one.

    Attributes
    ----------
    mhz : float
        The nominal clock: every headline figure is at it.
    source : str
        ``"timing analysis"``, ``"--clock-mhz"`` or ``"assumed"``.
    text : str
        One line saying so (bench.md, the command's output).
    conservative_mhz : float or None
        The slow-corner clock, min(target, ss fmax), when the timing analysis gives one (not with an explicit
        clock).
    timing : dict or None
        `parse_timing`'s summary, when the build has one.
    """

    mhz: float
    source: str
    text: str
    conservative_mhz: float | None = None
    timing: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _fmax_text(timing: Mapping[str, Any]) -> str:
    c = timing["corners"]
    return f"tt fmax {c['tt']['fmax_mhz']:.4g} MHz, ss fmax {c['ss']['fmax_mhz']:.4g} MHz"


def choose_clock(timing: Mapping[str, Any] | None, clock_mhz: float | None) -> ClockChoice:
    """The clocks the figures are computed at.

    Parameters
    ----------
    timing : mapping or None
        `parse_timing`'s summary (None: no analysis).
    clock_mhz : float or None
        An explicit clock (``--clock-mhz``): it overrides the analysis, and the text says so (and whether the
        analysis says it is met).

    Returns
    -------
    ClockChoice
        Explicit: that clock. Analysed: nominal min(target, tt fmax), conservative min(target, ss fmax): the
        clock the design was constrained for, or lower where a corner does not reach it. Neither:
        `DEFAULT_CLOCK_MHZ`, "clock: assumed 200 MHz (no timing analysis)".
    """
    if clock_mhz is not None:
        text = f"clock: {clock_mhz:g} MHz (--clock-mhz)"
        if timing is not None:
            tt = timing["corners"]["tt"]["fmax_mhz"]
            verdict = "above the tt fmax: timing violated at this clock" if clock_mhz > tt else "within the tt fmax"
            text += f"; the timing analysis gives {_fmax_text(timing)}: {verdict}"
        return ClockChoice(float(clock_mhz), "--clock-mhz", text, timing=None if timing is None else dict(timing))
    if timing is None:
        return ClockChoice(
            DEFAULT_CLOCK_MHZ, "assumed", f"clock: assumed {DEFAULT_CLOCK_MHZ:g} MHz (no timing analysis)"
        )
    target = timing["clock_mhz"]
    tt, ss = (timing["corners"][k]["fmax_mhz"] for k in _CORNERS)
    nominal, conservative = min(target, tt), min(target, ss)
    text = (
        f"clock: {nominal:.4g} MHz nominal = min(target {target:g} MHz, tt fmax {tt:.4g} MHz), "
        f"{conservative:.4g} MHz conservative = min(target, ss fmax {ss:.4g} MHz) "
        f"(static timing analysis, {timing.get('tool') or 'OpenSTA'}, pre-layout)"
    )
    return ClockChoice(nominal, "timing analysis", text, conservative_mhz=conservative, timing=dict(timing))
