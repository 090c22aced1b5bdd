"""PyTorch evaluation forward of an exported `golden.QuantizedModel`: the integer contract, bit for bit.

This is the model `train` evaluates after training: it computes with exactly the integers that are written
to ``model.npz`` (weight codes, ADC steps, gate scales) and with the tables of `golden.tables`, in float64
tensors that hold exact integers (every intermediate is far below 2**53). Its output codes equal
`golden.golden_forward`'s bit for bit (``tests/test_train_runs.py`` checks that on the whole digits test
set, ``tests/test_train_model.py`` on random models of five configurations); it is written independently of
golden's table-composition optimizations so that it checks them. Its ADC (`_adc`) and right shift
(`train.ops.rshift_round`) are proven equal to golden's on whole domains by ``tests/test_train_ckernel.py``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from nvmlstm.golden.config import LstmConfig
from nvmlstm.golden.model import QuantizedModel
from nvmlstm.golden.nvm import row_tile_bounds

from .ops import round_half_away, rshift_round, tables

__all__ = [
    "exact_forward",
    "tile_matrix",
    "tile_segments",
    "input_only_tiles",
    "tiled_inputs",
    "seg_addmm_",
    "seg_mm_t",
    "seg_grad",
    "distinct_rows",
]

_F64 = torch.float64


def tile_matrix(weights: torch.Tensor, array_rows: int) -> torch.Tensor:
    """Weights (N, K) to the row-tiled operand (K, R * N): column block r holds tile r's rows, zero elsewhere.

    ``inputs (.., K) @ tile_matrix(W)`` then gives every row tile's partial dot products side by side, one
    GEMM for all tiles (the zeros are exact).
    """
    N, K = weights.shape
    mask = _tile_mask(K, array_rows, weights.dtype)
    return (weights.t()[:, None, :] * mask[:, :, None]).reshape(K, mask.shape[1] * N)


@functools.lru_cache(maxsize=256)
def tile_segments(K: int, array_rows: int, lo: int, hi: int) -> tuple[tuple[int, int, int], ...]:
    """Where rows ``[lo, hi)`` of a K-row matrix lie in its row tiles: ``(r, a - lo, b - lo)`` for every tile
    ``r`` whose rows meet ``[lo, hi)`` in ``[a, b)``.

    The compact form of `tile_matrix` for the training GEMMs: each matrix row belongs to exactly one tile,
    so ``x @ tile_matrix(W)[lo:hi]`` is, per segment, ``x[:, a:b] @ W.T[a:b]`` written into tile ``r``'s
    column block -- the same integers at 1/R of the multiply-adds (the zeros of `tile_matrix` are skipped).
    """
    segs = []
    for r, (a, b) in enumerate(row_tile_bounds(K, array_rows)):
        a2, b2 = max(a, lo), min(b, hi)
        if a2 < b2:
            segs.append((r, a2 - lo, b2 - lo))
    return tuple(segs)


@functools.lru_cache(maxsize=256)
def input_only_tiles(K: int, array_rows: int, n: int) -> tuple[tuple[int, int, int], ...]:
    """The row tiles of a K-row matrix whose rows are all input rows (rows ``0..n-1``): ``(r, a, b)``.

    Their dot products do not depend on h, so training converts them for every timestep before the
    recurrence (`nvmlstm.train.recurrence.InputTiles`). They are the first tiles (the bias row, ``K - 1``,
    is never in one).
    """
    return tuple((r, a, b) for r, (a, b) in enumerate(row_tile_bounds(K, array_rows)) if b <= n)


def tiled_inputs(
    x: torch.Tensor, wt: torch.Tensor, bias: torch.Tensor, K: int, array_rows: int, lo: int = 0
) -> torch.Tensor:
    """Every row tile's partial dot products of the rows that do not depend on h (autograd).

    ``x`` (M, n): input codes of rows ``lo..lo+n-1`` of the K-row matrix; ``wt`` (n, N): those rows of the
    transposed weight codes; ``bias`` (N,): the bias row's codes times its drive (row ``K - 1``). ``lo``
    must be a tile boundary (the tiles before it are converted elsewhere, `input_only_tiles`). Returns
    (M, R', N) for the R' tiles from row ``lo`` on, equal to ``x @ tile_matrix(W)[lo:lo+n] + bias row``
    there (`tile_segments`; exact integers).
    """
    M, N = x.shape[0], wt.shape[1]
    bounds = row_tile_bounds(K, array_rows)
    r0 = sum(1 for _, b in bounds if b <= lo)  # tiles before lo
    if lo and bounds[r0][0] != lo:
        raise ValueError(f"tiled_inputs: row {lo} is not the first row of a row tile")
    R = len(bounds) - r0
    parts: list[torch.Tensor | None] = [None] * R
    for r, a, b in tile_segments(K, array_rows, lo, lo + x.shape[1]):
        parts[r - r0] = x[:, a:b] @ wt[a:b]
    rb = tile_segments(K, array_rows, K - 1, K)[0][0] - r0  # the bias row's tile
    parts[rb] = bias.expand(M, N) if parts[rb] is None else parts[rb] + bias
    zero = None
    for r in range(R):
        if parts[r] is None:
            zero = x.new_zeros(M, N) if zero is None else zero
            parts[r] = zero
    return torch.stack(parts, 1)


def distinct_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows of ``x`` (M, n) and, for every row of ``x``, which of them it is: ``(u, inv)`` with
    ``u[inv]`` equal to ``x`` exactly.

    Why: a row tile's dot products depend only on the input row, and character-level inputs repeat a few
    dozen rows (one code vector per character) thousands of times per batch, so `recurrence.InputTiles`
    computes and converts each distinct row once (charlm: 2,048 rows per batch, 49-65 distinct).

    How: a float64 fingerprint of every row (its dot product with a fixed random vector, `_row_fingerprint`),
    the distinct fingerprints (a 1-D sort), the first row of each; then verified, ``u[inv] == x``. Rows that
    differ but share a fingerprint fail the check and ``torch.unique(x, dim=0)`` decides instead (the same
    result, ~9 ms rather than ~2.6 ms for 2,048 x 256); equal rows with different fingerprints (never seen)
    would only leave duplicates in ``u``. Deterministic: ``u`` is in fingerprint order.
    """
    M = x.shape[0]
    _, inv = torch.unique(_row_fingerprint(x), return_inverse=True)
    n_u = int(inv.max()) + 1 if M else 0
    first = torch.full((n_u,), M, dtype=torch.long).scatter_reduce_(0, inv, torch.arange(M), "amin")
    u = x.index_select(0, first)
    if not torch.equal(u.index_select(0, inv), x):  # a fingerprint shared by different rows
        u, inv = torch.unique(x, dim=0, return_inverse=True)
    return u, inv


def _row_fingerprint(x: torch.Tensor) -> torch.Tensor:
    """(M,) float64: every row's dot product with a fixed random vector (`distinct_rows`)."""
    return x.double() @ _fingerprint_weights(x.shape[1])


@functools.lru_cache(maxsize=16)
def _fingerprint_weights(n: int) -> torch.Tensor:
    return torch.rand(n, generator=torch.Generator().manual_seed(n), dtype=_F64).add_(0.5)


def seg_addmm_(out: torch.Tensor, h: torch.Tensor, wh: torch.Tensor, segs) -> torch.Tensor:
    """``out`` (M, R, N) += the tiled product of ``h`` (M, H) with the recurrent rows ``wh`` (H, N), per
    segment of `tile_segments` (in place, no graph)."""
    for r, a, b in segs:
        out[:, r].addmm_(h[:, a:b], wh[a:b])
    return out


def seg_mm_t(dp: torch.Tensor, wh: torch.Tensor, segs, out: torch.Tensor) -> torch.Tensor:
    """The transposed product: ``out`` (M, H) = d(loss)/dh from ``dp`` (M, R, N), per segment (the
    segments of h are disjoint, so each writes its own columns)."""
    for r, a, b in segs:
        out[:, a:b] = dp[:, r] @ wh[a:b].t()
    return out


def seg_grad(h: torch.Tensor, dp: torch.Tensor, segs, H: int) -> torch.Tensor:
    """The weight gradient (H, N) of `seg_addmm_`: ``h[:, a:b].T @ dp[:, r]`` per segment (M rows)."""
    dw = h.new_zeros(H, dp.shape[2])
    for r, a, b in segs:
        dw[a:b] = h[:, a:b].t() @ dp[:, r]
    return dw


@functools.lru_cache(maxsize=64)
def _tile_mask(K: int, array_rows: int, dtype: torch.dtype) -> torch.Tensor:
    """(K, R) membership of every matrix row in its row tile (cached: built on every training step)."""
    bounds = row_tile_bounds(K, array_rows)
    mask = torch.zeros(K, len(bounds), dtype=dtype)
    for r, (a, b) in enumerate(bounds):
        mask[a:b, r] = 1
    return mask


def _adc(p: torch.Tensor, step: int, bits: int) -> torch.Tensor:
    qmax = (1 << (bits - 1)) - 1
    # p / step in float64, like golden.datapath.adc_convert: exact tie decisions for |p| < 2**50.
    return round_half_away(p / float(step)).clamp(-qmax, qmax)


@torch.no_grad()
def exact_forward(
    model: QuantizedModel, codes: np.ndarray | torch.Tensor, *, return_h: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Run the integer network on input DAC codes.

    Parameters
    ----------
    model : QuantizedModel
    codes : array of int, shape (S, T, I)
        Input DAC codes in ``[-dac_max, dac_max]``; every sequence starts from cleared state.
    return_h : bool
        Also return the last layer's h codes (S, T, H).

    Returns
    -------
    Tensor (S, T, O), float64 holding the exact output codes (head ADC codes summed over row tiles).
    """
    cfg: LstmConfig = model.config
    x = torch.as_tensor(np.asarray(codes), dtype=_F64)
    if x.ndim != 3 or x.shape[2] != cfg.input_size:
        raise ValueError(f"inputs: shape {tuple(x.shape)}, expected (sequences, steps, {cfg.input_size})")
    tab = tables(cfg, _F64)
    # Sequences are independent: evaluated in chunks so that the largest intermediate (every row tile's dot
    # products at every step, float64) stays near _CHUNK_BYTES whatever the split's size.
    R = max(
        len(row_tile_bounds(cfg.layer_input_size(l) + cfg.hidden_size + 1, cfg.array_rows))
        for l in range(cfg.num_layers)
    )
    per_seq = max(1, x.shape[1] * R * cfg.layer_cols * 8)
    chunk = max(1, _CHUNK_BYTES // per_seq)
    parts = [_exact_chunk(model, x[i : i + chunk], tab) for i in range(0, max(1, x.shape[0]), chunk)]
    out = torch.cat([p[0] for p in parts])
    if return_h:
        return out, torch.cat([p[1] for p in parts])
    return out


#: Bytes of the largest intermediate of one `exact_forward` chunk (see there).
_CHUNK_BYTES = 128 << 20


def _exact_chunk(model: QuantizedModel, x: torch.Tensor, tab) -> tuple[torch.Tensor, torch.Tensor]:
    """`exact_forward` of the sequences ``x`` (S, T, I), float64: output codes (S, T, O) and h (S, T, H)."""
    cfg: LstmConfig = model.config
    S, T, _ = x.shape
    H, N, F, dmax = cfg.hidden_size, cfg.layer_cols, cfg.frac_bits, cfg.dac_max
    lo = cfg.lut_min
    # Gate g (columns 2H..3H) reads the tanh half of the combined table.
    tab_off = torch.zeros(N, dtype=torch.long)
    tab_off[2 * H : 3 * H] = cfg.lut_size
    seq = x.transpose(0, 1)  # (T, S, n): time-major
    for l, lp in enumerate(model.layers):
        n = cfg.layer_input_size(l)
        w = tile_matrix(torch.as_tensor(lp.weights.astype(np.float64)), cfg.array_rows)  # (K, R*N)
        R = w.shape[1] // N
        wx, wh, wb = w[:n], w[n : n + H], w[n + H]
        # Input rows and the bias row (driven at dac_max) do not depend on h: one GEMM for all steps.
        pre = (seq.reshape(T * S, n) @ wx + dmax * wb).reshape(T, S, R, N)
        gs = torch.as_tensor(lp.gate_scale.astype(np.float64)).repeat_interleave(H)
        h = torch.zeros(S, H, dtype=_F64)
        c = torch.zeros(S, H, dtype=_F64)
        hs = torch.empty(T, S, H, dtype=_F64)
        for t in range(T):
            p = pre[t] + (h @ wh).reshape(S, R, N)
            acc = _adc(p, lp.adc_step, cfg.adc_bits).sum(1)
            idx = rshift_round(acc * gs, cfg.scale_shift).clamp(lo, cfg.lut_max)
            gates = torch.take(tab.gate, (idx - lo).long() + tab_off)
            i, f, g, o = gates.split(H, dim=1)
            c = rshift_round(f * c + i * g, F).clamp(-cfg.cell_max, cfg.cell_max)
            tidx = rshift_round(c, F - cfg.lut_frac).clamp(lo, cfg.lut_max)
            tc = torch.take(tab.tanh, (tidx - lo).long())
            h = rshift_round(o * tc * dmax, 2 * F).clamp(-dmax, dmax)
            hs[t] = h
        seq = hs
    wt = tile_matrix(torch.as_tensor(model.head.weights.astype(np.float64)), cfg.array_rows)  # (H+1, Rh*O)
    O = cfg.output_size
    p = (seq.reshape(T * S, H) @ wt[:H] + dmax * wt[H]).reshape(T, S, -1, O)
    out = _adc(p, model.head.adc_step, cfg.head_adc_bits_eff).sum(2).transpose(0, 1).contiguous()
    return out, seq.transpose(0, 1).contiguous()
