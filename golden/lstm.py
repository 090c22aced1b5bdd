"""The integer inference path of the whole network (LSTM layers + dense head), vectorized over a batch.

`golden_forward` is the reference the RTL is compared with, bit for bit. It applies the stage functions of
`golden.datapath` in the order of `docs/datapath.md`. For speed, a stage (or a chain of stages) whose
integer domain is small is applied as a table made by evaluating those same stage functions over the whole
domain (so there is one definition); a larger domain falls back to calling the functions.
`tests/naive.py` is the slow, obviously correct loop this module must equal exactly; `docs/performance.md`
explains the optimizations.

Trace keys (arrays are sequence-major, ``S`` sequences x ``T`` timesteps, int32):

``inputs`` (S, T, I)
    Input DAC codes x_t.
``l{l}_adc`` (S, T, R_l, 4H)
    ADC code of every column (gate-major: i, f, g, o) of every row tile ``R_l`` of layer ``l``.
``l{l}_acc`` (S, T, 4H)
    ADC codes summed over the row tiles.
``l{l}_idx`` (S, T, 4H)
    Activation-table index (scaled pre-activation).
``l{l}_gates`` (S, T, 4H)
    Gate outputs (sigmoid for i, f, o; tanh for g), ``frac_bits`` fractional bits.
``l{l}_c`` (S, T, H), ``l{l}_tanh_c`` (S, T, H)
    Cell state c_t and tanh(c_t), ``frac_bits`` fractional bits.
``l{l}_h`` (S, T, H)
    h_t DAC codes (the next layer's input, the next timestep's recurrent input).
``head_adc`` (S, T, R_head, O)
    ADC codes of the head's row tiles.
``outputs`` (S, T, O)
    Output codes: head ADC codes summed over row tiles.
``h`` (S, T, H)
    The last layer's h codes (same as ``l{L-1}_h``).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable

import numpy as np

from .config import LstmConfig
from .datapath import GATE_IS_TANH, activation, adc_convert, gate_index, requant_h, tanh_cell_index
from .model import LayerParams, QuantizedModel
from .nvm import NonIdealities, ProgrammedArray, row_tile_bounds

__all__ = ["golden_forward", "check_input_codes", "InputError"]

# Largest integer domain (entries) that is turned into a table; beyond it the stage function is called.
_TABLE_LIMIT = 1 << 22

# The ideal batch is split into two halves run by two threads when each half has at least this many
# sequences. numpy's ufuncs and np.take release the GIL, so the halves' elementwise work runs on both cores;
# the GEMMs of the halves are serialized by a lock because OpenBLAS already spreads one GEMM over the cores
# and two concurrent multi-threaded GEMMs oversubscribe them (measured: about 2x slower than in turn).
_MIN_THREAD_CHUNK = 256

# Position of the o gate in the gate order i, f, g, o.
_O_GATE = 3


class InputError(ValueError):
    """Input codes of the wrong shape, dtype or range."""


def _validated_codes(inputs: np.ndarray, cfg: LstmConfig, where: str) -> np.ndarray:
    """`check_input_codes` without the int64 copy (the caller decides the dtype it needs)."""
    x = np.asarray(inputs)
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.integer):
        raise InputError(f"{where}: dtype {x.dtype} is not an integer dtype (DAC codes are integers)")
    if x.ndim != 3 or x.shape[2] != cfg.input_size or x.shape[0] < 1 or x.shape[1] < 1:
        raise InputError(
            f"{where}: shape {x.shape}, expected (sequences, steps, {cfg.input_size}) with at least one "
            f"sequence and one step"
        )
    lo, hi = -cfg.dac_max, cfg.dac_max
    # min/max first: two reductions instead of a full boolean mask on the (common) valid path.
    if int(x.min()) < lo or int(x.max()) > hi:
        s, t, k = (int(v) for v in np.argwhere((x < lo) | (x > hi))[0])
        raise InputError(
            f"{where}: code {int(x[s, t, k])} at sequence {s}, step {t}, input {k} is outside the "
            f"{cfg.dac_bits}-bit DAC range [{lo}, {hi}]"
        )
    return x


def check_input_codes(inputs: np.ndarray, cfg: LstmConfig, *, where: str = "inputs") -> np.ndarray:
    """Validate input DAC codes (sequences x steps x input_size, integers in [-dac_max, dac_max])."""
    return _validated_codes(inputs, cfg, where).astype(np.int64)


def _small_int_dtype(lo: int, hi: int) -> type:
    for dt in (np.int8, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return dt
    return np.int64


def _gemm_dtype(bound: int) -> type:
    # Exactness: every product and partial sum of a tile GEMM is an integer of magnitude <= bound (the sum of
    # |weight x input| over the tile's rows plus the |constant| folded into the extra row). float32 holds
    # every integer below 2**24 exactly and BLAS sums of exact integers below that stay exact in any order,
    # so float32 GEMMs are exact when bound < 2**24 (default 4/4/4, 128-row tiles: 128*7*7 = 6272 plus a
    # table offset below 2**22); otherwise float64 (exact below 2**53).
    return np.float32 if bound < (1 << 24) else np.float64


def _to_index(p: np.ndarray, out: np.ndarray, tmp32: np.ndarray | None) -> None:
    """Exact-integer floats ``p`` to the intp indices np.take wants (intp: other index dtypes are converted
    by numpy into a fresh intp temporary on every call)."""
    if tmp32 is not None:
        # float32 -> int32 -> int64 is faster than float32 -> int64 directly (which numpy does not
        # vectorize); the values are below 2**24 so int32 holds them.
        np.copyto(tmp32, p, casting="unsafe")
        np.copyto(out, tmp32)
    else:
        np.copyto(out, p, casting="unsafe")


def _take(table: np.ndarray, idx: np.ndarray, out: np.ndarray) -> None:
    # Every index is in range by construction (the offsets and bounds of the tables); mode="wrap" is then
    # the identity and is the cheapest of np.take's modes (no per-element error check or clamp).
    np.take(table, idx, out=out, mode="wrap")


class _Tiles:
    """A matrix (columns x rows) cut into row tiles, as per-tile GEMM operands.

    The matrix rows are ``[inputs | bias]``: the bias row is driven at ``dac_max``. Tile ``r`` covers rows
    ``bounds[r]``; its GEMM multiplies its non-bias input rows, plus one constant-1 input, by ``wt[r]``,
    whose last row is the constant of each column: ``dac_max * bias weight`` (if the bias row is in the
    tile) plus ``offsets[r]`` (a table offset, so that the GEMM result is directly a table index).
    """

    def __init__(self, weights: np.ndarray, array_rows: int, dac_max: int, weight_max: int,
                 offsets: list[np.ndarray] | None, ideal: bool):
        n_cols, n_rows = weights.shape
        self.bias_row = n_rows - 1
        self.bounds = row_tile_bounds(n_rows, array_rows)
        #: Largest |dot product| of each tile (rows x weight_max x dac_max).
        self.p_bound = [(b - a) * weight_max * dac_max for a, b in self.bounds]
        self.has_bias = [a <= self.bias_row < b for a, b in self.bounds]
        #: Input rows of each tile excluding the bias row: [a, a + n_in[r]).
        self.n_in = [min(b, self.bias_row) - a for a, b in self.bounds]
        R = len(self.bounds)
        if offsets is None:
            offsets = [np.zeros(n_cols, dtype=np.int64)] * R
        if ideal:
            bound = max(pb + int(np.max(np.abs(off))) for pb, off in zip(self.p_bound, offsets))
            self.dtype = _gemm_dtype(bound)
        else:
            self.dtype = np.float64
        self.wt = []
        for r, (a, _) in enumerate(self.bounds):
            w = np.empty((self.n_in[r] + 1, n_cols), dtype=self.dtype)
            w[:-1] = weights[:, a : a + self.n_in[r]].T
            if ideal:  # exact integer constant, then one exact conversion
                const = np.asarray(offsets[r], dtype=np.int64).copy()
                if self.has_bias[r]:
                    const += dac_max * weights[:, self.bias_row].astype(np.int64)
                w[-1] = const
            else:  # same float64 product as dac_max x the bias row's effective weight, read once
                w[-1] = float(dac_max) * weights[:, self.bias_row] if self.has_bias[r] else 0.0
                w[-1] += offsets[r]
            self.wt.append(w)

    @property
    def n_tiles(self) -> int:
        return len(self.bounds)


class _LayerPlan:
    """Everything about one LSTM layer that does not depend on the inputs: GEMM operands and tables.

    Per timestep the layer computes, for each row tile, the dot products ``p_r`` of ``[x_t | h_{t-1} | bias]``
    (one GEMM per tile on an input buffer laid out tile by tile), then the gates, then c_t and h_t.
    Gates are computed one of two ways:

    ``composed`` (ideal, no trace, tables small enough)
        Each tile but the last maps its ``p_r`` through a table of ``adc_convert`` to its ADC code, scaled
        to a stride of the final table; those are added to the last tile's ``p`` and one table lookup
        gives the gate: the table holds ``activation(gate_index(partial_acc + adc_convert(p_last)))`` for
        every (partial accumulator, p_last, gate). With one row tile that is a single lookup of ``p``.
    ``tiles``
        Every tile's ADC codes (table of ``adc_convert`` or the function itself, or noisy reads), their sum
        ``acc``, and one lookup of ``activation(gate_index(acc))``. The trace records these codes.

    The o gate's table entries are stored pre-multiplied into an index of the (o, c_t) -> h_t table (when
    that table is small enough), so h_t is one lookup of ``o_entry + c_t``.
    """

    def __init__(self, cfg: LstmConfig, lp: LayerParams, nin: int, programmed: ProgrammedArray | None, *,
                 trace: bool):
        H = cfg.hidden_size
        N = 4 * H
        self.cfg, self.nin, self.H, self.N = cfg, nin, H, N
        self.ideal = programmed is None
        self.programmed = programmed
        self.step = int(lp.adc_step)
        amax = cfg.adc_max
        weights = lp.weights if self.ideal else programmed.effective
        bounds = row_tile_bounds(nin + H + 1, cfg.array_rows)
        R = len(bounds)
        p_bound = [(b - a) * cfg.weight_max * cfg.dac_max for a, b in bounds]
        gate_of_col = np.repeat(np.arange(4), H)

        # acc -> table index -> gate output, per gate, over the accumulator domain [-R*amax, R*amax].
        acc_dom = np.arange(-R * amax, R * amax + 1)
        n_acc = acc_dom.size
        self.idx_tab = np.concatenate([gate_index(acc_dom, lp.gate_scale[g], cfg) for g in range(4)]).astype(np.int32)
        gate_is_tanh = np.repeat(np.asarray(GATE_IS_TANH), n_acc)
        self.gate_tab = activation(self.idx_tab, gate_is_tanh, cfg).astype(np.int32)
        self.acc_off = (gate_of_col * n_acc + R * amax).astype(np.intp)

        # (o, c_t) -> h_t: requant_h(o, activation(tanh_cell_index(c_t))) for o in [0, one] (the sigmoid
        # table's range) and every c_t. Stored as float32 codes: they go straight into the next GEMM.
        self.n_c = 2 * cfg.cell_max + 1
        self.hc_tab = None
        if (cfg.one + 1) * self.n_c <= _TABLE_LIMIT:
            o_dom = np.arange(cfg.one + 1)[:, None]
            tc = activation(tanh_cell_index(np.arange(-cfg.cell_max, cfg.cell_max + 1), cfg), True, cfg)
            self.hc_tab = requant_h(o_dom, tc[None, :], cfg).ravel().astype(np.float32)

        # Tables of adc_convert over each tile's p domain [-p_bound, p_bound] (ideal only).
        adc_fits = self.ideal and all(2 * pb + 1 <= _TABLE_LIMIT for pb in p_bound)
        adc_tabs = None
        if adc_fits:
            adc_dt = _small_int_dtype(-amax, amax)
            adc_tabs = [adc_convert(np.arange(-pb, pb + 1), self.step, cfg.adc_bits).astype(adc_dt) for pb in p_bound]

        span_last = 2 * p_bound[-1] + 1
        n_part = 2 * (R - 1) * amax + 1  # partial accumulator (tiles 0..R-2) domain
        self.composed = adc_fits and not trace and 4 * n_part * span_last <= _TABLE_LIMIT
        self.adc_tabs = adc_tabs
        if self.composed:
            # Tile r < R-1: A_r[p + p_bound_r] = adc code x span_last (added to the last tile's index).
            self.part_tabs = [(t.astype(np.int64) * span_last).astype(np.float32) for t in adc_tabs[:-1]]
            part = np.arange(-(R - 1) * amax, (R - 1) * amax + 1)
            acc = part[:, None] + adc_tabs[-1][None, :].astype(np.int64)  # (n_part, span_last)
            comp = self.gate_tab[(np.arange(4) * n_acc)[:, None, None] + (acc + R * amax)[None]]  # (4, n_part, span)
            self.gate_state_tab = self._state_gates(comp, cfg).ravel()
            offsets = [np.full(N, pb, dtype=np.int64) for pb in p_bound[:-1]]
            offsets.append(gate_of_col * (n_part * span_last) + (R - 1) * amax * span_last + p_bound[-1])
        else:
            self.part_tabs = None
            self.gate_state_tab = self._state_gates(self.gate_tab.reshape(4, n_acc), cfg).ravel()
            offsets = [np.full(N, pb, dtype=np.int64) for pb in p_bound] if adc_fits else None
        self.tiles = _Tiles(weights, cfg.array_rows, cfg.dac_max, cfg.weight_max, offsets, self.ideal)
        assert self.tiles.bounds == bounds
        self.R = R

        # Input buffer layout: tile r's inputs then a constant 1, tile after tile; each tile's slice is a
        # strided 2-D view BLAS reads directly. segs: (source "x"/"h", src_lo, src_hi, dst_col).
        self.tile_cols: list[tuple[int, int]] = []
        self.x_segs: list[tuple[int, int, int]] = []
        self.h_segs: list[tuple[int, int, int]] = []
        col = 0
        for (a, _), n in zip(bounds, self.tiles.n_in):
            lo, hi = a, a + n
            if lo < nin:
                self.x_segs.append((lo, min(hi, nin), col))
            if hi > nin:
                s = max(lo, nin)
                self.h_segs.append((s - nin, hi - nin, col + s - lo))
            self.tile_cols.append((col, col + n + 1))
            col += n + 1
        self.buf_cols = col
        self.const_cols = [b - 1 for _, b in self.tile_cols]

    def _state_gates(self, gates: np.ndarray, cfg: LstmConfig) -> np.ndarray:
        """Gate-value table (4, ...) as the recurrence consumes it: o entries become o * n_c + cell_max, the
        row offset of the (o, c_t) -> h_t table, when that table exists."""
        if self.hc_tab is None:
            return gates.astype(np.int32)
        out = gates.astype(np.int32)
        out[_O_GATE] = out[_O_GATE] * self.n_c + cfg.cell_max
        return out

    def noisy(self, p: np.ndarray, sumsq: np.ndarray) -> np.ndarray:
        """Add read noise to dot products ``p`` (R, ..., N) and return the ADC input in LSBs x step."""
        pa = self.programmed
        ni = pa.nonideal
        if ni.read_noise:
            sigma = ni.read_noise * pa.weight_max
            p = p + pa.rng.normal(0.0, 1.0, size=p.shape) * (sigma * np.sqrt(2.0 * sumsq))
        if ni.adc_noise:
            p = p + pa.adc_noise(p.shape) * self.step
        return p


def _run_layer(plan: _LayerPlan, x_tm: np.ndarray, hs: np.ndarray, tr: dict | None,
               gemm_lock: contextlib.AbstractContextManager) -> None:
    """Run one LSTM layer over a batch slice.

    ``x_tm`` (T, S, nin): input codes (any numeric dtype, views allowed); ``hs`` (T, S, H) float32: receives
    the h_t codes. ``tr``: trace buffers of this slice (``adc`` (T, R, S, N), ``c`` (T, S, H)) or None.
    Every per-step array is preallocated: numpy temporaries above ~256 KB are fresh mmaps (page faults).
    """
    cfg = plan.cfg
    T, S, _ = x_tm.shape
    H, N, R = plan.H, plan.N, plan.R
    tiles = plan.tiles
    ft = tiles.dtype
    buf = np.zeros((S, plan.buf_cols), dtype=ft)
    buf[:, plan.const_cols] = 1.0
    tile_in = [buf[:, a:b] for a, b in plan.tile_cols]
    p = np.empty((R, S, N), dtype=ft)
    idx = np.empty((S, N), dtype=np.intp)
    tmp32 = np.empty((S, N), dtype=np.int32) if ft == np.float32 else None
    gates = np.empty((S, N), dtype=np.int32)
    i, f, g, o = (gates[:, k * H : (k + 1) * H] for k in range(4))
    cdt = np.int32 if cfg.frac_bits + cfg.cell_bits <= 30 else np.int64
    c = np.zeros((S, H), dtype=cdt)
    s = np.empty((S, H), dtype=cdt)
    s2 = np.empty((S, H), dtype=cdt)
    half_c = cdt(1 << (cfg.frac_bits - 1))
    hidx = np.empty((S, H), dtype=np.intp)
    if plan.composed:
        part = np.empty((S, N), dtype=np.float32)
    elif tr is not None:
        codes = tr["adc"]  # the trace buffer itself: the codes are written where the trace keeps them
    elif plan.adc_tabs is not None:
        codes = np.empty((1, R, S, N), dtype=plan.adc_tabs[0].dtype)
    programmed = plan.programmed
    if programmed is not None:
        bias_sq = np.array([float(cfg.dac_max) ** 2 if hb else 0.0 for hb in tiles.has_bias])[:, None, None]

    for t in range(T):
        xt = x_tm[t]
        for lo, hi, dst in plan.x_segs:
            np.copyto(buf[:, dst : dst + hi - lo], xt[:, lo:hi], casting="unsafe")
        with gemm_lock:
            for r in range(R):
                np.matmul(tile_in[r], tiles.wt[r], out=p[r])

        if plan.composed:
            last = p[R - 1]
            for r in range(R - 1):
                _to_index(p[r], idx, tmp32)
                _take(plan.part_tabs[r], idx, part)
                last += part
            _to_index(last, idx, tmp32)
            _take(plan.gate_state_tab, idx, gates)
        else:
            if plan.adc_tabs is not None:
                ct = codes[t if tr is not None else 0]
                for r in range(R):
                    _to_index(p[r], idx, tmp32)
                    _take(plan.adc_tabs[r], idx, ct[r])
            else:
                if programmed is None:
                    ct = adc_convert(p, plan.step, cfg.adc_bits)
                else:
                    sq = np.stack([np.sum(np.square(v[:, :-1], dtype=np.float64), axis=1, keepdims=True)
                                   for v in tile_in])
                    ct = adc_convert(plan.noisy(p, sq + bias_sq), plan.step, cfg.adc_bits)
                if tr is not None:
                    tr["adc"][t] = ct
            np.add(ct[0], plan.acc_off, out=idx)
            for r in range(1, R):
                idx += ct[r]
            _take(plan.gate_state_tab, idx, gates)

        # c_t = sat(rshift_round(f*c + i*g, F)) -- in place; identical to datapath.cell_update.
        np.multiply(f, c, out=s)
        np.multiply(i, g, out=s2)
        s += s2
        s += half_c
        s >>= cfg.frac_bits
        np.clip(s, -cfg.cell_max, cfg.cell_max, out=c)
        ht = hs[t]
        if plan.hc_tab is not None:
            np.add(o, c, out=hidx)  # o holds o * n_c + cell_max: the (o, c) table index
            _take(plan.hc_tab, hidx, ht)
        else:
            ht[...] = requant_h(o, activation(tanh_cell_index(c, cfg), True, cfg), cfg)
        for lo, hi, dst in plan.h_segs:
            buf[:, dst : dst + hi - lo] = ht[:, lo:hi]
        if tr is not None:
            tr["c"][t] = c


def _layer_trace(plan: _LayerPlan, layer: int, tr: dict, hs: np.ndarray, trace: dict) -> None:
    """Derive the trace arrays of one layer from its recorded ADC codes and cell states (whole arrays)."""
    cfg = plan.cfg
    adc = tr["adc"]  # (T, R, S, N)
    acc = adc.sum(axis=1, dtype=np.int32)  # (T, S, N)
    aidx = acc + plan.acc_off.astype(np.int32)
    c = tr["c"]
    trace[f"l{layer}_adc"] = _seq_major(adc.transpose(0, 2, 1, 3))
    trace[f"l{layer}_acc"] = _seq_major(acc)
    trace[f"l{layer}_idx"] = _seq_major(plan.idx_tab[aidx])
    trace[f"l{layer}_gates"] = _seq_major(plan.gate_tab[aidx])
    trace[f"l{layer}_c"] = _seq_major(c)
    if 2 * cfg.cell_max + 1 <= _TABLE_LIMIT:
        tanh_c_tab = activation(tanh_cell_index(np.arange(-cfg.cell_max, cfg.cell_max + 1), cfg), True, cfg)
        tc = tanh_c_tab.astype(np.int32)[c + cfg.cell_max]
    else:
        tc = activation(tanh_cell_index(c, cfg), True, cfg)
    trace[f"l{layer}_tanh_c"] = _seq_major(tc)
    trace[f"l{layer}_h"] = _seq_major(hs)


def _seq_major(a: np.ndarray) -> np.ndarray:
    """Time-major (T, S, ...) array to a new sequence-major (S, T, ...) int32 array (one pass)."""
    out = np.empty((a.shape[1], a.shape[0]) + a.shape[2:], dtype=np.int32)
    np.copyto(out, np.swapaxes(a, 0, 1), casting="unsafe")
    return out


def _head(cfg: LstmConfig, model: QuantizedModel, h_tm: np.ndarray, trace: dict | None,
          programmed: ProgrammedArray | None) -> np.ndarray:
    """Dense head on every timestep's last-layer h codes (T, S, H) float32; returns output codes (T, S, O)."""
    T, S, H = h_tm.shape
    O = cfg.output_size
    step, bits = int(model.head.adc_step), cfg.head_adc_bits_eff
    ideal = programmed is None
    weights = model.head.weights if ideal else programmed.effective
    p_bound = [(b - a) * cfg.weight_max * cfg.dac_max for a, b in row_tile_bounds(H + 1, cfg.array_rows)]
    use_tab = ideal and all(2 * pb + 1 <= _TABLE_LIMIT for pb in p_bound)
    offsets = [np.full(O, pb, dtype=np.int64) for pb in p_bound] if use_tab else None
    tiles = _Tiles(weights, cfg.array_rows, cfg.dac_max, cfg.weight_max, offsets, ideal)
    R, ft = tiles.n_tiles, tiles.dtype
    x = h_tm.reshape(T * S, H).astype(ft, copy=False)
    p = np.empty((R, T * S, O), dtype=ft)
    for r, (a, _) in enumerate(tiles.bounds):
        np.matmul(x[:, a : a + tiles.n_in[r]], tiles.wt[r][:-1], out=p[r])
        p[r] += tiles.wt[r][-1]
    if use_tab:
        codes = np.empty((R, T * S, O), dtype=_small_int_dtype(-(1 << bits), 1 << bits))
        idx = np.empty((T * S, O), dtype=np.intp)
        for r, pb in enumerate(p_bound):
            tab = adc_convert(np.arange(-pb, pb + 1), step, bits).astype(codes.dtype)
            np.copyto(idx, p[r], casting="unsafe")
            _take(tab, idx, codes[r])
    else:
        if not ideal:
            ssq = np.stack([np.sum(np.square(x[:, a : a + n], dtype=np.float64), axis=-1, keepdims=True)
                            for (a, _), n in zip(tiles.bounds, tiles.n_in)])
            ssq += np.array([float(cfg.dac_max) ** 2 if hb else 0.0 for hb in tiles.has_bias])[:, None, None]
            p = _head_noisy(programmed, p.reshape(R, T, S, O), ssq.reshape(R, T, S, 1), step).reshape(R, T * S, O)
        codes = adc_convert(p, step, bits)
    codes = codes.reshape(R, T, S, O)
    out = codes.sum(axis=0, dtype=np.int32)
    if trace is not None:
        trace["head_adc"] = _seq_major(codes.transpose(1, 2, 0, 3))
    return out


def _head_noisy(pa: ProgrammedArray, p: np.ndarray, sumsq: np.ndarray, step: int) -> np.ndarray:
    ni = pa.nonideal
    if ni.read_noise:
        sigma = ni.read_noise * pa.weight_max
        p = p + pa.rng.normal(0.0, 1.0, size=p.shape) * (sigma * np.sqrt(2.0 * sumsq))
    if ni.adc_noise:
        p = p + pa.adc_noise(p.shape) * step
    return p


def _run_parallel(jobs: list[Callable[[], None]]) -> None:
    """Run ``jobs`` concurrently (the first in this thread); re-raise the first exception."""
    errors: list[BaseException] = []

    def guarded(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(job,), daemon=True) for job in jobs[1:]]
    for th in threads:
        th.start()
    try:
        jobs[0]()
    finally:
        for th in threads:
            th.join()
    if errors:
        raise errors[0]


def golden_forward(model: QuantizedModel, inputs: np.ndarray, *, trace: bool = True,
                   nonideal: NonIdealities | None = None) -> dict[str, np.ndarray]:
    """Run the integer network on input DAC codes.

    Parameters
    ----------
    model : QuantizedModel
    inputs : ndarray of int, shape (sequences, steps, input_size)
        DAC codes; every sequence starts from cleared state (c = 0, h = 0).
    trace : bool
        Also return every intermediate (see the module docstring for the keys); otherwise only
        ``inputs``, ``h`` and ``outputs``.
    nonideal : NonIdealities, optional
        Device and ADC non-idealities; ``None`` or an ideal instance gives the bit-exact contract.

    Returns
    -------
    dict of str to ndarray (int32, sequence-major)
    """
    cfg = model.config
    x = _validated_codes(inputs, cfg, "inputs")
    if nonideal is not None and nonideal.ideal:
        nonideal = None
    programmed: list[ProgrammedArray | None] = [None] * (cfg.num_layers + 1)
    if nonideal is not None:
        seqs = np.random.SeedSequence(nonideal.seed).spawn(cfg.num_layers + 1)
        mats = [lp.weights for lp in model.layers] + [model.head.weights]
        programmed = [ProgrammedArray(m, cfg.weight_max, nonideal, np.random.default_rng(s)) for m, s in zip(mats, seqs)]
    S, T, _ = x.shape
    H, N = cfg.hidden_size, cfg.layer_cols
    plans = [_LayerPlan(cfg, lp, cfg.layer_input_size(l), programmed[l], trace=trace)
             for l, lp in enumerate(model.layers)]
    hs = [np.empty((T, S, H), dtype=np.float32) for _ in plans]
    trs = None
    if trace:
        trs = [{"adc": np.empty((T, pl.R, S, N), dtype=pl.adc_tabs[0].dtype if pl.adc_tabs else np.int64),
                "c": np.empty((T, S, H), dtype=np.int32)} for pl in plans]

    # Sequences are independent: an ideal batch runs as two halves in two threads (see _MIN_THREAD_CHUNK).
    # Non-ideal reads draw noise in call order, so that batch runs in one piece (same draws as always).
    n_chunks = 2 if nonideal is None and S >= 2 * _MIN_THREAD_CHUNK else 1
    edges = [S * k // n_chunks for k in range(n_chunks + 1)]
    gemm_lock = threading.Lock() if n_chunks > 1 else contextlib.nullcontext()

    def run_chunk(lo: int, hi: int) -> None:
        layer_in = x.transpose(1, 0, 2)[:, lo:hi]  # time-major view; steps are copied into the GEMM buffer
        for l, plan in enumerate(plans):
            tr = None if trs is None else {"adc": trs[l]["adc"][:, :, lo:hi], "c": trs[l]["c"][:, lo:hi]}
            _run_layer(plan, layer_in, hs[l][:, lo:hi], tr, gemm_lock)
            layer_in = hs[l][:, lo:hi]

    _run_parallel([lambda lo=lo, hi=hi: run_chunk(lo, hi) for lo, hi in zip(edges[:-1], edges[1:])])

    tr_out: dict[str, np.ndarray] | None = {} if trace else None
    if trace:
        for l, plan in enumerate(plans):
            _layer_trace(plan, l, trs[l], hs[l], tr_out)
    out = _head(cfg, model, hs[-1], tr_out, programmed[-1])
    result: dict[str, np.ndarray] = {"inputs": x.astype(np.int32)}
    if tr_out is not None:
        result.update(tr_out)
    result["h"] = tr_out[f"l{cfg.num_layers - 1}_h"].copy() if trace else _seq_major(hs[-1])
    result["outputs"] = _seq_major(out)
    return result
