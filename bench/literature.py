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

__all__ = [
    "KINDS",
    "DIGITAL_KINDS",
    "PAPER_CLAIM",
    "load_literature",
    "best_by_kind",
    "ratios",
    "digital_comparison",
]

KINDS = ("gpu", "fpga", "asic", "nvm")
DIGITAL_KINDS = ("gpu", "fpga", "asic")
#: The paper's efficiency claim (Ma et al., ICRC 2019, arXiv:2002.10636): at least these ratios to the GPU,
#: FPGA and ASIC designs, TOPS/W and TOPS/mm^2.
PAPER_CLAIM = {"tops_per_w": 2.4, "tops_per_mm2": 40.0}
#: How a design's figure moves with its node F under classical scaling (the technology file's own rules for
#: digital logic, docs/efficiency.md): energy per op ~ F, so TOPS/W ~ 1/F; area ~ F^2, so TOPS/mm^2 ~ 1/F^2.
_NODE_EXPONENT = {"tops_per_w": 1, "tops_per_mm2": 2}
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


def digital_comparison(ours: dict[str, Any], rows: list[dict[str, Any]], feature_nm: float) -> dict[str, Any]:
    """Our TOPS/W and TOPS/mm^2 against every digital design (GPU, FPGA, ASIC) that has the figure: the paper's
    claim tested at the designs' published nodes, and again with each design scaled to ``feature_nm``.

    The published figures are at the designs' own nodes (16 to 65 nm) while ours are at ``feature_nm``; a fair
    comparison scales them to one node. Scaled by classical scaling (`_NODE_EXPONENT`), a 65 nm design gains
    (65 / 32) in TOPS/W and (65 / 32)^2 in TOPS/mm^2 at 32 nm, so ``at_our_node`` is the lower end of the range.

    Parameters
    ----------
    ours : dict
        ``tops_per_w`` and ``tops_per_mm2`` of the build.
    rows : list of dict
        `load_literature` rows.
    feature_nm : float
        The node our figures are at (the technology file's ``node.feature_nm``).

    Returns
    -------
    dict
        Per metric, None when no digital design has the figure, else ``claim`` (the paper's minimum ratio),
        ``designs`` (how many), ``best`` (design, kind, node_nm, value, ratio: the design with the highest
        figure as published), ``range`` ([lowest, highest] ratio over the designs as published),
        ``at_our_node`` (design, node_nm, value scaled to ``feature_nm``, ratio: the lowest ratio once every
        design with a known node is scaled) and ``holds`` / ``holds_at_our_node`` (ratio >= claim).
    """
    out: dict[str, Any] = {}
    for metric, claim in PAPER_CLAIM.items():
        cands = [r for r in rows if r["kind"] in DIGITAL_KINDS and r[metric] is not None]
        if not cands:
            out[metric] = None
            continue
        best = max(cands, key=lambda r: (r[metric], r["design"]))
        ratio = [ours[metric] / r[metric] for r in cands]
        scaled = []
        for r in cands:
            node = _number(str(r.get("node_nm") or ""), f"literature table ({r['design']}): node_nm")
            if node is not None:
                value = r[metric] * (node / feature_nm) ** _NODE_EXPONENT[metric]
                scaled.append({"design": r["design"], "node_nm": node, "value": value, "ratio": ours[metric] / value})
        low = min(scaled, key=lambda d: (d["ratio"], d["design"])) if scaled else None
        best_ratio = ours[metric] / best[metric]
        out[metric] = {
            "claim": claim,
            "designs": len(cands),
            "best": {
                "design": best["design"],
                "kind": best["kind"],
                "node_nm": _number(str(best.get("node_nm") or ""), f"literature table ({best['design']}): node_nm"),
                "value": best[metric],
                "ratio": best_ratio,
            },
            "range": [min(ratio), max(ratio)],
            "at_our_node": low,
            "holds": best_ratio >= claim,
            "holds_at_our_node": None if low is None else low["ratio"] >= claim,
        }
    return out
