"""Verilog emission for tape-out flows: top-level RTL, NVM macro models and stubs, filelists, manifest.

`generate_rtl` writes an RTL directory (docs/verilog.md); `gen.lint` and `gen.synth` check it with
Verilator, Icarus Verilog and Yosys; `gen.tools` finds those tools. Imports point down: gen -> hdl -> golden.
"""

if __name__ != "nvmlstm.gen":  # one name per module: never a second, top-level `gen` (README, Layout)
    raise ImportError(f"the gen/ folder is the package nvmlstm.gen; import nvmlstm.gen, not {__name__}")

from .errors import GenError
from .rtl import GenerateResult, generate_rtl

__all__ = ["GenError", "GenerateResult", "generate_rtl"]
