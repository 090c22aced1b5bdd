"""The trainable network: a stacked LSTM + dense head with a float mode and a quantization-aware mode.

One module, three forwards:

``fp`` (``quantized = False``)
    A plain ``torch.nn.LSTM`` + ``torch.nn.Linear`` on real inputs. The parameters live in those two
    modules, so a float ``nn.LSTM`` / ``nn.Linear`` state dict loads directly (`load_float_state`).
``qat``, training (``quantized = True``, ``self.training``)
    The hardware datapath of `docs/datapath.md` on fake-quantized numbers, with straight-through gradients:
    the same float weights are mapped to NVM codes with per-gate scales exactly as `golden.ptq` maps them,
    inputs and h are DAC codes, every row tile's dot product goes through its ADC, the codes are summed,
    scaled by the integer gate scale and looked up in the golden tables, and the cell state is fixed point
    with saturation (`train.recurrence`). Optional weight-programming and ADC noise is drawn per batch.
``qat``, evaluation (``quantized = True``, ``not self.training``)
    `export` gives the `golden.QuantizedModel` (integers) and `train.exact.exact_forward` runs it: the
    output codes equal `golden.golden_forward`'s bit for bit.

Learned quantizer parameters: the ADC step of every layer and of the head, stored as ``log(step)`` and
rounded to an integer in the forward (the register holds an integer). They start from the PTQ calibration
(`calibrate`) and are trained with the LSQ gradient (Esser et al., "Learned Step Size Quantization",
ICLR 2020); see ``docs/training.md`` for why. The per-gate weight scales are not learned: they follow the
weights (max |W_eff| per gate / weight_max, the PTQ rule), so the export is the PTQ mapping of the trained
float weights plus the learned steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from nvmlstm.golden.config import LstmConfig
from nvmlstm.golden.model import FloatLayer, FloatModel, HeadParams, LayerParams, QuantizedModel
from nvmlstm.golden.ptq import DEFAULT_PERCENTILE, quantize_model

from .exact import exact_forward, input_only_tiles, tile_matrix, tile_segments, tiled_inputs
from .ops import adc_round, ste, tables
from .recurrence import InputTiles, QuantRecurrence, RecurrenceConsts, native_kernel

__all__ = ["QuantLSTM", "StateDictError", "float_state_keys"]


class StateDictError(ValueError):
    """A float state dict does not fit the network (missing keys, wrong shapes, non-finite values)."""


def float_state_keys(num_layers: int) -> list[str]:
    """Keys of the float parameters: ``nn.LSTM`` ones under ``lstm.``, ``nn.Linear`` ones under ``head.``."""
    keys = []
    for l in range(num_layers):
        keys += [f"lstm.weight_ih_l{l}", f"lstm.weight_hh_l{l}", f"lstm.bias_ih_l{l}", f"lstm.bias_hh_l{l}"]
    return keys + ["head.weight", "head.bias"]


class QuantLSTM(nn.Module):
    """Stacked LSTM + dense head, float or quantization-aware (see the module docstring).

    Parameters
    ----------
    cfg : LstmConfig
        Shape and number formats; the quantized forward follows it exactly.
    input_scale : float
        Real value of one input DAC code (inputs are quantized as ``round_half_even(x / input_scale)``).
    """

    def __init__(self, cfg: LstmConfig, input_scale: float, *, learn_weight_scales: bool = False):
        super().__init__()
        self.cfg = cfg
        self.input_scale = float(input_scale)
        self.lstm = nn.LSTM(cfg.input_size, cfg.hidden_size, cfg.num_layers)
        self.head = nn.Linear(cfg.hidden_size, cfg.output_size)
        self.log_step = nn.Parameter(torch.zeros(cfg.num_layers))
        self.log_head_step = nn.Parameter(torch.zeros(()))
        # Learned per-gate weight scales (LSQ), used when ``learn_weight_scales``; otherwise the scales follow
        # the weights (max-abs, the PTQ rule). Registered either way, so state dicts have one layout.
        self.learn_weight_scales = bool(learn_weight_scales)
        # The tile GEMMs per row-tile segment (default) or on the zero-padded side-by-side matrix (the
        # previous form: the same integers at R times the multiply-adds; kept as the reference the tests and
        # benchmarks/train_speed.py compare against).
        self.segmented_gemm = True
        #: Convert the row tiles of input rows only before the recurrence (`recurrence.InputTiles`) where it
        #: applies (native kernel, table ADC); False converts every tile in the loop (the same integers).
        self.split_input_tiles = True
        #: There, compute each distinct input row once when rows repeat (character-level input; the same
        #: integers, `recurrence.InputTiles`); False computes every row (the reference of tests and benchmarks).
        self.distinct_input_rows = True
        self.log_wscale = nn.Parameter(torch.zeros(cfg.num_layers, 4))
        self.log_head_wscale = nn.Parameter(torch.zeros(()))
        self.quantized = False
        self.weight_noise = 0.0  # fraction of the conductance range (per device, per batch)
        self.adc_noise = 0.0  # LSB (per conversion)
        self._consts = RecurrenceConsts(
            hidden=cfg.hidden_size,
            adc_bits=cfg.adc_bits,
            adc_max=cfg.adc_max,
            lut_min=cfg.lut_min,
            lut_max=cfg.lut_max,
            lut_size=cfg.lut_size,
            scale_shift=cfg.scale_shift,
            frac_bits=cfg.frac_bits,
            lut_frac=cfg.lut_frac,
            cell_max=cfg.cell_max,
            dac_max=cfg.dac_max,
        )

    # ---------------------------------------------------------------------------------------------
    # Float weights in and out
    def float_parameters(self) -> list[nn.Parameter]:
        return list(self.lstm.parameters()) + list(self.head.parameters())

    def quantizer_parameters(self) -> list[nn.Parameter]:
        ps = [self.log_step, self.log_head_step]
        return ps + [self.log_wscale, self.log_head_wscale] if self.learn_weight_scales else ps

    @torch.no_grad()
    def init_weight_scales(self) -> None:
        """Start the learned weight scales at the max-abs rule of the current weights (the PTQ mapping)."""
        layers, head = self._quant_params(learned=False)
        for l, p in enumerate(layers):
            self.log_wscale[l].copy_(p["scale"].log())
        self.log_head_wscale.fill_(float(head["scale"][0].log()))

    def float_state(self) -> dict[str, torch.Tensor]:
        """The float weights as a state dict of ``{lstm: nn.LSTM, head: nn.Linear}`` (`float_state_keys`)."""
        sd = {f"lstm.{k}": v.detach().clone() for k, v in self.lstm.state_dict().items()}
        sd.update({f"head.{k}": v.detach().clone() for k, v in self.head.state_dict().items()})
        return sd

    def load_float_state(self, sd: Mapping[str, torch.Tensor], *, where: str = "state dict") -> None:
        """Load float weights from a ``torch.nn.LSTM`` + ``torch.nn.Linear`` state dict.

        Accepted layouts: keys ``lstm.weight_ih_l0`` ... ``head.weight``, ``head.bias`` (the state dict of any
        module with an ``nn.LSTM`` attribute ``lstm`` and an ``nn.Linear`` attribute ``head``), or
        ``{"lstm": nn.LSTM.state_dict(), "head": nn.Linear.state_dict()}``. The LSTM must be unidirectional,
        without projections, with biases; ``b_ih + b_hh`` becomes the hardware bias row.
        """
        if isinstance(sd.get("lstm"), Mapping) and isinstance(sd.get("head"), Mapping):
            flat = {f"lstm.{k}": v for k, v in sd["lstm"].items()}
            flat.update({f"head.{k}": v for k, v in sd["head"].items()})
            sd = flat
        want = self.float_state()
        missing = [k for k in want if k not in sd]
        if missing:
            raise StateDictError(
                f"{where}: missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} "
                f"(expected an nn.LSTM under 'lstm.' and an nn.Linear under 'head.' with "
                f"{self.cfg.num_layers} layer(s))"
            )
        extra = sorted(k for k in sd if k not in want)
        if extra:
            raise StateDictError(f"{where}: unexpected key {extra[0]} (bidirectional, projected or deeper LSTM?)")
        for k, v in want.items():
            got = sd[k]
            if not isinstance(got, torch.Tensor):
                raise StateDictError(f"{where}: {k} is not a tensor")
            if tuple(got.shape) != tuple(v.shape):
                raise StateDictError(
                    f"{where}: {k} has shape {tuple(got.shape)}, this network needs {tuple(v.shape)} "
                    f"(input_size={self.cfg.input_size}, hidden_size={self.cfg.hidden_size}, "
                    f"output_size={self.cfg.output_size})"
                )
            if not torch.isfinite(got).all():
                raise StateDictError(f"{where}: {k} contains NaN or infinity")
        with torch.no_grad():
            self.lstm.load_state_dict({k[5:]: sd[k].to(torch.float32) for k in want if k.startswith("lstm.")})
            self.head.load_state_dict({k[5:]: sd[k].to(torch.float32) for k in want if k.startswith("head.")})

    def float_model(self) -> FloatModel:
        """The float weights as a golden `FloatModel` (bias = b_ih + b_hh), float64."""
        layers = []
        for l in range(self.cfg.num_layers):
            g = lambda name, l=l: getattr(self.lstm, f"{name}_l{l}").detach().double().numpy()  # noqa: E731
            layers.append(FloatLayer(g("weight_ih"), g("weight_hh"), g("bias_ih") + g("bias_hh")))
        return FloatModel(
            tuple(layers), self.head.weight.detach().double().numpy(), self.head.bias.detach().double().numpy()
        )

    # ---------------------------------------------------------------------------------------------
    # Quantization
    def input_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Real inputs to DAC codes: ``clip(round_half_even(x / input_scale), +-dac_max)`` (as float)."""
        dmax = self.cfg.dac_max
        return torch.round(x / self.input_scale).clamp(-dmax, dmax)

    @torch.no_grad()
    def calibrate(self, x_calib: np.ndarray, percentile: float = DEFAULT_PERCENTILE) -> QuantizedModel:
        """Set the ADC steps to the PTQ calibration of the current float weights on real inputs ``x_calib``.

        Returns the PTQ model (`golden.ptq.quantize_model`), which is also the ``ptq`` mode's result.
        """
        qm = quantize_model(
            self.float_model(),
            self.cfg,
            np.asarray(x_calib, dtype=np.float64),
            input_scale=self.input_scale,
            percentile=percentile,
        )
        self.log_step.copy_(torch.tensor([math.log(lp.adc_step) for lp in qm.layers]))
        self.log_head_step.fill_(math.log(qm.head.adc_step))
        return qm

    def _weight_codes(
        self, w_eff: torch.Tensor, per_gate: bool, log_scale: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fake-quantized codes (STE) of ``w_eff`` and their scale per row (the PTQ rule of golden.ptq).

        With ``log_scale`` (learned, LSQ): the scale is ``exp(log_scale)`` and weights beyond ``weight_max``
        codes are clipped; the STE passes the gradient inside the range only, so the scale's gradient is
        LSQ's (``round(v) - v`` inside, ``+-weight_max`` outside, through the codes and the gate scale).
        """
        cfg = self.cfg
        if log_scale is not None:
            s = torch.exp(log_scale).reshape(-1)
            s_rows = s.repeat_interleave(w_eff.shape[0] // s.numel())[:, None]
            v = (w_eff / s_rows).clamp(-cfg.weight_max, cfg.weight_max)
            return ste(torch.round(v), v), s
        d = w_eff.detach()
        if per_gate:
            s = d.view(4, cfg.hidden_size, -1).abs().amax(dim=(1, 2)) / cfg.weight_max
        else:
            s = d.abs().amax().reshape(1) / cfg.weight_max
        s = torch.where(s > 0, s, torch.ones_like(s))  # an all-zero gate: any scale, codes are 0
        s_rows = s.repeat_interleave(w_eff.shape[0] // s.numel())[:, None]
        v = w_eff / s_rows
        codes = ste(torch.round(v).clamp(-cfg.weight_max, cfg.weight_max), v)
        return codes, s

    def _noisy(self, codes: torch.Tensor) -> torch.Tensor:
        """Programming noise on the differential pair (as `golden.nvm.ProgrammedArray`), straight through."""
        if not (self.training and self.weight_noise > 0):
            return codes
        wmax = float(self.cfg.weight_max)
        sigma = self.weight_noise * wmax
        c = codes.detach()
        gp = (c.clamp(min=0) + sigma * torch.randn_like(c)).clamp(0.0, wmax)
        gm = ((-c).clamp(min=0) + sigma * torch.randn_like(c)).clamp(0.0, wmax)
        return codes + (gp - gm - c)

    def _step(self, log_step: torch.Tensor) -> torch.Tensor:
        s = torch.exp(log_step)
        return ste(torch.round(s), s).clamp(1.0, float(self.cfg.adc_step_max))

    def quant_params(self) -> tuple[list[dict], dict]:
        """Everything the quantized forward uses, as (integer-valued) tensors carrying STE gradients.

        Returns per layer ``{"codes" (4H, K), "scale" (4,), "step" (), "gate_scale" (4,)}`` and for the
        head ``{"codes" (O, H+1), "scale" (1,), "step" ()}``. `export` converts exactly these to integers.
        """
        return self._quant_params(self.learn_weight_scales)

    def _quant_params(self, learned: bool) -> tuple[list[dict], dict]:
        cfg = self.cfg
        dmax = float(cfg.dac_max)
        layers = []
        for l in range(cfg.num_layers):
            w_ih = getattr(self.lstm, f"weight_ih_l{l}")
            w_hh = getattr(self.lstm, f"weight_hh_l{l}")
            b = getattr(self.lstm, f"bias_ih_l{l}") + getattr(self.lstm, f"bias_hh_l{l}")
            in_scale = self.input_scale if l == 0 else 1.0 / dmax
            w_eff = torch.cat([w_ih * in_scale, w_hh / dmax, b[:, None] / dmax], dim=1)
            codes, s = self._weight_codes(w_eff, per_gate=True, log_scale=self.log_wscale[l] if learned else None)
            step = self._step(self.log_step[l])
            gs = s * step * float(1 << (cfg.lut_frac + cfg.scale_shift))
            gs = ste(torch.round(gs), gs).clamp(1.0, float(cfg.scale_max))
            layers.append({"codes": codes, "scale": s, "step": step, "gate_scale": gs})
        w_eff = torch.cat([self.head.weight / dmax, self.head.bias[:, None] / dmax], dim=1)
        codes, s = self._weight_codes(w_eff, per_gate=False, log_scale=self.log_head_wscale if learned else None)
        head = {"codes": codes, "scale": s, "step": self._step(self.log_head_step)}
        return layers, head

    @torch.no_grad()
    def export(self) -> QuantizedModel:
        """The integers the quantized forward computes with, as a golden `QuantizedModel`."""
        layers, head = self.quant_params()
        lps = tuple(
            LayerParams(p["codes"].numpy().astype(np.int16), int(p["step"]), p["gate_scale"].numpy().astype(np.int64))
            for p in layers
        )
        hp = HeadParams(head["codes"].numpy().astype(np.int16), int(head["step"]))
        output_scale = float(head["scale"].double()[0]) * int(head["step"])
        return QuantizedModel(self.cfg, lps, hp, self.input_scale, output_scale)

    # ---------------------------------------------------------------------------------------------
    # Forward
    def forward(self, x: torch.Tensor, *, last_only: bool = False) -> torch.Tensor:
        """Real inputs (B, T, I) to real outputs (B, T, O) in the current mode (see the module docstring).

        ``last_only``: return only the last timestep's output, (B, 1, O) -- all a classifier or a one-step
        forecaster needs; the quantized training forward then runs the head on that step alone.
        """
        if not self.quantized:
            out, _ = self.lstm(x.transpose(0, 1))
            if last_only:
                out = out[-1:]
            return self.head(out).transpose(0, 1)
        if not self.training:
            qm = self.export()
            codes = self.input_codes(x.detach().double())
            out = (exact_forward(qm, codes) * qm.output_scale).to(x.dtype)
            return out[:, -1:] if last_only else out
        return self._qat_forward(x, last_only=last_only)

    def forward_codes(self, x: torch.Tensor, *, fake_quant: bool = False) -> torch.Tensor:
        """Output codes (B, T, O) of the quantized model on real inputs ``x``.

        ``fake_quant=False``: the exact evaluation path on the exported integers (float64). ``True``: the
        training-mode forward with noise off (float32) -- equal to the exact path for the supported configs,
        which ``tests/test_train_model.py`` checks, so training optimizes what the hardware computes.
        """
        if not fake_quant:
            return exact_forward(self.export(), self.input_codes(x.detach().double()))
        with torch.no_grad():
            return self._qat_forward(x, codes_out=True, noise=False)

    def _qat_forward(
        self, x: torch.Tensor, *, codes_out: bool = False, noise: bool = True, last_only: bool = False
    ) -> torch.Tensor:
        cfg = self.cfg
        B, T, _ = x.shape
        H, N, dmax = cfg.hidden_size, cfg.layer_cols, float(cfg.dac_max)
        tab = tables(cfg, torch.float32)
        layers, head = self.quant_params()
        adc_noise = self.adc_noise if (noise and self.training) else 0.0
        seq = self.input_codes(x.detach().float()).transpose(0, 1)  # (T, B, I) DAC codes, no gradient
        for l, p in enumerate(layers):
            n = cfg.layer_input_size(l)
            codes = self._noisy(p["codes"]) if noise else p["codes"]
            K = n + H + 1
            exact_p = not (noise and self.training and self.weight_noise > 0)
            pmax = min(cfg.array_rows, n + H + 1) * cfg.weight_max * cfg.dac_max if exact_p else None
            if not self.segmented_gemm:
                wtm = tile_matrix(codes, cfg.array_rows)  # (K, R*N)
                R = wtm.shape[1] // N
                pre = torch.addmm(dmax * wtm[n + H], seq.reshape(T * B, n), wtm[:n]).view(T, B, R, N)
                nz = torch.randn(T, B, R, N) * adc_noise if adc_noise > 0 else None
                seq = QuantRecurrence.apply(
                    pre, wtm[n : n + H], p["step"], p["gate_scale"], nz, pmax, self._consts, tab
                )
                continue
            wt = codes.t()  # (K, N): rows input | h | bias
            x2 = seq.reshape(T * B, n)
            # Tiles of input rows only, with exact dot products and no ADC noise (the table ADC) and the native
            # kernel: converted for every timestep before the loop, which then adds their sum (acc_in).
            split = self.split_input_tiles and native_kernel(pmax, adc_noise > 0, x2.dtype) is not None
            segs_in = input_only_tiles(K, cfg.array_rows, n) if split else ()
            lo = segs_in[-1][2] if segs_in else 0  # first row of the tiles converted in the loop
            acc_in = (
                InputTiles.apply(
                    x2[:, :lo], wt[:lo], p["step"], pmax, segs_in, self._consts, tab, self.distinct_input_rows
                ).view(T, B, N)
                if segs_in
                else None
            )
            # Input rows and bias row of the other row tiles for every timestep at once (per tile segment: the
            # zero blocks of the row-tiled matrix are skipped); only h @ W_h stays in the loop.
            pre = tiled_inputs(x2[:, lo:], wt[lo:n], dmax * wt[n + H], K, cfg.array_rows, lo=lo)
            R = pre.shape[1]
            pre = pre.view(T, B, R, N)
            nz = torch.randn(T, B, R, N) * adc_noise if adc_noise > 0 else None
            # Exact integer dot products (no weight noise): the ADC is a table lookup over |p| <= pmax.
            r_in = len(segs_in)
            hseg = tuple((r - r_in, a, b) for r, a, b in tile_segments(K, cfg.array_rows, n, n + H))
            seq = QuantRecurrence.apply(
                pre, wt[n : n + H], p["step"], p["gate_scale"], nz, pmax, self._consts, tab, hseg, acc_in, r_in
            )
        codes = self._noisy(head["codes"]) if noise else head["codes"]
        wt = codes.t()  # (H+1, O): rows h | bias
        O = cfg.output_size
        if last_only:
            seq = seq[-1:]
            T = 1
        if self.segmented_gemm:
            p = tiled_inputs(seq.reshape(T * B, H), wt[:H], dmax * wt[H], H + 1, cfg.array_rows).view(T, B, -1, O)
        else:
            wtm = tile_matrix(codes, cfg.array_rows)  # (H+1, Rh*O)
            p = torch.addmm(dmax * wtm[H], seq.reshape(T * B, H), wtm[:H]).view(T, B, -1, O)
        v = p / head["step"]
        if adc_noise > 0:
            v = v + torch.randn_like(v) * adc_noise
        amax = cfg.head_adc_max
        a = ste(adc_round(v.detach()), v).clamp(-amax, amax)  # the head's ADC, STE gradient
        out = a.sum(2).transpose(0, 1)  # (B, T, O) output codes
        if codes_out:
            return out
        # Real outputs: code * s_head * step. The step's gradient through both factors is LSQ's.
        return out * (head["scale"][0] * head["step"])
