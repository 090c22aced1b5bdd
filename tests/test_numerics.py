"""Numerical tests of the golden model against the arithmetic contract (docs/datapath.md).

Two kinds of test live here and are kept apart:

* **bit-exact** tests compare integers with ``np.array_equal`` (no tolerance): the fast
  `golden.golden_forward` against the literal `tests/naive.py`, tiled against untiled products with a
  lossless ADC, column tilings against each other;
* **float** tests compare real numbers with an explicitly stated bound: the dequantized golden path against
  the float reference as bit widths grow, the float reference against ``torch.nn.LSTM``, and the
  non-ideal (noisy) path against the ideal one.

Every random draw is seeded; hypothesis runs derandomized (the same examples on every run).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from config_helpers import config_fields
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive import naive_forward

from nvmlstm import golden
from nvmlstm.golden import InputError, LstmConfig, ModelError, NonIdealities, QuantizedModel, golden_forward
from nvmlstm.golden.model import FloatLayer, FloatModel, HeadParams, LayerParams
from nvmlstm.golden.ptq import calibrate_adc_step, quantize_model, random_float_model, random_model
from nvmlstm.golden.quant import quantize
from nvmlstm.golden.reference import float_forward
from nvmlstm.golden.vectors import coverage, input_rng, random_inputs

PROPERTY = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

RESULT_KEYS = {"inputs", "h", "outputs"}


# ------------------------------------------------------------------------------------------------------
# Helpers
def trace_mismatches(got: dict, want: dict) -> list[str]:
    """Every difference between two traces: key sets, then per key shape and integer values (exact)."""
    problems = []
    if set(got) != set(want):
        problems.append(
            f"key sets differ: only in got {sorted(set(got) - set(want))}, only in want {sorted(set(want) - set(got))}"
        )
    for k in sorted(set(got) & set(want)):
        a, b = np.asarray(got[k]), np.asarray(want[k])
        if a.shape != b.shape:
            problems.append(f"{k}: shape {a.shape} != {b.shape}")
        elif not (np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer)):
            problems.append(f"{k}: non-integer dtype {a.dtype} / {b.dtype}")
        elif not np.array_equal(a.astype(np.int64), b.astype(np.int64)):
            where = tuple(int(i) for i in np.argwhere(a.astype(np.int64) != b.astype(np.int64))[0])
            problems.append(f"{k}: first difference at {where}: {a[where]} != {b[where]}")
    return problems


def assert_traces_equal(got: dict, want: dict) -> None:
    problems = trace_mismatches(got, want)
    assert not problems, "\n".join(problems)


def with_config(qm: QuantizedModel, cfg: LstmConfig) -> QuantizedModel:
    """The same per-model numbers on a chip of another (shape-compatible) config."""
    return QuantizedModel(cfg, qm.layers, qm.head, qm.input_scale, qm.output_scale)


def random_codes(cfg: LstmConfig, rng: np.random.Generator, sequences: int, steps: int) -> np.ndarray:
    return rng.integers(-cfg.dac_max, cfg.dac_max + 1, size=(sequences, steps, cfg.input_size), dtype=np.int64)


def int_model(
    cfg: LstmConfig, rng: np.random.Generator, *, adc_step: int | None = None, head_adc_step: int | None = None
) -> QuantizedModel:
    """A random integer model: uniform weight codes, and ADC steps / gate scales anywhere in a range that
    keeps the ADC codes spread (or the given steps)."""
    wm = cfg.weight_max
    layers = []
    for l in range(cfg.num_layers):
        w = rng.integers(-wm, wm + 1, size=(cfg.layer_cols, cfg.layer_rows(l)))
        p_typ = max(1, int(math.sqrt(min(cfg.array_rows, cfg.layer_rows(l)))) * wm * cfg.dac_max // 2)
        step = adc_step if adc_step is not None else int(rng.integers(1, max(2, 2 * p_typ // cfg.adc_max + 2)))
        step = min(step, cfg.adc_step_max)
        layers.append(LayerParams(w, step, rng.integers(0, cfg.scale_max + 1, size=4)))
    hw = rng.integers(-wm, wm + 1, size=(cfg.output_size, cfg.head_rows))
    p_typ = max(1, int(math.sqrt(min(cfg.array_rows, cfg.head_rows))) * wm * cfg.dac_max // 2)
    hstep = (
        head_adc_step if head_adc_step is not None else int(rng.integers(1, max(2, 2 * p_typ // cfg.head_adc_max + 2)))
    )
    return QuantizedModel(cfg, tuple(layers), HeadParams(hw, min(hstep, cfg.adc_step_max)))


def check_against_naive(qm: QuantizedModel, x: np.ndarray) -> None:
    """golden (trace and no trace) == naive, exactly, for every key; golden arrays are int32."""
    want = naive_forward(qm, x)
    got = golden_forward(qm, x, trace=True)
    assert_traces_equal(got, want)
    assert all(v.dtype == np.int32 for v in got.values()), {k: v.dtype for k, v in got.items()}
    short = golden_forward(qm, x, trace=False)
    assert set(short) == RESULT_KEYS
    assert_traces_equal(short, {k: want[k] for k in RESULT_KEYS})


@st.composite
def small_configs(draw) -> LstmConfig:
    frac = draw(st.integers(3, 10))
    lut_bits = draw(st.integers(2, 10))
    return LstmConfig(
        input_size=draw(st.integers(1, 9)),
        hidden_size=draw(st.integers(1, 12)),
        num_layers=draw(st.integers(1, 3)),
        output_size=draw(st.integers(1, 5)),
        weight_bits=draw(st.integers(2, 8)),
        dac_bits=draw(st.integers(2, 8)),
        adc_bits=draw(st.integers(2, 8)),
        array_rows=draw(st.integers(2, 16)),
        array_cols=draw(st.integers(2, 16)),
        head_adc_bits=draw(st.none() | st.integers(2, 8)),
        lut_bits=lut_bits,
        lut_frac=draw(st.integers(0, min(frac, lut_bits - 1))),
        frac_bits=frac,
        cell_bits=draw(st.integers(frac + 2, frac + 8)),
        scale_bits=draw(st.integers(4, 16)),
        scale_shift=draw(st.integers(0, 8)),
    )


# ------------------------------------------------------------------------------------------------------
# 1. golden_forward == naive_forward, bit for bit
@PROPERTY
@given(cfg=small_configs(), seed=st.integers(0, 2**32 - 1), sequences=st.integers(1, 3), steps=st.integers(1, 6))
def test_golden_equals_naive_ptq_models(cfg, seed, sequences, steps):
    x = random_codes(cfg, np.random.default_rng([seed, 1]), sequences, steps)
    qm, _ = random_model(cfg, seed, x)
    check_against_naive(qm, x)


@PROPERTY
@given(cfg=small_configs(), seed=st.integers(0, 2**32 - 1), sequences=st.integers(1, 3), steps=st.integers(1, 6))
def test_golden_equals_naive_random_integer_models(cfg, seed, sequences, steps):
    # Arbitrary weight codes, ADC steps and gate scales (including 0): reaches every rail and clip.
    rng = np.random.default_rng(seed)
    qm = int_model(cfg, rng)
    check_against_naive(qm, random_codes(cfg, rng, sequences, steps))


# Configs that take golden.lstm's other code paths: float64 GEMMs (tile bound >= 2**24), the ADC without a
# table (2*bound+1 > 2**22), the cell update in int64 (frac_bits + cell_bits > 30), tanh(c) and h without
# tables (cell range > 2**22, 2**(2F+1) > 2**22), and a single row tile (the composed table without trace).
WIDE_CONFIGS = {
    "float64_no_tables": config_fields(
        (3, 5, 2, 2),
        (12, 12, 10),
        (64, 8),
        lut_bits=14,
        lut_frac=10,
        frac_bits=12,
        cell_bits=23,
        scale_bits=20,
        scale_shift=12,
        adc_step_bits=24,
    ),
    "float32_no_adc_table": config_fields((150, 60, 1, 3), (8, 8, 8), (200, 16), head_adc_bits=6),
    "single_row_tile": config_fields((5, 6, 2, 4), (5, 5, 6), (16, 16)),
    "frac_equals_lut_frac": config_fields(
        (2, 3, 1, 2), (3, 3, 3), (3, 2), lut_bits=6, lut_frac=5, frac_bits=5, cell_bits=7, scale_shift=0
    ),
}


@pytest.mark.parametrize("name", sorted(WIDE_CONFIGS))
def test_golden_equals_naive_other_code_paths(name):
    cfg = LstmConfig(**WIDE_CONFIGS[name])
    x = random_codes(cfg, np.random.default_rng(2024), 3, 5)
    qm, _ = random_model(cfg, 17, x)
    check_against_naive(qm, x)
    check_against_naive(int_model(cfg, np.random.default_rng(18)), x)


# Large batches run in cache-sized chunks of sequences (golden.lstm._chunks); the chunk boundaries must not
# change a single value. 1102 sequences with 128 hidden units and two row tiles split unevenly.
LARGE_BATCH_CONFIGS = {
    "two_row_tiles_h128": config_fields((16, 128, 1, 3), (4, 4, 4), (128, 128)),
    "two_layers_h64": config_fields((8, 64, 2, 4), (4, 4, 5), (48, 64)),
}


@pytest.mark.parametrize("name", sorted(LARGE_BATCH_CONFIGS))
def test_golden_equals_naive_on_chunked_large_batches(name):
    from nvmlstm.golden.lstm import _chunks, _LayerPlan  # only to prove that the batch really is split

    cfg = LstmConfig(**LARGE_BATCH_CONFIGS[name])
    x = random_codes(cfg, np.random.default_rng(7), 1102, 3)
    qm, _ = random_model(cfg, 11, x)
    chunks = _chunks(x.shape[0], _LayerPlan(cfg, qm.layers[0], cfg.input_size, None, trace=False))
    assert len(chunks) > 1 and len({b - a for a, b in chunks}) > 1, chunks  # several, uneven
    check_against_naive(qm, x)


def test_checker_catches_corrupted_trace():
    cfg = golden.default_config().replace(input_size=3, hidden_size=4, num_layers=2, output_size=2, array_rows=4)
    x = random_codes(cfg, np.random.default_rng(5), 2, 4)
    qm, _ = random_model(cfg, 5, x)
    want = naive_forward(qm, x)
    good = golden_forward(qm, x)
    assert trace_mismatches(good, want) == []
    for key in ("l0_c", "l1_adc", "head_adc", "outputs", "h"):
        bad = {k: v.copy() for k, v in good.items()}
        bad[key].flat[bad[key].size // 2] += 1
        problems = trace_mismatches(bad, want)
        assert len(problems) == 1 and problems[0].startswith(f"{key}:"), problems
    missing = {k: v for k, v in good.items() if k != "l1_idx"}
    assert "key sets differ" in trace_mismatches(missing, want)[0]
    shorter = dict(good, outputs=good["outputs"][:, :-1])
    assert "outputs: shape" in trace_mismatches(shorter, want)[0]


def test_checker_catches_perturbed_weight_code():
    # One bias-row weight code changed by one level: with a lossless ADC (step 1, no clipping) the bias row,
    # driven at dac_max at every step, changes that column's ADC code at every step, so the two models'
    # traces must differ.
    cfg = LstmConfig(**config_fields((3, 4, 1, 2), (4, 4, 16), (4, 4), head_adc_bits=16))
    rng = np.random.default_rng(9)
    qm = int_model(cfg, rng, adc_step=1, head_adc_step=1)
    x = random_codes(cfg, rng, 2, 3)
    w = qm.layers[0].weights.copy()
    bias_row, col = cfg.layer_rows(0) - 1, 5
    w[col, bias_row] += 1 if w[col, bias_row] < cfg.weight_max else -1
    bad = QuantizedModel(cfg, (LayerParams(w, 1, qm.layers[0].gate_scale),), qm.head)
    problems = trace_mismatches(golden_forward(bad, x), naive_forward(qm, x))
    assert any(p.startswith("l0_adc:") for p in problems), problems
    assert any(p.startswith("l0_acc:") for p in problems), problems


# ------------------------------------------------------------------------------------------------------
# 2. Lossless ADC: tiled sums == the untiled integer matrix product
def _layer_input_rows(trace: dict, layer: int, dac_max: int) -> np.ndarray:
    """[x_t | h_{t-1} | dac_max] of layer ``layer`` at every (sequence, step), rebuilt from the trace."""
    inp = trace["inputs"] if layer == 0 else trace[f"l{layer - 1}_h"]
    h = trace[f"l{layer}_h"].astype(np.int64)
    h_prev = np.concatenate([np.zeros_like(h[:, :1]), h[:, :-1]], axis=1)
    bias = np.full(h.shape[:2] + (1,), dac_max, dtype=np.int64)
    return np.concatenate([inp.astype(np.int64), h_prev, bias], axis=2)


def _own_row_tiles(rows: int, array_rows: int) -> list[tuple[int, int]]:
    starts = list(range(0, rows, array_rows))
    return [(a, min(a + array_rows, rows)) for a in starts]


@pytest.mark.parametrize("array_rows", [2, 3, 5, 8, 9, 64])
def test_lossless_adc_tiles_sum_to_untiled_product(array_rows, small_config):
    # adc_step = 1 and 16-bit ADCs: |p| <= 64 * 7 * 7 = 3136 < 32767 = adc_max, so every conversion is exact
    # and the codes summed over row tiles must be the plain integer product, for any tiling
    # (K = 8 rows for layer 0, 9 for layer 1, 5 for the head; 64 > K is a single tile).
    cfg = small_config(hidden_size=4, output_size=3, adc_bits=16, head_adc_bits=16, array_rows=array_rows, array_cols=4)
    rng = np.random.default_rng(31)
    qm = int_model(cfg, rng, adc_step=1, head_adc_step=1)
    x = random_codes(cfg, rng, 3, 6)
    tr = golden_forward(qm, x, trace=True)
    for l, lp in enumerate(qm.layers):
        full = _layer_input_rows(tr, l, cfg.dac_max)
        w = lp.weights.astype(np.int64)
        bounds = _own_row_tiles(w.shape[1], array_rows)
        per_tile = np.stack([full[..., a:b] @ w[:, a:b].T for a, b in bounds], axis=2)  # (S, T, R, 4H)
        assert np.abs(per_tile).max() < cfg.adc_max  # no clipping: the premise of the test
        assert np.array_equal(tr[f"l{l}_adc"], per_tile)
        assert np.array_equal(tr[f"l{l}_adc"].sum(axis=2), full @ w.T)
        assert np.array_equal(tr[f"l{l}_acc"], full @ w.T)
    hw = qm.head.weights.astype(np.int64)
    head_in = np.concatenate([tr["h"].astype(np.int64), np.full(tr["h"].shape[:2] + (1,), cfg.dac_max)], axis=2)
    assert tr["head_adc"].shape[2] == len(_own_row_tiles(cfg.head_rows, array_rows))
    assert np.array_equal(tr["outputs"], head_in @ hw.T)
    assert np.array_equal(tr["head_adc"].sum(axis=2), head_in @ hw.T)


def test_lossless_adc_check_detects_perturbed_weight():
    # The independent product of test_lossless_adc_... must notice a single weight code changed by one.
    cfg = LstmConfig(**config_fields((3, 4, 1, 3), (4, 4, 16), (3, 4), head_adc_bits=16))
    rng = np.random.default_rng(31)
    qm = int_model(cfg, rng, adc_step=1, head_adc_step=1)
    tr = golden_forward(qm, random_codes(cfg, rng, 3, 6), trace=True)
    w = qm.layers[0].weights.astype(np.int64)
    full = _layer_input_rows(tr, 0, cfg.dac_max)
    assert np.array_equal(tr["l0_acc"], full @ w.T)
    w2 = w.copy()
    w2[2, -1] += 1 if w2[2, -1] < cfg.weight_max else -1  # bias row: driven at dac_max at every step
    diff = tr["l0_acc"] != full @ w2.T
    assert diff[..., 2].all() and not np.delete(diff, 2, axis=-1).any()


# ------------------------------------------------------------------------------------------------------
# 3. Column tiling changes nothing; row tiling is modeled (changes lossy ADC codes)
def test_column_tiling_never_changes_results():
    base = LstmConfig(**config_fields((5, 7, 2, 6), (4, 4, 4), (6, 64)))
    x = random_codes(base, np.random.default_rng(3), 4, 8)
    qm, _ = random_model(base, 3, x)
    ref = golden_forward(qm, x, trace=True)
    for cols in (2, 3, 5, 7, 28, 29, 65536):
        assert_traces_equal(golden_forward(with_config(qm, base.replace(array_cols=cols)), x, trace=True), ref)


def test_row_tiling_changes_lossy_adc_codes_hand_example():
    # One column per gate (H = 1), every weight +1, 2-bit DAC (dac_max 1), 3-bit ADC (adc_max 3), step 2.
    # Step 0: rows [x0 x1 x2 | h=0 | bias=1], inputs all 1, so the untiled dot product is 4 -> code 2.
    # array_rows = 2: tiles {x0,x1} p=2 -> 1, {x2,h} p=1 -> 0.5 -> 1 (half away), {bias} p=1 -> 1: acc 3.
    # array_rows = 4: tiles {x0..h} p=3 -> 1.5 -> 2, {bias} p=1 -> 1: acc 3.
    def run(rows):
        cfg = LstmConfig(**config_fields((3, 1, 1, 1), (2, 2, 3), (rows, 4)))
        qm = QuantizedModel(
            cfg, (LayerParams(np.ones((4, 5), int), 2, np.full(4, 64)),), HeadParams(np.ones((1, 2), int), 1)
        )
        x = np.ones((1, 1, 3), dtype=np.int64)
        assert_traces_equal(golden_forward(qm, x), naive_forward(qm, x))
        return golden_forward(qm, x)

    assert run(8)["l0_acc"][0, 0].tolist() == [2, 2, 2, 2]
    assert run(5)["l0_acc"][0, 0].tolist() == [2, 2, 2, 2]
    assert run(2)["l0_acc"][0, 0].tolist() == [3, 3, 3, 3]
    assert run(2)["l0_adc"][0, 0, :, 0].tolist() == [1, 1, 1]
    assert run(4)["l0_acc"][0, 0].tolist() == [3, 3, 3, 3]


def test_row_tiling_changes_lossy_adc_codes_random_model():
    base = LstmConfig(**config_fields((5, 7, 1, 6), (4, 4, 4), (64, 8)))
    x = random_codes(base, np.random.default_rng(4), 4, 8)
    qm, _ = random_model(base, 4, x)
    untiled = golden_forward(qm, x)
    tiled = golden_forward(with_config(qm, base.replace(array_rows=2)), x)
    assert untiled["l0_adc"].shape[2] == 1 and tiled["l0_adc"].shape[2] == 7  # K = 13 rows
    # Same model, same inputs: the 4-bit ADC rounds each partial sum, so the accumulators differ.
    assert not np.array_equal(untiled["l0_acc"], tiled["l0_acc"])
    assert not np.array_equal(untiled["outputs"], tiled["outputs"])


# ------------------------------------------------------------------------------------------------------
# 4. Float reference vs dequantized golden path as the bit widths grow (float comparison, stated bounds)
WIDTHS = (4, 6, 8, 10, 12)


def _convergence_errors(array_rows: int) -> list[tuple[float, float]]:
    """(max |h error|, max |output error|) of the dequantized golden path per width in WIDTHS.

    Fixed float model (seed 123, gain 1.0, forget_bias 1.0, I=4, H=8, L=2, O=3); inputs U(-1, 1), 8 x 12,
    seed 7, quantized with input_scale = 1/dac_max. At width b: weight = dac = adc = b bits,
    lut_bits = b+4, lut_frac = b (table domain [-8, 8)), frac_bits = min(b+4, 14) (the config limit),
    cell_bits = frac_bits+5, scale_bits 16, scale_shift 10, adc_step_bits 24. The ADC steps are calibrated on
    the same inputs with percentile 100: with the default 99.5 the top 0.5% of dot products clip, which
    leaves an error floor (~3e-3 in h) that does not shrink with the width.
    """
    shape = dict(input_size=4, hidden_size=8, num_layers=2, output_size=3)
    fm = random_float_model(
        LstmConfig(**shape, weight_bits=4, dac_bits=4, adc_bits=4, array_rows=2, array_cols=2),
        np.random.default_rng(123),
        gain=1.0,
        forget_bias=1.0,
    )
    x = np.random.default_rng(7).uniform(-1.0, 1.0, size=(8, 12, 4))
    ref = float_forward(fm, x)
    errors = []
    for b in WIDTHS:
        frac = min(b + 4, 14)
        cfg = LstmConfig(
            **shape,
            weight_bits=b,
            dac_bits=b,
            adc_bits=b,
            array_rows=array_rows,
            array_cols=16,
            lut_bits=b + 4,
            lut_frac=b,
            frac_bits=frac,
            cell_bits=frac + 5,
            scale_bits=16,
            scale_shift=10,
            adc_step_bits=24,
        )
        qm = quantize_model(fm, cfg, x, input_scale=1.0 / cfg.dac_max, percentile=100.0)
        out = golden_forward(qm, quantize(x, qm.input_scale, cfg.dac_bits), trace=False)
        errors.append(
            (
                float(np.max(np.abs(out["h"] / cfg.dac_max - ref["h"]))),
                float(np.max(np.abs(out["outputs"] * qm.output_scale - ref["outputs"]))),
            )
        )
    return errors


@pytest.mark.parametrize("array_rows", [64, 8])
def test_quantized_path_converges_to_float_reference(array_rows):
    # array_rows 64 >= K (13 and 17 rows): no row tiling, the error is quantization only. array_rows 8: two
    # or three row tiles per column, each with its own ADC rounding -- the error must still shrink.
    # Measured (rows 64): h error 0.125, 0.030, 0.0076, 0.0019, 0.0005; outputs 0.093 ... 0.0003.
    errors = _convergence_errors(array_rows)
    for kind, errs in (("h", [e[0] for e in errors]), ("outputs", [e[1] for e in errors])):
        # Monotone non-increasing over the widths: no width may be worse than the previous one.
        assert all(b <= a for a, b in zip(errs, errs[1:])), (kind, errs)
        # Bound at 12 bits: max abs error < 0.005 in h (h in [-1, 1]) and in the outputs (|y| <~ 1).
        assert errs[-1] < 0.005, (kind, errs)
        # 4 bits is clearly worse: at least 10x the 12-bit error, and above 0.02 (4-bit h step is 1/7).
        assert errs[0] > 10 * errs[-1] and errs[0] > 0.02, (kind, errs)


# ------------------------------------------------------------------------------------------------------
# 5. Float reference vs torch.nn.LSTM + nn.Linear in float64 (float comparison, tolerance 1e-9)
def test_float_reference_matches_torch():
    torch = pytest.importorskip("torch")
    cfg = LstmConfig(**config_fields((5, 7, 3, 4), (4, 4, 4), (8, 8)))
    fm = random_float_model(cfg, np.random.default_rng(77), gain=2.0, forget_bias=1.0)
    x = np.random.default_rng(78).uniform(-1.5, 1.5, size=(6, 11, 5))
    ref = float_forward(fm, x, trace=True)

    lstm = torch.nn.LSTM(cfg.input_size, cfg.hidden_size, cfg.num_layers, batch_first=True, dtype=torch.float64)
    head = torch.nn.Linear(cfg.hidden_size, cfg.output_size, dtype=torch.float64)
    with torch.no_grad():
        for l, fl in enumerate(fm.layers):
            getattr(lstm, f"weight_ih_l{l}").copy_(torch.from_numpy(np.asarray(fl.w_ih, dtype=np.float64)))
            getattr(lstm, f"weight_hh_l{l}").copy_(torch.from_numpy(np.asarray(fl.w_hh, dtype=np.float64)))
            getattr(lstm, f"bias_ih_l{l}").copy_(torch.from_numpy(np.asarray(fl.bias, dtype=np.float64)))
            getattr(lstm, f"bias_hh_l{l}").zero_()  # FloatLayer.bias is b_ih + b_hh
        head.weight.copy_(torch.from_numpy(np.asarray(fm.head_w, dtype=np.float64)))
        head.bias.copy_(torch.from_numpy(np.asarray(fm.head_b, dtype=np.float64)))
        h_seq, (h_n, c_n) = lstm(torch.from_numpy(x))
        y = head(h_seq)
    tol = 1e-9  # two float64 evaluations of the same formulas; observed differences are ~1e-16
    assert np.max(np.abs(h_seq.numpy() - ref["h"])) < tol
    assert np.max(np.abs(y.numpy() - ref["outputs"])) < tol
    for l in range(cfg.num_layers):
        assert np.max(np.abs(h_n[l].numpy() - ref[f"l{l}_h"][:, -1])) < tol
        assert np.max(np.abs(c_n[l].numpy() - ref[f"l{l}_c"][:, -1])) < tol
    # The check can fail: a one-unit change of one float weight moves the result far beyond the tolerance.
    bad = FloatModel(
        (
            FloatLayer(
                fm.layers[0].w_ih + np.eye(4 * cfg.hidden_size, cfg.input_size), fm.layers[0].w_hh, fm.layers[0].bias
            ),
        )
        + fm.layers[1:],
        fm.head_w,
        fm.head_b,
    )
    assert np.max(np.abs(h_seq.numpy() - float_forward(bad, x)["h"])) > 1e3 * tol


# ------------------------------------------------------------------------------------------------------
# 6. Non-idealities
@pytest.fixture(scope="module")
def default_model():
    cfg = golden.default_config()
    x = random_inputs(cfg, input_rng(3), 16, 16)
    qm, _ = random_model(cfg, 3, x)
    return qm, x


def test_ideal_nonidealities_equal_exact_path(default_model):
    qm, x = default_model
    exact = golden_forward(qm, x)
    assert NonIdealities().ideal and NonIdealities(seed=99).ideal
    assert_traces_equal(golden_forward(qm, x, nonideal=NonIdealities()), exact)
    assert_traces_equal(golden_forward(qm, x, nonideal=NonIdealities(seed=99)), exact)


NOISY = dict(prog_noise=0.05, read_noise=0.02, adc_noise=0.3, stuck_gmin_rate=0.01, stuck_gmax_rate=0.01)


def test_nonidealities_seeded(default_model):
    qm, x = default_model
    a = golden_forward(qm, x, nonideal=NonIdealities(**NOISY, seed=11))
    b = golden_forward(qm, x, nonideal=NonIdealities(**NOISY, seed=11))
    c = golden_forward(qm, x, nonideal=NonIdealities(**NOISY, seed=12))
    assert_traces_equal(a, b)
    assert trace_mismatches(a, c)  # another seed: other devices and reads
    assert trace_mismatches(a, golden_forward(qm, x))  # and the noise does something
    assert set(a) == set(golden_forward(qm, x))  # trace keys and shapes are unchanged by noise
    assert all(a[k].shape == v.shape for k, v in golden_forward(qm, x).items())


@pytest.mark.parametrize(
    "stuck", [dict(stuck_gmin_rate=1.0), dict(stuck_gmax_rate=1.0), dict(stuck_gmin_rate=1.0, prog_noise=0.2)]
)
def test_all_devices_stuck_gives_zero_dot_products(stuck, small_config):
    # Every device at Gmin (or every device at Gmax): G+ - G- = 0 for every weight, so every dot product and
    # ADC code is 0, every table index is 0, i = f = o = sigmoid(0) = 2^(F-1), g = tanh(0) = 0, c = 0, h = 0,
    # and the outputs are 0. (Programming noise cannot move a stuck device.)
    cfg = small_config(input_size=4, output_size=3, array_cols=8)
    x = random_codes(cfg, np.random.default_rng(8), 3, 5)
    qm, _ = random_model(cfg, 8, x)
    tr = golden_forward(qm, x, nonideal=NonIdealities(**stuck, seed=1))
    H, half = cfg.hidden_size, 1 << (cfg.frac_bits - 1)
    for l in range(cfg.num_layers):
        for k in ("adc", "acc", "idx", "c", "tanh_c", "h"):
            assert not tr[f"l{l}_{k}"].any(), (l, k)
        gates = tr[f"l{l}_gates"]
        assert (gates[..., : 2 * H] == half).all() and (gates[..., 3 * H :] == half).all()
        assert not gates[..., 2 * H : 3 * H].any()
    assert not tr["head_adc"].any() and not tr["outputs"].any() and not tr["h"].any()
    assert golden_forward(qm, x)["outputs"].any()  # the ideal model does produce non-zero outputs


def test_adc_noise_mismatch_grows_with_sigma(default_model):
    # Expectation estimated over 3 seeds. Measured (mean fraction of layer-0 ADC codes differing from the
    # ideal path): 0.27, 0.38, 0.67, 0.89 for sigma = 0.05, 0.2, 0.8, 3.2 LSB (errors propagate through h, so
    # even 0.05 LSB flips many codes). Generous bounds: strictly increasing, and the largest sigma at least
    # 2x the smallest, both for the ADC codes and for the mean |output code error|.
    qm, x = default_model
    ideal = golden_forward(qm, x)
    adc_mm, out_mm = [], []
    for sigma in (0.05, 0.2, 0.8, 3.2):
        runs = [golden_forward(qm, x, nonideal=NonIdealities(adc_noise=sigma, seed=s)) for s in range(3)]
        adc_mm.append(np.mean([np.mean(r["l0_adc"] != ideal["l0_adc"]) for r in runs]))
        out_mm.append(np.mean([np.mean(np.abs(r["outputs"] - ideal["outputs"])) for r in runs]))
    for mm in (adc_mm, out_mm):
        assert mm[0] > 0
        assert all(b > a for a, b in zip(mm, mm[1:])), mm
        assert mm[-1] > 2 * mm[0], mm


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(prog_noise=-0.1), "prog_noise must be a finite number >= 0, not -0.1"),
        (dict(read_noise=-1e-9), "read_noise must be a finite number >= 0"),
        (dict(adc_noise=-1), "adc_noise must be a finite number >= 0, not -1"),
        (dict(adc_noise=float("nan")), "adc_noise must be a finite number >= 0"),
        (dict(stuck_gmin_rate=1.5), "stuck_gmin_rate must be at most 1, not 1.5"),
        (dict(stuck_gmax_rate=1.01), "stuck_gmax_rate must be at most 1, not 1.01"),
        (dict(stuck_gmin_rate=0.6, stuck_gmax_rate=0.5), "stuck_gmin_rate \\+ stuck_gmax_rate must be at most 1"),
        (dict(seed=-1), "seed must be a non-negative integer, not -1"),
    ],
)
def test_nonidealities_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NonIdealities(**kwargs)


# ------------------------------------------------------------------------------------------------------
# 7. Coverage of random vectors of the default config
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_vectors_cover_the_datapath(seed):
    cfg = golden.default_config()
    x = random_inputs(cfg, input_rng(seed), 16, 16)
    qm, _ = random_model(cfg, seed, x)
    cov = coverage(cfg, golden_forward(qm, x, trace=True))
    l0 = cov["l0"]
    # Measured for seeds 0..3: rails ~0.6%, zeros ~23%, 15 of 15 ADC values, 14-15 of 15 h values.
    assert l0["adc_rail_fraction"] > 0, cov  # the ADC rails are reached ...
    assert l0["adc_rail_fraction"] < 0.25, cov  # ... but the ADC is not saturated
    assert 0 < l0["adc_zero_fraction"] < 0.5, cov
    assert l0["adc_distinct"] > 10, cov  # of 2 * adc_max + 1 = 15
    assert l0["h_distinct"] >= 12, cov  # most of the 15 DAC codes
    assert l0["idx_rail_fraction"] < 0.5 and l0["cell_limit_fraction"] < 0.5, cov
    assert cov["head"]["adc_rail_fraction"] < 0.5 and cov["head"]["outputs_distinct"] > 5, cov


# ------------------------------------------------------------------------------------------------------
# 8. Input validation of golden_forward
@pytest.fixture(scope="module")
def small_model():
    cfg = golden.default_config()
    return int_model(cfg, np.random.default_rng(0))


def test_input_float_dtype_rejected(small_model):
    x = np.zeros((2, 3, 8))
    with pytest.raises(InputError, match=r"inputs: dtype float64 is not an integer dtype"):
        golden_forward(small_model, x)
    with pytest.raises(InputError, match=r"dtype bool is not an integer dtype"):
        golden_forward(small_model, np.zeros((2, 3, 8), dtype=bool))


def re_tuple(t: tuple) -> str:
    return "\\(" + ", ".join(map(str, t)) + ("," if len(t) == 1 else "") + "\\)"


@pytest.mark.parametrize("shape", [(3, 8), (2, 3, 7), (2, 3, 9), (0, 3, 8), (2, 0, 8), (1, 2, 3, 8)])
def test_input_wrong_shape_rejected(small_model, shape):
    with pytest.raises(InputError, match=rf"shape {re_tuple(shape)}, expected \(sequences, steps, 8\)"):
        golden_forward(small_model, np.zeros(shape, dtype=np.int64))


@pytest.mark.parametrize("code", [8, -8, 100, -32768])
def test_input_code_out_of_range_rejected(small_model, code):
    # 4-bit symmetric DAC: [-7, 7]; -8 is a 4-bit two's complement value but not a symmetric code.
    x = np.zeros((3, 4, 8), dtype=np.int16)
    x[1, 2, 5] = code
    x[2, 3, 7] = code  # only the first offender is named
    with pytest.raises(
        InputError,
        match=rf"inputs: code {code} at sequence 1, step 2, input 5 is outside the "
        r"4-bit DAC range \[-7, 7\]",
    ):
        golden_forward(small_model, x)
    x[1, 2, 5] = x[2, 3, 7] = 7
    golden_forward(small_model, x)  # the range itself is accepted


# ------------------------------------------------------------------------------------------------------
# 9. PTQ sanity
def test_calibrate_adc_step():
    assert calibrate_adc_step(np.zeros(10), 7, 65535) == 1  # never 0
    assert calibrate_adc_step(np.array([]), 7, 65535) == 1
    assert calibrate_adc_step(np.array([0.4, -0.2]), 7, 65535) == 1
    # P100 of |p| = 100 -> ceil(100 / 7) = 15; negative values count by magnitude.
    assert calibrate_adc_step(np.array([-100, 3, 50]), 7, 65535, percentile=100) == 15
    assert calibrate_adc_step(np.array([-98, 3, 50]), 7, 65535, percentile=100) == 14
    step = calibrate_adc_step(np.array([10.0**12, -(10.0**12)]), 7, 65535)
    assert step == 65535 and isinstance(step, int)  # capped at the step register's maximum
    assert calibrate_adc_step(np.array([1e6]), 7, 1000) == 1000


def test_quantize_model_rejects_other_shape():
    cfg = golden.default_config()
    other = cfg.replace(hidden_size=16)
    fm = random_float_model(other, np.random.default_rng(0))
    x = np.zeros((1, 2, cfg.input_size))
    with pytest.raises(
        ModelError,
        match=r"float model has \(input_size, hidden_size, num_layers, output_size\) = "
        r"\(8, 16, 1, 10\), config says \(8, 32, 1, 10\)",
    ):
        quantize_model(fm, cfg, x, input_scale=1 / 7)
    fm2 = random_float_model(cfg.replace(input_size=3, num_layers=2, output_size=4), np.random.default_rng(0))
    with pytest.raises(ModelError, match=r"= \(3, 32, 2, 4\), config says \(8, 32, 1, 10\)"):
        quantize_model(fm2, cfg, x, input_scale=1 / 7)
