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
the tables are built from the same rules and golden tables, so the values are identical.

Backward: the straight-through estimator -- every rounding has derivative 1, every saturation derivative 1 where the
rounded value is inside its range and 0 outside, each table the derivative of the smooth function it samples
(`train.ops.Tables`). With ``z = step * a`` the step's gradient is LSQ's (Esser et al. 2020): ``a - v``
inside the ADC range and ``+-adc_max`` outside.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

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
        n_acc = 2 * R * k.adc_max + 1
        n_c = 2 * k.cell_max + 1
        gate_tab, _ = _gate_tables(gs, R, k, tab)
        col_off = (torch.arange(4).repeat_interleave(H) * n_acc + R * k.adc_max).to(dt)
        table_adc = pmax is not None and noise is None
        if table_adc:
            pdom = torch.arange(-pmax, pmax + 1, dtype=dt) / step
            t_ = torch.trunc(pdom)
            r = t_ + torch.where((pdom - t_).abs() >= 0.5, torch.sign(pdom), 0.0)  # exact round half away
            adc_tab = r.clamp(-k.adc_max, k.adc_max)
            am_tab = (r.abs() <= k.adc_max).to(dt) / step  # d a / d p (STE), for the backward
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
        KH = torch.empty(B, H, dtype=torch.long)
        CS[0].zero_()
        HS[0].zero_()
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
        _, fac_tab = _gate_tables(gs, R, k, tab)
        dgu = _take(fac_tab, KA)  # d gate / d acc
        cmask = (CRAW.abs() <= k.cell_max).to(dt).mul_(2.0 ** -F)
        kc = (CS[1:] + k.cell_max).long()
        O = GATES[..., 3 * H :]
        dq_o = _take(tab.dtanh_c, kc).mul_(O).mul_(kq)  # d h / d c (through tanh(c))
        TCk = _take(tab.tanh_c, kc).mul_(kq)  # d h / d o
        # d m / d(i, f, g) = (g, c_{t-1}, i) for every step, laid out like the gate columns, so that one
        # multiply per step gives the i, f, g part of d gates.
        G4 = GATES.view(T, B, 4, H)
        MIX = torch.stack([G4[:, :, 2], CS[:-1], G4[:, :, 0]], dim=2)  # (T, B, 3, H)
        F_ = G4[:, :, 1]
        DACC = ACC.new_empty(T, B, N)
        DP = ACC.new_empty(T, B, RN)
        dh = torch.zeros(B, H, dtype=dt)
        dc = torch.zeros(B, H, dtype=dt)
        wh_t = wh.t()
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
