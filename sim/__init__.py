"""Bit-exact regression of the generated Verilog against the golden model with cocotb, on Icarus Verilog
and Verilator (docs/regression.md).

`sim.runner.run_regression` builds (cached) and runs the cocotb testbench `sim.tb` and returns its report;
`sim.protocol` reads what the testbench needs from an RTL directory's manifest. Imports point down:
sim -> gen, golden (hdl only through gen). cocotb is imported only where a simulation is built or run.
"""

if __name__ != "nvmlstm.sim":  # one name per module: never a second, top-level `sim` (README, Layout)
    raise ImportError(f"the sim/ folder is the package nvmlstm.sim; import nvmlstm.sim, not {__name__}")

from .protocol import ManifestError, PayloadLayout, load_manifest, program_writes
from .runner import (SIMULATORS, BuildError, InputMismatch, SimError, SimulatorMissing, Stress, check_inputs,
                     find_simulator, run_regression)

__all__ = ["SIMULATORS", "BuildError", "InputMismatch", "ManifestError", "PayloadLayout", "SimError",
           "SimulatorMissing", "Stress", "check_inputs", "find_simulator", "load_manifest", "program_writes",
           "run_regression"]
