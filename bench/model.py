"""The analytical efficiency model: energy, area, latency, throughput and array utilization of one timestep.

Counts come from `nvmlstm.bench.counts` (golden's tiling and datapath), figures from a `Technology`, and
cycles from the RTL's cycle formula, given as a `Timing` (the command computes it with
`nvmlstm.hdl.accelerator.NvmLstmAccelerator`, or reads it from an RTL directory's manifest.json). The
model covers dynamic energy of the arrays, converters and datapath; clock tree, control, leakage and I/O
are not modelled (docs/efficiency.md, "Assumptions"), unless the periphery's energy measured on the sky130
netlist (`nvmlstm.bench.signoff.MeasuredDigital`) replaces the digital terms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nvmlstm.golden.config import LstmConfig, check_int
from nvmlstm.golden.textfile import read_json_file

from .counts import Counts, macs_per_timestep, matrix_counts, stage_ops, timestep_counts
from .signoff import MeasuredDigital
from .technology import Technology

__all__ = [
    "Timing",
    "timing_from_manifest",
    "read_rtl_manifest",
    "yosys_gate_equivalents",
    "CELL_GE",
    "DIGITAL_TERMS",
    "evaluate",
    "at_clock",
]


@dataclass(frozen=True)
class Timing:
    """Cycles of the RTL for one build (the properties of `NvmLstmAccelerator` / the manifest's latency).

    Parameters
    ----------
    timestep_cyc, layer_step_cyc, head_cyc : int
        Cycles per timestep, per layer within a timestep, and of the head (read strobe + array latency:
        the cycles an array is occupied by one read).
    lanes, macro_latency : int
        The build parameters they come from.
    """

    timestep_cyc: int
    layer_step_cyc: int
    head_cyc: int
    lanes: int
    macro_latency: int

    def __post_init__(self) -> None:
        for name in ("timestep_cyc", "layer_step_cyc", "head_cyc", "lanes", "macro_latency"):
            check_int(name, getattr(self, name), 1)
        if self.head_cyc + self.layer_step_cyc > self.timestep_cyc:
            raise ValueError(
                f"timestep_cyc must be at least layer_step_cyc + head_cyc "
                f"({self.layer_step_cyc + self.head_cyc}), not {self.timestep_cyc}"
            )


def read_rtl_manifest(rtl_dir: str | Path) -> dict:
    """The manifest.json of an RTL directory (`nvmlstm generate` output); a problem is one ValueError line."""
    path = Path(rtl_dir) / "manifest.json"
    doc = read_json_file(path, ValueError, "manifest", missing_hint=" (RTL_DIR must be an `nvmlstm generate` output)")
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a JSON object, not {type(doc).__name__}")
    for key in ("config", "lanes", "macro_latency", "latency"):
        if key not in doc:
            raise ValueError(f"{path}: no {key!r} entry (not an `nvmlstm generate` manifest)")
    return doc


def timing_from_manifest(doc: Mapping[str, Any]) -> Timing:
    """The `Timing` recorded in a manifest (its ``latency`` values, ``lanes`` and ``macro_latency``)."""
    lat = doc["latency"]
    try:
        return Timing(
            timestep_cyc=lat["timestep_cyc"]["value"],
            layer_step_cyc=lat["layer_step_cyc"]["value"],
            head_cyc=lat["head_cyc"]["value"],
            lanes=doc["lanes"],
            macro_latency=doc["macro_latency"],
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"manifest latency entry incomplete ({exc})") from None


#: NAND2 equivalents of Yosys's internal gate cells (after ``synth``): typical standard-cell area ratios to
#: a NAND2 (an estimate; the sign-off replaces it). Flip-flop variants with reset / enable cost more.
CELL_GE = {
    "$_NOT_": 0.67,
    "$_BUF_": 1.0,
    "$_NAND_": 1.0,
    "$_NOR_": 1.0,
    "$_AND_": 1.33,
    "$_OR_": 1.33,
    "$_ANDNOT_": 1.33,
    "$_ORNOT_": 1.33,
    "$_XOR_": 2.33,
    "$_XNOR_": 2.33,
    "$_MUX_": 2.33,
    "$_AOI3_": 1.33,
    "$_OAI3_": 1.33,
    "$_AOI4_": 1.67,
    "$_OAI4_": 1.67,
    "$_NMUX_": 2.33,
}
_FF_GE = 4.5  # a plain D flip-flop
_FF_EXTRA_GE = 1.0  # per extra control (synchronous reset, enable) of a flip-flop variant


def yosys_gate_equivalents(cells_by_type: Mapping[str, int]) -> tuple[float, list[str]]:
    """NAND2 equivalents of a Yosys ``stat`` (``cells_by_type``) and the cell types it had to skip
    (black-box macros and anything unknown; the caller reports them)."""
    ge, skipped = 0.0, []
    for cell, n in sorted(cells_by_type.items()):
        if cell in CELL_GE:
            ge += CELL_GE[cell] * n
        elif cell.startswith(("$_DFF", "$_SDFF", "$_DFFE", "$_SDFFE", "$_SDFFCE")):
            controls = cell.count("E") + (1 if cell.startswith("$_SDFF") else 0)
            ge += (_FF_GE + _FF_EXTRA_GE * controls) * n
        else:
            skipped.append(cell)
    return ge, skipped


def _analytic_digital_area(cfg: LstmConfig, lanes: int, tech: Technology) -> dict:
    """Digital area from component counts: the lanes' multipliers, adders, tables and pipeline registers,
    the state and configuration registers, and the column adders. Multiplexers and control are not
    counted (docs/efficiency.md compares this with the Yosys-cell estimate)."""
    nand2 = tech.nand2_area_um2()
    reg_um2 = tech["digital.register_bit_ge"] * nand2
    rom_um2 = tech["digital.rom_bit_ge"] * nand2
    acc = max(cfg.acc_bits(cfg.layer_rows(l), cfg.adc_bits) for l in range(cfg.num_layers))
    ops = stage_ops(cfg, acc)
    lane = sum(tech.mul_area_um2(m) for s in ops.values() for m in s["mults"])
    lane += sum(tech.add_area_um2(a) for s in ops.values() for a in s["adds"])
    lane_rom_bits = sum(n for s in ops.values() for n in s["table_reads"]) * cfg.lut_size * (cfg.frac_bits + 2)
    lane_reg_bits = sum(r for s in ops.values() for r in s["registers"])
    out_bits = cfg.acc_bits(cfg.head_rows, cfg.head_adc_bits_eff)
    state_bits = (
        cfg.num_layers * cfg.hidden_size * (cfg.cell_bits + cfg.dac_bits)
        + cfg.input_size * cfg.dac_bits
        + cfg.output_size * out_bits
        + (cfg.num_layers + 1) * cfg.adc_step_bits
        + 4 * cfg.num_layers * cfg.scale_bits
    )
    matrices = [matrix_counts(cfg.layer_rows(l), cfg.layer_cols, cfg, cfg.adc_bits) for l in range(cfg.num_layers)]
    matrices.append(matrix_counts(cfg.head_rows, cfg.output_size, cfg, cfg.head_adc_bits_eff))
    column_adders = sum(tech.add_area_um2(m.add_bits) for m in matrices)
    return {
        "lanes_um2": lanes * (lane + lane_rom_bits * rom_um2 + lane_reg_bits * reg_um2),
        "state_registers_um2": state_bits * reg_um2,
        "column_adders_um2": column_adders,
    }


def _digital_area(
    cfg: LstmConfig,
    tech: Technology,
    lanes: int,
    synthesis: Mapping[str, Any] | None,
    signoff: Mapping[str, Any] | None,
) -> tuple[float, str, dict, float | None, list[str]]:
    """(digital area, its source, the component estimate, Yosys gate equivalents, skipped cells): the first
    available of the technology file's sign-off area, the RTL's sky130 area, its Yosys cells, the estimate."""
    digital_est = _analytic_digital_area(cfg, lanes, tech)
    ge, skipped = (None, [])
    if synthesis is not None:
        ge, skipped = yosys_gate_equivalents(synthesis["cells_by_type"])
    signoff_um2 = tech.signoff_area_um2(None if signoff is None else float(signoff["area_um2"]))
    if signoff_um2 is not None:
        source = (
            "sign-off area of the technology file"
            if tech["digital.signoff_area"]
            else "standard-cell sign-off of the RTL directory, scaled (F / signoff_node)^2"
        )
        return signoff_um2, source, digital_est, ge, skipped
    if ge is not None:
        return ge * tech.nand2_area_um2(), "Yosys cells x NAND2 equivalents", digital_est, ge, skipped
    return sum(digital_est.values()), "component estimate", digital_est, ge, skipped


def _model_energy(cfg: LstmConfig, tech: Technology, layers: Counts, head: Counts, total: Counts) -> dict:
    """The model's energy per timestep by component (pJ): converters, cells and the digital terms."""
    return {
        "adc": layers.adc_conversions * tech.adc_energy_pj(cfg.adc_bits)
        + head.adc_conversions * tech.adc_energy_pj(cfg.head_adc_bits_eff),
        "dac": total.dac_conversions * tech.dac_energy_pj(cfg.dac_bits),
        "nvm_cells": total.active_cells * tech.cell_read_energy_pj(),
        "digital_add": tech.add_energy_pj(total.add_bits),
        "digital_mult": tech.mul_energy_pj(total.mult_bits2),
        "table_reads": total.table_reads * tech.table_read_energy_pj(),
        "registers": total.register_bits * tech.register_bit_energy_pj(),
    }


#: The model's digital energy terms: what the standard-cell periphery's measured energy replaces.
DIGITAL_TERMS = ("digital_add", "digital_mult", "table_reads", "registers")


def _digital_energy(energy: dict, tech: Technology, measured: MeasuredDigital | None, ops: int) -> dict:
    """Replace the model's digital terms of ``energy`` by the measured periphery energy, scaled to the model's
    node, when there is one (in place); returns the ``digital_energy_pj`` record: both figures, how they were
    combined and the TOPS/W with each."""
    model = sum(energy[k] for k in DIGITAL_TERMS)
    rest = sum(v for k, v in energy.items() if k not in DIGITAL_TERMS)
    rec: dict[str, Any] = {"model": model, "measured": None, "source": "model", "used": model}
    rec["model_basis"] = "Horowitz 45 nm adds and multiplies, estimated tables and registers, scaled to the node"
    if measured is None:
        rec["tops_per_w"] = {"model": ops / (rest + model), "measured": None}
        return rec
    scaled = tech.signoff_energy_pj(measured.energy_pj, measured.vdd)
    for k in DIGITAL_TERMS:
        del energy[k]
    energy["digital_periphery"] = scaled
    node, vdd = tech["digital.signoff_node"], tech["node.vdd"]
    rec |= {
        "measured": measured.energy_pj,
        "measured_conditions": measured.to_dict() | {"node_nm": node},
        "measured_at_model_node": scaled,
        "scaling": (
            f"x ({tech.feature_nm:g}/{node:g}) x ({vdd:g}/{measured.vdd:g})^2 = "
            f"{scaled / measured.energy_pj:.4g}: the model's own rule for digital energy (switched capacitance "
            f"~ F, energy ~ C V^2), from sky130 {measured.corner} at {measured.vdd:g} V to {tech.feature_nm:g} nm "
            f"at {vdd:g} V"
        ),
        "source": "measured",
        "used": scaled,
        "covers": "the whole standard-cell periphery (lanes, tables, registers, control, muxes; leakage "
        "included); replaces the model's " + ", ".join(DIGITAL_TERMS),
        "tops_per_w": {"model": ops / (rest + model), "measured": ops / (rest + scaled)},
    }
    return rec


def at_clock(res: Mapping[str, Any], clock_mhz: float) -> dict:
    """The clock-dependent figures of an `evaluate` result at another clock (energy per step and area fixed)."""
    latency_ns = res["timing"]["timestep_cyc"] * 1e3 / clock_mhz
    gops = res["ops_per_step"] / latency_ns
    return {
        "clock_mhz": clock_mhz,
        "latency_ns_per_step": latency_ns,
        "gops": gops,
        "power_mw": res["energy_pj_per_step"] / latency_ns,
        "tops_per_w": res["tops_per_w"],
        "tops_per_mm2": gops / 1e3 / res["area_mm2"],
    }


def evaluate(
    cfg: LstmConfig,
    tech: Technology,
    timing: Timing,
    *,
    clock_mhz: float,
    synthesis: Mapping[str, Any] | None = None,
    signoff: Mapping[str, Any] | None = None,
    measured_digital: MeasuredDigital | None = None,
) -> dict:
    """The efficiency of one build at ``clock_mhz``.

    Parameters
    ----------
    cfg : LstmConfig
    tech : Technology
    timing : Timing
        Cycles from the RTL's formula (or its manifest) for this ``cfg``.
    clock_mhz : float
        Clock frequency; the macro latency in cycles must cover the array read and ADC at this clock.
    synthesis : mapping, optional
        The ``synthesis`` entry of an RTL manifest (Yosys ``cells_by_type``): the digital area then comes
        from its gate equivalents instead of the component estimate (the sign-off area, when the
        technology file has one, overrides both).
    signoff : mapping, optional
        The ``signoff`` entry of an RTL manifest made with ``--pdk sky130`` (``area_um2``): the digital area
        is then that standard-cell area, scaled from the sign-off node to the technology's node (unless the
        technology file sets its own ``digital.signoff_area``).
    measured_digital : MeasuredDigital, optional
        The periphery's energy per timestep measured on the sky130 netlist (`nvmlstm power`): it replaces the
        model's digital terms (`DIGITAL_TERMS`), scaled to the technology's node
        (`Technology.signoff_energy_pj`); ``digital_energy_pj`` keeps both figures.

    Returns
    -------
    dict
        JSON-ready: ``gops``, ``tops_per_w``, ``tops_per_mm2``, ``latency_ns_per_step``,
        ``array_utilization``, ``energy_pj`` and ``area_um2`` by component, ``digital_energy_pj``,
        ``counts`` by part, ...
    """
    if (
        not isinstance(clock_mhz, (int, float))
        or isinstance(clock_mhz, bool)
        or not math.isfinite(clock_mhz)
        or clock_mhz <= 0
    ):
        raise ValueError(f"clock_mhz must be a finite number > 0, not {clock_mhz!r}")
    parts = timestep_counts(cfg)
    layers = Counts()
    for l in range(cfg.num_layers):
        layers = layers + parts[f"layer{l}"]
    head, total = parts["head"], parts["total"]
    n_layer_tiles, n_head_tiles = layers.array_reads, head.array_reads
    energy = _model_energy(cfg, tech, layers, head, total)
    ops = 2 * macs_per_timestep(cfg)
    digital_energy = _digital_energy(energy, tech, measured_digital, ops)
    digital, digital_source, digital_est, ge, skipped = _digital_area(cfg, tech, timing.lanes, synthesis, signoff)
    area = {
        "nvm_arrays": total.physical_cells * tech.cell_area_um2(),
        "adc": (
            n_layer_tiles * cfg.array_cols * tech.adc_area_um2(cfg.adc_bits)
            + n_head_tiles * cfg.array_cols * tech.adc_area_um2(cfg.head_adc_bits_eff)
        ),
        "dac": (n_layer_tiles + n_head_tiles) * cfg.array_rows * tech.dac_area_um2(cfg.dac_bits),
        "digital": digital,
    }
    latency_ns = timing.timestep_cyc * 1e3 / clock_mhz
    energy_pj = sum(energy.values())
    area_um2 = sum(area.values())
    gops = ops / latency_ns
    # ops per pJ is TOPS/W (1e12 ops per J); GOPS / 1000 / mm^2 is TOPS/mm^2.
    return {
        "config": cfg.to_dict(),
        "lanes": timing.lanes,
        "macro_latency": timing.macro_latency,
        "clock_mhz": clock_mhz,
        "technology": tech.source,
        "feature_nm": tech.feature_nm,
        "ops_per_step": ops,
        "ops_convention": "2 x MACs of every layer matrix [W_x | W_h | b] and of the head, dense (no sparsity)",
        "timing": asdict(timing),
        "latency_ns_per_step": latency_ns,
        "gops": gops,
        "energy_pj_per_step": energy_pj,
        "power_mw": energy_pj / latency_ns,
        "tops_per_w": ops / energy_pj,
        "area_um2": area_um2,
        "area_mm2": area_um2 * 1e-6,
        "tops_per_mm2": gops / 1e3 / (area_um2 * 1e-6),
        "energy_breakdown_pj": energy,
        "digital_energy_pj": digital_energy,
        "area_breakdown_um2": area,
        "digital_area_source": digital_source,
        "digital_area_estimate_um2": digital_est,
        "digital_area_yosys_ge": ge,
        "digital_area_yosys_skipped_cells": skipped,
        # An array is occupied from its read strobe until its codes are valid: head_cyc (READ + array
        # latency) cycles of every timestep_cyc, the same for each layer's and the head's arrays.
        "array_utilization": timing.head_cyc / timing.timestep_cyc,
        "array_read_strobe_fraction": 1 / timing.timestep_cyc,
        "counts": {k: c.to_dict() for k, c in parts.items()},
        "adc_conversions_unused_fraction": 1 - total.adc_conversions_used / total.adc_conversions,
    }
