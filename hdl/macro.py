"""The NVM array macro boundary: one crossbar tile with its DACs and ADCs.

In Verilog the macro is an ``Instance`` of the module ``nvm_array_macro`` (its behavioral model and its
black-box stub come from `gen/` templates), so a tape-out flow swaps in the real analog macro. For the
Amaranth simulator, ``model="sim"`` leaves the outputs to `hdl.sim.add_macro_models`, which drives them from
the golden NVM array model itself (`golden.datapath.adc_convert`), so the simulated macro computes exactly
what the golden model computes.

Timing (both models): the macro samples ``x``, ``adc_step`` and ``read`` at a rising clock edge; if
``read`` was high, then ``read_latency`` cycles later ``y`` holds the new ADC codes and ``valid`` is high for
that one cycle; ``y`` then holds until the next conversion completes. Programming writes (``prog_we``) take
effect at the clock edge and must not coincide with a read.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from amaranth.hdl import ClockSignal, Instance, Module, ResetSignal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import Flow

from nvmlstm.golden.config import check_int

from .params import parameter

__all__ = [
    "NvmArrayMacro",
    "check_macro_model",
    "MACRO_MODULE",
    "MACRO_PARAMETERS",
    "MACRO_CLOCK_PORTS",
    "MACRO_PORTS",
    "PortWidth",
    "MacroPort",
]

#: Verilog module name of the macro (behavioral model and black-box stub).
MACRO_MODULE = "nvm_array_macro"

#: Verilog parameters of the macro with their meaning and, for the shape parameters, the constructor argument
#: each one is (``READ_LATENCY`` is ``read_latency``). The gen/ templates render this table.
MACRO_PARAMETERS: tuple[tuple[str, str, str], ...] = (
    ("ROWS", "rows", "word lines (array inputs), >= 2"),
    ("COLS", "cols", "differential columns, one ADC each, >= 2"),
    ("WEIGHT_BITS", "weight_bits", "signed weight codes (two's complement)"),
    ("DAC_BITS", "dac_bits", "signed row input codes"),
    ("ADC_BITS", "adc_bits", "signed column output codes"),
    ("STEP_BITS", "adc_step_bits", "unsigned ADC step"),
    ("READ_LATENCY", "read_latency", "clock edges from the sampling edge to valid, >= 1"),
)


@dataclass(frozen=True)
class PortWidth:
    """A port width as a formula of the macro's Verilog parameters: the product of ``factors`` (1 if none),
    or with ``clog2`` the width of an index over that many values, ``$clog2`` in Verilog.

    One formula gives both the Amaranth width (`value`) and the Verilog range (`verilog_range`), so the
    component and the templates cannot disagree. ``$clog2(n)`` equals ``max(1, ceil(log2 n))`` for the
    ``n >= 2`` that ``ROWS`` and ``COLS`` are.
    """

    factors: tuple[str, ...] = ()
    clog2: bool = False

    def value(self, params: dict[str, int]) -> int:
        """The width for parameter values ``params`` (Verilog parameter name -> value)."""
        n = prod(params[f] for f in self.factors)
        return max(1, (n - 1).bit_length()) if self.clog2 else n

    def verilog_range(self) -> str:
        """``[expr-1:0]``, or ``""`` for a one-bit port."""
        if not self.factors:
            return ""
        expr = "*".join(self.factors)
        return f"[$clog2({expr})-1:0]" if self.clog2 else f"[{expr}-1:0]"


@dataclass(frozen=True)
class MacroPort:
    """One signal port of the macro: name (Amaranth member and Verilog port), flow seen from the macro,
    width formula, signedness of its Amaranth shape, and what it carries."""

    name: str
    flow: Flow
    width: PortWidth
    signed: bool
    doc: str


#: Clock and reset of the macro's Verilog module (the Amaranth ``sync`` domain), before the signal ports.
MACRO_CLOCK_PORTS: tuple[tuple[str, str], ...] = (
    ("clk", "clock (rising edge)"),
    ("rst", "synchronous reset, active high"),
)

#: The signal ports of the macro, in port order: the one definition of `NvmArrayMacro.Signature`, of the
#: ``Instance`` connections and of the Verilog templates' port list (gen/render.py).
MACRO_PORTS: tuple[MacroPort, ...] = (
    MacroPort("prog_row", Flow.In, PortWidth(("ROWS",), clog2=True), False, "programming: cell row"),
    MacroPort("prog_col", Flow.In, PortWidth(("COLS",), clog2=True), False, "programming: cell column"),
    MacroPort("prog_code", Flow.In, PortWidth(("WEIGHT_BITS",)), True, "programming: weight code, two's complement"),
    MacroPort("prog_we", Flow.In, PortWidth(), False, "programming: write enable"),
    MacroPort(
        "x", Flow.In, PortWidth(("ROWS", "DAC_BITS")), False, "row k's DAC code in bits [k*DAC_BITS +: DAC_BITS]"
    ),
    MacroPort("adc_step", Flow.In, PortWidth(("STEP_BITS",)), False, "ADC step (0 acts as 1)"),
    MacroPort("read", Flow.In, PortWidth(), False, "read strobe: sample x and adc_step"),
    MacroPort(
        "y", Flow.Out, PortWidth(("COLS", "ADC_BITS")), False, "column j's ADC code in bits [j*ADC_BITS +: ADC_BITS]"
    ),
    MacroPort("valid", Flow.Out, PortWidth(), False, "high for one cycle when y is new"),
)


def check_macro_model(model: object) -> str:
    """Return ``model`` if it names a macro model (``"instance"`` or ``"sim"``), else raise ``ValueError``."""
    if model not in ("instance", "sim"):
        raise ValueError(f"model must be 'instance' or 'sim', not {model!r}")
    return model


class NvmArrayMacro(wiring.Component):
    """One crossbar tile of ``rows`` x ``cols`` (differential) cells with DACs and ADCs.

    Parameters
    ----------
    rows, cols : int
        Array size (>= 2 each).
    weight_bits, dac_bits, adc_bits : int
        Signed symmetric widths of weight codes, row input codes and column output codes (2..16).
    adc_step_bits : int
        Width of the unsigned ADC step input.
    read_latency : int
        Cycles from the read strobe to ``valid`` (>= 1).
    model : str
        ``"instance"`` (a Verilog ``Instance``) or ``"sim"`` (outputs driven by a simulator process).

    Attributes
    ----------
    prog_row, prog_col, prog_code, prog_we : Signal, in
        Weight programming: cell (row, col) takes ``prog_code`` at a clock edge with ``prog_we`` high.
    x : Signal(rows * dac_bits), in
        Row input codes, row k in bits ``[k*dac_bits, (k+1)*dac_bits)``, two's complement.
    adc_step : Signal(adc_step_bits), in
        ADC step (a value of 0 acts as 1).
    read : Signal, in
        Read strobe.
    y : Signal(cols * adc_bits), out
        Column ADC codes, column j in bits ``[j*adc_bits, (j+1)*adc_bits)``, two's complement.
    valid : Signal, out
        High for one cycle when ``y`` has been updated.
    """

    class Signature(wiring.Signature):
        """Signature of the macro boundary, seen from the macro: the members of `MACRO_PORTS`.

        Parameters
        ----------
        rows, cols, weight_bits, dac_bits, adc_bits, adc_step_bits : int
            As for `NvmArrayMacro`; validated here, with the messages of `golden.config.check_int`.

        Members
        -------
        prog_row, prog_col, prog_code, prog_we : In
        x, adc_step, read : In
        y, valid : Out
            Widths from `MACRO_PORTS` (e.g. ``x``: ``rows * dac_bits``).
        """

        def __init__(self, *, rows: int, cols: int, weight_bits: int, dac_bits: int, adc_bits: int, adc_step_bits: int):
            check_int("rows", rows, 2, 65536)
            check_int("cols", cols, 2, 65536)
            check_int("weight_bits", weight_bits, 2, 16)
            check_int("dac_bits", dac_bits, 2, 16)
            check_int("adc_bits", adc_bits, 2, 16)
            check_int("adc_step_bits", adc_step_bits, 1, 24)
            self._shape_params = {
                "ROWS": rows,
                "COLS": cols,
                "WEIGHT_BITS": weight_bits,
                "DAC_BITS": dac_bits,
                "ADC_BITS": adc_bits,
                "STEP_BITS": adc_step_bits,
            }
            members = {}
            for port in MACRO_PORTS:
                width = port.width.value(self._shape_params)
                members[port.name] = port.flow(signed(width) if port.signed else unsigned(width))
            super().__init__(members)

        @property
        def shape_parameters(self) -> dict[str, int]:
            """The Verilog parameters that set the port widths (all but ``READ_LATENCY``)."""
            return dict(self._shape_params)

        def __eq__(self, other):
            return type(self) is type(other) and self._shape_params == other._shape_params

        def __repr__(self):
            args = ", ".join(
                f"{arg}={self._shape_params[name]}" for name, arg, _ in MACRO_PARAMETERS if name in self._shape_params
            )
            return f"NvmArrayMacro.Signature({args})"

    #: Name of the ``nvm_array_macro`` instance inside this component's module.
    INSTANCE_NAME = "macro"

    def __init__(
        self,
        *,
        rows: int,
        cols: int,
        weight_bits: int,
        dac_bits: int,
        adc_bits: int,
        adc_step_bits: int,
        read_latency: int,
        model: str = "instance",
    ):
        signature = self.Signature(
            rows=rows,
            cols=cols,
            weight_bits=weight_bits,
            dac_bits=dac_bits,
            adc_bits=adc_bits,
            adc_step_bits=adc_step_bits,
        )
        check_int("read_latency", read_latency, 1, 64)
        check_macro_model(model)
        self._rows, self._cols = rows, cols
        self._weight_bits, self._dac_bits, self._adc_bits = weight_bits, dac_bits, adc_bits
        self._adc_step_bits = adc_step_bits
        self._read_latency = read_latency
        self._model = model
        super().__init__(signature)

    rows: int = parameter("rows", "Array rows (word lines: the DAC inputs).")
    cols: int = parameter("cols", "Array columns (bit lines: the ADC outputs).")
    weight_bits: int = parameter("weight_bits", "Signed symmetric width of the weight codes.")
    dac_bits: int = parameter("dac_bits", "Signed symmetric width of the row input codes.")
    adc_bits: int = parameter("adc_bits", "Signed symmetric width of the column output codes.")
    adc_step_bits: int = parameter("adc_step_bits", "Width of the unsigned ADC step input.")
    read_latency: int = parameter("read_latency", "Cycles from the read strobe to ``valid``.")
    model: str = parameter("model", '``"instance"`` (a Verilog ``Instance``) or ``"sim"`` (simulator-driven outputs).')

    @property
    def latency_cyc(self) -> int:
        """Cycles from the read strobe to ``valid``: ``read_latency``."""
        return self.read_latency

    def verilog_parameters(self) -> dict[str, int]:
        """Parameters of the ``nvm_array_macro`` instance, in the order of `MACRO_PARAMETERS` (also what the
        gen/ templates take)."""
        return {name: getattr(self, arg) for name, arg, _ in MACRO_PARAMETERS}

    def elaborate(self, platform):
        m = Module()
        if self.model == "sim":
            # Outputs are driven by hdl.sim.add_macro_models (the golden array model).
            return m
        # Port connections from the signature: i_<name> for the macro's inputs, o_<name> for its outputs.
        ports = {
            f"{'i' if member.flow == Flow.In else 'o'}_{name}": getattr(self, name)
            for name, member in self.signature.members.items()
        }
        m.submodules[self.INSTANCE_NAME] = Instance(
            MACRO_MODULE,
            **{f"p_{k}": v for k, v in self.verilog_parameters().items()},
            i_clk=ClockSignal(),
            i_rst=ResetSignal(),
            **ports,
        )
        return m
