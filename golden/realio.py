"""Real values in and out of a quantized model: the software side of ``input_scale`` and ``output_scale``.

The hardware sees codes only. A task's real input x becomes the DAC code ``round_half_even(x / input_scale)``
clipped to the DAC range (docs/datapath.md, sections 2 and 11), and an output code becomes the real value
``code * output_scale``. These are the definitions; training, sweeps and the flow call them.
"""

from __future__ import annotations

import numpy as np

from .lstm import golden_forward
from .model import QuantizedModel
from .nvm import NonIdealities

__all__ = ["input_codes", "golden_outputs"]


def input_codes(model: QuantizedModel, x: np.ndarray) -> np.ndarray:
    """Input DAC codes (int64) of real inputs ``x`` (..., input_size): round half even, then clip."""
    dmax = model.config.dac_max
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) / model.input_scale), -dmax, dmax).astype(np.int64)


def golden_outputs(model: QuantizedModel, x: np.ndarray, nonideal: NonIdealities | None = None) -> np.ndarray:
    """Real outputs (float64, (S, T, O)) of `golden_forward` on real inputs ``x``: output codes x output_scale."""
    out = golden_forward(model, input_codes(model, x), trace=False, nonideal=nonideal)["outputs"]
    return out.astype(np.float64) * model.output_scale
