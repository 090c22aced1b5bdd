"""A deliberately naive, loop-per-timestep implementation of docs/datapath.md, built only from the stage
functions of `golden.datapath` in int64. The optimized `golden.lstm.golden_forward` must equal it exactly."""

from __future__ import annotations

import numpy as np

from nvmlstm.golden import datapath as dp
from nvmlstm.golden.nvm import row_tile_bounds


def naive_forward(qm, x) -> dict[str, np.ndarray]:
    cfg = qm.config
    S, T, _ = x.shape
    H = cfg.hidden_size
    inp = np.asarray(x, dtype=np.int64)
    res: dict[str, np.ndarray] = {}
    is_tanh = np.repeat(np.array(dp.GATE_IS_TANH), H)
    for l, lp in enumerate(qm.layers):
        W = lp.weights.astype(np.int64)
        K = W.shape[1]
        c = np.zeros((S, H), np.int64)
        h = np.zeros((S, H), np.int64)
        rec = {k: [] for k in ("adc", "acc", "idx", "gates", "c", "tanh_c", "h")}
        for t in range(T):
            full = np.concatenate([inp[:, t], h, np.full((S, 1), cfg.dac_max)], axis=1)
            codes = np.stack(
                [
                    dp.adc_convert(full[:, a:b] @ W[:, a:b].T, lp.adc_step, cfg.adc_bits)
                    for a, b in row_tile_bounds(K, cfg.array_rows)
                ],
                axis=1,
            )  # (S, R, 4H)
            acc = codes.sum(axis=1)
            idx = dp.gate_index(acc, np.repeat(lp.gate_scale, H), cfg)
            gates = dp.activation(idx, is_tanh, cfg)
            i, f, g, o = np.split(gates, 4, axis=1)
            c = dp.cell_update(f, c, i, g, cfg)
            tc = dp.activation(dp.tanh_cell_index(c, cfg), True, cfg)
            h = dp.requant_h(o, tc, cfg)
            for k, v in zip(rec, (codes, acc, idx, gates, c, tc, h)):
                rec[k].append(v)
        for k, v in rec.items():
            res[f"l{l}_{k}"] = np.stack(v, axis=1)
        inp = res[f"l{l}_h"]
    W = qm.head.weights.astype(np.int64)
    full = np.concatenate([inp, np.full((S, T, 1), cfg.dac_max)], axis=2)
    codes = np.stack(
        [
            dp.adc_convert(full[..., a:b] @ W[:, a:b].T, qm.head.adc_step, cfg.head_adc_bits_eff)
            for a, b in row_tile_bounds(W.shape[1], cfg.array_rows)
        ],
        axis=2,
    )
    res["head_adc"] = codes
    res["outputs"] = codes.sum(axis=2)
    res["h"] = inp
    res["inputs"] = np.asarray(x, dtype=np.int64)
    return res
