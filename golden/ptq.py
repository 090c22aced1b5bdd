"""Post-training quantization of a float model to the hardware contract, with ADC calibration; random models.

Quantization (docs/datapath.md, "From a float model"):

* The array computes ``sum_k w_code[k] * in_code[k]``. With real inputs ``x = x_code * input_scale``,
  ``h = h_code / dac_max`` and the bias row driven at ``dac_max``, the float matrix in code units is
  ``W_eff = [W_ih * in_scale | W_hh / dac_max | b / dac_max]`` (in_scale is ``input_scale`` for layer 0 and
  ``1 / dac_max`` after it).
* Each gate's rows get one weight scale ``s_g = max|W_eff[gate g]| / weight_max``; codes are
  ``clip(round_half_even(W_eff / s_g))``.
* The layer's ADC step is calibrated on the calibration inputs: ``ceil(P / adc_max)`` where ``P`` is the
  ``percentile``-th percentile of |dot product| over every tile column and sample (at least 1).
* The pre-activation of gate g is ``s_g * adc_step * acc``; in table units (``2**lut_frac`` per 1.0) that is
  ``gate_scale_g / 2**scale_shift`` per accumulator LSB, so
  ``gate_scale_g = round_half_even(s_g * adc_step * 2**(lut_frac + scale_shift))``, clipped to
  ``[1, 2**scale_bits - 1]``.
* The head uses one weight scale for all outputs (so output codes of different outputs compare directly,
  for argmax), and ``output_scale = s_head * head_adc_step``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .config import LstmConfig
from .model import FloatLayer, FloatModel, HeadParams, LayerParams, ModelError, QuantizedModel
from .nvm import row_tile_bounds
from .quant import quantize, round_float
from .reference import float_forward

__all__ = [
    "quantize_model",
    "calibration_subset",
    "CALIB_SEQUENCES",
    "calibrate_adc_step",
    "tile_dot_products",
    "matrix_inputs",
    "random_float_model",
    "random_model",
    "DEFAULT_PERCENTILE",
]

DEFAULT_PERCENTILE = 99.5
#: ADC steps are calibrated on at most this many training sequences (the percentile is stable well below).
CALIB_SEQUENCES = 512


def calibration_subset(x_train: np.ndarray, seed: int, n: int = CALIB_SEQUENCES) -> np.ndarray:
    """The training sequences an ADC calibration uses: at most ``n`` of ``x_train``, drawn without replacement
    by ``numpy.random.default_rng(seed).permutation`` (so the same data and seed give the same subset).

    Whose seed it is, is the caller's decision, and the two callers differ on purpose: training passes the run's
    seed (a run's calibration is part of the run, like its initial weights, and seeds sample its spread); the
    sweep passes a fixed seed (it re-calibrates every model, label and point on one subset, so that points
    differ only in what the axis changes).
    """
    return x_train[np.random.default_rng(seed).permutation(len(x_train))[:n]]


def calibrate_adc_step(p: np.ndarray, adc_max: int, step_max: int, percentile: float = DEFAULT_PERCENTILE) -> int:
    """ADC step that maps the ``percentile``-th percentile of |p| to the top code: ``ceil(P / adc_max)``."""
    a = np.abs(np.asarray(p, dtype=np.float64)).ravel()
    if a.size == 0:
        return 1
    q = float(np.percentile(a, percentile))
    return int(min(max(1, math.ceil(q / adc_max)), step_max))


def tile_dot_products(codes: np.ndarray, w: np.ndarray, array_rows: int) -> np.ndarray:
    """Exact per-row-tile dot products (R, samples, N) of input codes (samples, K) and weights (N, K)."""
    bounds = row_tile_bounds(w.shape[1], array_rows)
    return np.stack([codes[:, a:b].astype(np.float64) @ w[:, a:b].T.astype(np.float64) for a, b in bounds])


def matrix_inputs(layer_in: np.ndarray, dac_max: int, h: np.ndarray | None = None) -> np.ndarray:
    """What drives a matrix's rows at every step, (S * T, K): ``[x_t | h_{t-1} | dac_max]`` for an LSTM layer
    (``h`` its h codes (S, T, H), ``h_{-1} = 0``), ``[x_t | dac_max]`` for the head (``h`` None).

    ``layer_in`` (S, T, n): the layer's input codes; the last row, the bias row, is driven at ``dac_max``.
    """
    S, T, _ = np.shape(layer_in)
    parts = [np.asarray(layer_in, dtype=np.int64)]
    if h is not None:
        h = np.asarray(h, dtype=np.int64)
        parts.append(np.concatenate([np.zeros((S, 1, h.shape[2]), dtype=np.int64), h[:, :-1]], axis=1))
    parts.append(np.full((S, T, 1), dac_max, dtype=np.int64))
    return np.concatenate(parts, axis=2).reshape(S * T, -1)


def _weight_scale(w_eff: np.ndarray, weight_max: int) -> float:
    m = float(np.max(np.abs(w_eff))) if w_eff.size else 0.0
    return m / weight_max if m > 0 else 1.0


def _check_shapes(fm: FloatModel, cfg: LstmConfig) -> None:
    got = (fm.input_size, fm.hidden_size, len(fm.layers), fm.output_size)
    want = (cfg.input_size, cfg.hidden_size, cfg.num_layers, cfg.output_size)
    if got != want:
        raise ModelError(
            f"float model has (input_size, hidden_size, num_layers, output_size) = {got}, config says {want}"
        )


def quantize_model(
    fm: FloatModel, cfg: LstmConfig, calib_x: np.ndarray, *, input_scale: float, percentile: float = DEFAULT_PERCENTILE
) -> QuantizedModel:
    """Quantize float model ``fm`` to ``cfg`` and calibrate its ADC steps on real inputs ``calib_x``.

    ``input_scale`` is the real value of one input DAC code; inputs are quantized with it (ties to even).
    """
    _check_shapes(fm, cfg)
    if (
        isinstance(input_scale, (bool, np.bool_))
        or not isinstance(input_scale, numbers.Real)
        or not math.isfinite(input_scale)
        or input_scale <= 0
    ):
        raise ModelError(f"input_scale must be positive and finite, not {input_scale!r}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {percentile!r}")
    dmax, wmax = cfg.dac_max, cfg.weight_max
    ref = float_forward(fm, calib_x, trace=True)
    layer_in = quantize(calib_x, input_scale, cfg.dac_bits)  # (S, T, n) codes
    layers = []
    for l, fl in enumerate(fm.layers):
        in_scale = input_scale if l == 0 else 1.0 / dmax
        w_eff = np.concatenate(
            [np.asarray(fl.w_ih) * in_scale, np.asarray(fl.w_hh) / dmax, np.asarray(fl.bias)[:, None] / dmax], axis=1
        )
        H = cfg.hidden_size
        s = np.array([_weight_scale(w_eff[g * H : (g + 1) * H], wmax) for g in range(4)])
        codes = quantize(w_eff, np.repeat(s, H)[:, None], cfg.weight_bits)
        h_codes = quantize(ref[f"l{l}_h"], 1.0 / dmax, cfg.dac_bits)
        p = tile_dot_products(matrix_inputs(layer_in, dmax, h_codes), codes, cfg.array_rows)
        step = calibrate_adc_step(p, cfg.adc_max, cfg.adc_step_max, percentile)
        gs = round_float(s * step * float(1 << (cfg.lut_frac + cfg.scale_shift)), "half_even")
        gate_scale = np.clip(gs, 1, cfg.scale_max).astype(np.int64)
        layers.append(LayerParams(codes, step, gate_scale))
        layer_in = h_codes
    w_eff = np.concatenate([np.asarray(fm.head_w) / dmax, np.asarray(fm.head_b)[:, None] / dmax], axis=1)
    s_head = _weight_scale(w_eff, wmax)
    head_codes = quantize(w_eff, s_head, cfg.weight_bits)
    p = tile_dot_products(matrix_inputs(layer_in, dmax), head_codes, cfg.array_rows)
    head_step = calibrate_adc_step(p, cfg.head_adc_max, cfg.adc_step_max, percentile)
    return QuantizedModel(
        cfg, tuple(layers), HeadParams(head_codes, head_step), float(input_scale), float(s_head * head_step)
    )


def random_float_model(
    cfg: LstmConfig, rng: np.random.Generator, *, gain: float = 4.0, forget_bias: float = 4.0, bias_spread: float = 2.0
) -> FloatModel:
    """Random float weights U(-gain/sqrt(H), gain/sqrt(H)) (PyTorch's init times ``gain``).

    ``gain`` > 1 drives pre-activations into the tables' saturated ends, ``forget_bias`` keeps f near 1 so
    the cell state integrates, and biases spread by U(-bias_spread, bias_spread) give units a steady
    drive so some cells reach their limits: vectors from such a model exercise the datapath (default
    config, 16 x 16 random uniform inputs, seeds 0-2: 0.4-0.7% of ADC codes at the rails, every DAC code
    of h, 0.7-1.6% of table indices at the top end (the bottom end is rarely hit: a pre-activation below
    -8 is rare), 2-8% of cell states at the cell limit; `golden.vectors.coverage`).
    """
    H = cfg.hidden_size
    k = gain / math.sqrt(H)
    layers = []
    for l in range(cfg.num_layers):
        n = cfg.layer_input_size(l)
        b = rng.uniform(-k, k, 4 * H) + rng.uniform(-bias_spread, bias_spread, 4 * H)
        b[H : 2 * H] += forget_bias
        layers.append(FloatLayer(rng.uniform(-k, k, (4 * H, n)), rng.uniform(-k, k, (4 * H, H)), b))
    kh = 1.0 / math.sqrt(H)
    return FloatModel(tuple(layers), rng.uniform(-kh, kh, (cfg.output_size, H)), rng.uniform(-kh, kh, cfg.output_size))


def random_model(cfg: LstmConfig, seed: int, inputs: np.ndarray) -> tuple[QuantizedModel, FloatModel]:
    """A random model of ``cfg`` from ``seed``, with ADC steps calibrated on input codes ``inputs``.

    Inputs are taken to stand for ``code / dac_max`` (``input_scale = 1 / dac_max``).
    """
    rng = np.random.default_rng(seed)
    fm = random_float_model(cfg, rng)
    input_scale = 1.0 / cfg.dac_max
    qm = quantize_model(fm, cfg, np.asarray(inputs, dtype=np.float64) * input_scale, input_scale=input_scale)
    return qm, fm
