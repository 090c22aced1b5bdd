"""Evaluation of one sweep point: the golden model (with seeded non-idealities) on a task's test split.

numpy only. How a task's real inputs become DAC codes and output codes real outputs is golden's
(`nvmlstm.golden.realio.input_codes`, `golden_outputs`), which training and the flow call too.

Everything a worker needs is loaded from files and cached per worker process (`_cache`), so a task sent to a
worker carries only paths, hashes and numbers.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from nvmlstm.golden.config import LstmConfig
from nvmlstm.golden.io import load_float_model, load_model
from nvmlstm.golden.lstm import golden_forward
from nvmlstm.golden.model import FloatModel, HeadParams, LayerParams, QuantizedModel
from nvmlstm.golden.nvm import NonIdealities
from nvmlstm.golden.ptq import (
    CALIB_SEQUENCES,
    DEFAULT_PERCENTILE,
    calibrate_adc_step,
    calibration_subset,
    matrix_inputs,
    quantize_model,
    tile_dot_products,
)
from nvmlstm.golden.quant import round_float
from nvmlstm.golden.realio import golden_outputs, input_codes
from nvmlstm.golden.reference import float_forward
from nvmlstm.tasks import TaskData, load_task, metric_from_outputs

__all__ = [
    "input_codes",
    "golden_outputs",
    "float_outputs",
    "trial_seed",
    "nonidealities",
    "retile",
    "point_model",
    "evaluate_point",
    "evaluate_baseline",
    "CALIB_SEQUENCES",
    "CALIB_SEED",
    "STOCHASTIC_AXES",
    "BIT_AXES",
]

#: Re-quantization and re-tiling calibrate ADC steps on `golden.ptq.calibration_subset` (CALIB_SEQUENCES
#: training sequences) drawn with this seed: fixed, so the subset is the same for every model, label and point.
CALIB_SEED = 0

BIT_AXES = ("weight_bits", "dac_bits", "adc_bits")
#: Axes whose non-zero values make an evaluation random.
STOCHASTIC_AXES = ("weight_noise", "read_noise", "adc_noise", "stuck_rate")


# --------------------------------------------------------------------------------------------------
# Real values <-> codes: the definitions are golden's (nvmlstm.golden.realio); re-exported here.
def float_outputs(fm: FloatModel, x: np.ndarray) -> np.ndarray:
    """Real outputs of the float reference (`golden.reference.float_forward`) on real inputs ``x``."""
    return float_forward(fm, x)["outputs"]


# --------------------------------------------------------------------------------------------------
# Seeds and non-idealities
def trial_seed(base_seed: int, noise_key: str, trial: int) -> int:
    """Seed of one trial: numpy ``SeedSequence`` of (``base_seed``, sha256 of ``noise_key``, ``trial``).

    ``noise_key`` is the canonical text of the point's non-ideality values (not the model label), so every
    model at a point sees the same draws (common random numbers: differences between models are not
    differences of luck). Never Python's ``hash()`` (salted per process) nor completion order.
    """
    digest = hashlib.sha256(noise_key.encode("utf-8")).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 32, 4)]
    ss = np.random.SeedSequence([int(base_seed), *words, int(trial)])
    return int(ss.generate_state(1, dtype=np.uint64)[0])


def nonidealities(point: dict[str, Any], seed: int) -> NonIdealities:
    """`NonIdealities` of a point's noise axes (absent axes: 0); ``stuck_rate`` r is split r/2 Gmin, r/2 Gmax."""
    r = float(point.get("stuck_rate", 0.0))
    return NonIdealities(
        prog_noise=float(point.get("weight_noise", 0.0)),
        read_noise=float(point.get("read_noise", 0.0)),
        adc_noise=float(point.get("adc_noise", 0.0)),
        stuck_gmin_rate=r / 2.0,
        stuck_gmax_rate=r / 2.0,
        seed=seed,
    )


# --------------------------------------------------------------------------------------------------
# Models of a point
def retile(
    qm: QuantizedModel, array_rows: int, calib_codes: np.ndarray, percentile: float = DEFAULT_PERCENTILE
) -> QuantizedModel:
    """The same weight codes on arrays of ``array_rows`` rows, ADC steps re-calibrated for the new tiles.

    A chip is calibrated for its arrays: larger arrays give larger partial sums per ADC, so each layer's
    step is re-calibrated as PTQ does (`golden.ptq.calibrate_adc_step` on the |dot products| of every row
    tile), with each layer's inputs taken from the original model's ideal trace on ``calib_codes``. The
    gate scales and the output scale keep the real value of one accumulator LSB: they are multiplied by
    new step / old step (rounded half even, clipped to the scale register).
    """
    cfg = qm.config.replace(array_rows=array_rows)
    tr = golden_forward(qm, calib_codes, trace=True)
    dmax = cfg.dac_max
    layer_in = calib_codes.astype(np.int64)
    layers = []
    for l, lp in enumerate(qm.layers):
        h = tr[f"l{l}_h"].astype(np.int64)
        step = calibrate_adc_step(
            tile_dot_products(matrix_inputs(layer_in, dmax, h), lp.weights, array_rows),
            cfg.adc_max,
            cfg.adc_step_max,
            percentile,
        )
        gs = round_float(lp.gate_scale.astype(np.float64) * (step / lp.adc_step), "half_even")
        layers.append(LayerParams(lp.weights, step, np.clip(gs, 1, cfg.scale_max).astype(np.int64)))
        layer_in = h
    hstep = calibrate_adc_step(
        tile_dot_products(matrix_inputs(layer_in, dmax), qm.head.weights, array_rows),
        cfg.head_adc_max,
        cfg.adc_step_max,
        percentile,
    )
    return QuantizedModel(
        cfg,
        tuple(layers),
        HeadParams(qm.head.weights, hstep),
        qm.input_scale,
        qm.output_scale * hstep / qm.head.adc_step,
    )


def target_config(base: LstmConfig, point: dict[str, Any]) -> LstmConfig:
    """``base`` with the point's bit widths and array rows (the other fields unchanged)."""
    changes = {k: int(point[k]) for k in (*BIT_AXES, "array_rows") if k in point}
    return base.replace(**changes) if changes else base


_cache: dict[Any, Any] = {}


def _cached(key: Any, make):
    if key not in _cache:
        _cache[key] = make()
    return _cache[key]


def _task(task: str, data: str | None, seq_len: int | None) -> TaskData:
    return _cached(("task", task, data, seq_len), lambda: load_task(task, data, seq_len=seq_len))


def _calib_x(td: TaskData) -> np.ndarray:
    def make():
        xtr = td.train[0]
        return calibration_subset(xtr, CALIB_SEED).astype(np.float64)

    return _cached(("calib", id(td)), make)


def _test(td: TaskData, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    x, y = td.test
    return (x, y) if n is None else (x[:n], y[:n])


def point_model(job: dict[str, Any]) -> tuple[QuantizedModel, str]:
    """The quantized model of a (label, point) job and how it was obtained.

    ``trained``: a model file of the label whose config is the point's, used as is. ``retiled``: a model
    of the label with the point's bit widths, re-tiled to the point's array rows (`retile`).
    ``requantized``: the label's float weights quantized with golden PTQ at the point's config
    (`golden.ptq.quantize_model`, input scale 1 / dac_max: task inputs lie in [-1, 1]).
    """
    td = _task(job["task"], job["data"], job["seq_len"])
    base_cfg = LstmConfig.from_dict(job["base_config"])
    cfg = target_config(base_cfg, job["point"])
    members = [(m["path"], m["sha256"], LstmConfig.from_dict(m["config"])) for m in job["models"]]

    def make():
        for path, sha, mcfg in members:
            if mcfg == cfg:
                return _cached(("model", sha), lambda path=path: load_model(path)), "trained"
        for path, sha, mcfg in members:
            if mcfg.replace(array_rows=cfg.array_rows) == cfg:
                qm = _cached(("model", sha), lambda path=path: load_model(path))
                return retile(qm, cfg.array_rows, input_codes(qm, _calib_x(td))), "retiled"
        fpath = job["float_path"]
        if fpath is None:  # the spec is checked before any job runs; this is a guard
            raise ValueError(f"label {job['label']}: no float weights to re-quantize at {cfg.to_dict()}")
        fm = _cached(("float", job["float_sha256"]), lambda: load_float_model(fpath))
        return quantize_model(fm, cfg, _calib_x(td), input_scale=1.0 / cfg.dac_max), "requantized"

    # Keyed by content (file hashes), not by label: a worker serves several sweeps, whose labels may name
    # other files.
    key = (
        "point_model",
        job["task"],
        job["data"],
        job["seq_len"],
        tuple(m[1] for m in members),
        job["float_sha256"],
        cfg.to_json(),
    )
    return _cached(key, make)


def evaluate_point(job: dict[str, Any]) -> dict[str, Any]:
    """Run the trials of one (label, point) job; returns the point record written to ``points/KEY.json``.

    A point whose stochastic axes are all 0 is deterministic: it runs one trial (trial 0), whatever
    ``trials`` is, so its std is 0 and its mean is the model's exact golden metric.
    """
    td = _task(job["task"], job["data"], job["seq_len"])
    x, y = _test(td, job["test_sequences"])
    qm, source = point_model(job)
    point = job["point"]
    stochastic = any(float(point.get(k, 0.0)) != 0.0 for k in STOCHASTIC_AXES)
    n = job["trials"] if stochastic else 1
    trials = []
    for t in range(n):
        seed = trial_seed(job["seed"], job["noise_key"], t) if stochastic else None
        ni = nonidealities(point, seed) if stochastic else None
        trials.append({"trial": t, "seed": seed, "metric": metric_from_outputs(td, golden_outputs(qm, x, ni), y)})
    return {
        "key": job["key"],
        "label": job["label"],
        "point": point,
        "source": source,
        "model_sha256": qm.digest(),
        "adc_steps": [lp.adc_step for lp in qm.layers] + [qm.head.adc_step],
        "trials": trials,
    }


def evaluate_baseline(job: dict[str, Any]) -> dict[str, Any]:
    """Float baseline of a label: `float_forward` of its float weights on the (real-valued) test inputs."""
    td = _task(job["task"], job["data"], job["seq_len"])
    x, y = _test(td, job["test_sequences"])
    fm = _cached(("float", job["float_sha256"]), lambda: load_float_model(job["float_path"]))
    return {
        "key": job["key"],
        "label": job["label"],
        "float_metric": metric_from_outputs(td, float_outputs(fm, x.astype(np.float64)), y),
    }


def canonical_json(doc: Any) -> str:
    """Deterministic JSON text (sorted keys, floats by repr) for hashing and files."""
    return json.dumps(doc, sort_keys=True, indent=2) + "\n"
