"""The quantized recurrence written with ordinary autograd operations and `train.ops.ste`: the specification
the hand-written backward of `train.recurrence.QuantRecurrence` must reproduce (tests/test_train_model.py)."""

from __future__ import annotations

import torch  # imported only by tests that skip without torch (pytest.importorskip)

from nvmlstm.train.ops import round_half_away, rshift_round, ste


def _table_ste(idx: torch.Tensor, table: torch.Tensor, dtable: torch.Tensor, lo: int) -> torch.Tensor:
    # Forward: the table entry; backward: the smooth function's derivative at the (rounded) index.
    val = torch.take(table, (idx.detach() - lo).long())
    slope = torch.take(dtable, (idx.detach() - lo).long())
    return val + slope * (idx - idx.detach())


def reference_recurrence(pre, wh, step, gsc, noise, k, tab):
    T, B, R, N = pre.shape
    H = k.hidden
    F = k.frac_bits
    h = pre.new_zeros(B, H)
    c = pre.new_zeros(B, H)
    hs = []
    lo, hi = k.lut_min, k.lut_max
    sig, dsig = tab.gate[: k.lut_size], tab.dgate[: k.lut_size]
    for t in range(T):
        p = pre[t] + (h @ wh).view(B, R, N)
        v = p / step
        if noise is not None:
            v = v + noise[t]
        a = ste(round_half_away(v), v).clamp(-k.adc_max, k.adc_max)
        acc = a.sum(1)
        u = acc * gsc * 2.0**-k.scale_shift
        idx = ste(rshift_round(acc * gsc, k.scale_shift), u).clamp(lo, hi)
        i = _table_ste(idx[:, :H], sig, dsig, lo)
        f = _table_ste(idx[:, H : 2 * H], sig, dsig, lo)
        g = _table_ste(idx[:, 2 * H : 3 * H], tab.tanh, tab.dtanh, lo)
        o = _table_ste(idx[:, 3 * H :], sig, dsig, lo)
        m = f * c + i * g
        c = ste(rshift_round(m, F), m * 2.0**-F).clamp(-k.cell_max, k.cell_max)
        sh = F - k.lut_frac
        tidx = ste(rshift_round(c, sh), c * 2.0**-sh).clamp(lo, hi)
        tc = _table_ste(tidx, tab.tanh, tab.dtanh, lo)
        q = o * tc * k.dac_max
        h = ste(rshift_round(q, 2 * F), q * 2.0 ** (-2 * F)).clamp(-k.dac_max, k.dac_max)
        hs.append(h)
    return torch.stack(hs)
