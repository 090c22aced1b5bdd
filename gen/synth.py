"""Synthesis check of the generated top with Yosys: the macros stay black boxes, everything else is mapped to
generic gates by the full ``synth`` script (with ABC); the design must pass ``check -assert`` and hold no
latch. Returns the cell statistics that go into the RTL manifest.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import GenError
from .tools import Tool, find_yosys, run_tool

__all__ = ["SynthResult", "SynthError", "synthesize", "synth_script", "LATCH_CELLS", "expected_synth_seconds"]

#: Yosys latch cell types, coarse and fine-grained; any of them after synthesis fails the check.
LATCH_CELLS = ("$dlatch", "$adlatch", "$dlatchsr", "$_DLATCH_*", "$_DLATCHSR_*", "$_SR_*")


#: The synthesis check's wall time against the size of the top's Verilog, ``SYNTH_OVERHEAD_S + SYNTH_S_PER_LINE *
#: lines``. Measured here (issue 25; 2-core VM, Yosys 0.23, CPU seconds, the wall time of this single-threaded
#: step on an idle machine): 14-21 s for 6.5k lines, 27-31 s for 9.3-10.3k, 43 s for 12.7k, 56 s for 15.4k,
#: 173 s for 46.2k (the default config at 32 lanes): 3.6-3.9 ms per line while the machine was shared, 2.3 ms
#: on the idle machine (15.4k lines, 36 s wall); the rate is between the two.
SYNTH_OVERHEAD_S = 0.0
SYNTH_S_PER_LINE = 0.003


def expected_synth_seconds(top_lines: int) -> float:
    """About how long `synthesize` takes for a top of ``top_lines`` lines (`SYNTH_S_PER_LINE`)."""
    return SYNTH_OVERHEAD_S + SYNTH_S_PER_LINE * top_lines


class SynthError(GenError):
    """Synthesis failed, found a problem, or produced no statistics."""


@dataclass(frozen=True)
class SynthResult:
    """Statistics of a synthesized design.

    Parameters
    ----------
    cells : int
        All cells of the flattened hierarchy (generic gates, flip-flops and black-box instances).
    cells_by_type : dict
        Count per Yosys cell type (``$_AND_``, ``$_SDFF_PP0_``, ..., and the black-box module name).
    flip_flops : int
        Cells whose type is a Yosys flip-flop (``$_*DFF*``).
    blackboxes : dict
        Instances of each black-box module (the NVM macros).
    yosys : str
        Yosys version line.
    seconds : float
        Wall time of the Yosys run (not part of the manifest: it is not deterministic).
    """

    cells: int
    cells_by_type: dict
    flip_flops: int
    blackboxes: dict
    yosys: str
    seconds: float

    def manifest_entry(self, script: list[str]) -> dict:
        return {
            "tool": self.yosys,
            "script": script,
            "cells": self.cells,
            "cells_by_type": self.cells_by_type,
            "flip_flops": self.flip_flops,
            "latches": 0,
            "blackboxes": self.blackboxes,
        }


def synth_script(files: list[str], top: str, stat_path: str) -> list[str]:
    """The Yosys commands: read, check the hierarchy, ``synth`` (with ABC), ``check -assert``, no latches,
    then ``flatten`` and the whole design's statistics as JSON into ``stat_path``."""
    # The stub's (* blackbox *) attribute keeps the macros black boxes through synth.
    cmds = [f"read_verilog -DSYNTHESIS {f}" for f in files]
    cmds += [
        f"hierarchy -check -top {top}",
        f"synth -top {top}",
        # Fails on multiple drivers, undriven wires used as inputs, combinational loops.
        "check -assert",
        "select -assert-none " + " ".join(f"t:{t}" for t in LATCH_CELLS),
        # Yosys 0.23's `stat -json -top` writes a plain-text hierarchy listing into the JSON when a submodule
        # has submodules of its own (top -> array -> macro wrapper); flattening the synthesized netlist
        # only inlines it (same totals and cells by type as the hierarchical "design" entry).
        "flatten",
        f"tee -q -o {stat_path} stat -json -top {top}",
    ]
    return cmds


def _parse_stats(path: Path, top: str, log_tail: str) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SynthError(f"yosys wrote no statistics (stat -json did not run){log_tail}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SynthError(f"yosys statistics are not valid JSON ({exc}){log_tail}") from None
    design = doc.get("design") if isinstance(doc, dict) else None
    if (
        not isinstance(design, dict)
        or not isinstance(design.get("num_cells"), int)
        or not isinstance(design.get("num_cells_by_type"), dict)
    ):
        raise SynthError(f"yosys statistics have no design totals (num_cells, num_cells_by_type) for {top}{log_tail}")
    return design


def synthesize(
    rtl_dir: str | Path,
    files: list[str],
    *,
    top: str = "nvm_lstm_top",
    blackbox_module: str,
    yosys: Tool | None = None,
    timeout: float = 3600.0,
) -> tuple[SynthResult, list[str]]:
    """Synthesize ``files`` (relative to ``rtl_dir``, read in order) with ``top`` as the top module.

    Returns the statistics and the script (file names relative, so the script is the same everywhere).
    Raises `SynthError` on any failure, including a Yosys that exits 0 without writing statistics, and
    `gen.tools.ToolNotFound` if Yosys is missing. Writes nothing into ``rtl_dir``.
    """
    yosys = yosys or find_yosys()
    rtl_dir = Path(rtl_dir)
    with tempfile.TemporaryDirectory(prefix="nvmlstm-synth-") as work:
        work_p = Path(work)
        stat = work_p / "stat.json"
        # The manifest records the script with a relative statistics path; the run uses the scratch one.
        script = synth_script(files, top, "stat.json")
        run_script = synth_script(files, top, str(stat))
        (work_p / "synth.ys").write_text("\n".join(run_script) + "\n", encoding="utf-8")
        log = work_p / "yosys.log"
        t0 = time.monotonic()
        proc = run_tool(yosys, ["-q", "-l", str(log), "-s", str(work_p / "synth.ys")], cwd=rtl_dir, timeout=timeout)
        seconds = time.monotonic() - t0
        try:
            log_text = log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            log_text = ""
        tail_lines = [ln for ln in (log_text + proc.stdout + proc.stderr).splitlines() if ln.strip()][-8:]
        log_tail = (": " + " | ".join(ln.strip() for ln in tail_lines)) if tail_lines else ""
        if proc.returncode != 0:
            raise SynthError(f"yosys failed (exit status {proc.returncode}){log_tail}")
        design = _parse_stats(stat, top, log_tail)
    by_type = {str(k): int(v) for k, v in sorted(design["num_cells_by_type"].items())}
    latches = {k: v for k, v in by_type.items() if "DLATCH" in k.upper() or k.startswith("$_SR_")}
    if latches:  # select -assert-none should have stopped it; the statistics are checked independently
        raise SynthError(f"the synthesized design holds latches: {latches}")
    flops = sum(v for k, v in by_type.items() if k.startswith("$_") and "DFF" in k)
    blackboxes = {k: v for k, v in by_type.items() if not k.startswith("$")}
    if blackbox_module not in blackboxes:
        raise SynthError(f"no {blackbox_module} black box in the synthesized design (the macros were lost)")
    return SynthResult(int(design["num_cells"]), by_type, flops, blackboxes, yosys.version, seconds), script
