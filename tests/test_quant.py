"""Quantizers and rounding rules (golden/quant.py), the datapath stage functions at their corners
(golden/datapath.py) and the activation tables (golden/tables.py), checked against docs/datapath.md.

Expected values are either written down from the contract's definitions or computed independently with
exact integer / `fractions.Fraction` arithmetic and Python's `math` module, never copied from the code.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nvmlstm.golden.config import LstmConfig, default_config
from nvmlstm.golden.datapath import adc_convert, cell_update, gate_index, requant_h, tanh_cell_index
from nvmlstm.golden.quant import (
    ROUNDING_RULES,
    quantize,
    round_float,
    rshift_round,
    symmetric_max,
)
from nvmlstm.golden.tables import lut_indices, sigmoid_table, tanh_table

JUST_BELOW_HALF = 0.49999999999999994  # the largest double below 0.5; floor(x + 0.5) gets it wrong


def cfg_with(**changes) -> LstmConfig:
    return default_config().replace(**changes)


# --------------------------------------------------------------------------------------------------
# Exact references (independent of the code under test)
def ref_round(x: float, rule: str) -> int:
    """Exact rounding of a float with Fraction arithmetic."""
    q = Fraction(x)
    fl = math.floor(q)
    frac = q - fl
    if frac < Fraction(1, 2):
        return fl
    if frac > Fraction(1, 2):
        return fl + 1
    # a tie: fl + 1/2
    if rule == "half_even":
        return fl if fl % 2 == 0 else fl + 1
    if rule == "half_up":
        return fl + 1
    if rule == "half_away":
        return fl + 1 if q > 0 else fl
    raise AssertionError(rule)


def ref_rshift_half_up(v: int, s: int) -> int:
    """floor(v / 2**s + 1/2), exactly."""
    return math.floor(Fraction(v, 1 << s) + Fraction(1, 2))


def ref_div_half_away(p: int, step: int) -> int:
    q = Fraction(p, step)
    mag = math.floor(abs(q) + Fraction(1, 2))
    return mag if q >= 0 else -mag


# --------------------------------------------------------------------------------------------------
# round_float
TIES = {
    #              0.5  -0.5  1.5  -1.5  2.5  -2.5
    "half_even": (0, 0, 2, -2, 2, -2),
    "half_away": (1, -1, 2, -2, 3, -3),
    "half_up": (1, 0, 2, -1, 3, -2),
}


@pytest.mark.parametrize("rule", ROUNDING_RULES)
def test_round_float_ties(rule):
    x = np.array([0.5, -0.5, 1.5, -1.5, 2.5, -2.5])
    assert round_float(x, rule).tolist() == list(TIES[rule])
    # scalars give the same answers as arrays
    assert [float(round_float(v, rule)) for v in x] == list(TIES[rule])


@pytest.mark.parametrize("rule", ROUNDING_RULES)
def test_round_float_non_ties(rule):
    x = [0.4, 0.6, -0.4, -0.6, 1.49, 1.51, -1.49, -1.51, 2.499, 2.501, -2.499, -2.501, 0.0, 3.0, -3.0, 1e-300]
    want = [0, 1, 0, -1, 1, 2, -1, -2, 2, 3, -2, -3, 0, 3, -3, 0]
    assert round_float(np.array(x), rule).tolist() == want


@pytest.mark.parametrize("rule", ROUNDING_RULES)
def test_round_float_just_below_half_rounds_to_zero(rule):
    assert JUST_BELOW_HALF < 0.5 and JUST_BELOW_HALF + 0.5 == 1.0  # the trap exists in float64
    assert round_float(JUST_BELOW_HALF, rule) == 0
    assert round_float(-JUST_BELOW_HALF, rule) == 0
    # the next doubles above 0.5 in magnitude are not ties
    above = np.nextafter(0.5, 1.0)
    assert round_float(above, rule) == 1
    assert round_float(-above, rule) == -1
    # the same trap one unit further out: 1.5 - ulp and 2.5 - ulp
    assert round_float(np.nextafter(1.5, 0.0), rule) == 1
    assert round_float(np.nextafter(2.5, 0.0), rule) == 2
    assert round_float(np.nextafter(-2.5, 0.0), rule) == -2


@pytest.mark.parametrize("rule", ROUNDING_RULES)
def test_round_float_large_values_are_integers_already(rule):
    # above 2**52 every double is an integer; below it, halves are exact ties
    x = np.array([2.0**52 + 1, -(2.0**52 + 1), 2.0**53, 2.0**51 + 0.5])
    want = [ref_round(v, rule) for v in x.tolist()]
    assert round_float(x, rule).tolist() == want


@settings(max_examples=300, deadline=None, database=None)
@given(
    x=st.one_of(
        st.floats(min_value=-1e15, max_value=1e15, allow_nan=False),
        st.integers(-(10**6), 10**6).map(lambda k: k / 2),  # many exact ties
        st.integers(-(10**6), 10**6).map(lambda k: k / 2 + 1e-9),
    ),
    rule=st.sampled_from(ROUNDING_RULES),
)
def test_round_float_matches_exact_reference(x, rule):
    assert round_float(x, rule) == ref_round(x, rule)


def test_round_float_rejects_unknown_rule():
    with pytest.raises(ValueError, match=r"rounding rule must be one of half_even, half_away, half_up, not 'nearest'"):
        round_float(1.0, "nearest")


# --------------------------------------------------------------------------------------------------
# rshift_round: half up
def test_rshift_round_examples():
    v = np.array([3, -3, -1, 1, -5, 5, 2, -2, 0], dtype=np.int64)
    # 1.5 -> 2, -1.5 -> -1, -0.5 -> 0, 0.5 -> 1, -2.5 -> -2, 2.5 -> 3, 1, -1, 0
    assert rshift_round(v, 1).tolist() == [2, -1, 0, 1, -2, 3, 1, -1, 0]
    # shift 2: 6/4 = 1.5 -> 2, -6/4 -> -1, -2/4 = -0.5 -> 0, 2/4 -> 1, 5/4 -> 1, -7/4 -> -2
    assert rshift_round(np.array([6, -6, -2, 2, 5, -7]), 2).tolist() == [2, -1, 0, 1, 1, -2]


def test_rshift_round_shift_zero_is_identity_and_a_copy():
    v = np.array([-7, -1, 0, 1, 7, 2**40], dtype=np.int64)
    out = rshift_round(v, 0)
    assert out.tolist() == v.tolist()
    out[0] = 99
    assert v[0] == -7  # the input is not aliased


@pytest.mark.parametrize("shift", [1, 2, 3, 5, 7, 14])
def test_rshift_round_matches_exact_half_up(shift):
    v = np.arange(-(1 << (shift + 3)) - 3, (1 << (shift + 3)) + 4, dtype=np.int64)
    assert rshift_round(v, shift).tolist() == [ref_rshift_half_up(int(x), shift) for x in v]


def test_rshift_round_errors():
    with pytest.raises(ValueError, match=r"shift must be >= 0, not -1"):
        rshift_round(np.array([4]), -1)
    with pytest.raises(TypeError, match=r"rshift_round needs integers, not float64"):
        rshift_round(np.array([1.5]), 1)


# --------------------------------------------------------------------------------------------------
# The ADC before clipping (adc_convert with bits wide enough that nothing saturates): the one definition
# of the ADC transfer (golden.datapath.adc_convert) is checked here against exact integer division.
WIDE = 16


def test_adc_rounds_ties_away_from_zero_on_both_signs():
    p = np.array([1, -1, 3, -3, 5, -5, 2, -2, 6, -6])
    # 0.5, -0.5, 1.5, -1.5, 2.5, -2.5 (step 2), 0.5, -0.5, 1.5, -1.5 (step 4): all away from zero
    assert adc_convert(p[:6], 2, WIDE).tolist() == [1, -1, 2, -2, 3, -3]
    assert adc_convert(p[6:], 4, WIDE).tolist() == [1, -1, 2, -2]


def test_adc_step_one_is_identity():
    p = np.arange(-50, 51)
    assert adc_convert(p, 1, WIDE).tolist() == p.tolist()


@pytest.mark.parametrize("step", [1, 2, 3, 4, 5, 7, 10, 13, 64])
def test_adc_unclipped_matches_exact_division(step):
    p = np.arange(-10 * step - 3, 10 * step + 4)
    assert adc_convert(p, step, WIDE).tolist() == [ref_div_half_away(int(x), step) for x in p]


def test_adc_rejects_bad_step():
    with pytest.raises(ValueError, match=r"ADC step must be >= 1, not 0"):
        adc_convert(np.array([5]), 0, 4)
    with pytest.raises(ValueError, match=r"ADC step must be >= 1, not -3"):
        adc_convert(np.array([5, 6]), -3, 4)


# --------------------------------------------------------------------------------------------------
# adc_convert
@pytest.mark.parametrize("bits", [2, 4, 6])
@pytest.mark.parametrize("step", [1, 2, 3, 7, 10, 33])
def test_adc_convert_equals_clipped_exact_division(step, bits):
    qmax = (1 << (bits - 1)) - 1
    p = np.arange(-(qmax + 3) * step, (qmax + 3) * step + 1)
    want = [max(-qmax, min(qmax, ref_div_half_away(int(x), step))) for x in p]
    assert adc_convert(p, step, bits).tolist() == want


def test_adc_convert_ties_away_from_zero():
    # p = (k + 1/2) * step
    assert adc_convert(np.array([1, -1, 3, -3, 5, -5]), 2, 4).tolist() == [1, -1, 2, -2, 3, -3]
    assert adc_convert(np.array([15, -15, 45, -45]), 10, 4).tolist() == [2, -2, 5, -5]
    # just inside the thresholds
    assert adc_convert(np.array([14, -14, 44, -44]), 10, 4).tolist() == [1, -1, 4, -4]


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_adc_convert_saturates_at_both_ends(bits):
    qmax = (1 << (bits - 1)) - 1
    p = np.array([10**9, -(10**9), 2**49, -(2**49), (qmax + 1) * 5, -(qmax + 1) * 5])
    out = adc_convert(p, 5, bits)
    assert out.tolist() == [qmax, -qmax] * 3
    assert out.min() >= -qmax  # never the asymmetric code -(qmax + 1)
    # the last code before saturation: full scale is +-(qmax + 1/2) * step
    step = 6
    edge = np.array([qmax * step + step // 2 - 1, -(qmax * step + step // 2 - 1)])
    assert adc_convert(edge, step, bits).tolist() == [qmax, -qmax]


@pytest.mark.parametrize("step", [1, 2, 5, 9, 100])
def test_adc_convert_is_odd_symmetric(step):
    p = np.arange(0, 20 * step + 1)
    assert np.array_equal(adc_convert(-p, step, 4), -adc_convert(p, step, 4))


def test_adc_convert_float_inputs():
    p = np.array([1.5, -1.5, 2.5, -2.5, 0.4, -0.4, JUST_BELOW_HALF, -JUST_BELOW_HALF, 7.49, 7.5, -7.5, 100.0, -1e300])
    assert adc_convert(p, 1, 4).tolist() == [2, -2, 3, -3, 0, 0, 0, 0, 7, 7, -7, 7, -7]
    # a real-valued dot product with a step: 2.5 * 4 = 10.0 is a tie, 9.999 is not
    assert adc_convert(np.array([10.0, -10.0, 9.999, -9.999]), 4, 4).tolist() == [3, -3, 2, -2]
    assert adc_convert(np.array([3.0]), 2, 4).dtype == np.int64


# --------------------------------------------------------------------------------------------------
# quantize, symmetric_max
@pytest.mark.parametrize("rule", ROUNDING_RULES)
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantize_saturates_at_both_ends(rule, bits):
    qmax = (1 << (bits - 1)) - 1
    x = np.array([1e12, -1e12, qmax + 0.5, -(qmax + 0.5), qmax + 1.0, -(qmax + 1.0), qmax, -qmax], dtype=np.float64)
    out = quantize(x * 0.25, 0.25, bits, rule)
    assert out.dtype == np.int64
    assert out.tolist() == [qmax, -qmax] * 4


@pytest.mark.parametrize("rule", ROUNDING_RULES)
def test_quantize_rounds_with_its_rule(rule):
    x = np.array([0.5, -0.5, 1.5, -1.5, 2.5, -2.5]) * 0.25  # exact ties after division by the scale
    assert quantize(x, 0.25, 8, rule).tolist() == list(TIES[rule])
    # scale broadcasts per row
    xs = np.array([[3.0, -3.0], [3.0, -3.0]])
    assert quantize(xs, np.array([[1.0], [2.0]]), 4, rule).tolist() == [
        [3, -3],
        [ref_round(1.5, rule), ref_round(-1.5, rule)],
    ]


def test_quantize_default_rule_is_half_even():
    assert quantize(np.array([0.5, 1.5, 2.5, -2.5]), 1.0, 4).tolist() == [0, 2, 2, -2]


@pytest.mark.parametrize(
    "scale, shown",
    [(0.0, "0.0"), (-1.0, "-1.0"), (float("nan"), "nan"), (float("inf"), "inf"), (np.array([1.0, -2.0]), "-2.0")],
)
def test_quantize_rejects_bad_scale(scale, shown):
    with pytest.raises(ValueError, match=rf"quantization scale must be positive and finite, not {shown}$"):
        quantize(np.array([1.0, 2.0]), scale, 4)


def test_quantize_rejects_non_finite_input():
    with pytest.raises(ValueError, match=r"cannot quantize nan at index \(1, 0\): values must be finite"):
        quantize(np.array([[1.0, 2.0], [np.nan, 0.0]]), 1.0, 4)
    with pytest.raises(ValueError, match=r"cannot quantize -inf at index \(2,\): values must be finite"):
        quantize(np.array([1.0, 2.0, -np.inf]), 1.0, 4)


def test_quantize_rejects_bad_rule_and_bits():
    with pytest.raises(ValueError, match=r"rounding rule must be one of .*not 'floor'"):
        quantize(1.0, 1.0, 4, "floor")
    with pytest.raises(ValueError, match=r"bits must be an integer >= 2, not 1"):
        quantize(1.0, 1.0, 1)


def test_symmetric_max():
    assert [symmetric_max(b) for b in (2, 3, 4, 8, 16)] == [1, 3, 7, 127, 32767]
    assert symmetric_max(np.int64(4)) == 7
    assert LstmConfig.symmetric_max(4) == 7
    for bad, shown in ((1, "1"), (0, "0"), (-4, "-4"), (True, "True"), (4.0, "4.0"), ("4", "'4'")):
        with pytest.raises(ValueError, match=rf"bits must be an integer >= 2, not {shown}$"):
            symmetric_max(bad)


# --------------------------------------------------------------------------------------------------
# Datapath stages at their corners
def test_gate_index_saturates_at_table_ends():
    cfg = default_config()
    R = cfg.row_tiles(cfg.layer_rows(0))
    acc_max = R * cfg.adc_max
    acc = np.array([acc_max, -acc_max, 0])
    out = gate_index(acc, cfg.scale_max, cfg)
    assert out.tolist() == [cfg.lut_max, cfg.lut_min, 0]
    # scale 0 maps everything to index 0; a small scale does not saturate
    assert gate_index(acc, 0, cfg).tolist() == [0, 0, 0]
    assert gate_index(np.array([1, -1]), 64, cfg).tolist() == [1, -1]


@pytest.mark.parametrize("scale_shift", [0, 1, 6])
def test_gate_index_matches_formula(scale_shift):
    cfg = cfg_with(scale_shift=scale_shift, lut_bits=6, lut_frac=3)
    acc = np.arange(-40, 41)
    for scale in (0, 1, 3, 64, 100, cfg.scale_max):
        got = gate_index(acc, scale, cfg).tolist()
        want = [max(cfg.lut_min, min(cfg.lut_max, ref_rshift_half_up(int(a) * scale, scale_shift))) for a in acc]
        assert got == want, scale
    # per-column scales broadcast
    assert gate_index(np.array([10, 10]), np.array([1, 2]), cfg).tolist() == [
        ref_rshift_half_up(10, scale_shift) if scale_shift else 10,
        min(cfg.lut_max, ref_rshift_half_up(20, scale_shift)),
    ]


def test_cell_update_saturates_at_cell_max():
    cfg = default_config()
    one, cmax = cfg.one, cfg.cell_max
    # f = 1, c = cell_max, i = 1, g = +-1: the exact result is cell_max + 1.0, beyond the format
    f = np.array([one, one, one, 0])
    c = np.array([cmax, -cmax, cmax, cmax])
    i = np.array([one, one, 0, one])
    g = np.array([one, -one, one, -one])
    out = cell_update(f, c, i, g, cfg)
    assert out.tolist() == [cmax, -cmax, cmax, -one]
    assert np.all(np.abs(out) <= cmax)


@pytest.mark.parametrize("frac_bits, cell_bits", [(3, 5), (7, 11), (4, 8)])
def test_cell_update_matches_formula(frac_bits, cell_bits):
    cfg = cfg_with(frac_bits=frac_bits, cell_bits=cell_bits, lut_frac=min(4, frac_bits))
    one, cmax = cfg.one, cfg.cell_max
    rng = np.random.default_rng(0)
    n = 4000
    f = rng.integers(0, one + 1, n)
    i = rng.integers(0, one + 1, n)
    g = rng.integers(-one, one + 1, n)
    c = rng.integers(-cmax, cmax + 1, n)
    # make sure the corners are in
    f[:4], i[:4], g[:4], c[:4] = [one, one, 0, one], [one, one, one, 0], [one, -one, -one, one], [cmax, -cmax, 0, -cmax]
    got = cell_update(f, c, i, g, cfg)
    want = [
        max(-cmax, min(cmax, ref_rshift_half_up(int(a) * int(b) + int(x) * int(y), frac_bits)))
        for a, b, x, y in zip(f, c, i, g)
    ]
    assert got.tolist() == want
    assert {cmax, -cmax} <= set(got.tolist())


@pytest.mark.parametrize("frac_bits, dac_bits", [(3, 4), (4, 2), (5, 8), (2, 16)])
def test_requant_h_never_exceeds_dac_range(frac_bits, dac_bits):
    cfg = cfg_with(frac_bits=frac_bits, cell_bits=frac_bits + 2, lut_frac=min(frac_bits, 4), dac_bits=dac_bits)
    one = cfg.one
    o, tc = np.meshgrid(np.arange(-one, one + 1), np.arange(-one, one + 1), indexing="ij")
    h = requant_h(o, tc, cfg)
    assert h.shape == o.shape
    assert h.max() == cfg.dac_max and h.min() == -cfg.dac_max  # reached (o = tc = +-1) ...
    # ... and never exceeded, with the saturation never acting: the unclipped value is within range
    raw = [ref_rshift_half_up(int(a) * int(b) * cfg.dac_max, 2 * frac_bits) for a, b in zip(o.ravel(), tc.ravel())]
    assert max(abs(v) for v in raw) <= cfg.dac_max
    assert h.ravel().tolist() == raw


def test_tanh_cell_index():
    cfg = default_config()  # F = 7, lut_frac = 4: shift 3; cell_max 1023 = 127.875 in table units
    c = np.array([0, 3, 4, -4, -5, 12, -12, cfg.cell_max, -cfg.cell_max])
    # 0, 0.375 -> 0, 0.5 -> 1, -0.5 -> 0, -0.625 -> -1, 1.5 -> 2, -1.5 -> -1,
    # 127.875 -> 128 -> sat 127, -127.875 -> -128
    assert tanh_cell_index(c, cfg).tolist() == [0, 0, 1, 0, -1, 2, -1, cfg.lut_max, cfg.lut_min]
    # frac_bits == lut_frac: no shift, only the saturation
    cfg2 = cfg_with(frac_bits=4, lut_frac=4, cell_bits=10)
    c2 = np.arange(-cfg2.cell_max, cfg2.cell_max + 1)
    assert tanh_cell_index(c2, cfg2).tolist() == [max(cfg2.lut_min, min(cfg2.lut_max, int(v))) for v in c2]
    # against the formula over the whole cell range
    cdom = np.arange(-cfg.cell_max, cfg.cell_max + 1)
    want = [max(cfg.lut_min, min(cfg.lut_max, ref_rshift_half_up(int(v), 3))) for v in cdom]
    assert tanh_cell_index(cdom, cfg).tolist() == want


# --------------------------------------------------------------------------------------------------
# Activation tables
TABLE_CONFIGS = [
    dict(),  # default: lut_bits 8, lut_frac 4, frac_bits 7
    dict(lut_bits=4, lut_frac=2, frac_bits=3, cell_bits=5),
    dict(lut_bits=10, lut_frac=6, frac_bits=14, cell_bits=20),
    dict(lut_bits=6, lut_frac=0, frac_bits=5, cell_bits=8),
    dict(lut_bits=8, lut_frac=7, frac_bits=7),
    dict(lut_bits=2, lut_frac=1, frac_bits=1, cell_bits=3),
]


def _ids(d):
    return ",".join(f"{k}={v}" for k, v in d.items()) or "default"


@pytest.fixture(params=TABLE_CONFIGS, ids=_ids)
def table_cfg(request):
    return cfg_with(**request.param)


def test_table_shape_and_index_order(table_cfg):
    cfg = table_cfg
    idx = lut_indices(cfg)
    assert idx[0] == -(1 << (cfg.lut_bits - 1)) and idx[-1] == (1 << (cfg.lut_bits - 1)) - 1
    assert np.array_equal(np.diff(idx), np.ones(idx.size - 1))
    for tab in (sigmoid_table(cfg), tanh_table(cfg)):
        assert tab.shape == (1 << cfg.lut_bits,)
        assert np.issubdtype(tab.dtype, np.integer)
        assert not tab.flags.writeable  # the cached ROM contents cannot be altered by a caller


def test_tables_equal_independent_math_computation(table_cfg):
    cfg = table_cfg
    one = 1 << cfg.frac_bits
    sig, tnh = sigmoid_table(cfg).tolist(), tanh_table(cfg).tolist()
    for k, i in enumerate(range(-(1 << (cfg.lut_bits - 1)), 1 << (cfg.lut_bits - 1))):
        z = i / 2**cfg.lut_frac
        s = 1.0 / (1.0 + math.exp(-z))
        assert sig[k] == max(0, min(one, round(s * one))), (i, z)  # round() is half to even
        assert tnh[k] == max(-one, min(one, round(math.tanh(z) * one))), (i, z)


def test_tables_ranges_monotone_and_symmetry(table_cfg):
    cfg = table_cfg
    one = 1 << cfg.frac_bits
    sig, tnh = sigmoid_table(cfg), tanh_table(cfg)
    assert sig.min() >= 0 and sig.max() <= one
    assert tnh.min() >= -one and tnh.max() <= one
    assert np.all(np.diff(sig) >= 0) and np.all(np.diff(tnh) >= 0)
    zero = -cfg.lut_min  # position of index 0
    assert sig[zero] == one // 2 == 1 << (cfg.frac_bits - 1)
    assert tnh[zero] == 0
    # tanh is odd: entry of index -i is minus entry of index i, for i = 1 .. lut_max
    for i in range(1, cfg.lut_max + 1):
        assert tnh[zero - i] == -tnh[zero + i], i


def test_tables_reach_saturation_on_default_domain():
    cfg = default_config()  # domain [-8, 8): sigmoid(-8) * 128 = 0.043 -> 0, tanh(7.9375) * 128 -> 128
    sig, tnh = sigmoid_table(cfg), tanh_table(cfg)
    assert sig[0] == 0 and sig[-1] == cfg.one
    assert tnh[0] == -cfg.one and tnh[-1] == cfg.one
