"""The literature table (``bench/literature.csv``): published GPU, FPGA, ASIC and NVM LSTM/RNN designs.

One citation per row, with its ops-counting convention and whether its throughput is dense or
sparse-effective. TOPS/W is throughput / power and TOPS/mm^2 throughput / area, both recomputed from the
row's own figures (empty when the row has none).
"""

from __future__ import annotations

import csv
import io
from importlib import resources
from typing import Any

__all__ = ["KINDS", "DIGITAL_KINDS", "load_literature", "best_by_kind", "ratios"]

KINDS = ("gpu", "fpga", "asic", "nvm")
DIGITAL_KINDS = ("gpu", "fpga", "asic")
_COLUMNS = (
    "kind",
    "design",
    "citation",
    "node_nm",
    "precision",
    "gops",
    "power_w",
    "area_mm2",
    "density",
    "ops_convention",
    "verified",
    "note",
)


def _number(text: str, where: str) -> float | None:
    if text == "":
        return None
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{where}: not a number: {text!r}") from None
    if not v > 0:
        raise ValueError(f"{where}: must be > 0, not {text!r}")
    return v


def load_literature(text: str | None = None) -> list[dict[str, Any]]:
    """Rows of the table (``text``: CSV text instead of the packaged file), with ``tops_per_w`` and
    ``tops_per_mm2`` added (``None`` where the row lacks the figures)."""
    if text is None:
        text = resources.files("nvmlstm.bench").joinpath("literature.csv").read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != _COLUMNS:
        raise ValueError(f"literature table: columns must be {', '.join(_COLUMNS)}")
    rows = []
    for n, r in enumerate(reader, start=2):
        where = f"literature table line {n} ({r['design']})"
        if r["kind"] not in KINDS:
            raise ValueError(f"{where}: kind must be one of {', '.join(KINDS)}, not {r['kind']!r}")
        if r["density"] not in ("dense", "sparse-effective"):
            raise ValueError(f"{where}: density must be dense or sparse-effective, not {r['density']!r}")
        if not r["citation"]:
            raise ValueError(f"{where}: no citation")
        gops, power, area = (_number(r[k], f"{where}: {k}") for k in ("gops", "power_w", "area_mm2"))
        row: dict[str, Any] = dict(r)
        row.update(
            gops=gops,
            power_w=power,
            area_mm2=area,
            tops_per_w=None if gops is None or power is None else gops / 1e3 / power,
            tops_per_mm2=None if gops is None or area is None else gops / 1e3 / area,
        )
        rows.append(row)
    return rows


def best_by_kind(rows: list[dict[str, Any]], metric: str) -> dict[str, dict[str, Any]]:
    """Per kind, the row with the highest ``metric`` (kinds without a figure are left out); ``digital``
    is the best of GPU, FPGA and ASIC."""
    best: dict[str, dict[str, Any]] = {}
    for kind in (*KINDS, "digital"):
        kinds = DIGITAL_KINDS if kind == "digital" else (kind,)
        cands = [r for r in rows if r["kind"] in kinds and r[metric] is not None]
        if cands:
            best[kind] = max(cands, key=lambda r: (r[metric], r["design"]))
    return best


def ratios(ours: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``ours[metric] / best[metric]`` for ``tops_per_w`` and ``tops_per_mm2``, per kind and ``digital``."""
    out: dict[str, dict[str, Any]] = {}
    for metric in ("tops_per_w", "tops_per_mm2"):
        out[metric] = {
            kind: {"design": r["design"], "value": r[metric], "ratio": ours[metric] / r[metric]}
            for kind, r in best_by_kind(rows, metric).items()
        }
    return out
