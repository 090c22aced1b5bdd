"""The native training kernel (train/ckernel.py, train/ckernel.c) and training's copies of the datapath rules.

* Every argument check of `Kernel.forward` / `Kernel.backward` raises with its exact message (wrong type,
  dtype, shape, device, contiguity, and values that would index a table out of bounds), and a valid call
  passes.
* The ADC as training applies it -- the kernel's table lookup and tile sum, the table builder, the torch
  formula of the noisy path and the head, the evaluation path -- equals `nvmlstm.golden.datapath.adc_convert`
  on every dot product of a small config's tile and every ADC step (``==`` on integers); the torch
  `rshift_round` equals golden's over a whole integer domain. Each comparison is shown able to fail.
* The fallback: one stderr line naming the reason, once per process; ``NVMLSTM_REQUIRE_CKERNEL=1`` turns
  it into `KernelUnavailable`; the cache key follows the compiler, the flags and the CPU features.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nvmlstm.golden.config import default_config  # noqa: E402
from nvmlstm.golden.datapath import adc_convert, cell_update  # noqa: E402
from nvmlstm.golden.quant import rshift_round as golden_rshift_round  # noqa: E402
from nvmlstm.train import ckernel  # noqa: E402
from nvmlstm.train.exact import _adc as exact_adc  # noqa: E402
from nvmlstm.train.model import QuantLSTM  # noqa: E402
from nvmlstm.train.ops import adc_round, rshift_round, tables  # noqa: E402
from nvmlstm.train.recurrence import QuantRecurrence, _adc_tables, _col_offsets, _gate_tables  # noqa: E402

#: A small config whose whole ADC domain is cheap: |p| <= 8 rows x 3 x 3 = 72, steps 1..127, 3-bit ADC.
SMALL = default_config().replace(
    array_rows=8, weight_bits=3, dac_bits=3, adc_bits=3, head_adc_bits=4, adc_step_bits=7, hidden_size=4
)


def _pmax(cfg) -> int:
    """Largest |dot product| of one row tile: every row at the largest weight and DAC code."""
    return cfg.array_rows * cfg.weight_max * cfg.dac_max


@pytest.fixture
def fresh_load(monkeypatch, tmp_path):
    """`ckernel.load` with an empty cache in ``tmp_path`` and a clean environment, reset afterwards so the
    other tests get the real kernel again."""
    for var in (ckernel.DISABLE_ENV, ckernel.REQUIRE_ENV, "CC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ckernel.load.cache_clear()
    yield ckernel.load
    ckernel.load.cache_clear()


@pytest.fixture(scope="module")
def kernel():
    k = ckernel.load()
    if k is None:
        # CI sets NVMLSTM_REQUIRE_CKERNEL=1, so there load() raises instead and this never skips.
        pytest.skip("native kernel unavailable (see the stderr line of nvmlstm.train.ckernel)")
    return k


# ------------------------------------------------------------------------------------------------------
# A valid call of the kernel, built from a config's real tables
def _cell_consts(cfg) -> dict:
    """The config constants of the kernel's cell update (forward and backward)."""
    return dict(cell_max=cfg.cell_max, frac_bits=cfg.frac_bits)


def _forward_without_recurrence(kernel, cfg, pre, H, pmax, adc_tab, gate_tab, col_off, h_oc, **extra):
    """``kernel.forward`` of ``pre`` with all-zero recurrent weights for ``H`` hidden units."""
    wh = torch.zeros(H, pre.shape[2] * pre.shape[3])
    tabs = dict(adc_tab=adc_tab, gate_tab=gate_tab, col_off=col_off, h_oc=h_oc)
    return kernel.forward(pre, wh, pmax=pmax, **tabs, **_cell_consts(cfg), **extra)


def _forward_args(cfg=SMALL, T=3, B=5, R=2, step=9, seed=0) -> dict:
    k = QuantLSTM(cfg, 1.0 / cfg.dac_max)._consts
    H = cfg.hidden_size
    N = 4 * H
    pmax = _pmax(cfg)
    tab = tables(cfg)
    g = torch.Generator().manual_seed(seed)
    # Dot products that stay in [-pmax, pmax] with h: pre within half the range, small recurrent weights.
    pre = torch.randint(-pmax // 2, pmax // 2 + 1, (T, B, R, N), generator=g).float()
    wh = torch.randint(-1, 2, (H, R * N), generator=g).float()
    gs = torch.tensor([300.0, 500.0, 700.0, 900.0])
    gate_tab, fac_tab = _gate_tables(gs, R, k, tab)
    adc_tab, am_tab = _adc_tables(torch.tensor(float(step)), pmax, k, torch.float32)
    _, col_off = _col_offsets(R, k, torch.float32)
    fwd = dict(pre=pre, wh=wh, pmax=pmax, adc_tab=adc_tab, gate_tab=gate_tab, col_off=col_off, h_oc=tab.h_oc)
    bwd = dict(pmax=pmax, am_tab=am_tab, fac_tab=fac_tab, tanh_c=tab.tanh_c, dtanh_c=tab.dtanh_c, dac_max=cfg.dac_max)
    fwd |= _cell_consts(cfg)
    bwd |= _cell_consts(cfg)
    return {"fwd": fwd, "bwd": bwd, "dhs": torch.randn(T, B, H, generator=g)}


def _call_forward(kernel, fwd: dict):
    a = dict(fwd)
    return kernel.forward(a.pop("pre"), a.pop("wh"), **a)


def test_a_valid_call_passes_and_equals_the_torch_loop(kernel, monkeypatch):
    args = _forward_args()
    st = _call_forward(kernel, args["fwd"])
    dp, sums, dacc = kernel.backward(args["dhs"], args["fwd"]["wh"], st, **args["bwd"])
    assert dp.shape == (3, 5, 2 * 16) and sums.dtype == torch.float64 and dacc.shape == (3, 5, 16)
    # The same h through the torch loop of QuantRecurrence (the kernel's specification).
    cfg, f = SMALL, args["fwd"]
    monkeypatch.setattr(ckernel, "load", lambda: None)
    k = QuantLSTM(cfg, 1.0 / cfg.dac_max)._consts
    gs = torch.tensor([300.0, 500.0, 700.0, 900.0])
    h = QuantRecurrence.apply(f["pre"], f["wh"], torch.tensor(9.0), gs, None, f["pmax"], k, tables(cfg))
    assert torch.equal(st.hs[1:], h)


def _set(d: dict, key: str, value) -> dict:
    out = dict(d)
    out[key] = value
    return out


def _corrupt(t: torch.Tensor, index: tuple, value) -> torch.Tensor:
    t = t.clone()
    t[index] = value
    return t


FORWARD_BAD = {
    "pre not a tensor": ("pre", lambda a: a.tolist(), TypeError, "pre must be a torch.Tensor, not list"),
    "pre float64": ("pre", lambda a: a.double(), TypeError, "pre has dtype torch.float64, expected torch.float32"),
    "pre on meta": (
        "pre",
        lambda a: a.to("meta"),
        ValueError,
        "pre is a torch.strided tensor on meta, expected a strided CPU tensor",
    ),
    "pre 3-D": ("pre", lambda a: a[0], ValueError, "pre has shape (5, 2, 16), expected (*, *, *, *)"),
    "wh wrong width": ("wh", lambda a: a[:, :-1], ValueError, "wh has shape (4, 31), expected (*, 32)"),
    "N != 4 H": (
        "wh",
        lambda a: torch.zeros(3, 32),
        ValueError,
        "pre has 16 columns per tile, expected 4 x hidden = 12",
    ),
    "pmax float": ("pmax", lambda a: 72.0, TypeError, "pmax must be an integer, not float"),
    "cell_max negative": ("cell_max", lambda a: -1, ValueError, "cell_max must be >= 0, not -1"),
    "adc_tab int64": (
        "adc_tab",
        lambda a: a.long(),
        TypeError,
        "adc_tab has dtype torch.int64, expected torch.float32",
    ),
    "adc_tab short": ("adc_tab", lambda a: a[1:], ValueError, "adc_tab has shape (144,), expected (145,)"),
    "adc_tab strided": ("adc_tab", lambda a: torch.zeros(290)[::2], ValueError, "adc_tab is not contiguous"),
    "col_off strided": ("col_off", lambda a: a.repeat_interleave(2)[::2], ValueError, "col_off is not contiguous"),
    "col_off float": (
        "col_off",
        lambda a: a.float(),
        TypeError,
        "col_off has dtype torch.float32, expected torch.int64",
    ),
    "h_oc ragged": (
        "h_oc",
        lambda a: a[1:],
        ValueError,
        "h_oc has 264062 entries, not a multiple of 2 cell_max + 1 = 2047",
    ),
    "table too large": (
        "gate_tab",
        lambda a: torch.zeros(ckernel.MAX_TABLE + 1),
        ValueError,
        "gate_tab has 16777217 entries, more than the kernel indexes exactly (2**24)",
    ),
    # Values that would index a table out of bounds.
    "p above pmax": (
        "pre",
        lambda a: _corrupt(a, (0, 1, 1, 3), 200.0),
        ValueError,
        r"dot product p[0, 1, 19] = 200.0, not an integer in [-pmax, pmax] = [-72, 72]",
    ),
    "p below -pmax at t=2": (
        "pre",
        lambda a: _corrupt(a, (2, 4, 0, 15), -1000.0),
        ValueError,
        "dot product p[2, 4, 15] = ",
    ),
    "p not an integer": (
        "pre",
        lambda a: _corrupt(a, (0, 0, 0, 0), 0.5),
        ValueError,
        "dot product p[0, 0, 0] = 0.5, not an integer in [-pmax, pmax]",
    ),
    "p NaN": (
        "pre",
        lambda a: _corrupt(a, (0, 2, 1, 1), float("nan")),
        ValueError,
        "dot product p[0, 2, 17] = nan, not an integer",
    ),
    "adc_tab not integer": (
        "adc_tab",
        lambda a: _corrupt(a, (7,), 1.5),
        ValueError,
        "adc_tab[7] = 1.5, not an integer of magnitude below 2**20",
    ),
    "adc_tab beyond the gate table": (
        "adc_tab",
        lambda a: _corrupt(a, (0,), -9.0),
        ValueError,
        "col_off[0] = 6: acc in [-18, 18] (R = 2 row tiles, ADC codes up to 9) would index gate_tab outside [0, 52)",
    ),
    "col_off out of bounds": (
        "col_off",
        lambda a: _corrupt(a, (15,), 52),
        ValueError,
        "col_off[15] = 52: acc in [-6, 6]",
    ),
    "gate_tab NaN": (
        "gate_tab",
        lambda a: _corrupt(a, (20,), float("nan")),
        ValueError,
        "gate_tab[20] = nan, not a finite number of magnitude at most 2**24",
    ),
    "gate o not an h_oc row": (
        "gate_tab",
        lambda a: _corrupt(a, (45,), 129.0),
        ValueError,
        "gate_tab[45] = 129.0 is read by gate o, so it must be an integer "
        "in [0, 129) (h_oc has 129 rows of 2 cell_max + 1 = 2047)",
    ),
}


@pytest.mark.parametrize("case", sorted(FORWARD_BAD))
def test_forward_rejects_bad_arguments_with_exact_messages(kernel, case):
    key, change, exc, message = FORWARD_BAD[case]
    good = _forward_args()["fwd"]
    with pytest.raises(exc) as info:
        _call_forward(kernel, _set(good, key, change(good[key])))
    assert str(info.value).startswith(f"ckernel.forward: {message}"), str(info.value)


def _bad_state(field: str, index: tuple, value):
    return lambda st: st._replace(**{field: _corrupt(getattr(st, field), index, value)})


BACKWARD_BAD = {
    "dhs float64": (
        "dhs",
        lambda a: a.double(),
        TypeError,
        "ckernel.backward: dhs has dtype torch.float64, expected torch.float32",
    ),
    "dhs transposed": (
        "dhs",
        lambda a: a.transpose(0, 1).contiguous().transpose(0, 1),
        ValueError,
        "ckernel.backward: dhs is not contiguous",
    ),
    "fwd a tuple": ("fwd", lambda st: tuple(st), TypeError, "ckernel.backward: fwd must be a ForwardState, not tuple"),
    "fwd.kp short": (
        "fwd",
        lambda st: st._replace(kp=st.kp[:, :, 1:].contiguous()),
        ValueError,
        "ckernel.backward: fwd.kp has shape (3, 5, 31), expected (3, 5, 32)",
    ),
    "fwd.cs float64": (
        "fwd",
        lambda st: st._replace(cs=st.cs.double()),
        TypeError,
        "ckernel.backward: fwd.cs has dtype torch.float64, expected torch.float32",
    ),
    "am_tab short": (
        "am_tab",
        lambda a: a[:-1],
        ValueError,
        "ckernel.backward: am_tab has shape (144,), expected (145,)",
    ),
    "dtanh_c int64": (
        "dtanh_c",
        lambda a: a.long(),
        TypeError,
        "ckernel.backward: dtanh_c has dtype torch.int64, expected torch.float32",
    ),
    "dac_max a string": ("dac_max", lambda a: "3", TypeError, "ckernel.backward: dac_max must be an integer, not str"),
    # Saved values that would index a table out of bounds.
    "c outside the cell range": (
        "fwd",
        _bad_state("cs", (2, 1, 3), 5000.0),
        ValueError,
        "ckernel.backward: fwd.cs[2, 1, 3] = 5000.0, not an integer in [-1023, 1023]",
    ),
    "c not an integer": (
        "fwd",
        _bad_state("cs", (3, 0, 0), 0.25),
        ValueError,
        "ckernel.backward: fwd.cs[3, 0, 0] = 0.25, not an integer in [-1023, 1023]",
    ),
    "ka past fac_tab": (
        "fwd",
        _bad_state("ka", (1, 2, 3), 52),
        ValueError,
        "ckernel.backward: fwd.ka[1, 2, 3] = 52, outside fac_tab [0, 52)",
    ),
    "ka negative": (
        "fwd",
        _bad_state("ka", (0, 4, 15), -1),
        ValueError,
        "ckernel.backward: fwd.ka[0, 4, 15] = -1, outside fac_tab [0, 52)",
    ),
    "kp past am_tab": (
        "fwd",
        _bad_state("kp", (2, 3, 31), 145),
        ValueError,
        "ckernel.backward: fwd.kp[2, 3, 31] = 145, outside am_tab [0, 145)",
    ),
}


@pytest.mark.parametrize("case", sorted(BACKWARD_BAD))
def test_backward_rejects_bad_arguments_with_exact_messages(kernel, case):
    what, change, exc, message = BACKWARD_BAD[case]
    args = _forward_args()
    st = _call_forward(kernel, args["fwd"])
    call = {"dhs": args["dhs"], "wh": args["fwd"]["wh"], "fwd": st, **args["bwd"]}
    call[what] = change(call[what])
    with pytest.raises(exc) as info:
        kernel.backward(call.pop("dhs"), call.pop("wh"), call.pop("fwd"), **call)
    assert str(info.value).startswith(message), str(info.value)


def test_backward_error_leaves_the_gradient_sums_alone(kernel):
    # A bad saved index found in use (ka, kp) must not add to the sums: the error is raised, nothing returned.
    args = _forward_args()
    st = _call_forward(kernel, args["fwd"])
    good_dp, good_sums, _ = kernel.backward(args["dhs"], args["fwd"]["wh"], st, **args["bwd"])
    assert torch.isfinite(good_sums).all() and float(good_sums.abs().sum()) > 0
    bad = _bad_state("kp", (0, 0, 0), 10**9)(st)
    with pytest.raises(ValueError, match=r"fwd\.kp\[0, 0, 0\] = 1000000000, outside am_tab \[0, 145\)"):
        kernel.backward(args["dhs"], args["fwd"]["wh"], bad, **args["bwd"])


# ------------------------------------------------------------------------------------------------------
# The ADC transfer: every copy in training against golden's adc_convert over the whole domain
def _domain(cfg):
    pmax = _pmax(cfg)
    return pmax, np.arange(-pmax, pmax + 1, dtype=np.int64)


def _golden_adc(p: np.ndarray, steps: np.ndarray, bits: int) -> np.ndarray:
    """(len(steps), len(p)): golden's ADC for every (step, dot product)."""
    return np.stack([adc_convert(p, int(s), bits) for s in steps])


@pytest.mark.parametrize("cfg_name", ["small", "default"])
def test_torch_adc_forms_equal_golden_on_every_dot_product_and_step(cfg_name):
    # Training's formula ADC (`ops.adc_round`: the noisy path of the recurrence and the head; float32 and
    # float64) and the evaluation path's (`exact._adc`, float64). The small config runs every legal step;
    # the default config every step up to 2 pmax + 1 (beyond it every code is 0, like at 2 pmax + 1).
    cfg = SMALL if cfg_name == "small" else default_config()
    pmax, p = _domain(cfg)
    steps = np.arange(1, min(cfg.adc_step_max, 2 * pmax + 1) + 1)
    for bits in sorted({cfg.adc_bits, cfg.head_adc_bits_eff}):
        want = _golden_adc(p, steps, bits)
        qmax = (1 << (bits - 1)) - 1
        for dt in (torch.float32, torch.float64):
            v = torch.from_numpy(p).to(dt)[None, :] / torch.from_numpy(steps).to(dt)[:, None]
            got = adc_round(v).clamp(-qmax, qmax)
            assert np.array_equal(got.to(torch.int64).numpy(), want), (bits, dt)
        ev = torch.stack([exact_adc(torch.from_numpy(p).double(), int(s), bits) for s in steps])
        assert np.array_equal(ev.to(torch.int64).numpy(), want), bits
    # The comparison can fail: round-half-even (torch.round) differs on this domain's ties.
    v = torch.from_numpy(p).double()[None, :] / torch.from_numpy(steps).double()[:, None]
    assert not np.array_equal(
        torch.round(v).clamp(-cfg.adc_max, cfg.adc_max).long().numpy(), _golden_adc(p, steps, cfg.adc_bits)
    )


def test_adc_table_builder_is_golden_and_its_slope_marks_the_range():
    # `_adc_tables` calls adc_convert; its STE slope is [|round(p / step)| <= adc_max] / step, decided in
    # integers: checked against golden's unclipped rounding (a wider ADC), for every step of the small config.
    cfg = SMALL
    k = QuantLSTM(cfg, 1.0 / cfg.dac_max)._consts
    pmax, p = _domain(cfg)
    for s in range(1, cfg.adc_step_max + 1):
        codes, slope = _adc_tables(torch.tensor(float(s)), pmax, k, torch.float32)
        assert np.array_equal(codes.numpy().astype(np.int64), adc_convert(p, s, cfg.adc_bits))
        inside = np.abs(adc_convert(p, s, cfg.adc_bits + 8)) <= cfg.adc_max
        assert np.array_equal(slope.numpy(), (inside / np.float32(s)).astype(np.float32)), s
    # It can fail: with step 1 the domain reaches beyond the ADC range, so the slope has zeros.
    assert (slope.numpy() > 0).all() and not (_adc_tables(torch.tensor(1.0), pmax, k, torch.float32)[1] > 0).all()


def _two_tiles(cfg):
    """Two row tiles whose dot products run through the config's whole domain: tile 0 in order, tile 1
    rotated by 37 (not reversed: -p would cancel p under any symmetric rounding), padded to B rows of N."""
    k = QuantLSTM(cfg, 1.0 / cfg.dac_max)._consts
    H = cfg.hidden_size
    N = 4 * H
    pmax, p = _domain(cfg)
    B = -(-len(p) // N)
    tile0 = np.zeros(B * N, dtype=np.int64)
    tile0[: len(p)] = p
    tile1 = np.zeros(B * N, dtype=np.int64)
    tile1[: len(p)] = np.roll(p, 37)
    return k, H, N, pmax, B, tile0, tile1


def test_kernel_adc_and_tile_sum_equal_golden_on_every_dot_product_and_step(kernel):
    # The kernel's ADC: the lookup adc_tab[p + pmax] and the sum over R = 2 row tiles (`_two_tiles`), for
    # every dot product of the small config and every step.
    cfg = SMALL
    k, H, N, pmax, B, tile0, tile1 = _two_tiles(cfg)
    pre = torch.from_numpy(np.stack([tile0.reshape(B, N), tile1.reshape(B, N)], axis=1)).float()[None]
    tab = tables(cfg)
    gate_tab, _ = _gate_tables(torch.tensor([1.0, 1.0, 1.0, 1.0]), 2, k, tab)
    _, col_off = _col_offsets(2, k, torch.float32)

    def forward(adc_tab):
        return _forward_without_recurrence(kernel, cfg, pre, H, pmax, adc_tab, gate_tab, col_off, tab.h_oc)

    wrong = 0
    for s in range(1, cfg.adc_step_max + 1):
        adc_tab, _ = _adc_tables(torch.tensor(float(s)), pmax, k, torch.float32)
        st = forward(adc_tab)
        want = adc_convert(tile0, s, cfg.adc_bits) + adc_convert(tile1, s, cfg.adc_bits)
        assert np.array_equal(st.acc[0].reshape(-1).numpy().astype(np.int64), want), s
        assert np.array_equal(st.kp[0].reshape(B, 2, N).numpy(), pre[0].numpy().astype(np.int64) + pmax)
        # The comparison can fail: a table of half-even rounding (ties at odd steps) gives another sum.
        bad = torch.round(torch.arange(-pmax, pmax + 1) / float(s)).clamp(-cfg.adc_max, cfg.adc_max).float()
        wrong += not np.array_equal(forward(bad).acc[0].reshape(-1).numpy().astype(np.int64), want)
    assert wrong > 0


def test_kernel_input_tile_and_acc_in_equal_golden_on_every_dot_product_and_step(kernel):
    # The same sum with tile 0 converted before the loop (input_tile, every timestep at once) and entering
    # the loop as acc_in: every dot product of the small config, every step; kp is p + pmax; and the STE
    # backward of input_tile is dacc * am_tab[kp] with the sum of dp * p.
    cfg = SMALL
    k, H, N, pmax, B, tile0, tile1 = _two_tiles(cfg)
    p0 = torch.from_numpy(tile0.reshape(B, N)).float()
    pre1 = torch.from_numpy(tile1.reshape(1, B, 1, N)).float()
    tab = tables(cfg)
    gate_tab, _ = _gate_tables(torch.tensor([1.0, 1.0, 1.0, 1.0]), 2, k, tab)
    _, col_off = _col_offsets(2, k, torch.float32)
    dacc = torch.randn(B, N, generator=torch.Generator().manual_seed(3))
    for s in range(1, cfg.adc_step_max + 1):
        adc_tab, am_tab = _adc_tables(torch.tensor(float(s)), pmax, k, torch.float32)
        acc0 = torch.zeros(B, N)
        kp = kernel.input_tile(p0, acc0, pmax=pmax, adc_tab=adc_tab)
        assert np.array_equal(acc0.reshape(-1).numpy().astype(np.int64), adc_convert(tile0, s, cfg.adc_bits)), s
        assert kp.dtype == torch.int32 and np.array_equal(kp.reshape(-1).numpy(), tile0 + pmax)
        acc_in = dict(acc_in=acc0[None].contiguous(), acc_in_max=cfg.adc_max)
        st = _forward_without_recurrence(kernel, cfg, pre1, H, pmax, adc_tab, gate_tab, col_off, tab.h_oc, **acc_in)
        want = adc_convert(tile0, s, cfg.adc_bits) + adc_convert(tile1, s, cfg.adc_bits)
        assert np.array_equal(st.acc[0].reshape(-1).numpy().astype(np.int64), want), s
        dp = torch.empty(B, N)
        total = kernel.input_tile_backward(dacc, kp, dp, pmax=pmax, am_tab=am_tab)
        assert torch.equal(dp, dacc * am_tab[kp.long()])
        assert total == pytest.approx(float((dp.double() * p0.double()).sum()), rel=1e-12, abs=1e-9)


def test_input_tile_rejects_bad_values_with_exact_messages(kernel):
    cfg = SMALL
    k = QuantLSTM(cfg, 1.0 / cfg.dac_max)._consts
    pmax = _pmax(cfg)
    adc_tab, am_tab = _adc_tables(torch.tensor(9.0), pmax, k, torch.float32)
    p = torch.randint(-pmax, pmax + 1, (6, 16), generator=torch.Generator().manual_seed(0)).float()
    acc = torch.zeros(6, 16)
    for bad, shown in ((pmax + 1.0, f"{pmax + 1.0}"), (0.5, "0.5"), (float("nan"), "nan")):
        with pytest.raises(ValueError) as info:
            kernel.input_tile(_corrupt(p, (4, 3), bad), acc, pmax=pmax, adc_tab=adc_tab)
        assert str(info.value) == (
            f"ckernel.input_tile: dot product p[4, 3] = {shown}, not an integer in [-pmax, pmax] = [-{pmax}, {pmax}]"
        )
    assert not acc.any()  # nothing was written
    with pytest.raises(ValueError, match=r"ckernel.input_tile: acc has shape \(6, 15\), expected \(6, 16\)"):
        kernel.input_tile(p, acc[:, :15].contiguous(), pmax=pmax, adc_tab=adc_tab)
    kp = kernel.input_tile(p, acc, pmax=pmax, adc_tab=adc_tab)
    with pytest.raises(TypeError, match=r"ckernel.input_tile_backward: kp has dtype torch.int64, expected torch.int32"):
        kernel.input_tile_backward(acc, kp.long(), torch.empty(6, 16), pmax=pmax, am_tab=am_tab)
    with pytest.raises(ValueError) as info:
        kernel.input_tile_backward(
            acc, _corrupt(kp, (5, 15), 2 * pmax + 1), torch.empty(6, 16), pmax=pmax, am_tab=am_tab
        )
    assert str(info.value) == (
        f"ckernel.input_tile_backward: kp[5, 15] = {2 * pmax + 1}, outside am_tab [0, {2 * pmax + 1})"
    )


def test_forward_checks_acc_in(kernel):
    # acc_in (the tiles converted before the loop) becomes part of a table index: its values are checked
    # each step against acc_in_max, and the gate table must cover R tiles plus that bound.
    args = _forward_args()["fwd"]
    T, B, _, N = args["pre"].shape
    ok = torch.randint(-3, 4, (T, B, N), generator=torch.Generator().manual_seed(1)).float()
    with pytest.raises(ValueError) as info:
        _call_forward(kernel, {**args, "acc_in": _corrupt(ok, (1, 2, 7), 4.0), "acc_in_max": 3})
    # (the gate table of _forward_args covers R = 2 tiles of codes up to 3 = adc_max, so acc_in_max 3 needs a
    # wider one: the col_off check fires first)
    assert str(info.value) == (
        "ckernel.forward: col_off[0] = 6: acc in [-9, 9] (R = 2 row tiles, ADC codes up "
        "to 3 plus acc_in up to 3) would index gate_tab outside [0, 52)"
    )
    cfg = SMALL
    k = QuantLSTM(cfg, 1.0 / cfg.dac_max)._consts
    gate_tab, _ = _gate_tables(torch.tensor([300.0, 500.0, 700.0, 900.0]), 3, k, tables(cfg))
    _, col_off = _col_offsets(3, k, torch.float32)
    wide = {**args, "gate_tab": gate_tab, "col_off": col_off, "acc_in_max": 3}
    _call_forward(kernel, {**wide, "acc_in": ok})  # valid
    for bad, shown in ((4.0, "4.0"), (-0.5, "-0.5")):
        with pytest.raises(ValueError) as info:
            _call_forward(kernel, {**wide, "acc_in": _corrupt(ok, (1, 2, 7), bad)})
        assert str(info.value) == (
            f"ckernel.forward: acc_in[1, 2, 7] = {shown}, not an integer in [-acc_in_max, acc_in_max] = [-3, 3]"
        )
    with pytest.raises(ValueError, match=r"ckernel.forward: acc_in has shape \(3, 5, 15\), expected \(3, 5, 16\)"):
        _call_forward(kernel, {**wide, "acc_in": ok[..., :15].contiguous()})


def test_kernel_cell_update_equals_golden_on_every_value_of_m(kernel):
    # The kernel's copy of the cell update, clip(floor(m 2^-F + 1/2), +-cell_max) = golden's cell_update, for
    # every integer m = f c + i g can take in the small (and default: same F, cell_max) config,
    # |m| <= one cell_max + one^2. Crafted tables make m = i g with i = 1 and g = m at t = 0 (c_0 = 0): the
    # ADC table is the identity, so acc = p, and the g part of gate_tab is -M..M.
    cfg = SMALL
    M = cfg.one * cfg.cell_max + cfg.one * cfg.one
    m = np.arange(-M, M + 1, dtype=np.int64)
    H = 1024
    N, B = 4 * H, -(-len(m) // H)
    n_acc = 2 * M + 1
    adc_tab = torch.arange(-M, M + 1, dtype=torch.float32)  # pmax = M: code = p
    ones, zeros = torch.ones(n_acc), torch.zeros(n_acc)
    gate_tab = torch.cat([ones, zeros, torch.arange(-M, M + 1, dtype=torch.float32), zeros])  # i | f | g | o
    col_off = torch.arange(4).repeat_interleave(H) * n_acc + M
    pm = np.zeros(B * H, dtype=np.int64)
    pm[: len(m)] = m
    pre = torch.from_numpy(np.tile(pm.reshape(B, 1, H), (1, 4, 1)).reshape(1, B, 1, N)).float()
    h_oc = torch.zeros(2 * cfg.cell_max + 1)
    st = _forward_without_recurrence(kernel, cfg, pre, H, M, adc_tab, gate_tab, col_off, h_oc)
    craw = st.craw[0].reshape(-1)[: len(m)].numpy().astype(np.int64)
    c = st.cs[1].reshape(-1)[: len(m)].numpy().astype(np.int64)
    assert np.array_equal(st.gates[0].reshape(B, 4, H)[:, 2].reshape(-1)[: len(m)].numpy().astype(np.int64), m)
    assert np.array_equal(craw, golden_rshift_round(m, cfg.frac_bits))
    z = np.zeros_like(m)
    assert np.array_equal(c, cell_update(z, z, np.ones_like(m), m, cfg))
    assert c.min() == -cfg.cell_max and c.max() == cfg.cell_max  # the domain reaches the saturation
    # The comparison can fail: the domain holds ties, where rounding half down would differ.
    assert not np.array_equal(craw, np.ceil((m - (1 << (cfg.frac_bits - 1))) / (1 << cfg.frac_bits)))


# ------------------------------------------------------------------------------------------------------
# rshift_round: the torch form against golden's
def _rshift_domain() -> np.ndarray:
    small = np.arange(-(1 << 17), (1 << 17) + 1, dtype=np.int64)
    # float64 only: windows around large magnitudes (the evaluation path's products), where a tie or a
    # one-off error would show.
    big = np.concatenate([c + np.arange(-300, 301) for c in (1 << 30, 3 << 40, (1 << 50) - 7)])
    return small, np.concatenate([big, -big])


@pytest.mark.parametrize("shift", range(0, 19))
def test_torch_rshift_round_equals_golden(shift):
    small, big = _rshift_domain()
    for dt, v in ((torch.float32, small), (torch.float64, small), (torch.float64, np.concatenate([small, big]))):
        want = golden_rshift_round(v, shift)
        t = torch.from_numpy(v).to(dt)
        assert np.array_equal(rshift_round(t, shift).to(torch.int64).numpy(), want), (dt, shift)
        out = torch.empty_like(t)
        assert rshift_round(t, shift, out=out) is out and np.array_equal(out.to(torch.int64).numpy(), want)
        assert np.array_equal(t.to(torch.int64).numpy(), v)  # the input is never modified
    if shift > 0:  # the comparison can fail: rounding half down differs at every tie
        half = float(1 << (shift - 1))
        mutant = torch.ceil((torch.from_numpy(small).double() - half) * 2.0**-shift)
        assert not np.array_equal(mutant.to(torch.int64).numpy(), golden_rshift_round(small, shift))


# ------------------------------------------------------------------------------------------------------
# Fallback, requirement, cache
def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_disabled_kernel_says_so_once_and_training_still_runs(fresh_load, monkeypatch, capfd):
    monkeypatch.setenv(ckernel.DISABLE_ENV, "1")
    assert fresh_load() is None
    assert fresh_load() is None
    # Two recurrences through the torch loop: still the one line of the first load.
    cfg = SMALL
    m = QuantLSTM(cfg, 1.0 / cfg.dac_max)
    m.quantized = True
    m.train()
    for _ in range(2):
        m(torch.rand(3, 4, cfg.input_size) * 2 - 1).sum().backward()
    err = capfd.readouterr().err
    assert err == (
        "nvmlstm: native training kernel not used: NVMLSTM_NO_CKERNEL=1 is set; training runs the torch "
        "implementation (same results, slower; NVMLSTM_REQUIRE_CKERNEL=1 makes this an error)\n"
    )


def test_required_kernel_turns_the_fallback_into_an_error(fresh_load, monkeypatch, capfd):
    monkeypatch.setenv(ckernel.DISABLE_ENV, "1")
    monkeypatch.setenv(ckernel.REQUIRE_ENV, "1")
    with pytest.raises(ckernel.KernelUnavailable) as info:
        fresh_load()
    assert str(info.value) == (
        "the native training kernel is required (NVMLSTM_REQUIRE_CKERNEL=1) but "
        "unavailable: NVMLSTM_NO_CKERNEL=1 is set"
    )
    assert capfd.readouterr().err == ""
    # "0" means off, like unset.
    monkeypatch.setenv(ckernel.REQUIRE_ENV, "0")
    assert fresh_load() is None


@pytest.mark.parametrize("case", ["missing CC", "no compiler on PATH", "compile error"])
def test_each_fallback_reason_is_one_line_or_with_require_an_error(fresh_load, monkeypatch, capfd, tmp_path, case):
    if case == "missing CC":
        monkeypatch.setenv("CC", "/nonexistent/cc -O2")
        reason = "the C compiler CC='/nonexistent/cc -O2' was not found"
    elif case == "no compiler on PATH":
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
        reason = "no C compiler found (set CC, or install cc, gcc or clang)"
    else:
        cc = _script(
            tmp_path / "fakecc",
            'case "$1" in --version) echo "fakecc 1.0";; *) echo "fakecc: error: boom" >&2; exit 1;; esac\n',
        )
        monkeypatch.setenv("CC", str(cc))
        # -march=native is tried first, then the portable build: both errors are reported.
        reason = "compiling ckernel.c failed (exit status 1: fakecc: error: boom; exit status 1: fakecc: error: boom)"
    assert fresh_load() is None
    err = capfd.readouterr().err
    assert err == (
        f"nvmlstm: native training kernel not used: {reason}; training runs the torch implementation "
        f"(same results, slower; NVMLSTM_REQUIRE_CKERNEL=1 makes this an error)\n"
    )
    fresh_load.cache_clear()
    monkeypatch.setenv(ckernel.REQUIRE_ENV, "1")
    with pytest.raises(ckernel.KernelUnavailable, match=r"required \(NVMLSTM_REQUIRE_CKERNEL=1\) but unavailable: "):
        fresh_load()
    assert str(pytest.raises(ckernel.KernelUnavailable, fresh_load).value).endswith(reason)


def test_cache_key_follows_cpu_features_and_native_builds_need_them(fresh_load, monkeypatch, tmp_path):
    # A compiler wrapper that logs its arguments: one build per CPU-feature set, -march=native only when the
    # features are known (they are part of the library's name), reuse when nothing changed.
    log = tmp_path / "cc.log"
    real = ckernel._compiler()[0][0]
    cc = _script(tmp_path / "logcc", f'echo "$@" >> "{log}"\nexec "{real}" "$@"\n')
    monkeypatch.setenv("CC", str(cc))
    cache = tmp_path / "cache" / "nvmlstm"

    def builds():
        lines = log.read_text().splitlines() if log.exists() else []
        return [ln for ln in lines if "ckernel.c" in ln]

    monkeypatch.setattr(ckernel, "_cpu_features", lambda: "flags: fpu sse2 avx2")
    assert fresh_load() is not None
    assert len(builds()) == 1 and "-march=native" in builds()[0]
    fresh_load.cache_clear()
    assert fresh_load() is not None and len(builds()) == 1  # cached: same compiler, flags and CPU
    fresh_load.cache_clear()
    monkeypatch.setattr(ckernel, "_cpu_features", lambda: "flags: fpu sse2")
    assert fresh_load() is not None and len(builds()) == 2  # another CPU: another library
    fresh_load.cache_clear()
    monkeypatch.setattr(ckernel, "_cpu_features", lambda: None)
    assert fresh_load() is not None and len(builds()) == 3
    assert "-march=native" not in builds()[2]  # unknown CPU: portable build
    assert len(list(cache.glob("ckernel-*.so"))) == 3
    assert not list(cache.glob("*.tmp"))


def test_the_c_source_is_package_data():
    # Installed as a file of nvmlstm.train (pyproject.toml, package-data), read through importlib.resources.
    import importlib.resources

    src = importlib.resources.files("nvmlstm.train").joinpath("ckernel.c")
    assert src.is_file()
    assert b"int64_t nvk_forward_step(" in src.read_bytes() and b"int64_t nvk_backward_step(" in src.read_bytes()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/cpuinfo")
def test_cpu_features_are_read_on_linux():
    f = ckernel._cpu_features()
    assert f is not None and f.split(":")[0] in ("flags", "Features", "isa") and len(f.split()) > 2
    assert os.path.exists("/proc/cpuinfo")


def test_nvmlstm_train_with_a_required_but_missing_kernel_is_one_line(fresh_load, monkeypatch, capsys, tmp_path):
    from nvmlstm.cli import main

    monkeypatch.setenv(ckernel.DISABLE_ENV, "1")
    monkeypatch.setenv(ckernel.REQUIRE_ENV, "1")
    rc = main(
        [
            "train",
            "--task",
            "digits",
            "--mode",
            "qat",
            "--epochs",
            "1",
            "--hidden",
            "4",
            "--no-progress",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    cap = capsys.readouterr()
    assert rc == 2
    assert cap.err == (
        "nvmlstm train: error: the native training kernel is required (NVMLSTM_REQUIRE_CKERNEL=1) "
        "but unavailable: NVMLSTM_NO_CKERNEL=1 is set\n"
    )
    assert not (tmp_path / "run" / "model.npz").exists()


def test_return_codes_of_the_c_source_are_the_ones_the_wrapper_decodes():
    # ckernel.c defines NVK_* and ckernel.py decodes them: the two lists must stay the same.
    import importlib.resources
    import re

    text = importlib.resources.files("nvmlstm.train").joinpath("ckernel.c").read_text()
    c_codes = {name: int(v) for name, v in re.findall(r"#define NVK_(\w+) (\d+)", text)}
    py_codes = {name[1:]: getattr(ckernel, name) for name in dir(ckernel) if re.fullmatch(r"_(OK|BAD_\w+)", name)}
    assert c_codes == py_codes and len(c_codes) == 10
