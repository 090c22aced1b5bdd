"""The integer inference path of the whole network (LSTM layers + dense head), vectorized over a batch.

`golden_forward` is the reference the RTL is compared with, bit for bit. It applies the stage functions of
`golden.datapath` in the order of `docs/datapath.md`. For speed, a stage (or a chain of stages) whose
integer domain is small is applied as a table made by evaluating those same stage functions over the whole
domain (so there is one definition); a larger domain falls back to calling the functions.
`tests/naive.py` is the slow, obviously correct loop this module must equal exactly, and
`docs/performance.md` explains the optimizations and their measured effect.

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

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .config import LstmConfig
from .datapath import GATE_IS_TANH, activation, adc_convert, gate_index, requant_h, tanh_cell_index
from .model import LayerParams, QuantizedModel
from .nvm import NonIdealities, ProgrammedArray, row_tile_bounds

__all__ = ["golden_forward", "check_input_codes", "InputError"]

# Largest integer domain (entries) that is turned into a table; beyond it the stage function is called.
_TABLE_LIMIT = 1 << 22

# Position of the o gate in the gate order i, f, g, o.
_O_GATE = 3

# An ideal batch runs in chunks of sequences whose per-step dot products (R x 4H per sequence) take about
# this many bytes, so that a step's working set stays near the per-core L2 cache (1 MB on the benchmark
# machine): measured ~12% faster at H = 128 with two row tiles (4 chunks of 256 sequences), and for small H
# one chunk is best (smaller chunks lose more to per-call overhead than they gain). Sequences are
# independent, so chunking changes no result; a non-ideal batch is never chunked (its noise is drawn in
# call order).
_CHUNK_BYTES = 1 << 20
_MIN_CHUNK = 256


class InputError(ValueError):
    """Input codes of the wrong shape, dtype or range."""


def _validated_codes(inputs: np.ndarray, cfg: LstmConfig, where: str) -> np.ndarray:
    """The checks of `check_input_codes`, returning the codes without converting them."""
    x = np.asarray(inputs)
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.integer):
        raise InputError(f"{where}: dtype {x.dtype} is not an integer dtype (DAC codes are integers)")
    if x.ndim != 3 or x.shape[2] != cfg.input_size or x.shape[0] < 1 or x.shape[1] < 1:
        raise InputError(
            f"{where}: shape {x.shape}, expected (sequences, steps, {cfg.input_size}) with at least one "
            f"sequence and one step"
        )
    lo, hi = -cfg.dac_max, cfg.dac_max
    # Two reductions decide the (usual) valid case; the element-wise mask is only built to report an error.
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
    # Exactness: every product and partial sum of a tile GEMM is an integer of magnitude <= bound (the sum
    # of |weight x input| over the tile's rows plus the |constant| of the extra row, see _Tiles). float32
    # holds every integer below 2**24 exactly and BLAS sums of exact integers below that stay exact in any
    # order, so float32 GEMMs are exact when bound < 2**24 (default 4/4/4 with 128-row tiles:
    # 128*7*7 = 6272, plus a table offset below _TABLE_LIMIT = 2**22); otherwise float64 (exact below 2**53).
    return np.float32 if bound < (1 << 24) else np.float64


def _tile_p_bounds(n_rows: int, cfg: LstmConfig) -> list[int]:
    """Largest |dot product| of each row tile of a matrix with ``n_rows`` rows: rows x weight_max x dac_max."""
    return [(b - a) * cfg.weight_max * cfg.dac_max for a, b in row_tile_bounds(n_rows, cfg.array_rows)]


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _to_index(p: np.ndarray, out: np.ndarray, tmp32: np.ndarray | None) -> None:
    """Exact-integer floats ``p`` to the intp indices np.take wants (any other index dtype makes numpy
    convert it into a fresh intp temporary on every call)."""
    if tmp32 is not None:
        # float32 -> int32 -> intp measured ~1.4x faster than numpy's direct float32 -> intp cast; the
        # values are below 2**24, so int32 holds them.
        np.copyto(tmp32, p, casting="unsafe")
        np.copyto(out, tmp32)
    else:
        np.copyto(out, p, casting="unsafe")


def _take(table: np.ndarray, idx: np.ndarray, out: np.ndarray) -> None:
    # Every index is in range by construction (the offsets and bounds of the tables); mode="wrap" is then
    # the identity, and it is the cheapest of np.take's modes (no per-element error check or clamp).
    np.take(table, idx, out=out, mode="wrap")


# ---------------------------------------------------------------------------------------------------------
# Tables. Each is a datapath function evaluated over its whole integer domain; they depend only on the
# config and a layer's ADC step and gate scales, so they are cached across calls (read-only arrays).


@functools.lru_cache(maxsize=16)
def _adc_table(p_bound: int, step: int, bits: int) -> np.ndarray:
    """adc_convert(p) for p in [-p_bound, p_bound], indexed by p + p_bound."""
    amax = LstmConfig.symmetric_max(bits)
    return _readonly(adc_convert(np.arange(-p_bound, p_bound + 1), step, bits).astype(_small_int_dtype(-amax, amax)))


@functools.lru_cache(maxsize=32)
def _gate_tables(cfg: LstmConfig, n_tiles: int, gate_scale: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(gate_index, activation(gate_index)) of acc in [-R*adc_max, R*adc_max], shape (4, 2*R*adc_max + 1)
    (gates i, f, g, o), indexed by [gate, acc + R*adc_max]."""
    top = n_tiles * cfg.adc_max
    acc = np.arange(-top, top + 1)
    idx = np.stack([gate_index(acc, gate_scale[g], cfg) for g in range(4)])
    gates = activation(idx, np.asarray(GATE_IS_TANH)[:, None], cfg)
    return _readonly(idx.astype(np.int32)), _readonly(gates.astype(np.int32))


@functools.lru_cache(maxsize=16)
def _tanh_c_table(cfg: LstmConfig) -> np.ndarray | None:
    """activation(tanh_cell_index(c)) for c in [-cell_max, cell_max], indexed by c + cell_max."""
    if 2 * cfg.cell_max + 1 > _TABLE_LIMIT:
        return None
    c = np.arange(-cfg.cell_max, cfg.cell_max + 1)
    return _readonly(activation(tanh_cell_index(c, cfg), True, cfg).astype(np.int32))


@functools.lru_cache(maxsize=8)
def _h_table(cfg: LstmConfig) -> np.ndarray | None:
    """requant_h(o, tanh(c)) for o in [0, one] (the sigmoid table's range) and c in [-cell_max, cell_max],
    indexed by o * (2*cell_max + 1) + c + cell_max. float32: the codes go straight into the next GEMM."""
    tanh_c = _tanh_c_table(cfg)
    if tanh_c is None or (cfg.one + 1) * tanh_c.size > _TABLE_LIMIT:
        return None
    o = np.arange(cfg.one + 1)[:, None]
    return _readonly(requant_h(o, tanh_c[None, :], cfg).ravel().astype(np.float32))


@functools.lru_cache(maxsize=8)
def _composed_table(
    cfg: LstmConfig, p_bounds: tuple[int, ...], step: int, gate_scale: tuple[int, ...], o_stride: int | None
) -> np.ndarray:
    """Gate value of (gate, partial accumulator, last tile's p): the ADC of the last tile, the sum with the
    other tiles' ADC codes, gate_index and activation in one table, shape (4, n_part * span_last).

    Indexed by [gate, (part + (R-1)*adc_max) * span_last + p_last + p_bound_last]. With ``o_stride`` the o
    gate's entries are stored as ``o * o_stride + cell_max`` (see _state_gates).
    """
    R, amax = len(p_bounds), cfg.adc_max
    part = np.arange(-(R - 1) * amax, (R - 1) * amax + 1)
    acc = part[:, None] + _adc_table(p_bounds[-1], step, cfg.adc_bits)[None, :].astype(np.int64)
    gates = _gate_tables(cfg, R, gate_scale)[1][:, (acc + R * amax).ravel()]
    return _readonly(_state_gates(gates, cfg, o_stride))


def _state_gates(gates: np.ndarray, cfg: LstmConfig, o_stride: int | None) -> np.ndarray:
    """A gate-value table (4, ...) as the recurrence consumes it: with the (o, c) -> h table in use, the o
    entries become row offsets into it, ``o * o_stride + cell_max``, so h_t is one lookup of ``o_entry + c``."""
    out = gates.astype(np.int32)
    if o_stride is not None:
        out[_O_GATE] = out[_O_GATE] * o_stride + cfg.cell_max
    return out


# ---------------------------------------------------------------------------------------------------------


class _Tiles:
    """A matrix (columns x rows) cut into row tiles, as per-tile GEMM operands.

    The matrix rows are ``[inputs | bias]``, the bias row driven at ``dac_max``. Tile ``r`` covers rows
    ``bounds[r]``. Its GEMM multiplies its non-bias input rows and one extra input fixed at 1 by ``wt[r]``,
    whose last row is each column's constant: ``dac_max x bias weight`` (if the bias row is in the tile) plus
    ``offsets[r]`` (a table offset, so that the GEMM result is directly a table index). Columns are split by
    gate when ``gates`` is given: ``wt[r]`` is then (gates, rows + 1, columns / gates), and a GEMM of an
    input (S, rows + 1) gives (gates, S, columns / gates), every gate a contiguous block.
    """

    def __init__(
        self, weights: np.ndarray, cfg: LstmConfig, offsets: list[np.ndarray] | None, ideal: bool, gates: int = 1
    ):
        n_cols, n_rows = weights.shape
        dac_max = cfg.dac_max
        self.bias_row = n_rows - 1
        self.bounds = row_tile_bounds(n_rows, cfg.array_rows)
        self.has_bias = [a <= self.bias_row < b for a, b in self.bounds]
        #: Input rows of each tile, bias row excluded: [a, a + n_in[r]).
        self.n_in = [min(b, self.bias_row) - a for a, b in self.bounds]
        R = len(self.bounds)
        if offsets is None:
            offsets = [np.zeros(n_cols, dtype=np.int64)] * R
        if ideal:
            p_bounds = _tile_p_bounds(n_rows, cfg)
            self.dtype = _gemm_dtype(max(pb + int(np.max(np.abs(o))) for pb, o in zip(p_bounds, offsets)))
        else:
            self.dtype = np.float64
        self.wt = []
        for r, (a, _) in enumerate(self.bounds):
            w = np.empty((self.n_in[r] + 1, n_cols), dtype=self.dtype)
            w[:-1] = weights[:, a : a + self.n_in[r]].T
            if ideal:  # the exact integer constant, converted once
                const = np.asarray(offsets[r], dtype=np.int64)
                if self.has_bias[r]:
                    const = const + dac_max * weights[:, self.bias_row].astype(np.int64)
                w[-1] = const
            else:  # the same float64 product dac_max x effective bias weight as a read of the bias row
                w[-1] = float(dac_max) * weights[:, self.bias_row] if self.has_bias[r] else 0.0
            self.wt.append(np.ascontiguousarray(w.reshape(-1, gates, n_cols // gates).transpose(1, 0, 2)))

    @property
    def n_tiles(self) -> int:
        return len(self.bounds)


@dataclass
class _Trace:
    """Per-step records of one layer (sequence-major); the other trace arrays are derived from them."""

    adc: np.ndarray  # (S, T, R, 4, H) ADC codes of every tile
    c: np.ndarray  # (S, T, H) int32 cell state


class _LayerPlan:
    """Everything about one LSTM layer that does not depend on the inputs: GEMM operands and tables.

    Per timestep the layer computes, for each row tile, the dot products ``p_r`` of ``[x_t | h_{t-1} | bias]``
    (one GEMM per tile on an input buffer laid out tile by tile), then the gates, then c_t and h_t. Arrays
    of 4H columns are held gate-major, (4, S, H), so that each gate is one contiguous block. Gates are
    computed one of two ways:

    ``composed`` (ideal, no trace, tables small enough)
        Each tile but the last maps its ``p_r`` through a table of ``adc_convert`` to its ADC code, scaled
        to the stride of the final table; those are added to the last tile's ``p``, and one lookup gives the
        gate: the table holds ``activation(gate_index(partial_acc + adc_convert(p_last)))`` for every
        (partial accumulator, p_last) of each gate. With one row tile that is one lookup of ``p``.
    ``tiles``
        Every tile's ADC codes (a table of ``adc_convert``, the function itself, or noisy reads), their sum
        ``acc``, and one lookup of ``activation(gate_index(acc))``. The trace records these codes.
    """

    def __init__(self, cfg: LstmConfig, lp: LayerParams, nin: int, programmed: ProgrammedArray | None, *, trace: bool):
        H = cfg.hidden_size
        self.cfg, self.H = cfg, H
        self.ideal = programmed is None
        self.programmed = programmed
        self.step = int(lp.adc_step)
        amax = cfg.adc_max
        scales = tuple(int(s) for s in lp.gate_scale)
        p_bound = _tile_p_bounds(nin + H + 1, cfg)
        self.R = R = len(p_bound)

        self.idx_tab, self.gate_tab = _gate_tables(cfg, R, scales)  # (4, n_acc): for the trace
        self.acc_top = R * amax
        self.h_tab = _h_table(cfg)
        o_stride = None if self.h_tab is None else 2 * cfg.cell_max + 1

        adc_fits = self.ideal and all(2 * pb + 1 <= _TABLE_LIMIT for pb in p_bound)
        self.adc_tabs = [_adc_table(pb, self.step, cfg.adc_bits) for pb in p_bound] if adc_fits else None
        span_last = 2 * p_bound[-1] + 1
        n_part = 2 * (R - 1) * amax + 1  # partial accumulator (tiles 0..R-2) domain
        self.composed = adc_fits and not trace and 4 * n_part * span_last <= _TABLE_LIMIT
        gate_col = np.repeat(np.arange(4), H)
        if self.composed:
            self.gate_state_tab = _composed_table(cfg, tuple(p_bound), self.step, scales, o_stride).ravel()
            # Tile r < R-1: index p + p_bound_r into part_tab[r] = adc code x span_last, added to the last
            # tile's index, whose offset places each gate's and the partial sum's origin.
            self.part_tabs = [
                _readonly((t.astype(np.int64) * span_last).astype(np.float32)) for t in self.adc_tabs[:-1]
            ]
            offsets = [np.full(4 * H, pb, dtype=np.int64) for pb in p_bound[:-1]]
            offsets.append(gate_col * (n_part * span_last) + (R - 1) * amax * span_last + p_bound[-1])
        else:
            self.gate_state_tab = _state_gates(self.gate_tab, cfg, o_stride).ravel()
            n_acc = self.gate_tab.shape[1]
            self.acc_off = (np.arange(4) * n_acc + self.acc_top).astype(np.intp)[:, None, None]
            offsets = [np.full(4 * H, pb, dtype=np.int64) for pb in p_bound] if adc_fits else None
        weights = lp.weights if self.ideal else programmed.effective
        self.tiles = _Tiles(weights, cfg, offsets, self.ideal, gates=4)

        # Input buffer layout: each tile's inputs then its constant-1 input, tile after tile; a tile's
        # columns are a strided 2-D view that BLAS reads in place. Segments: (src_lo, src_hi, dst_col) of
        # x (x_segs) and of h (h_segs).
        self.tile_cols: list[tuple[int, int]] = []
        self.x_segs: list[tuple[int, int, int]] = []
        self.h_segs: list[tuple[int, int, int]] = []
        col = 0
        for (a, _), n in zip(self.tiles.bounds, self.tiles.n_in):
            lo, hi = a, min(a + n, nin)  # x rows of the tile
            if lo < hi:
                self.x_segs.append((lo, hi, col + lo - a))
            lo, hi = max(a, nin), a + n  # h rows of the tile
            if lo < hi:
                self.h_segs.append((lo - nin, hi - nin, col + lo - a))
            self.tile_cols.append((col, col + n + 1))
            col += n + 1
        self.buf_cols = col

    def noisy(self, p: np.ndarray, sumsq: np.ndarray) -> np.ndarray:
        """Noisy reads of dot products ``p`` (R, 4, S, H); ``sumsq`` (R, S, 1): see `_add_noise`."""
        R, _, S, H = p.shape
        return _add_noise(
            self.programmed, p, sumsq, self.step, (R, S, 4 * H), lambda a: a.reshape(R, S, 4, H).transpose(0, 2, 1, 3)
        )


def _add_noise(
    pa: ProgrammedArray,
    p: np.ndarray,
    sumsq: np.ndarray,
    step: int,
    draw_shape: tuple[int, ...],
    to_p: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Read noise and ADC noise added to dot products ``p``, returned as the ADC input (LSBs x step).

    The draws are made in the shape ``draw_shape`` (the order a seed has always drawn them in), in which
    ``sumsq`` (the sum of squared input codes of each read, last axis 1) is laid out too; ``to_p`` maps an
    array of that shape onto ``p``'s layout.
    """
    ni = pa.nonideal
    if ni.read_noise:
        sigma = ni.read_noise * pa.weight_max
        p = p + to_p(pa.rng.normal(0.0, 1.0, size=draw_shape) * (sigma * np.sqrt(2.0 * sumsq)))
    if ni.adc_noise:
        p = p + to_p(pa.adc_noise(draw_shape) * step)
    return p


def _run_layer(plan: _LayerPlan, x_seq: np.ndarray, hs: np.ndarray, tr: _Trace | None) -> None:
    """Run one LSTM layer: ``x_seq`` (S, T, nin) input codes (any numeric dtype), ``hs`` (S, T, H) receives
    the h_t codes, ``tr`` receives the per-step records or is None.

    Every per-step array is preallocated and written with out=: numpy temporaries of a few hundred KB and
    up can be fresh mmaps, and their page faults cost more than the arithmetic. Inputs are read and results
    stored sequence-major, a step at a time (strided rows), so nothing is converted or transposed as a
    whole array before or after.
    """
    cfg = plan.cfg
    S, T, _ = x_seq.shape
    H, R = plan.H, plan.R
    tiles = plan.tiles
    ft = tiles.dtype
    buf = np.zeros((S, plan.buf_cols), dtype=ft)
    tile_in = [buf[:, a:b] for a, b in plan.tile_cols]
    for v in tile_in:
        v[:, -1] = 1.0
    p = np.empty((R, 4, S, H), dtype=ft)
    idx = np.empty((4, S, H), dtype=np.intp)
    tmp32 = np.empty((4, S, H), dtype=np.int32) if ft == np.float32 else None
    gates = np.empty((4, S, H), dtype=np.int32)
    i, f, g, o = gates
    cdt = np.int32 if cfg.frac_bits + cfg.cell_bits <= 30 else np.int64
    c = np.zeros((S, H), dtype=cdt)
    s = np.empty((S, H), dtype=cdt)
    s2 = np.empty((S, H), dtype=cdt)
    half = cdt(1 << (cfg.frac_bits - 1))
    hidx = np.empty((S, H), dtype=np.intp)
    ht = np.empty((S, H), dtype=np.float32)
    if plan.composed:
        part = np.empty((R - 1, 4, S, H), dtype=np.float32)
    elif plan.adc_tabs is not None:
        codes = np.empty((R, 4, S, H), dtype=plan.adc_tabs[0].dtype)
    programmed = plan.programmed
    if programmed is not None:
        bias_sq = np.array([float(cfg.dac_max) ** 2 if hb else 0.0 for hb in tiles.has_bias])[:, None, None]

    for t in range(T):
        xt = x_seq[:, t]
        for lo, hi, dst in plan.x_segs:
            np.copyto(buf[:, dst : dst + hi - lo], xt[:, lo:hi], casting="unsafe")
        if plan.composed:
            # Each tile's p is used right after its GEMM, while it is still in cache.
            for r in range(R - 1):
                np.matmul(tile_in[r], tiles.wt[r], out=p[r])
                _to_index(p[r], idx, tmp32)
                _take(plan.part_tabs[r], idx, part[r])
            last = p[R - 1]
            np.matmul(tile_in[R - 1], tiles.wt[R - 1], out=last)
            for r in range(R - 1):
                last += part[r]
            _to_index(last, idx, tmp32)
            _take(plan.gate_state_tab, idx, gates)
        else:
            for r in range(R):
                np.matmul(tile_in[r], tiles.wt[r], out=p[r])
            if plan.adc_tabs is not None:
                ct = codes
                for r in range(R):
                    _to_index(p[r], idx, tmp32)
                    _take(plan.adc_tabs[r], idx, ct[r])
            else:
                if programmed is None:
                    ct = adc_convert(p, plan.step, cfg.adc_bits)
                else:
                    sq = np.stack(
                        [np.sum(np.square(v[:, :-1], dtype=np.float64), axis=1, keepdims=True) for v in tile_in]
                    )
                    ct = adc_convert(plan.noisy(p, sq + bias_sq), plan.step, cfg.adc_bits)
            if tr is not None:
                tr.adc[:, t] = ct.transpose(2, 0, 1, 3)
            np.add(ct[0], plan.acc_off, out=idx)
            for r in range(1, R):
                idx += ct[r]
            _take(plan.gate_state_tab, idx, gates)

        # c_t = sat(rshift_round(f*c + i*g, F)) -- in place; identical to datapath.cell_update.
        np.multiply(f, c, out=s)
        np.multiply(i, g, out=s2)
        s += s2
        s += half
        s >>= cfg.frac_bits
        np.clip(s, -cfg.cell_max, cfg.cell_max, out=c)
        if plan.h_tab is not None:
            np.add(o, c, out=hidx)  # o holds o * (2*cell_max + 1) + cell_max: the (o, c) -> h table index
            _take(plan.h_tab, hidx, ht)
        else:
            ht[...] = requant_h(o, activation(tanh_cell_index(c, cfg), True, cfg), cfg)
        np.copyto(hs[:, t], ht, casting="unsafe")
        for lo, hi, dst in plan.h_segs:
            buf[:, dst : dst + hi - lo] = ht[:, lo:hi]
        if tr is not None:
            tr.c[:, t] = c


def _layer_trace(plan: _LayerPlan, layer: int, tr: _Trace, hs: np.ndarray, trace: dict) -> None:
    """The trace arrays of one layer, derived from its recorded ADC codes and cell states in whole-array
    operations (tables of the same stage functions)."""
    cfg = plan.cfg
    S, T, R, _, H = tr.adc.shape
    acc = tr.adc[:, :, 0].astype(np.int32)  # (S, T, 4, H); in-place adds, cheaper than sum() over axis 2
    for r in range(1, R):
        acc += tr.adc[:, :, r]
    ai = acc.astype(np.intp)  # flat (gate, acc) index into the (4, n_acc) tables
    ai += (np.arange(4) * plan.gate_tab.shape[1] + plan.acc_top)[:, None]
    trace[f"l{layer}_adc"] = tr.adc.astype(np.int32).reshape(S, T, R, 4 * H)
    trace[f"l{layer}_acc"] = acc.reshape(S, T, 4 * H)
    trace[f"l{layer}_idx"] = np.take(plan.idx_tab, ai).reshape(S, T, 4 * H)
    trace[f"l{layer}_gates"] = np.take(plan.gate_tab, ai).reshape(S, T, 4 * H)
    trace[f"l{layer}_c"] = tr.c
    tanh_c = _tanh_c_table(cfg)
    if tanh_c is not None:
        tc = np.take(tanh_c, tr.c + cfg.cell_max)
    else:
        tc = activation(tanh_cell_index(tr.c, cfg), True, cfg).astype(np.int32)
    trace[f"l{layer}_tanh_c"] = tc
    trace[f"l{layer}_h"] = hs


def _head(
    cfg: LstmConfig, model: QuantizedModel, h_seq: np.ndarray, trace: dict | None, programmed: ProgrammedArray | None
) -> np.ndarray:
    """Dense head on every timestep's last-layer h codes (S, T, H) int32; returns output codes (S, T, O)."""
    S, T, H = h_seq.shape
    O = cfg.output_size
    step, bits = int(model.head.adc_step), cfg.head_adc_bits_eff
    ideal = programmed is None
    p_bound = _tile_p_bounds(H + 1, cfg)
    use_tab = ideal and all(2 * pb + 1 <= _TABLE_LIMIT for pb in p_bound)
    offsets = [np.full(O, pb, dtype=np.int64) for pb in p_bound] if use_tab else None
    weights = model.head.weights if ideal else programmed.effective
    tiles = _Tiles(weights, cfg, offsets, ideal)
    R, ft = tiles.n_tiles, tiles.dtype
    x = h_seq.reshape(S * T, H)
    p = np.empty((R, S * T, O), dtype=ft)
    # The codes are converted to floats a block of rows at a time into one reused buffer (a full-size float
    # copy would be another fresh array); rows are independent, so blocking changes no dot product.
    block = max(1, (1 << 20) // (H * np.dtype(ft).itemsize))
    xf = np.empty((min(block, S * T), H), dtype=ft)
    for lo in range(0, S * T, block):
        hi = min(lo + block, S * T)
        np.copyto(xf[: hi - lo], x[lo:hi], casting="unsafe")
        for r, (a, _) in enumerate(tiles.bounds):
            np.matmul(xf[: hi - lo, a : a + tiles.n_in[r]], tiles.wt[r][0][:-1], out=p[r, lo:hi])
    for r in range(R):
        p[r] += tiles.wt[r][0][-1]
    if use_tab:
        codes = np.empty((R, S * T, O), dtype=_adc_table(p_bound[0], step, bits).dtype)
        idx = np.empty((S * T, O), dtype=np.intp)
        tmp32 = np.empty((S * T, O), dtype=np.int32) if ft == np.float32 else None
        for r, pb in enumerate(p_bound):
            _to_index(p[r], idx, tmp32)
            _take(_adc_table(pb, step, bits), idx, codes[r])
    else:
        if not ideal:
            ssq = np.stack(
                [
                    np.sum(np.square(x[:, a : a + n], dtype=np.float64), axis=-1, keepdims=True)
                    for (a, _), n in zip(tiles.bounds, tiles.n_in)
                ]
            )
            ssq += np.array([float(cfg.dac_max) ** 2 if hb else 0.0 for hb in tiles.has_bias])[:, None, None]
            # Drawn time-major, (R, T, S, O), as the head has always drawn them.
            ssq_tm = ssq.reshape(R, S, T, 1).transpose(0, 2, 1, 3)
            p = _add_noise(
                programmed, p.reshape(R, S, T, O), ssq_tm, step, (R, T, S, O), lambda a: a.transpose(0, 2, 1, 3)
            )
        codes = adc_convert(p, step, bits)
    codes = codes.reshape(R, S, T, O)
    out = codes[0].astype(np.int32) if R == 1 else codes.sum(axis=0, dtype=np.int32)
    if trace is not None:
        trace["head_adc"] = np.ascontiguousarray(codes.transpose(1, 2, 0, 3), dtype=np.int32)
    return out


def _chunks(S: int, plan: _LayerPlan) -> list[tuple[int, int]]:
    """Sequence ranges [a, b) the batch is run in (see _CHUNK_BYTES); one range for a non-ideal batch."""
    n = 1
    if plan.ideal:
        row_bytes = plan.R * 4 * plan.H * np.dtype(plan.tiles.dtype).itemsize
        n = max(1, min(-(-S * row_bytes // _CHUNK_BYTES), S // _MIN_CHUNK))
    edges = [S * k // n for k in range(n + 1)]
    return list(zip(edges[:-1], edges[1:]))


def golden_forward(
    model: QuantizedModel, inputs: np.ndarray, *, trace: bool = True, nonideal: NonIdealities | None = None
) -> dict[str, np.ndarray]:
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
        programmed = [
            ProgrammedArray(m, cfg.weight_max, nonideal, np.random.default_rng(s)) for m, s in zip(mats, seqs)
        ]
    S, T, _ = x.shape
    H = cfg.hidden_size
    result: dict[str, np.ndarray] = {"inputs": x.astype(np.int32)}
    tr_out: dict[str, np.ndarray] | None = {} if trace else None
    layer_in = result["inputs"]
    for l, lp in enumerate(model.layers):
        plan = _LayerPlan(cfg, lp, cfg.layer_input_size(l), programmed[l], trace=trace)
        hs = np.empty((S, T, H), dtype=np.int32)  # h codes: this layer's trace/result array itself
        tr = None
        if trace:
            adc_dt = plan.adc_tabs[0].dtype if plan.adc_tabs is not None else np.int64
            tr = _Trace(np.empty((S, T, plan.R, 4, H), dtype=adc_dt), np.empty((S, T, H), dtype=np.int32))
        for a, b in _chunks(S, plan):
            _run_layer(plan, layer_in[a:b], hs[a:b], None if tr is None else _Trace(tr.adc[a:b], tr.c[a:b]))
        if trace:
            _layer_trace(plan, l, tr, hs, tr_out)
        layer_in = hs
    outputs = _head(cfg, model, layer_in, tr_out, programmed[-1])
    if tr_out is not None:
        result.update(tr_out)
        result["h"] = layer_in.copy()  # not the same object as the trace's l{L-1}_h
    else:
        result["h"] = layer_in
    result["outputs"] = outputs
    return result
