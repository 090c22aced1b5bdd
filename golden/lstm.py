"""The integer inference path of the whole network (LSTM layers + dense head), vectorized over a batch.

`golden_forward` is the reference the RTL is compared with, bit for bit. It applies the stage functions of
`golden.datapath` in the order of `docs/datapath.md`. For speed, a stage whose integer domain is small is
applied as a table made by evaluating that same stage function over its whole domain (so there is one
definition); a larger domain falls back to calling the function.

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

import numpy as np

from .config import LstmConfig
from .datapath import GATE_IS_TANH, activation, adc_convert, cell_update, gate_index, requant_h, tanh_cell_index
from .model import QuantizedModel
from .nvm import NonIdealities, ProgrammedArray, row_tile_bounds

__all__ = ["golden_forward", "check_input_codes", "InputError"]

# Largest integer domain (entries) that is turned into a table; beyond it the stage function is called.
_TABLE_LIMIT = 1 << 22


class InputError(ValueError):
    """Input codes of the wrong shape, dtype or range."""


def check_input_codes(inputs: np.ndarray, cfg: LstmConfig, *, where: str = "inputs") -> np.ndarray:
    """Validate input DAC codes (sequences x steps x input_size, integers in [-dac_max, dac_max])."""
    x = np.asarray(inputs)
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.integer):
        raise InputError(f"{where}: dtype {x.dtype} is not an integer dtype (DAC codes are integers)")
    if x.ndim != 3 or x.shape[2] != cfg.input_size or x.shape[0] < 1 or x.shape[1] < 1:
        raise InputError(
            f"{where}: shape {x.shape}, expected (sequences, steps, {cfg.input_size}) with at least one "
            f"sequence and one step"
        )
    lo, hi = -cfg.dac_max, cfg.dac_max
    bad = (x < lo) | (x > hi)
    if bad.any():
        s, t, k = (int(v) for v in np.argwhere(bad)[0])
        raise InputError(
            f"{where}: code {int(x[s, t, k])} at sequence {s}, step {t}, input {k} is outside the "
            f"{cfg.dac_bits}-bit DAC range [{lo}, {hi}]"
        )
    return x.astype(np.int64)


def _small_int_dtype(lo: int, hi: int) -> type:
    for dt in (np.int8, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return dt
    return np.int64


class _Matrix:
    """One weight matrix as the array model sees it: per-row-tile dot products, exact or non-ideal."""

    def __init__(self, weights: np.ndarray, cfg: LstmConfig, programmed: ProgrammedArray | None):
        self.programmed = programmed
        self.bounds = row_tile_bounds(weights.shape[1], cfg.array_rows)
        # Largest |p| of one tile column: rows x weight_max x dac_max.
        self.p_bound = cfg.array_rows * cfg.weight_max * cfg.dac_max
        if programmed is None:
            # Exactness: every product and partial sum is an integer of magnitude <= p_bound. float32 holds
            # every integer below 2**24 exactly and BLAS sums of exact integers below that stay exact in any
            # order, so float32 GEMMs are exact when p_bound < 2**24 (default 4/4/4: 32*7*7 = 1568);
            # otherwise float64 (exact below 2**53).
            self.dtype = np.float32 if self.p_bound < (1 << 24) else np.float64
            self.wt = np.ascontiguousarray(weights.T.astype(self.dtype))
        else:
            self.dtype = np.float64
            self.wt = np.ascontiguousarray(programmed.effective.T)

    @property
    def n_tiles(self) -> int:
        return len(self.bounds)

    def partial(self, xf: np.ndarray, first_row: int, out: np.ndarray) -> None:
        """Add the dot products of inputs ``xf`` (..., n) occupying rows [first_row, first_row+n) to
        ``out`` (R, ..., N), tile by tile."""
        n = xf.shape[-1]
        for r, (a, b) in enumerate(self.bounds):
            lo, hi = max(a, first_row), min(b, first_row + n)
            if lo < hi:
                out[r] += xf[..., lo - first_row : hi - first_row] @ self.wt[lo:hi]

    def sumsq(self, xf: np.ndarray, first_row: int, out: np.ndarray) -> None:
        """Add the per-tile sum of squared input codes (for read noise) to ``out`` (R, ..., 1)."""
        n = xf.shape[-1]
        for r, (a, b) in enumerate(self.bounds):
            lo, hi = max(a, first_row), min(b, first_row + n)
            if lo < hi:
                out[r] += np.sum(np.square(xf[..., lo - first_row : hi - first_row], dtype=np.float64), axis=-1,
                                 keepdims=True)

    def bias_tile(self, bias_row: int) -> int:
        return next(r for r, (a, b) in enumerate(self.bounds) if a <= bias_row < b)

    def noisy(self, p: np.ndarray, sumsq: np.ndarray, step: int) -> np.ndarray:
        """Add read noise to dot products ``p`` (R, ..., N) and return the ADC input in LSBs x step."""
        pa = self.programmed
        assert pa is not None
        ni = pa.nonideal
        if ni.read_noise:
            sigma = ni.read_noise * pa.weight_max
            p = p + pa.rng.normal(0.0, 1.0, size=p.shape) * (sigma * np.sqrt(2.0 * sumsq))
        if ni.adc_noise:
            p = p + pa.adc_noise(p.shape) * step
        return p


def _adc_table(p_bound: int, step: int, bits: int) -> np.ndarray:
    return adc_convert(np.arange(-p_bound, p_bound + 1), step, bits).astype(_small_int_dtype(-(1 << bits), 1 << bits))


def _lstm_layer(cfg: LstmConfig, layer: int, model: QuantizedModel, x_tm: np.ndarray, trace: dict | None,
                programmed: ProgrammedArray | None) -> np.ndarray:
    """Run LSTM layer ``layer`` over time-major input codes (T, S, n) and return its h codes (T, S, H)."""
    lp = model.layers[layer]
    T, S, nin = x_tm.shape
    H, N = cfg.hidden_size, cfg.layer_cols
    bias_row = nin + H
    mat = _Matrix(lp.weights, cfg, programmed)
    R, ft = mat.n_tiles, mat.dtype
    ideal = programmed is None
    amax, step = cfg.adc_max, lp.adc_step

    gate_of_col = np.repeat(np.arange(4), H)
    col_scale = lp.gate_scale[gate_of_col]

    # acc -> table index -> gate output, per gate, over the whole accumulator domain [-R*amax, R*amax].
    acc_dom = np.arange(-R * amax, R * amax + 1)
    n_acc = acc_dom.size
    idx_tab = np.concatenate([gate_index(acc_dom, lp.gate_scale[g], cfg) for g in range(4)])
    gate_tab = activation(idx_tab, np.repeat(np.asarray(GATE_IS_TANH), n_acc), cfg).astype(np.int32)
    acc_off = (gate_of_col * n_acc + R * amax).astype(np.intp)

    use_adc_table = ideal and 2 * mat.p_bound + 1 <= _TABLE_LIMIT
    # Without a trace and with a single row tile, ADC + table index + activation compose into one table
    # indexed by the dot product itself (one lookup per column per step).
    compose = use_adc_table and trace is None and R == 1 and 4 * (2 * mat.p_bound + 1) <= _TABLE_LIMIT
    if use_adc_table:
        adc_tab = _adc_table(mat.p_bound, step, cfg.adc_bits)
    if compose:
        span = 2 * mat.p_bound + 1
        comp_tab = gate_tab[(adc_tab.astype(np.intp) + R * amax)[None, :] + (np.arange(4) * n_acc)[:, None]].ravel()
        p_offset = (gate_of_col * span + mat.p_bound).astype(ft)
    elif use_adc_table:
        p_offset = np.full(N, mat.p_bound, dtype=ft)
    else:
        p_offset = np.zeros(N, dtype=ft)

    # Dot products of the x rows and the bias row for every timestep at once (they do not depend on h),
    # with the table offsets folded in so that a step only adds the h rows.
    px = np.zeros((R, T, S, N), dtype=ft)
    mat.partial(x_tm.astype(ft), 0, px)
    px[mat.bias_tile(bias_row)] += ft(cfg.dac_max) * mat.wt[bias_row]
    if ideal:
        px += p_offset
    px = np.ascontiguousarray(px.transpose(1, 0, 2, 3))  # (T, R, S, N)
    if not ideal:
        ssq = np.zeros((R, T, S, 1))
        mat.sumsq(x_tm, 0, ssq)
        ssq[mat.bias_tile(bias_row)] += float(cfg.dac_max) ** 2
        ssq = ssq.transpose(1, 0, 2, 3)

    cdt = np.int32 if cfg.frac_bits + cfg.cell_bits <= 30 else np.int64
    c = np.zeros((S, H), dtype=cdt)
    h_prev = np.zeros((S, H), dtype=ft)
    hs = np.empty((T, S, H), dtype=np.int8 if cfg.dac_bits <= 8 else np.int16)
    half_c = np.asarray(1 << (cfg.frac_bits - 1), dtype=cdt)
    tanh_c_tab = None
    if 2 * cfg.cell_max + 1 <= _TABLE_LIMIT:
        cdom = np.arange(-cfg.cell_max, cfg.cell_max + 1)
        tanh_c_tab = activation(tanh_cell_index(cdom, cfg), True, cfg).astype(np.int32)
    one2 = 1 << (2 * cfg.frac_bits)
    h_tab = None
    if 2 * one2 + 1 <= _TABLE_LIMIT:
        pdom = np.arange(-one2, one2 + 1)
        h_tab = requant_h(pdom, 1, cfg).astype(hs.dtype)

    if trace is not None:
        tr_adc = np.empty((T, R, S, N), dtype=np.int32)
        tr_acc = np.empty((T, S, N), dtype=np.int32)
        tr_gates = np.empty((T, S, N), dtype=np.int32)
        tr_c = np.empty((T, S, H), dtype=np.int32)
        tr_tc = np.empty((T, S, H), dtype=np.int32)

    for t in range(T):
        p = px[t]
        mat.partial(h_prev, nin, p)
        if compose:
            gates = comp_tab[p[0].astype(np.intp)]
        else:
            if use_adc_table:
                codes = adc_tab[p.astype(np.intp)]
            elif ideal:
                codes = adc_convert(p, step, cfg.adc_bits)
            else:
                sq = ssq[t].copy()
                mat.sumsq(h_prev, nin, sq)
                codes = adc_convert(mat.noisy(p, sq, step), step, cfg.adc_bits)
            acc = codes[0].astype(np.intp) if R == 1 else codes.sum(axis=0, dtype=np.intp)
            gates = gate_tab[acc + acc_off]
            if trace is not None:
                tr_adc[t] = codes
                tr_acc[t] = acc
                tr_gates[t] = gates
        i, f, g, o = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H : 3 * H], gates[:, 3 * H :]
        # c_t = sat(rshift_round(f*c + i*g, F)) -- in place; identical to datapath.cell_update.
        s = f * c
        s += i * g
        s += half_c
        s >>= cfg.frac_bits
        np.clip(s, -cfg.cell_max, cfg.cell_max, out=c)
        tc = tanh_c_tab[c + cfg.cell_max] if tanh_c_tab is not None else activation(tanh_cell_index(c, cfg), True, cfg)
        if h_tab is not None:
            oc = o * tc
            oc += one2
            h = h_tab[oc]
        else:
            h = requant_h(o, tc, cfg)
        hs[t] = h
        h_prev = h.astype(ft)
        if trace is not None:
            tr_c[t] = c
            tr_tc[t] = tc

    if trace is not None:
        seq = lambda a: np.ascontiguousarray(np.swapaxes(a, 0, 1)).astype(np.int32)  # noqa: E731
        trace[f"l{layer}_adc"] = np.ascontiguousarray(tr_adc.transpose(2, 0, 1, 3))
        trace[f"l{layer}_acc"] = seq(tr_acc)
        trace[f"l{layer}_idx"] = seq(gate_index(tr_acc, col_scale, cfg))
        trace[f"l{layer}_gates"] = seq(tr_gates)
        trace[f"l{layer}_c"] = seq(tr_c)
        trace[f"l{layer}_tanh_c"] = seq(tr_tc)
        trace[f"l{layer}_h"] = seq(hs)
    return hs


def _head(cfg: LstmConfig, model: QuantizedModel, h_tm: np.ndarray, trace: dict | None,
          programmed: ProgrammedArray | None) -> np.ndarray:
    """Dense head on every timestep's last-layer h codes (T, S, H); returns output codes (T, S, O)."""
    T, S, H = h_tm.shape
    O = cfg.output_size
    mat = _Matrix(model.head.weights, cfg, programmed)
    R, ft = mat.n_tiles, mat.dtype
    p = np.zeros((R, T, S, O), dtype=ft)
    mat.partial(h_tm.astype(ft), 0, p)
    bias_row = H
    p[mat.bias_tile(bias_row)] += ft(cfg.dac_max) * mat.wt[bias_row]
    step, bits = model.head.adc_step, cfg.head_adc_bits_eff
    if programmed is not None:
        ssq = np.zeros((R, T, S, 1))
        mat.sumsq(h_tm, 0, ssq)
        ssq[mat.bias_tile(bias_row)] += float(cfg.dac_max) ** 2
        p = mat.noisy(p, ssq, step)
    codes = adc_convert(p, step, bits)
    out = codes.sum(axis=0)
    if trace is not None:
        trace["head_adc"] = np.ascontiguousarray(codes.transpose(2, 1, 0, 3)).astype(np.int32)
    return out


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
    x = check_input_codes(inputs, cfg)
    if nonideal is not None and nonideal.ideal:
        nonideal = None
    programmed: list[ProgrammedArray | None] = [None] * (cfg.num_layers + 1)
    if nonideal is not None:
        seqs = np.random.SeedSequence(nonideal.seed).spawn(cfg.num_layers + 1)
        mats = [lp.weights for lp in model.layers] + [model.head.weights]
        programmed = [ProgrammedArray(m, cfg.weight_max, nonideal, np.random.default_rng(s)) for m, s in zip(mats, seqs)]
    tr: dict[str, np.ndarray] | None = {} if trace else None
    layer_in = np.ascontiguousarray(x.transpose(1, 0, 2))
    for layer in range(cfg.num_layers):
        layer_in = _lstm_layer(cfg, layer, model, layer_in, tr, programmed[layer])
    out = _head(cfg, model, layer_in, tr, programmed[-1])
    result: dict[str, np.ndarray] = {"inputs": x.astype(np.int32)}
    if tr is not None:
        result.update(tr)
    result["h"] = np.ascontiguousarray(layer_in.transpose(1, 0, 2)).astype(np.int32)
    result["outputs"] = np.ascontiguousarray(out.transpose(1, 0, 2)).astype(np.int32)
    return result
