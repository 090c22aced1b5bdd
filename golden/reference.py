"""Float reference path: the same network structure (stacked LSTM, per-timestep dense head) without any
quantization, in float64, for error measurements against the golden integer path.

Gate order and equations are PyTorch's ``nn.LSTM``: i, f, g, o; c_t = f*c_{t-1} + i*g; h_t = o*tanh(c_t).
"""

from __future__ import annotations

import numpy as np

from .model import FloatModel

__all__ = ["float_forward", "sigmoid"]


def sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def float_forward(model: FloatModel, x: np.ndarray, *, trace: bool = False) -> dict[str, np.ndarray]:
    """Run the float network on real inputs ``x`` (sequences, steps, input_size).

    Returns ``h`` (S, T, H) of the last layer and ``outputs`` (S, T, O); with ``trace``, also per layer
    ``l{l}_preact`` (S, T, 4H), ``l{l}_gates``, ``l{l}_c`` and ``l{l}_h``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != model.input_size:
        raise ValueError(f"inputs: shape {x.shape}, expected (sequences, steps, {model.input_size})")
    if not np.all(np.isfinite(x)):
        raise ValueError("inputs: contains NaN or infinity")
    S, T, _ = x.shape
    H = model.hidden_size
    out: dict[str, np.ndarray] = {}
    seq = x
    for l, fl in enumerate(model.layers):
        w_ih, w_hh, b = (np.asarray(a, dtype=np.float64) for a in (fl.w_ih, fl.w_hh, fl.bias))
        pre_x = seq @ w_ih.T + b  # (S, T, 4H): the input part does not depend on h
        h = np.zeros((S, H))
        c = np.zeros((S, H))
        hs = np.empty((S, T, H))
        if trace:
            pres, gates_tr, cs = (np.empty((S, T, 4 * H)), np.empty((S, T, 4 * H)), np.empty((S, T, H)))
        for t in range(T):
            z = pre_x[:, t] + h @ w_hh.T
            i, f, g, o = (
                sigmoid(z[:, :H]),
                sigmoid(z[:, H : 2 * H]),
                np.tanh(z[:, 2 * H : 3 * H]),
                sigmoid(z[:, 3 * H :]),
            )
            c = f * c + i * g
            h = o * np.tanh(c)
            hs[:, t] = h
            if trace:
                pres[:, t] = z
                gates_tr[:, t] = np.concatenate([i, f, g, o], axis=1)
                cs[:, t] = c
        if trace:
            out[f"l{l}_preact"], out[f"l{l}_gates"], out[f"l{l}_c"], out[f"l{l}_h"] = pres, gates_tr, cs, hs
        seq = hs
    out["h"] = seq
    out["outputs"] = seq @ np.asarray(model.head_w, dtype=np.float64).T + np.asarray(model.head_b, dtype=np.float64)
    return out
