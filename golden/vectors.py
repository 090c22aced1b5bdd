"""Reference-vector generation: inputs, the golden trace, and coverage statistics of the datapath.

Vectors that never reach the ADC rails or the cell-state limits prove little about the RTL, so every vector
set comes with `coverage`, and the CLI prints it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nvmlstm.artifacts.files import atomic_output_dir

from .config import LstmConfig
from .io import save_model, save_vectors
from .lstm import golden_forward
from .model import QuantizedModel

__all__ = ["random_inputs", "input_rng", "coverage", "write_golden_dir", "check_golden_out_dir", "GOLDEN_DIR_FILES"]


def input_rng(seed: int) -> np.random.Generator:
    """The generator of random input codes for ``seed`` (independent of the weight stream, which is
    ``default_rng(seed)``)."""
    return np.random.default_rng([seed, 1])


def random_inputs(cfg: LstmConfig, rng: np.random.Generator, sequences: int, steps: int) -> np.ndarray:
    """Input DAC codes drawn uniformly from the full range ``[-dac_max, dac_max]``."""
    return rng.integers(-cfg.dac_max, cfg.dac_max + 1, size=(sequences, steps, cfg.input_size), dtype=np.int64)


def coverage(cfg: LstmConfig, trace: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """How much of each number range the trace exercises (fractions at the rails, zeros, distinct values)."""
    out: dict[str, Any] = {}
    for l in range(cfg.num_layers):
        adc = trace[f"l{l}_adc"]
        c = trace[f"l{l}_c"]
        idx = trace[f"l{l}_idx"]
        h = trace[f"l{l}_h"]
        out[f"l{l}"] = {
            "adc_rail_fraction": float(np.mean(np.abs(adc) == cfg.adc_max)),
            "adc_zero_fraction": float(np.mean(adc == 0)),
            "adc_distinct": int(np.unique(adc).size),
            "idx_rail_fraction": float(np.mean((idx == cfg.lut_min) | (idx == cfg.lut_max))),
            "cell_limit_fraction": float(np.mean(np.abs(c) == cfg.cell_max)),
            "cell_max_abs": int(np.max(np.abs(c))),
            "h_distinct": int(np.unique(h).size),
        }
    head = trace["head_adc"]
    out["head"] = {
        "adc_rail_fraction": float(np.mean(np.abs(head) == cfg.head_adc_max)),
        "adc_zero_fraction": float(np.mean(head == 0)),
        "outputs_distinct": int(np.unique(trace["outputs"]).size),
    }
    return out


#: What a golden vector directory holds; a non-empty directory with anything else is someone else's.
GOLDEN_DIR_FILES = ("vectors.npz", "vectors.json", "model.npz", "model.json")


def check_golden_out_dir(out_dir: str | Path) -> None:
    """Refuse an output directory that is not empty and not an earlier golden vector directory.

    Raises
    ------
    FileExistsError
        ``out_dir`` is a file, or a directory holding files other than `GOLDEN_DIR_FILES` (the message names
        up to five of them), so rewriting it would mix our files with a user's.
    """
    out = Path(out_dir)
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory")
    names = sorted(p.name for p in out.iterdir())
    foreign = [n for n in names if n not in GOLDEN_DIR_FILES]
    if foreign:
        what = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise FileExistsError(
            f"{out}: directory is not empty and not an earlier `nvmlstm golden` output "
            f"(found {what}); give a new or empty directory"
        )


def write_golden_dir(
    out_dir: str | Path, model: QuantizedModel, inputs: np.ndarray, *, metadata: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Run the golden model on ``inputs`` and write ``vectors.npz/json`` and ``model.npz/json`` into
    ``out_dir`` atomically (all four files or none). Returns the coverage statistics."""
    check_golden_out_dir(out_dir)
    trace = golden_forward(model, inputs, trace=True)
    cov = coverage(model.config, trace)
    meta = dict(metadata or {})
    meta["coverage"] = cov
    with atomic_output_dir(out_dir) as tmp:
        save_vectors(tmp, model, trace, metadata=meta)
        save_model(model, tmp / "model.npz", metadata={k: v for k, v in meta.items() if k != "coverage"})
    return cov
