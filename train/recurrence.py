"""The quantized LSTM recurrence as one autograd function with a hand-written backward (BPTT).

Why a custom function: per timestep the contract is some 25 small elementwise operations (ADC rounding and
clipping, the tile sum, the gate scale, two table lookups, the fixed-point cell update, the h requantizer).
Recorded op by op by autograd, each costs a graph node in the forward and a Python-dispatched backward
function, and a QAT epoch costs 5-10x a plain ``torch.nn.LSTM``. Here the forward runs the loop without a
graph, saves what the backward needs, and the backward is the same loop reversed -- about as many tensor
operations as the forward, no graph. ``tests/test_train_model.py`` checks its gradients against the same
forward written with ordinary autograd operations.

Forward (per timestep, all in float tensors holding integers; `docs/datapath.md` sections 3-7)::

    p    = pre[t] + h_{t-1} @ Wh                       dot products of every row tile   (B, R, N)
    v    = p / step (+ ADC noise in LSB)
    a    = clip(round_half_away(v), +-adc_max)         ADC codes
    acc  = sum_r a  (+ acc_in[t])                       digital accumulation             (B, N)
    idx  = clip((acc * gate_scale + 2^(s-1)) >> s)      table index
    gate = table[idx]                                   sigmoid (i, f, o) / tanh (g) tables
    c    = clip((f c + i g + 2^(F-1)) >> F, +-cell_max)
    tc   = tanh_table[clip(c >> (F - lut_frac))]
    h    = clip((o tc dac_max + 2^(2F-1)) >> 2F, +-dac_max)

Row tiles that hold only input rows do not depend on h: with the native kernel and exact dot products their
ADC codes are computed for every timestep before the loop (`InputTiles`) and enter it summed, as ``acc_in``
(added to ``acc``); the loop then converts only the tiles that hold h rows or the bias row.

The loop evaluates this chain mostly as table lookups where the integer domain is small (see `forward`);
the tables are built by the golden definitions themselves (`nvmlstm.golden.datapath.adc_convert` for the ADC,
`nvmlstm.golden.quant.rshift_round` for the gate index, the golden tables), so the values are identical.
For float32 with exact integer dot products (noise-free QAT, the common case) the elementwise part of each
timestep, forward and backward, is one call of the native kernel of `nvmlstm.train.ckernel` (same float32
operations, so the same integers; a QAT epoch ~1.4x faster); otherwise, or without a C compiler, the torch
loop below runs.

Backward: the straight-through estimator -- every rounding has derivative 1, every saturation derivative 1 where the
rounded value is inside its range and 0 outside, each table the derivative of the smooth function it samples
(`train.ops.Tables`). With ``z = step * a`` the step's gradient is LSQ's (Esser et al. 2020): ``a - v``
inside the ADC range and ``+-adc_max`` outside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nvmlstm.golden.datapath import adc_convert
from nvmlstm.golden.quant import rshift_round as np_rshift_round

from . import ckernel
from .exact import distinct_rows, seg_addmm_, seg_grad, seg_mm_t
from .ops import Tables, adc_round, rshift_round


def _take(table: torch.Tensor, idx: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``table[idx]`` for a 1-D table: ``index_select`` on the flattened index (3x faster than torch.take
    on CPU at these sizes)."""
    if out is None:
        return table.index_select(0, idx.reshape(-1)).view(idx.shape)
    torch.index_select(table, 0, idx.reshape(-1), out=out.view(-1))
    return out


__all__ = ["RecurrenceConsts", "QuantRecurrence", "InputTiles", "native_kernel"]


@dataclass(frozen=True)
class RecurrenceConsts:
    """Config numbers of the recurrence (hashable, not tensors)."""

    hidden: int
    adc_bits: int
    adc_max: int
    lut_min: int
    lut_max: int
    lut_size: int
    scale_shift: int
    frac_bits: int
    lut_frac: int
    cell_max: int
    dac_max: int


def _gate_tables(gs: torch.Tensor, R: int, k: RecurrenceConsts, tab: Tables) -> tuple[torch.Tensor, torch.Tensor]:
    """Gate value and its backward factor for every (gate, accumulator value): (4 * n_acc,) each.

    The accumulator of R row tiles takes only ``2 R adc_max + 1`` values, so the chain acc -> table index
    -> table entry is one lookup in a 4 x n_acc table built once per batch from the integer gate scales,
    with golden's own `rshift_round` and saturation (`nvmlstm.golden.datapath.gate_index`'s rule) and the
    golden table. The factor is d(gate)/d(acc) = slope(idx) x [idx inside the table] x gs / 2^shift.
    """
    acc = np.arange(-R * k.adc_max, R * k.adc_max + 1, dtype=np.int64)
    gsi = np.asarray(gs.tolist(), dtype=np.int64)  # integer-valued (rounded in `QuantLSTM.quant_params`)
    idx = np_rshift_round(acc[None, :] * gsi[:, None], k.scale_shift)
    inside = torch.from_numpy((idx >= k.lut_min) & (idx <= k.lut_max))
    kk = np.clip(idx, k.lut_min, k.lut_max) - k.lut_min
    kk[2] += k.lut_size  # gate g reads the tanh half of the combined table
    kk = torch.from_numpy(kk)
    gate = torch.take(tab.gate, kk)
    fac = torch.take(tab.dgate, kk) * inside * (gs[:, None] * 2.0**-k.scale_shift)
    return gate.reshape(-1), fac.reshape(-1)


def _adc_tables(
    step: torch.Tensor, pmax: int, k: RecurrenceConsts, dt: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ADC transfer over p in [-pmax, pmax] -- golden's `adc_convert` itself -- and its STE slope
    ``d a / d p`` ([|round(p / step)| <= adc_max] / step), indexed by ``p + pmax``."""
    s = int(step)  # integer-valued (rounded in `QuantLSTM._step`)
    p = np.arange(-pmax, pmax + 1, dtype=np.int64)
    # |round_half_away(p / s)| <= adc_max  <=>  |p / s| < adc_max + 1/2, decided exactly in integers.
    inside = 2 * np.abs(p) < (2 * k.adc_max + 1) * s
    codes = torch.from_numpy(adc_convert(p, s, k.adc_bits)).to(dt)
    return codes, torch.from_numpy(inside).to(dt) / step


def _col_offsets(R: int, k: RecurrenceConsts, dt: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Per gate column, the offset of its acc into the 4 x n_acc gate table (as ``dt`` and as int64)."""
    n_acc = 2 * R * k.adc_max + 1
    off = torch.arange(4).repeat_interleave(k.hidden) * n_acc + R * k.adc_max
    return off.to(dt), off


def native_kernel(pmax: int | None, noisy: bool, dtype: torch.dtype):
    """The native kernel if it runs this recurrence, else ``None``: float32 with exact integer dot products
    (``pmax`` given: the table ADC) and no ADC noise, and the kernel loadable. `InputTiles` needs it too, so
    the model splits off the input tiles exactly when this returns the kernel."""
    if pmax is None or noisy or dtype != torch.float32:
        return None
    return ckernel.load()


def _derived(tab: Tables, key: tuple, build):
    """``build()`` cached per ``key`` in ``tab.derived`` (the key holds every number the result depends on;
    the table dtype is the one of ``tab``). Bounded: cleared when it grows past 256 entries."""
    hit = tab.derived.get(key)
    if hit is None:
        if len(tab.derived) > 256:
            tab.derived.clear()
        hit = tab.derived[key] = build()
    return hit


class QuantRecurrence(torch.autograd.Function):
    """``h_all = QuantRecurrence.apply(pre, wh, step, gs, noise, pmax, consts, tables[, hseg, acc_in, r_in])``.

    Parameters
    ----------
    pre : Tensor (T, B, R, N)
        The part of every row tile's dot product that does not depend on h: input rows and the bias row.
    wh : Tensor (H, R * N) or (H, N)
        Recurrent weight codes, row-tiled (`train.exact.tile_matrix` layout); with ``hseg`` the compact
        (H, N) rows of the transposed weight codes.
    step : Tensor ()
        The layer's (integer-valued) ADC step.
    gs : Tensor (4,)
        The integer gate scales of gates i, f, g, o.
    noise : Tensor (T, B, R, N) or None
        ADC input-referred noise in LSB, added to ``p / step`` before rounding.
    pmax : int or None
        Bound of |p| when the dot products are exact integers (noise-free weights): the ADC is then one
        lookup in a table of its transfer over [-pmax, pmax]. ``None``: the ADC formula (noisy weights
        or ADC noise make p real).
    hseg : tuple of (r, a, b), optional
        `train.exact.tile_segments` of the h rows: ``h @ W_h`` and its gradients are computed per row-tile
        segment of the compact ``wh`` (the same integers, 1/R of the multiply-adds); ``r`` counts the tiles
        of ``pre``.
    acc_in : Tensor (T, B, N), optional
        The summed ADC codes of ``r_in`` further row tiles converted before the loop (`InputTiles`: tiles
        of input rows only), added to every step's accumulator; its gradient is d(loss)/d acc.
    r_in : int
        How many tiles ``acc_in`` sums (the gate tables cover the accumulator of ``R + r_in`` tiles).

    Returns
    -------
    Tensor (T, B, H): h codes of every timestep.
    """

    @staticmethod
    def forward(
        ctx,
        pre,
        wh,
        step,
        gs,
        noise,
        pmax,
        k: RecurrenceConsts,
        tab: Tables,  # noqa: D401
        hseg=None,
        acc_in=None,
        r_in=0,
    ):
        # Only the sequential chain runs per timestep, mostly as table lookups (each torch op costs a few
        # microseconds of dispatch, which at these sizes is most of the time); everything elementwise the
        # backward needs (masks, slopes) is gathered once over all timesteps afterwards.
        T, B, R, N = pre.shape
        H = k.hidden
        F = k.frac_bits
        dt = pre.dtype
        n_c = 2 * k.cell_max + 1
        # The tables depend only on a few integers (gate scales, step) that change rarely between batches:
        # built once per value (`_derived`), not per batch (they cost ~30 small tensor ops).
        Ra = R + r_in  # tiles in the accumulator
        gate_tab, fac_tab = _derived(tab, ("gate", k, Ra, tuple(gs.tolist())), lambda: _gate_tables(gs, Ra, k, tab))
        col_off, col_off_i = _derived(tab, ("col", k, Ra), lambda: _col_offsets(Ra, k, dt))
        table_adc = pmax is not None and noise is None
        if table_adc:
            adc_tab, am_tab = _derived(tab, ("adc", k, pmax, float(step)), lambda: _adc_tables(step, pmax, k, dt))
        lib = native_kernel(pmax, noise is not None, dt) if N == 4 * H else None
        if lib is not None:
            # The native kernel (train/ckernel.py): per timestep one GEMM and one C call for the rest.
            KP, ACC, KA, GATES, CRAW, CS, HS = lib.forward(
                pre,
                wh,
                pmax=pmax,
                adc_tab=adc_tab,
                gate_tab=gate_tab,
                col_off=col_off_i,
                h_oc=tab.h_oc,
                cell_max=k.cell_max,
                frac_bits=F,
                hseg=hseg,
                acc_in=acc_in,
                acc_in_max=r_in * k.adc_max,
            )
        else:
            if table_adc:
                KP = torch.empty(T, B, R * N, dtype=torch.long)  # p + pmax
            else:
                V = pre.new_empty(T, B, R * N)  # p / step + noise: the ADC input in LSB
            pre2 = pre.reshape(T, B, R * N)
            ACC = pre.new_empty(T, B, N)
            KA = torch.empty(T, B, N, dtype=torch.long)  # gate-table index of acc
            GATES = pre.new_empty(T, B, N)
            CRAW = pre.new_empty(T, B, H)  # c_t before saturation
            CS = pre.new_empty(T + 1, B, H)  # CS[0] = c_0 = 0
            HS = pre.new_empty(T + 1, B, H)  # HS[0] = h_0 = 0, HS[t+1] = h_t
            CS[0].zero_()
            HS[0].zero_()
            KH = torch.empty(B, H, dtype=torch.long)
            for t in range(T):
                if t == 0:
                    p = pre2[0].clone()
                elif hseg is None:
                    p = torch.addmm(pre2[t], HS[t], wh)
                else:
                    p = seg_addmm_(pre2[t].clone().view(B, R, N), HS[t], wh, hseg).view(B, R * N)
                if table_adc:
                    kp = KP[t]
                    kp.copy_(p.add_(pmax))  # exact: integers
                    a = _take(adc_tab, kp)
                else:
                    v = torch.div(p, step, out=V[t])
                    if noise is not None:
                        v.add_(noise[t].reshape(B, R * N))
                    a = adc_round(v).clamp_(-k.adc_max, k.adc_max)
                acc = torch.sum(a.view(B, R, N), 1, out=ACC[t])
                if acc_in is not None:
                    acc.add_(acc_in[t])
                KA[t].copy_(acc + col_off)
                gates = _take(gate_tab, KA[t], out=GATES[t])
                i, f, g, o = gates.view(B, 4, H).unbind(1)
                m = f * CS[t]
                m.addcmul_(i, g)
                craw = rshift_round(m, F, out=CRAW[t])
                c = torch.clamp(craw, -k.cell_max, k.cell_max, out=CS[t + 1])
                KH.copy_(torch.add(c, o, alpha=n_c).add_(k.cell_max))
                _take(tab.h_oc, KH, out=HS[t + 1])
        ctx.native, ctx.fac_tab = lib, fac_tab
        ctx.k, ctx.tab, ctx.table_adc, ctx.pmax, ctx.hseg = k, tab, table_adc, pmax, hseg
        ctx.acc_in = acc_in is not None
        saved = [wh, step, gs, ACC, KA, GATES, CRAW, CS, HS]
        if table_adc:
            saved += [KP, am_tab]
        else:
            saved += [V, V if noise is None else V - noise.reshape(T, B, R * N)]
        ctx.save_for_backward(*saved)
        return HS[1:]

    @staticmethod
    def backward(ctx, dhs):
        wh, step, gs, ACC, KA, GATES, CRAW, CS, HS, X1, X2 = ctx.saved_tensors
        k, tab = ctx.k, ctx.tab
        T, B, N = ACC.shape
        H = k.hidden
        hseg = ctx.hseg
        R = X1.shape[2] // N  # KP or V: (T, B, R * N)
        RN = R * N
        F = k.frac_bits
        dt = ACC.dtype
        if ctx.native is not None:
            # Native kernel: the STE factors are looked up per timestep inside the kernel.
            KP, am_tab = X1, X2
            fwd = ckernel.ForwardState(KP, ACC, KA, GATES, CRAW, CS, HS)
            DP, sums, DACC = ctx.native.backward(
                dhs.to(dt).contiguous(),
                wh,
                fwd,
                pmax=ctx.pmax,
                am_tab=am_tab,
                fac_tab=ctx.fac_tab,
                tanh_c=tab.tanh_c,
                dtanh_c=tab.dtanh_c,
                cell_max=k.cell_max,
                frac_bits=F,
                dac_max=k.dac_max,
                hseg=hseg,
            )
            dwh = _dwh(HS, DP, hseg, T, B, H, R, N) if ctx.needs_input_grad[1] else None
            dstep = (-sums[4] / step).to(dt) if ctx.needs_input_grad[2] else None
            dgs = (sums[:4] / gs).to(dt) if ctx.needs_input_grad[3] else None
            dacc_in = DACC if ctx.acc_in else None
            return DP.view(T, B, R, N), dwh, dstep, dgs, None, None, None, None, None, dacc_in, None
        kq = k.dac_max * 2.0 ** (-2 * F)
        # Elementwise factors of every timestep at once (STE: rounding slope 1, saturation slope 1 where
        # the rounded value is inside the range, tables the slope of their smooth function).
        if ctx.table_adc:
            KP, am_tab = X1, X2
            amask = _take(am_tab, KP)  # d a / d p
            vclean = (KP.to(dt) - ctx.pmax) / step
        else:
            V, vclean = X1, X2
            amask = (V.abs().add(0.5).floor() <= k.adc_max).to(dt) / step
        dgu = _take(ctx.fac_tab, KA)  # d gate / d acc
        cmask = (CRAW.abs() <= k.cell_max).to(dt).mul_(2.0**-F)
        kc = (CS[1:] + k.cell_max).long()
        O = GATES[..., 3 * H :]
        dq_o = _take(tab.dtanh_c, kc).mul_(O).mul_(kq)  # d h / d c (through tanh(c))
        TCk = _take(tab.tanh_c, kc).mul_(kq)  # d h / d o
        DACC = ACC.new_empty(T, B, N)
        DP = ACC.new_empty(T, B, RN)
        wh_t = wh.t()
        # d m / d(i, f, g) = (g, c_{t-1}, i) for every step, laid out like the gate columns, so that one
        # multiply per step gives the i, f, g part of d gates.
        G4 = GATES.view(T, B, 4, H)
        MIX = torch.stack([G4[:, :, 2], CS[:-1], G4[:, :, 0]], dim=2)  # (T, B, 3, H)
        F_ = G4[:, :, 1]
        dh = torch.zeros(B, H, dtype=dt)
        dc = torch.zeros(B, H, dtype=dt)
        for t in range(T - 1, -1, -1):
            dh = dh + dhs[t]
            dc = dc.addcmul_(dh, dq_o[t])
            dm = dc.mul_(cmask[t])
            dg4 = DACC[t].view(B, 4, H)
            torch.mul(MIX[t], dm.unsqueeze(1), out=dg4[:, :3])
            torch.mul(dh, TCk[t], out=dg4[:, 3])
            dacc = DACC[t].mul_(dgu[t])
            dc = dm * F_[t]
            dp = torch.mul(dacc.unsqueeze(1), amask[t].view(B, R, N), out=DP[t].view(B, R, N))
            if t > 0:
                dh = dp.view(B, RN) @ wh_t if hseg is None else seg_mm_t(dp, wh, hseg, dh.new_empty(B, H))
        dwh = _dwh(HS, DP, hseg, T, B, H, R, N) if ctx.needs_input_grad[1] else None
        dstep = -(DP * vclean).sum() if ctx.needs_input_grad[2] else None
        dgs = (DACC * ACC).view(T, B, 4, H).sum((0, 1, 3)).div_(gs) if ctx.needs_input_grad[3] else None
        dacc_in = DACC if ctx.acc_in else None
        return DP.view(T, B, R, N), dwh, dstep, dgs, None, None, None, None, None, dacc_in, None


class InputTiles(torch.autograd.Function):
    """``acc_in = InputTiles.apply(x, wt, step, pmax, segs, consts, tables[, distinct])``: the ADC codes of the
    row tiles that hold only input rows, summed over those tiles, for every timestep at once.

    Why: such a tile's dot products do not depend on h, so converting them inside the recurrence (once per
    timestep, forward and backward) is sequential work that need not be: here each tile is one GEMM and one
    pass of the native kernel over all timesteps, and `QuantRecurrence` adds the sum as ``acc_in`` (at the
    charlm default, 8 of 13 row tiles leave the loop). Native kernel only (float32, exact integer dot
    products: the table ADC); the same integers as converting them in the loop (tested).

    Parameters
    ----------
    x : Tensor (M, n)
        Input codes, M = timesteps x sequences (the first layer's carry no gradient, a deeper layer's are the
        h codes of the layer below).
    wt : Tensor (n, N)
        The input rows of the transposed weight codes.
    step : Tensor ()
        The layer's (integer-valued) ADC step.
    pmax : int
        Bound of |p| (`QuantRecurrence`).
    segs : tuple of (r, a, b)
        `train.exact.input_only_tiles`: tile r holds rows ``a..b-1`` of ``x``.
    distinct : bool
        When ``x`` carries no gradient and at most half of its rows are distinct (`train.exact.distinct_rows`;
        character-level input: 49-65 of 2,048 per charlm batch), compute and convert each distinct row once
        and gather the result; the backward sums each distinct row's gradient over the rows it stands for.
        The same integers; the gradients equal to float rounding (tested). At the charlm default a QAT epoch
        costs 1.9x our fp mode with it, 2.7x without (docs/performance.md).

    Returns
    -------
    Tensor (M, N): the sum over the tiles of their ADC codes.
    """

    @staticmethod
    def forward(ctx, x, wt, step, pmax, segs, k: RecurrenceConsts, tab: Tables, distinct: bool = True):  # noqa: D401
        lib = ckernel.load()
        if lib is None:
            raise RuntimeError("InputTiles needs the native kernel (train.ckernel.load() returned None)")
        adc_tab, am_tab = _derived(tab, ("adc", k, pmax, float(step)), lambda: _adc_tables(step, pmax, k, x.dtype))
        inv = None
        if distinct and not ctx.needs_input_grad[0]:
            u, inv = distinct_rows(x)
            if 2 * u.shape[0] > x.shape[0]:  # too few repeats to pay for the gather and the scatter
                inv = None
            else:
                x = u
        acc = x.new_zeros(x.shape[0], wt.shape[1])
        kps = [lib.input_tile(x[:, a:b] @ wt[a:b], acc, pmax=pmax, adc_tab=adc_tab) for _, a, b in segs]
        ctx.save_for_backward(x, wt, step, am_tab, inv, *kps)
        ctx.lib, ctx.pmax, ctx.segs, ctx.n = lib, pmax, segs, wt.shape[0]
        return acc if inv is None else acc.index_select(0, inv)

    @staticmethod
    def backward(ctx, dacc):
        x, wt, step, am_tab, inv, *kps = ctx.saved_tensors
        if inv is not None:
            # Every distinct row's gradient is the sum over the rows it stands for (the STE factors, the
            # weights' and the step's gradients are linear in it).
            dacc = dacc.new_zeros(x.shape[0], dacc.shape[1]).index_add_(0, inv, dacc)
        dacc = dacc.contiguous()
        dx = torch.zeros_like(x) if ctx.needs_input_grad[0] else None
        dwt = x.new_zeros(ctx.n, dacc.shape[1]) if ctx.needs_input_grad[1] else None
        dp = torch.empty_like(dacc)
        total = 0.0
        for (_, a, b), kp in zip(ctx.segs, kps):
            total += ctx.lib.input_tile_backward(dacc, kp, dp, pmax=ctx.pmax, am_tab=am_tab)
            if dwt is not None:
                torch.mm(x[:, a:b].t(), dp, out=dwt[a:b])
            if dx is not None:
                dx[:, a:b] = dp @ wt[a:b].t()
        dstep = (torch.tensor(-total, dtype=torch.float64) / step).to(dacc.dtype) if ctx.needs_input_grad[2] else None
        return dx, dwt, dstep, None, None, None, None, None


def _dwh(HS: torch.Tensor, DP: torch.Tensor, hseg, T: int, B: int, H: int, R: int, N: int) -> torch.Tensor:
    """Gradient of the recurrent weights: ``h_{t-1}^T dp`` over all timesteps (tiled or per segment)."""
    if hseg is None:
        return HS[:-1].reshape(T * B, H).t() @ DP.reshape(T * B, R * N)
    return seg_grad(HS[:-1].reshape(T * B, H), DP.reshape(T * B, R, N), hseg, H)
