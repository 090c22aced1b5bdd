"""The technology file: per-operation energies and per-component areas, validated at load.

A technology file is TOML (``bench/default_tech.toml`` is the default, with the source of every figure).
Every entry is ``{ value = number, unit = "..." }``. `load_technology` rejects a file with a missing or
unknown key, a wrong unit, or a value out of range with one line naming the file and the key.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover (Python 3.10)
    import tomli as tomllib

__all__ = ["TechError", "Technology", "DEFAULT_TECH", "SCHEMA", "FORMAT_VERSION", "load_technology", "parse_technology"]

FORMAT_VERSION = 1

#: The default technology file (package data).
DEFAULT_TECH = Path(__file__).with_name("default_tech.toml")

#: ``section -> key -> (unit, rule)``; rule ``"pos"`` (> 0), ``"nonneg"`` (>= 0) or ``"bits"`` (integer 1-16).
SCHEMA: dict[str, dict[str, tuple[str, str]]] = {
    "node": {"feature_nm": ("nm", "pos"), "vdd": ("V", "pos")},
    "adc": {"walden_fom": ("fJ/step", "pos"), "area_ref": ("um^2", "pos"), "ref_bits": ("bits", "bits")},
    "dac": {"energy_ref": ("pJ", "pos"), "area_ref": ("um^2", "pos"), "ref_bits": ("bits", "bits")},
    "nvm": {
        "read_voltage": ("V", "pos"),
        "g_max": ("uS", "pos"),
        "g_min": ("uS", "nonneg"),
        "pulse": ("ns", "pos"),
        "cell_area": ("F^2", "pos"),
    },
    "digital": {
        "ref_node": ("nm", "pos"),
        "add8_energy": ("pJ", "nonneg"),
        "mul8_energy": ("pJ", "nonneg"),
        "add8_area": ("um^2", "nonneg"),
        "mul8_area": ("um^2", "nonneg"),
        "register_bit_energy": ("pJ", "nonneg"),
        "table_read_energy": ("pJ", "nonneg"),
        "register_bit_ge": ("GE", "nonneg"),
        "rom_bit_ge": ("GE", "nonneg"),
        "nand2_area": ("um^2", "pos"),
        "nand2_node": ("nm", "pos"),
        "signoff_area": ("um^2", "nonneg"),
        "signoff_node": ("nm", "pos"),
    },
}


class TechError(ValueError):
    """A technology file breaks a rule; the message names the file and the key."""


@dataclass(frozen=True)
class Technology:
    """Validated figures (plain numbers in the units of `SCHEMA`), ``values[section][key]``, and their source."""

    values: Mapping[str, Mapping[str, float]]
    source: str

    def __getitem__(self, dotted: str) -> float:
        section, key = dotted.split(".")
        return self.values[section][key]

    # -- derived per-operation figures at node.feature_nm ---------------------------------------------------
    @property
    def feature_nm(self) -> float:
        return self["node.feature_nm"]

    def _digital_energy_scale(self) -> float:
        """Horowitz's 45 nm energies at the node: * (F / ref) * (vdd / 0.9)^2 (capacitance ~ F, CV^2)."""
        return (self.feature_nm / self["digital.ref_node"]) * (self["node.vdd"] / 0.9) ** 2

    def _digital_area_scale(self) -> float:
        return (self.feature_nm / self["digital.ref_node"]) ** 2

    def adc_energy_pj(self, bits: int) -> float:
        """Walden: FoM_W * 2^bits per conversion (fJ -> pJ)."""
        return self["adc.walden_fom"] * 2.0**bits * 1e-3

    def adc_area_um2(self, bits: int) -> float:
        return self["adc.area_ref"] * 2.0 ** (bits - self["adc.ref_bits"])

    def dac_energy_pj(self, bits: int) -> float:
        return self["dac.energy_ref"] * bits / self["dac.ref_bits"]

    def dac_area_um2(self, bits: int) -> float:
        return self["dac.area_ref"] * bits / self["dac.ref_bits"]

    def cell_read_energy_pj(self) -> float:
        """V^2 * G_mean * t for one device read at full-scale input (V * V * uS * ns = 1e-15 J = 1e-3 pJ)."""
        g_mean = 0.5 * (self["nvm.g_max"] + self["nvm.g_min"])
        return self["nvm.read_voltage"] ** 2 * g_mean * self["nvm.pulse"] * 1e-3

    def cell_area_um2(self) -> float:
        f_um = self.feature_nm * 1e-3
        return self["nvm.cell_area"] * f_um * f_um

    def add_energy_pj(self, bits: int) -> float:
        return self["digital.add8_energy"] * bits / 8 * self._digital_energy_scale()

    def mul_energy_pj(self, bits_product: int) -> float:
        """A multiply of an a-bit by a b-bit operand, ``bits_product = a * b``."""
        return self["digital.mul8_energy"] * bits_product / 64 * self._digital_energy_scale()

    def add_area_um2(self, bits: int) -> float:
        return self["digital.add8_area"] * bits / 8 * self._digital_area_scale()

    def mul_area_um2(self, bits_product: int) -> float:
        return self["digital.mul8_area"] * bits_product / 64 * self._digital_area_scale()

    def register_bit_energy_pj(self) -> float:
        return self["digital.register_bit_energy"] * self._digital_energy_scale()

    def table_read_energy_pj(self) -> float:
        return self["digital.table_read_energy"] * self._digital_energy_scale()

    def nand2_area_um2(self) -> float:
        return self["digital.nand2_area"] * (self.feature_nm / self["digital.nand2_node"]) ** 2

    def signoff_energy_pj(self, energy_pj: float, vdd: float) -> float:
        """A digital energy measured on the sign-off's cells (``digital.signoff_node``, at supply ``vdd``) at
        this node, by the rule the Horowitz figures follow: x (F / signoff_node) x (node.vdd / vdd)^2
        (switched capacitance ~ F, energy ~ C V^2)."""
        return energy_pj * (self.feature_nm / self["digital.signoff_node"]) * (self["node.vdd"] / vdd) ** 2

    def signoff_area_um2(self, measured: float | None = None) -> float | None:
        """The sign-off digital area at ``digital.signoff_node`` scaled to this node by (F / node)^2: the file's
        ``digital.signoff_area`` when it has one (non-zero), else ``measured`` (the um^2 of an RTL directory's
        sky130 sign-off, `nvmlstm generate --pdk sky130`), else ``None``."""
        a = self["digital.signoff_area"] or measured
        return None if not a else a * (self.feature_nm / self["digital.signoff_node"]) ** 2


def parse_technology(doc: Any, where: str) -> Technology:
    """Validate a parsed TOML document; every problem is a `TechError` naming ``where`` and the key."""
    if not isinstance(doc, dict):
        raise TechError(f"{where}: expected a TOML table, not {type(doc).__name__}")
    version = doc.get("version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise TechError(f"{where}: version: must be {FORMAT_VERSION}, not {version!r}")
    unknown = sorted(set(doc) - set(SCHEMA) - {"version"})
    if unknown:
        raise TechError(f"{where}: unknown key {unknown[0]}; valid sections are {', '.join(SCHEMA)}")
    values: dict[str, dict[str, float]] = {}
    for section, keys in SCHEMA.items():
        table = doc.get(section)
        if not isinstance(table, dict):
            raise TechError(f"{where}: missing section [{section}]")
        extra = sorted(set(table) - set(keys))
        if extra:
            raise TechError(
                f"{where}: unknown key {section}.{extra[0]}; valid keys are {', '.join(f'{section}.{k}' for k in keys)}"
            )
        values[section] = {}
        for key, (unit, rule) in keys.items():
            name = f"{section}.{key}"
            if key not in table:
                raise TechError(f"{where}: missing key {name} (unit {unit})")
            entry = table[key]
            if not isinstance(entry, dict) or set(entry) != {"value", "unit"}:
                raise TechError(f'{where}: {name}: expected {{ value = number, unit = "{unit}" }}, not {entry!r}')
            if entry["unit"] != unit:
                raise TechError(f"{where}: {name}: unit must be {unit!r}, not {entry['unit']!r}")
            v = entry["value"]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise TechError(f"{where}: {name}: value must be a finite number, not {v!r}")
            if rule == "bits" and (not isinstance(v, int) or not 1 <= v <= 16):
                raise TechError(f"{where}: {name}: value must be an integer from 1 to 16, not {v!r}")
            if rule == "pos" and v <= 0:
                raise TechError(f"{where}: {name}: value must be > 0, not {v!r}")
            if rule == "nonneg" and v < 0:
                raise TechError(f"{where}: {name}: value must be >= 0, not {v!r}")
            values[section][key] = v
    if values["nvm"]["g_min"] >= values["nvm"]["g_max"]:
        raise TechError(
            f"{where}: nvm.g_min: value must be below nvm.g_max ({values['nvm']['g_max']!r}), "
            f"not {values['nvm']['g_min']!r}"
        )
    return Technology(values, where)


def load_technology(path: str | Path | None = None) -> Technology:
    """Read and validate a technology file (``None``: the default one)."""
    path = DEFAULT_TECH if path is None else Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TechError(f"{path}: technology file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TechError(f"{path}: cannot read the technology file ({exc})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TechError(f"{path}: not valid TOML ({exc})") from None
    return parse_technology(doc, "default technology" if path == DEFAULT_TECH else str(path))
