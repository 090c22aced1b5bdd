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


def _b(**kw) -> dict[str, Any]:
    """4/4/4-bit config fields plus ``kw``."""
    return {"weight_bits": 4, "dac_bits": 4, "adc_bits": 4, **kw}


#: The default regression: every case on Icarus and on Verilator.
REGRESSION_CASES: tuple[Case, ...] = (
    # golden.default_config() with one lane per hidden unit: 2 x 2 layer tiles, 2 head row tiles.
    Case(
        "default",
        _b(input_size=8, hidden_size=32, num_layers=1, output_size=10, array_rows=32, array_cols=64),
        lanes=32,
        macro_latency=2,
        seed=0,
        sequences=3,
        steps=8,
        stress=Stress(seed=11, **_STRESS),
    ),
    # a layer of 3 row tiles x 3 column tiles (the ADC codes of three tiles summed per column), 2 head tiles
    Case(
        "multitile",
        _b(input_size=5, hidden_size=6, num_layers=1, output_size=3, array_rows=4, array_cols=8),
        lanes=3,
        macro_latency=2,
        seed=0,
        sequences=3,
        steps=8,
        stress=Stress(seed=12, **_STRESS),
    ),
    # two stacked layers (layer 1 reads layer 0's h_t) and the dense head on layer 1
    Case(
        "2layer",
        _b(input_size=4, hidden_size=5, num_layers=2, output_size=3, array_rows=6, array_cols=12),
        lanes=5,
        macro_latency=1,
        seed=0,
        sequences=3,
        steps=8,
        stress=Stress(seed=13, **_STRESS),
    ),
    # odd sizes everywhere, macro latency 3
    Case(
        "odd",
        _b(input_size=7, hidden_size=9, num_layers=1, output_size=5, array_rows=7, array_cols=13),
        lanes=9,
        macro_latency=3,
        seed=0,
        sequences=3,
        steps=8,
        stress=Stress(seed=14, **_STRESS),
    ),
    # 3 lanes for 7 units: groups of 3, 3 and 1 (the last group's missing units are discarded)
    Case(
        "lanes3of7",
        _b(input_size=3, hidden_size=7, num_layers=1, output_size=2, array_rows=8, array_cols=16),
        lanes=3,
        macro_latency=2,
        seed=0,
        sequences=3,
        steps=8,
        stress=Stress(seed=15, **_STRESS),
    ),
    # 2-bit weights, 3-bit DACs, 5-bit ADCs, a 3-bit head ADC
    Case(
        "bits235",
        {
            "weight_bits": 2,
            "dac_bits": 3,
            "adc_bits": 5,
            "head_adc_bits": 3,
            "input_size": 5,
            "hidden_size": 6,
            "num_layers": 1,
            "output_size": 4,
            "array_rows": 12,
            "array_cols": 8,
        },
        lanes=2,
        macro_latency=2,
        seed=1,
        sequences=3,
        steps=10,
        stress=Stress(seed=16, **_STRESS),
    ),
    # 6-bit weights, 8-bit DACs, 7-bit ADCs, 6-bit head ADC; wider tables, fraction, cell and scale
    Case(
        "bits687",
        {
            "weight_bits": 6,
            "dac_bits": 8,
            "adc_bits": 7,
            "head_adc_bits": 6,
            "frac_bits": 9,
            "lut_bits": 9,
            "lut_frac": 5,
            "cell_bits": 13,
            "scale_bits": 14,
            "scale_shift": 8,
            "input_size": 4,
            "hidden_size": 5,
            "num_layers": 1,
            "output_size": 3,
            "array_rows": 8,
            "array_cols": 16,
        },
        lanes=5,
        macro_latency=2,
        seed=0,
        sequences=3,
        steps=8,
        stress=Stress(seed=17, **_STRESS),
    ),
    # small tables (6-bit index, 3 fractional bits), 5 fractional bits, a 7-bit cell that saturates, 6-bit head
    Case(
        "lut",
        _b(
            input_size=3,
            hidden_size=4,
            num_layers=1,
            output_size=3,
            head_adc_bits=6,
            frac_bits=5,
            lut_bits=6,
            lut_frac=3,
            cell_bits=7,
            scale_bits=10,
            scale_shift=4,
            array_rows=4,
            array_cols=8,
        ),
        lanes=4,
        macro_latency=2,
        seed=0,
        sequences=3,
        steps=8,
        stress=Stress(seed=18, **_STRESS),
    ),
    # three narrow layers on one lane (every unit time-multiplexed), 19 macros
    Case(
        "deep",
        _b(input_size=2, hidden_size=3, num_layers=3, output_size=2, array_rows=4, array_cols=4),
        lanes=1,
        macro_latency=2,
        seed=1,
        sequences=3,
        steps=8,
        stress=Stress(seed=19, **_STRESS),
    ),
)


def case_by_name(name: str) -> Case:
    for c in REGRESSION_CASES:
        if c.name == name:
            return c
    raise KeyError(f"no regression case {name!r}; known: {', '.join(c.name for c in REGRESSION_CASES)}")
