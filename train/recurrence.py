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
    acc  = sum_r a                                      digital accumulation             (B, N)
    idx  = clip((acc * gate_scale + 2^(s-1)) >> s)      table index
    gate = table[idx]                                   sigmoid (i, f, o) / tanh (g) tables
    c    = clip((f c + i g + 2^(F-1)) >> F, +-cell_max)
    tc   = tanh_table[clip(c >> (F - lut_frac))]
    h    = clip((o tc dac_max + 2^(2F-1)) >> 2F, +-dac_max)

The loop evaluates this chain mostly as table lookups where the integer domain is small (see `forward`);
the tables are built from the same rules and golden tables, so the values are identical. For float32 with
exact integer dot products (noise-free QAT, the common case) the elementwise part of each timestep, forward
and backward, is one call of the native kernel of `train.ckernel` (same float32 operations, so the same
integers; ~2x faster per epoch); otherwise, or without a C compiler, the torch loop below runs.

Backward: the straight-through estimator -- every rounding has derivative 1, every saturation derivative 1 where the
rounded value is inside its range and 0 outside, each table the derivative of the smooth function it samples
(`train.ops.Tables`). With ``z = step * a`` the step's gradient is LSQ's (Esser et al. 2020): ``a - v``
inside the ADC range and ``+-adc_max`` outside.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import ckernel
from .ops import Tables


def _take(table: torch.Tensor, idx: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``table[idx]`` for a 1-D table: ``index_select`` on the flattened index (3x faster than torch.take
    on CPU at these sizes)."""
    if out is None:
        return table.index_select(0, idx.reshape(-1)).view(idx.shape)
    torch.index_select(table, 0, idx.reshape(-1), out=out.view(-1))
    return out

__all__ = ["RecurrenceConsts", "QuantRecurrence"]


@dataclass(frozen=True)
class RecurrenceConsts:
    """Config numbers of the recurrence (hashable, not tensors)."""

    hidden: int
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
    -> table entry is one lookup in a 4 x n_acc table built once per batch from the integer gate scales
    (the same `rshift_round`, saturation and golden table as the evaluation path). The factor is
    d(gate)/d(acc) = slope(idx) x [idx inside the table] x gs / 2^shift.
    """
    acc = torch.arange(-R * k.adc_max, R * k.adc_max + 1, dtype=gs.dtype)
    u = acc[None, :] * (gs[:, None] * 2.0 ** -k.scale_shift)
    idx = torch.floor(u + (0.5 if k.scale_shift else 0.0))
    inside = (idx >= k.lut_min) & (idx <= k.lut_max)
    kk = idx.clamp(k.lut_min, k.lut_max) - k.lut_min
    kk[2] += k.lut_size  # gate g reads the tanh half of the combined table
    kk = kk.long()
    gate = torch.take(tab.gate, kk)
    fac = torch.take(tab.dgate, kk) * inside * (gs[:, None] * 2.0 ** -k.scale_shift)
    return gate.reshape(-1), fac.reshape(-1)


def _adc_tables(step: torch.Tensor, pmax: int, k: RecurrenceConsts, dt: torch.dtype
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ADC transfer ``clip(round_half_away(p / step))`` over p in [-pmax, pmax] and its STE slope
    ``d a / d p`` ([|round| <= adc_max] / step), indexed by ``p + pmax``."""
    pdom = torch.arange(-pmax, pmax + 1, dtype=dt) / step
    t_ = torch.trunc(pdom)
    r = t_ + torch.where((pdom - t_).abs() >= 0.5, torch.sign(pdom), 0.0)  # exact round half away
    return r.clamp(-k.adc_max, k.adc_max), (r.abs() <= k.adc_max).to(dt) / step


def _col_offsets(R: int, k: RecurrenceConsts, dt: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Per gate column, the offset of its acc into the 4 x n_acc gate table (as ``dt`` and as int64)."""
    n_acc = 2 * R * k.adc_max + 1
    off = torch.arange(4).repeat_interleave(k.hidden) * n_acc + R * k.adc_max
    return off.to(dt), off


def _derived(tab: Tables, key: tuple, build):
    """``build()`` cached per ``key`` in ``tab.derived`` (the key holds every number the result depends on;
    the table dtype is the one of ``tab``). Bounded: cleared when it grows past 256 entries."""
    hit = tab.derived.get(key)
    if hit is None:
        if len(tab.derived) > 256:
            tab.derived.clear()
        hit = tab.derived[key] = build()
    return hit


def _forward_native(lib, pre2p, wh, adc_tab, gate_tab, col_off, h_oc, k: RecurrenceConsts,
                    KP, ACC, KA, GATES, CRAW, CS, HS) -> None:
    """The forward loop of `QuantRecurrence` (table ADC, float32) with the native kernel: per timestep the
    GEMM ``p = pre + pmax + h_{t-1} @ Wh`` in torch, then one ``fwd_step`` call for the elementwise chain,
    writing the same buffers the torch loop writes.

    ``pre2p`` (T, B, R*N) is ``pre + pmax`` (so the ADC-table index is ``p`` itself). Pointers into the
    preallocated buffers are plain integer arithmetic: no tensor is created per timestep except the GEMM's.
    """
    T, B, RN = pre2p.shape
    N, H = ACC.shape[2], k.hidden
    R = RN // N
    f4, i8 = 4, 8  # bytes of float32 / int64
    P = pre2p.new_empty(B, RN)
    consts = (B, R, N, H)
    tabs = (adc_tab.data_ptr(), gate_tab.data_ptr(), col_off.data_ptr(), h_oc.data_ptr(),
            2 * k.cell_max + 1, k.cell_max, 2.0 ** -k.frac_bits)
    kp, acc, ka, gat, craw, cs, hs = (a.data_ptr() for a in (KP, ACC, KA, GATES, CRAW, CS, HS))
    for t in range(T):
        p = pre2p[0] if t == 0 else torch.addmm(pre2p[t], HS[t], wh, out=P)  # h_0 = 0: no GEMM
        lib.fwd_step(*consts, p.data_ptr(), *tabs, cs + t * B * H * f4,
                     kp + t * B * RN * i8, acc + t * B * N * f4, ka + t * B * N * i8, gat + t * B * N * f4,
                     craw + t * B * H * f4, cs + (t + 1) * B * H * f4, hs + (t + 1) * B * H * f4)


def _backward_native(lib, dhs, wh_t, GATES, KA, ACC, CS, CRAW, KP, am_tab, fac_tab, tab: Tables,
                     k: RecurrenceConsts, pmax: int, DP) -> tuple[torch.Tensor, torch.Tensor]:
    """The BPTT loop of `QuantRecurrence` with the native kernel: per timestep one ``bwd_step`` call for
    the elementwise STE chain (filling ``DP[t]``; the STE factors are looked up inside the call) and the
    GEMM ``dh_{t-1} = dp @ Wh^T``.

    Returns ``sum(dp * p)`` (the LSQ step gradient is ``-that / step``) and the four per-gate sums of
    ``d acc * acc`` (the gate-scale gradients times the gate scales), accumulated in float64 by the kernel.
    """
    T, B, N = ACC.shape
    H = k.hidden
    RN = DP.shape[2]
    R = RN // N
    f4, i8 = 4, 8  # bytes of float32 / int64
    dh = ACC.new_zeros(B, H)
    dc = ACC.new_zeros(B, H)
    dacc = ACC.new_empty(B, N)  # d acc of the current step (consumed by the kernel's sums)
    sums = torch.zeros(5, dtype=torch.float64)
    bh, bn, brn = B * H, B * N, B * RN
    dhs_, gat_, ka_, acc_, cs_, cr_, kp_, dp_ = (a.data_ptr() for a in (dhs, GATES, KA, ACC, CS, CRAW, KP, DP))
    tabs = (am_tab.data_ptr(), fac_tab.data_ptr(), tab.tanh_c.data_ptr(), tab.dtanh_c.data_ptr(),
            k.cell_max, 2.0 ** -k.frac_bits, k.dac_max * 2.0 ** (-2 * k.frac_bits), pmax)
    fixed = (dh.data_ptr(), dc.data_ptr())
    tail = (dacc.data_ptr(),)
    for t in range(T - 1, -1, -1):
        lib.bwd_step(B, R, N, H, *fixed, dhs_ + t * bh * f4,
                     gat_ + t * bn * f4, ka_ + t * bn * i8, acc_ + t * bn * f4,
                     cs_ + t * bh * f4, cs_ + (t + 1) * bh * f4, cr_ + t * bh * f4, kp_ + t * brn * i8,
                     *tabs, *tail, dp_ + t * brn * f4, sums.data_ptr())
        if t > 0:
            torch.mm(DP[t], wh_t, out=dh)
    return sums[4], sums[:4]


class QuantRecurrence(torch.autograd.Function):
    """``h_all = QuantRecurrence.apply(pre, wh, step, gs, noise, pmax, consts, tables)``.

    Parameters
    ----------
    pre : Tensor (T, B, R, N)
        The part of every row tile's dot product that does not depend on h: input rows and the bias row.
    wh : Tensor (H, R * N)
        Recurrent weight codes, row-tiled (`train.exact.tile_matrix` layout).
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

    Returns
    -------
    Tensor (T, B, H): h codes of every timestep.
    """

    @staticmethod
    def forward(ctx, pre, wh, step, gs, noise, pmax, k: RecurrenceConsts, tab: Tables):  # noqa: D401
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
        gate_tab, fac_tab = _derived(tab, ("gate", k, R, tuple(gs.tolist())), lambda: _gate_tables(gs, R, k, tab))
        col_off, col_off_i = _derived(tab, ("col", k, R), lambda: _col_offsets(R, k, dt))
        table_adc = pmax is not None and noise is None
        if table_adc:
            adc_tab, am_tab = _derived(tab, ("adc", k, pmax, float(step)), lambda: _adc_tables(step, pmax, k, dt))
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
        lib = ckernel.load() if table_adc and dt == torch.float32 and N == 4 * H else None
        if lib is not None:
            # The native kernel (train/ckernel.py): per timestep one GEMM and one C call for the rest.
            _forward_native(lib, pre2.add(pmax), wh, adc_tab, gate_tab, col_off_i, tab.h_oc, k,
                            KP, ACC, KA, GATES, CRAW, CS, HS)
        else:
            KH = torch.empty(B, H, dtype=torch.long)
            for t in range(T):
                p = pre2[0].clone() if t == 0 else torch.addmm(pre2[t], HS[t], wh)
                if table_adc:
                    kp = KP[t]
                    kp.copy_(p.add_(pmax))  # exact: integers
                    a = _take(adc_tab, kp)
                else:
                    v = torch.div(p, step, out=V[t])
                    if noise is not None:
                        v.add_(noise[t].reshape(B, R * N))
                    # Round half away as sign(v) floor(|v| + 1/2): with noise there is no exact tie to protect.
                    a = v.abs().add_(0.5).floor_().clamp_(max=k.adc_max).mul_(torch.sign(v))
                acc = torch.sum(a.view(B, R, N), 1, out=ACC[t])
                KA[t].copy_(acc + col_off)
                gates = _take(gate_tab, KA[t], out=GATES[t])
                i, f, g, o = gates.view(B, 4, H).unbind(1)
                m = f * CS[t]
                m.addcmul_(i, g)
                craw = torch.mul(m, 2.0 ** -F, out=CRAW[t]).add_(0.5).floor_()
                c = torch.clamp(craw, -k.cell_max, k.cell_max, out=CS[t + 1])
                KH.copy_(torch.add(c, o, alpha=n_c).add_(k.cell_max))
                _take(tab.h_oc, KH, out=HS[t + 1])
        ctx.native, ctx.fac_tab = lib, fac_tab
        ctx.k, ctx.tab, ctx.table_adc, ctx.pmax = k, tab, table_adc, pmax
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
        RN = wh.shape[1]
        R = RN // N
        F = k.frac_bits
        dt = ACC.dtype
        if ctx.native is not None:
            # Native kernel: the STE factors are looked up per timestep inside the kernel.
            KP, am_tab = X1, X2
            DP = ACC.new_empty(T, B, RN)
            sdp, sg = _backward_native(ctx.native, dhs.to(dt).contiguous(), wh.t(), GATES, KA, ACC, CS, CRAW, KP,
                                       am_tab, ctx.fac_tab, tab, k, ctx.pmax, DP)
            dwh = HS[:-1].reshape(T * B, H).t() @ DP.reshape(T * B, RN) if ctx.needs_input_grad[1] else None
            dstep = (-sdp / step).to(dt) if ctx.needs_input_grad[2] else None
            dgs = (sg / gs).to(dt) if ctx.needs_input_grad[3] else None
            return DP.view(T, B, R, N), dwh, dstep, dgs, None, None, None, None
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
        cmask = (CRAW.abs() <= k.cell_max).to(dt).mul_(2.0 ** -F)
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
                dh = dp.view(B, RN) @ wh_t
        dwh = HS[:-1].reshape(T * B, H).t() @ DP.reshape(T * B, RN) if ctx.needs_input_grad[1] else None
        dstep = -(DP * vclean).sum() if ctx.needs_input_grad[2] else None
        dgs = (DACC * ACC).view(T, B, 4, H).sum((0, 1, 3)).div_(gs) if ctx.needs_input_grad[3] else None
        return DP.view(T, B, R, N), dwh, dstep, dgs, None, None, None, None
