"""Amaranth-simulator support: the macros' behavioral model (the golden NVM array model itself) and a
driver that programs a model, streams sequences through the accelerator and collects every output beat.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amaranth.sim import Simulator

from nvmlstm.golden.datapath import adc_convert
from nvmlstm.golden.model import QuantizedModel

from .accelerator import NvmLstmAccelerator
from .macro import NvmArrayMacro

__all__ = ["add_macro_models", "run_accelerator", "AcceleratorRun"]


def _unpack(value: int, n: int, bits: int) -> np.ndarray:
    mask, half = (1 << bits) - 1, 1 << (bits - 1)
    out = np.empty(n, dtype=np.int64)
    for k in range(n):
        v = (value >> (k * bits)) & mask
        out[k] = v - (1 << bits) if v & half else v
    return out


def _pack(codes: np.ndarray, bits: int) -> int:
    mask = (1 << bits) - 1
    v = 0
    for j, c in enumerate(codes):
        v |= (int(c) & mask) << (j * bits)
    return v


def _macro_process(mac: NvmArrayMacro):
    """The timing of docs/rtl.md around `golden.datapath.adc_convert`: inputs sampled at the read edge,
    ``y``/``valid`` updated ``read_latency`` edges later."""

    async def process(ctx):
        w = np.zeros((mac.rows, mac.cols), dtype=np.int64)
        pending: list[tuple[int, int]] = []
        edge = 0
        was_valid = False
        async for _, rst, we, row, col, code, read, xbits, step in ctx.tick().sample(
            mac.prog_we, mac.prog_row, mac.prog_col, mac.prog_code, mac.read, mac.x, mac.adc_step
        ):
            edge += 1
            if rst:
                w[:] = 0
                pending.clear()
                if was_valid:
                    ctx.set(mac.valid, 0)
                    was_valid = False
                continue
            if we and row < mac.rows and col < mac.cols:
                w[row, col] = code
            if read:
                x = _unpack(xbits, mac.rows, mac.dac_bits)
                codes = adc_convert(x @ w, max(int(step), 1), mac.adc_bits)
                pending.append((edge + mac.read_latency - 1, _pack(codes, mac.adc_bits)))
            if pending and pending[0][0] == edge:
                ctx.set(mac.y, pending.pop(0)[1])
                ctx.set(mac.valid, 1)
                was_valid = True
            elif was_valid:
                ctx.set(mac.valid, 0)
                was_valid = False

    return process


def add_macro_models(sim: Simulator, top: NvmLstmAccelerator) -> None:
    """Drive every macro of ``top`` (built with ``macro_model="sim"``) from the golden array model."""
    for mac in top.macros:
        if mac.model != "sim":
            raise ValueError("add_macro_models needs an accelerator built with macro_model='sim'")
        sim.add_process(_macro_process(mac))


@dataclass
class AcceleratorRun:
    """What the accelerator produced: ``outputs`` (S, T, O), ``h`` (S, T, L, H), and per sequence the
    ``cycles`` counter at ``done``."""

    outputs: np.ndarray
    h: np.ndarray
    cycles: list[int] = field(default_factory=list)


def run_accelerator(
    top: NvmLstmAccelerator,
    model: QuantizedModel,
    inputs: np.ndarray,
    *,
    seed: int = 0,
    input_gap_prob: float = 0.0,
    backpressure_prob: float = 0.0,
    vcd: str | None = None,
) -> AcceleratorRun:
    """Program ``model``, then for each sequence: clear, start, stream its timesteps, collect the beats.

    ``input_gap_prob`` / ``backpressure_prob`` randomly withhold ``inp.valid`` / ``out.ready`` (seeded).
    """
    cfg = top.cfg
    inputs = np.asarray(inputs)
    S, T, _ = inputs.shape
    L, H, O = cfg.num_layers, cfg.hidden_size, cfg.output_size
    outputs = np.zeros((S, T, O), dtype=np.int64)
    hs = np.zeros((S, T, L, H), dtype=np.int64)
    run = AcceleratorRun(outputs, hs)
    writes = top.pmap.writes(model, skip_zero_weights=True)
    rng = np.random.default_rng(seed)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    add_macro_models(sim, top)

    async def testbench(ctx):
        for addr, val in writes:
            ctx.set(top.prog_addr, addr)
            ctx.set(top.prog_data, val)
            ctx.set(top.prog_we, 1)
            await ctx.tick()
        ctx.set(top.prog_we, 0)
        for s in range(S):
            ctx.set(top.clear, 1)
            await ctx.tick()
            ctx.set(top.clear, 0)
            ctx.set(top.seq_len, T)
            ctx.set(top.start, 1)
            await ctx.tick()
            ctx.set(top.start, 0)
            t_in = t_out = 0
            budget = T * (top.timestep_cyc + 8) * 16 + 64
            while True:
                budget -= 1
                if budget < 0:
                    raise AssertionError(f"sequence {s}: no done after {t_out} of {T} output beats (hung?)")
                give = t_in < T and rng.random() >= input_gap_prob
                ctx.set(top.inp.valid, int(give))
                if give:
                    ctx.set(top.inp.payload, [int(v) for v in inputs[s, t_in]])
                take = rng.random() >= backpressure_prob
                ctx.set(top.out.ready, int(take))
                _, _, in_ready, out_valid, payload, done, cycles = await ctx.tick().sample(
                    top.inp.ready, top.out.valid, top.out.payload, top.done, top.cycles
                )
                if give and in_ready:
                    t_in += 1
                if out_valid and take:
                    if t_out >= T:
                        raise AssertionError(f"sequence {s}: more than {T} output beats")
                    outputs[s, t_out] = [int(v) for v in payload.outputs]
                    hs[s, t_out] = [[int(v) for v in payload.h[l]] for l in range(L)]
                    t_out += 1
                if done:
                    if t_out != T:
                        raise AssertionError(f"sequence {s}: done after {t_out} of {T} output beats")
                    run.cycles.append(int(cycles))
                    break
            ctx.set(top.inp.valid, 0)
            ctx.set(top.out.ready, 0)

    sim.add_testbench(testbench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return run
