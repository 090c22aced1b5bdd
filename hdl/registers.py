"""The programming port and the run-time registers it writes: the ADC steps and the gate scales.

`ProgramSignature` is the programming interface (address, data, write enable) of every block that the
programming port writes: `ConfigRegisters` (the register half of the address map, here) and
`hdl.array.MacroArray` (the weight half). The accelerator joins both to its port with ``wiring.connect``.
The address map itself is `hdl.progmap.ProgramMap`.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from nvmlstm.golden import config as _config
from nvmlstm.golden.config import check_int

from .lanes import gate_layout
from .params import parameter
from .progmap import ProgramMap

__all__ = ["ProgramSignature", "StepSignature", "ConfigRegisters"]


class _ByParameters:
    """Equality and repr of a signature from its build parameters (``_PARAMETERS``, in constructor order)."""

    _PARAMETERS: tuple[str, ...] = ()

    def __eq__(self, other):
        return type(self) is type(other) and all(getattr(self, n) == getattr(other, n) for n in self._PARAMETERS)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)}' for n in self._PARAMETERS)})"


class ProgramSignature(_ByParameters, wiring.Signature):
    """The programming interface, seen from the programmer (as `amaranth.lib.stream.Signature` is seen from
    the producer); a programmed block has a member ``In(ProgramSignature(...))``.

    Parameters
    ----------
    addr_bits, data_bits : int
        Widths of ``addr`` and ``data`` (1 to 64).

    Members
    -------
    addr : Out(addr_bits)
        Address (`hdl.progmap.ProgramMap`).
    data : Out(data_bits)
        Data; two's complement for weights.
    we : Out(1)
        Write strobe: one write per cycle while it is high.
    """

    def __init__(self, *, addr_bits: int, data_bits: int):
        check_int("addr_bits", addr_bits, 1, 64)
        check_int("data_bits", data_bits, 1, 64)
        self._addr_bits, self._data_bits = addr_bits, data_bits
        super().__init__({"addr": Out(addr_bits), "data": Out(data_bits), "we": Out(1)})

    _PARAMETERS = ("addr_bits", "data_bits")
    addr_bits: int = parameter("addr_bits")
    data_bits: int = parameter("data_bits")


class StepSignature(_ByParameters, wiring.Signature):
    """The ADC steps, seen from the registers that hold them (after reset every step is 1); the macros
    take them with a member ``In(StepSignature(...))``.

    Parameters
    ----------
    num_layers : int
        Number of layers (>= 1).
    step_bits : int
        Width of an ADC step (1 to 24).

    Members
    -------
    layer : Out(ArrayLayout(unsigned(step_bits), num_layers))
        The ADC step of each layer's macros.
    head : Out(unsigned(step_bits))
        The ADC step of the head's macros.
    """

    def __init__(self, *, num_layers: int, step_bits: int):
        check_int("num_layers", num_layers, 1)
        check_int("step_bits", step_bits, 1, 24)
        self._num_layers, self._step_bits = num_layers, step_bits
        super().__init__(
            {
                "layer": Out(data.ArrayLayout(unsigned(step_bits), num_layers), init=[1] * num_layers),
                "head": Out(unsigned(step_bits), init=1),
            }
        )

    _PARAMETERS = ("num_layers", "step_bits")
    num_layers: int = parameter("num_layers")
    step_bits: int = parameter("step_bits")


class ConfigRegisters(wiring.Component):
    """The registers of the address map's register half: each layer's and the head's ADC step and each
    layer's gate scales. A write is visible in the next cycle (`latency_cyc`); a step written as 0 is
    stored as 1 (the ADC treats 0 as 1 anyway; storing 1 keeps the register's meaning a valid step).

    Parameters
    ----------
    pmap : ProgramMap

    Members
    -------
    prog : In(ProgramSignature)
        Register writes (addresses with the select bit set); weight addresses are ignored here.
    steps : Out(StepSignature)
    scale : Out(ArrayLayout(ArrayLayout(unsigned(scale_bits), 4), num_layers))
        Gate scales of each layer, gates in `golden.config.GATES` order; 0 after reset.
    """

    def __init__(self, pmap: ProgramMap):
        if not isinstance(pmap, ProgramMap):
            raise TypeError(f"pmap must be a ProgramMap, not {type(pmap).__name__}")
        cfg = pmap.cfg
        self._pmap = pmap
        super().__init__(
            {
                "prog": In(ProgramSignature(addr_bits=pmap.addr_bits, data_bits=pmap.data_bits)),
                "steps": Out(StepSignature(num_layers=cfg.num_layers, step_bits=cfg.adc_step_bits)),
                "scale": Out(data.ArrayLayout(gate_layout(unsigned(cfg.scale_bits)), cfg.num_layers)),
            }
        )

    pmap: ProgramMap = parameter("pmap")

    @property
    def latency_cyc(self) -> int:
        """Cycles from a write to the register's new value: 1."""
        return 1

    def elaborate(self, platform):
        pm, cfg = self.pmap, self.pmap.cfg
        m = Module()
        is_register = self.prog.addr[pm.addr_bits - 1]
        index = self.prog.addr[: pm.reg_bits]
        step_data = self.prog.data[: cfg.adc_step_bits]
        step_val = Signal(unsigned(cfg.adc_step_bits))
        m.d.comb += step_val.eq(step_data | (step_data == 0))  # 0 is stored as 1
        with m.If(self.prog.we & is_register):
            with m.Switch(index):
                for l in range(cfg.num_layers):
                    with m.Case(pm.step_register(l)):
                        m.d.sync += self.steps.layer[l].eq(step_val)
                with m.Case(pm.step_register(None)):
                    m.d.sync += self.steps.head.eq(step_val)
                for l in range(cfg.num_layers):
                    for g in range(len(_config.GATES)):
                        with m.Case(pm.scale_register(l, g)):
                            m.d.sync += self.scale[l][g].eq(self.prog.data[: cfg.scale_bits])
        return m
