"""The configurations of the default regression (tests/test_regression.py, benchmarks/regression_speed.py).

Each `Case` is an elaboration-time configuration (sizes, bit widths, tiles, layers, lanes, macro latency)
with the seed and vector counts that make its random model and inputs exercise the datapath: the compared
codes vary and some ADC or cell-state limit is reached (checked by `exercise_problems`; the seeds were
picked so that it holds). Vector counts are modest on purpose: each case is built for two simulators, and
bit-exactness per value does not need long sequences, while the stress (stalls, splits) does need several
sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .runner import Stress

__all__ = ["Case", "REGRESSION_CASES", "exercise_problems", "case_by_name"]


@dataclass(frozen=True)
class Case:
    """One regression configuration.

    Parameters
    ----------
    name : str
        Short name (what the case is for).
    config : dict
        `golden.LstmConfig` fields.
    lanes, macro_latency : int
        Build parameters of the accelerator.
    seed : int
        Seed of the random model and inputs (`nvmlstm golden --random-weights --seed`).
    sequences, steps : int
        Vector counts.
    stress : Stress
        Run-time stress of the regression run (overridable from the environment, `Stress.from_env`).
    """

    name: str
    config: dict[str, Any]
    lanes: int
    macro_latency: int
    seed: int
    sequences: int
    steps: int
    stress: Stress = field(default_factory=Stress)

    def cfg(self):
        from nvmlstm.golden.config import LstmConfig

        return LstmConfig(**self.config)

    @property
    def id(self) -> str:
        """The configuration spelled out: sizes, bits, tables, array and tile counts, lanes, latency."""
        c = self.cfg()
        L = c.num_layers
        tiles = "+".join(str(c.row_tiles(c.layer_rows(l)) * c.col_tiles(c.layer_cols)) for l in range(L))
        head = c.row_tiles(c.head_rows) * c.col_tiles(c.output_size)
        return (
            f"{self.name}-I{c.input_size}H{c.hidden_size}L{L}O{c.output_size}"
            f"-w{c.weight_bits}d{c.dac_bits}a{c.adc_bits}h{c.head_adc_bits_eff}"
            f"-F{c.frac_bits}lut{c.lut_bits}.{c.lut_frac}c{c.cell_bits}"
            f"-arr{c.array_rows}x{c.array_cols}-tiles{tiles}+{head}"
            f"-lanes{self.lanes}-lat{self.macro_latency}"
        )

    def write_vectors(self, vec_dir: str | Path):
        """Random model and inputs of this case through the golden model into ``vec_dir`` (the `nvmlstm
        golden` layout: vectors and model); returns the model."""
        from nvmlstm.golden.ptq import random_model
        from nvmlstm.golden.vectors import input_rng, random_inputs, write_golden_dir

        cfg = self.cfg()
        inputs = random_inputs(cfg, input_rng(self.seed), self.sequences, self.steps)
        model, _ = random_model(cfg, self.seed, inputs)
        write_golden_dir(vec_dir, model, inputs, metadata={"generator": "nvmlstm.sim.cases", "case": self.id})
        return model

    def write_rtl(self, rtl_dir: str | Path, model=None, *, pdk: str | None = None, log=None) -> None:
        """`nvmlstm generate` output for this case (no synthesis), with weight images of ``model`` if given;
        ``pdk``: also the standard-cell netlist (``generate --pdk``)."""
        from nvmlstm.gen import generate_rtl

        generate_rtl(
            rtl_dir,
            self.cfg(),
            model=model,
            model_name=None if model is None else "model.npz",
            lanes=self.lanes,
            macro_latency=self.macro_latency,
            synth=False,
            lint=False,
            pdk=pdk,
            log=log,
        )

    def prepare(self, root: str | Path, *, pdk: str | None = None, log=None) -> tuple[Path, Path]:
        """Write ``root/vectors`` and ``root/rtl`` for this case; returns (rtl_dir, vec_dir)."""
        root = Path(root)
        model = self.write_vectors(root / "vectors")
        self.write_rtl(root / "rtl", model, pdk=pdk, log=log)
        return root / "rtl", root / "vectors"


def exercise_problems(cfg, trace: dict[str, np.ndarray]) -> list[str]:
    """Why a golden trace would prove little about the RTL (empty if it exercises the datapath).

    Required: the output codes and every layer's h codes take more than one value, and some saturation
    happens: an ADC code at its rail (any layer or the head) or a cell state at its limit.
    """
    probs = []
    if np.unique(trace["outputs"]).size < 2:
        probs.append("the output codes are constant")
    for l in range(cfg.num_layers):
        if np.unique(trace[f"l{l}_h"]).size < 2:
            probs.append(f"layer {l}'s h codes are constant")
    rails = sum(int(np.count_nonzero(np.abs(trace[f"l{l}_adc"]) == cfg.adc_max)) for l in range(cfg.num_layers))
    rails += int(np.count_nonzero(np.abs(trace["head_adc"]) == cfg.head_adc_max))
    limits = sum(int(np.count_nonzero(np.abs(trace[f"l{l}_c"]) == cfg.cell_max)) for l in range(cfg.num_layers))
    if rails + limits == 0:
        probs.append("no ADC code reaches its rail and no cell state its limit")
    return probs


_STRESS = dict(gap_prob=0.3, backpressure_prob=0.3, idle_max=3, split_prob=0.3)


def _case(
    name: str,
    size: tuple[int, int, int, int],
    array: tuple[int, int],
    *,
    lanes: int,
    stress_seed: int,
    macro_latency: int = 2,
    seed: int = 0,
    steps: int = 8,
    bits: tuple[int, ...] = (4, 4, 4),
    fixed: tuple[int, int, int, int, int, int] | None = None,
) -> Case:
    """The `Case` of ``size`` = (input_size, hidden_size, num_layers, output_size) on ``array`` = (array_rows,
    array_cols) tiles, with ``bits`` = (weight_bits, dac_bits, adc_bits[, head_adc_bits]) and, if given, ``fixed``
    = (frac_bits, lut_bits, lut_frac, cell_bits, scale_bits, scale_shift) (else the `golden.LstmConfig`
    defaults), 3 sequences, stressed by ``Stress(seed=stress_seed, **_STRESS)``."""
    sizes = dict(zip(("input_size", "hidden_size", "num_layers", "output_size"), size))
    config = dict(zip(("weight_bits", "dac_bits", "adc_bits", "head_adc_bits"), bits))
    if fixed is not None:
        config.update(zip(("frac_bits", "lut_bits", "lut_frac", "cell_bits", "scale_bits", "scale_shift"), fixed))
    config.update(sizes)
    config.update(array_rows=array[0], array_cols=array[1])
    return Case(
        name,
        config,
        lanes=lanes,
        macro_latency=macro_latency,
        seed=seed,
        sequences=3,
        steps=steps,
        stress=Stress(seed=stress_seed, **_STRESS),
    )


#: The default regression: every case on Icarus and on Verilator.
REGRESSION_CASES: tuple[Case, ...] = (
    # golden.default_config() with one lane per hidden unit: 2 x 2 layer tiles, 2 head row tiles.
    _case("default", (8, 32, 1, 10), (32, 64), lanes=32, stress_seed=11),
    # a layer of 3 row tiles x 3 column tiles (the ADC codes of three tiles summed per column), 2 head tiles
    _case("multitile", (5, 6, 1, 3), (4, 8), lanes=3, stress_seed=12),
    # two stacked layers (layer 1 reads layer 0's h_t) and the dense head on layer 1
    _case("2layer", (4, 5, 2, 3), (6, 12), lanes=5, stress_seed=13, macro_latency=1),
    # odd sizes everywhere, macro latency 3
    _case("odd", (7, 9, 1, 5), (7, 13), lanes=9, stress_seed=14, macro_latency=3),
    # 3 lanes for 7 units: groups of 3, 3 and 1 (the last group's missing units are discarded)
    _case("lanes3of7", (3, 7, 1, 2), (8, 16), lanes=3, stress_seed=15),
    # 2-bit weights, 3-bit DACs, 5-bit ADCs, a 3-bit head ADC
    _case("bits235", (5, 6, 1, 4), (12, 8), lanes=2, stress_seed=16, seed=1, steps=10, bits=(2, 3, 5, 3)),
    # 6-bit weights, 8-bit DACs, 7-bit ADCs, 6-bit head ADC; wider tables, fraction, cell and scale
    _case("bits687", (4, 5, 1, 3), (8, 16), lanes=5, stress_seed=17, bits=(6, 8, 7, 6), fixed=(9, 9, 5, 13, 14, 8)),
    # small tables (6-bit index, 3 fractional bits), 5 fractional bits, a 7-bit cell that saturates, 6-bit head
    _case("lut", (3, 4, 1, 3), (4, 8), lanes=4, stress_seed=18, bits=(4, 4, 4, 6), fixed=(5, 6, 3, 7, 10, 4)),
    # three narrow layers on one lane (every unit time-multiplexed), 19 macros
    _case("deep", (2, 3, 3, 2), (4, 4), lanes=1, stress_seed=19, seed=1),
)


def case_by_name(name: str) -> Case:
    for c in REGRESSION_CASES:
        if c.name == name:
            return c
    raise KeyError(f"no regression case {name!r}; known: {', '.join(c.name for c in REGRESSION_CASES)}")
