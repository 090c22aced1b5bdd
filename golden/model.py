"""The quantized model (what is programmed into a chip) and the float model (what training produces).

A chip generated from a config runs every model of that config: the per-model numbers are the weight codes,
the ADC step of each layer and of the head, and the per-gate digital scale multipliers. The activation
tables are a function of the config alone (`golden.tables`). ``input_scale`` and ``output_scale`` are
software metadata (how a float input becomes a DAC code, how an output code becomes a float); the hardware
never sees them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .config import LstmConfig

__all__ = ["ModelError", "LayerParams", "HeadParams", "QuantizedModel", "FloatLayer", "FloatModel", "array_sha256"]


class ModelError(ValueError):
    """A model (in memory or in a file) breaks a rule; the message names the array and the rule."""


def array_sha256(a: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and C-order little-endian bytes."""
    a = np.asarray(a, order="C")  # not ascontiguousarray: it turns a 0-d array into shape (1,)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    h = hashlib.sha256()
    h.update(a.dtype.str.encode())
    h.update(repr(tuple(a.shape)).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _int_array(name: str, a: object, shape: tuple[int, ...], lo: int, hi: int, dtype: type) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise ModelError(f"{name}: dtype {a.dtype} is not an integer dtype")
    if a.shape != shape:
        raise ModelError(f"{name}: shape {a.shape}, expected {shape}")
    if a.size:
        amin, amax = int(a.min()), int(a.max())
        if amin < lo or amax > hi:
            bad = amin if amin < lo else amax
            where = np.argwhere((a < lo) | (a > hi))[0]
            raise ModelError(f"{name}: value {bad} at index {tuple(int(i) for i in where)} is outside [{lo}, {hi}]")
    out = a.astype(dtype)
    out.setflags(write=False)
    return out


def _positive_float(name: str, v: object) -> float:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ModelError(f"{name} must be a number, not {v!r}") from None
    if not np.isfinite(f) or f <= 0:
        raise ModelError(f"{name} must be positive and finite, not {f!r}")
    return f


@dataclass(frozen=True)
class LayerParams:
    """Per-model numbers of one LSTM layer.

    Parameters
    ----------
    weights : ndarray of int, shape (4H, K)
        Weight codes of [W_x | W_h | b]; K = inputs + H + 1.
    adc_step : int
        ADC step of every column of every tile of the layer, in (weight level x DAC code) units.
    gate_scale : ndarray of int, shape (4,)
        Digital scale multiplier of gates i, f, g, o.
    """

    weights: np.ndarray
    adc_step: int
    gate_scale: np.ndarray


@dataclass(frozen=True)
class HeadParams:
    """Per-model numbers of the dense head: weight codes (O, H+1) of [W | b] and the head ADC step."""

    weights: np.ndarray
    adc_step: int


@dataclass(frozen=True)
class QuantizedModel:
    """Everything a chip of ``config`` needs to run a model, validated on construction."""

    config: LstmConfig
    layers: tuple[LayerParams, ...]
    head: HeadParams
    input_scale: float = 1.0
    output_scale: float = 1.0

    def __post_init__(self) -> None:
        cfg = self.config
        if not isinstance(cfg, LstmConfig):
            raise ModelError(f"config must be an LstmConfig, not {type(cfg).__name__}")
        if len(self.layers) != cfg.num_layers:
            raise ModelError(f"model has {len(self.layers)} layers, config says num_layers={cfg.num_layers}")
        layers = []
        for l, lp in enumerate(self.layers):
            w = _int_array(
                f"layer {l} weights",
                lp.weights,
                (cfg.layer_cols, cfg.layer_rows(l)),
                -cfg.weight_max,
                cfg.weight_max,
                np.int16,
            )
            step = _int_array(f"layer {l} adc_step", lp.adc_step, (), 1, cfg.adc_step_max, np.int64)
            scale = _int_array(f"layer {l} gate_scale", lp.gate_scale, (4,), 0, cfg.scale_max, np.int64)
            layers.append(LayerParams(w, int(step), scale))
        hw = _int_array(
            "head weights",
            self.head.weights,
            (cfg.output_size, cfg.head_rows),
            -cfg.weight_max,
            cfg.weight_max,
            np.int16,
        )
        hstep = _int_array("head adc_step", self.head.adc_step, (), 1, cfg.adc_step_max, np.int64)
        object.__setattr__(self, "layers", tuple(layers))
        object.__setattr__(self, "head", HeadParams(hw, int(hstep)))
        object.__setattr__(self, "input_scale", _positive_float("input_scale", self.input_scale))
        object.__setattr__(self, "output_scale", _positive_float("output_scale", self.output_scale))

    # ---------------------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """The model as named arrays (the contents of ``model.npz``), in canonical dtypes."""
        out: dict[str, np.ndarray] = {}
        for l, lp in enumerate(self.layers):
            out[f"l{l}_weights"] = lp.weights
            out[f"l{l}_adc_step"] = np.asarray(lp.adc_step, dtype=np.int64)
            out[f"l{l}_gate_scale"] = lp.gate_scale
        out["head_weights"] = self.head.weights
        out["head_adc_step"] = np.asarray(self.head.adc_step, dtype=np.int64)
        out["input_scale"] = np.asarray(self.input_scale, dtype=np.float64)
        out["output_scale"] = np.asarray(self.output_scale, dtype=np.float64)
        return out

    @classmethod
    def from_arrays(cls, config: LstmConfig, arrays: Mapping[str, np.ndarray]) -> QuantizedModel:
        """Inverse of `arrays`; names any missing or unexpected array."""
        expected = [f"l{l}_{k}" for l in range(config.num_layers) for k in ("weights", "adc_step", "gate_scale")]
        expected += ["head_weights", "head_adc_step", "input_scale", "output_scale"]
        missing = [k for k in expected if k not in arrays]
        if missing:
            raise ModelError(f"missing array{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        extra = sorted(set(arrays) - set(expected))
        if extra:
            raise ModelError(f"unexpected array{'s' if len(extra) > 1 else ''} {', '.join(extra)}")
        for k in ("input_scale", "output_scale"):
            a = np.asarray(arrays[k])
            if a.shape != () or not np.issubdtype(a.dtype, np.floating):
                raise ModelError(f"{k}: expected a float scalar, got dtype {a.dtype} shape {a.shape}")
        layers = tuple(
            LayerParams(arrays[f"l{l}_weights"], arrays[f"l{l}_adc_step"], arrays[f"l{l}_gate_scale"])
            for l in range(config.num_layers)
        )
        return cls(
            config,
            layers,
            HeadParams(arrays["head_weights"], arrays["head_adc_step"]),
            float(arrays["input_scale"]),
            float(arrays["output_scale"]),
        )

    def array_hashes(self) -> dict[str, str]:
        return {k: array_sha256(v) for k, v in sorted(self.arrays().items())}

    def digest(self) -> str:
        """sha256 identifying the model: its config and every array (the ``model_sha256`` of vector files)."""
        doc = {"config": self.config.to_dict(), "arrays": self.array_hashes()}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class FloatLayer:
    """Float weights of one LSTM layer, PyTorch layout: w_ih (4H, in), w_hh (4H, H), bias (4H,) = b_ih + b_hh."""

    w_ih: np.ndarray
    w_hh: np.ndarray
    bias: np.ndarray


@dataclass(frozen=True)
class FloatModel:
    """A float LSTM stack plus dense head (w (O, H), b (O,)); the float reference and the input of PTQ."""

    layers: tuple[FloatLayer, ...]
    head_w: np.ndarray
    head_b: np.ndarray

    def __post_init__(self) -> None:
        if not self.layers:
            raise ModelError("a float model needs at least one layer")
        h = np.asarray(self.layers[0].w_hh).shape[-1]
        prev = np.asarray(self.layers[0].w_ih).shape[-1]
        for l, fl in enumerate(self.layers):
            for name, a, shape in (
                ("w_ih", fl.w_ih, (4 * h, prev)),
                ("w_hh", fl.w_hh, (4 * h, h)),
                ("bias", fl.bias, (4 * h,)),
            ):
                a = np.asarray(a)
                if a.shape != shape:
                    raise ModelError(f"float layer {l} {name}: shape {a.shape}, expected {shape}")
                if not np.all(np.isfinite(a)):
                    raise ModelError(f"float layer {l} {name}: contains NaN or infinity")
            prev = h
        for name, a, shape in (
            ("head_w", self.head_w, (np.asarray(self.head_w).shape[0], h)),
            ("head_b", self.head_b, (np.asarray(self.head_w).shape[0],)),
        ):
            a = np.asarray(a)
            if a.shape != shape:
                raise ModelError(f"float {name}: shape {a.shape}, expected {shape}")
            if not np.all(np.isfinite(a)):
                raise ModelError(f"float {name}: contains NaN or infinity")

    @property
    def input_size(self) -> int:
        return int(np.asarray(self.layers[0].w_ih).shape[1])

    @property
    def hidden_size(self) -> int:
        return int(np.asarray(self.layers[0].w_hh).shape[1])

    @property
    def output_size(self) -> int:
        return int(np.asarray(self.head_w).shape[0])
