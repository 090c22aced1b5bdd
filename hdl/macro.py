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

from amaranth.hdl import ClockSignal, Instance, Module, ResetSignal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .params import check_int

__all__ = ["NvmArrayMacro", "MACRO_MODULE"]

#: Verilog module name of the macro (behavioral model and black-box stub).
MACRO_MODULE = "nvm_array_macro"


def _bits_for(n: int) -> int:
    """Address width for ``n`` entries (at least 1)."""
    return max(1, (n - 1).bit_length())


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

    def __init__(self, *, rows: int, cols: int, weight_bits: int, dac_bits: int, adc_bits: int,
                 adc_step_bits: int, read_latency: int, model: str = "instance"):
        check_int("rows", rows, 2, 65536)
        check_int("cols", cols, 2, 65536)
        check_int("weight_bits", weight_bits, 2, 16)
        check_int("dac_bits", dac_bits, 2, 16)
        check_int("adc_bits", adc_bits, 2, 16)
        check_int("adc_step_bits", adc_step_bits, 1, 24)
        check_int("read_latency", read_latency, 1, 64)
        if model not in ("instance", "sim"):
            raise ValueError(f"model must be 'instance' or 'sim', not {model!r}")
        self.rows, self.cols = rows, cols
        self.weight_bits, self.dac_bits, self.adc_bits = weight_bits, dac_bits, adc_bits
        self.adc_step_bits = adc_step_bits
        self.read_latency = read_latency
        self.model = model
        super().__init__({
            "prog_row": In(unsigned(_bits_for(rows))),
            "prog_col": In(unsigned(_bits_for(cols))),
            "prog_code": In(signed(weight_bits)),
            "prog_we": In(1),
            "x": In(unsigned(rows * dac_bits)),
            "adc_step": In(unsigned(adc_step_bits)),
            "read": In(1),
            "y": Out(unsigned(cols * adc_bits)),
            "valid": Out(1),
        })

    @property
    def latency_cyc(self) -> int:
        """Cycles from the read strobe to ``valid``: ``read_latency``."""
        return self.read_latency

    def verilog_parameters(self) -> dict[str, int]:
        """Parameters of the ``nvm_array_macro`` instance (also what the gen/ templates take)."""
        return {
            "ROWS": self.rows,
            "COLS": self.cols,
            "WEIGHT_BITS": self.weight_bits,
            "DAC_BITS": self.dac_bits,
            "ADC_BITS": self.adc_bits,
            "STEP_BITS": self.adc_step_bits,
            "READ_LATENCY": self.read_latency,
        }

    def elaborate(self, platform):
        m = Module()
        if self.model == "sim":
            # Outputs are driven by hdl.sim.add_macro_models (the golden array model).
            return m
        m.submodules.macro = Instance(
            MACRO_MODULE,
            **{f"p_{k}": v for k, v in self.verilog_parameters().items()},
            i_clk=ClockSignal(),
            i_rst=ResetSignal(),
            i_prog_row=self.prog_row,
            i_prog_col=self.prog_col,
            i_prog_code=self.prog_code,
            i_prog_we=self.prog_we,
            i_x=self.x,
            i_adc_step=self.adc_step,
            i_read=self.read,
            o_y=self.y,
            o_valid=self.valid,
        )
        return m
