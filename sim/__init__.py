"""Bit-exact regression of the generated Verilog against the golden model with cocotb, on Icarus Verilog
and Verilator (docs/regression.md).

`run_regression` (`nvmlstm.sim.runner`: orchestration and the report) checks the inputs, finds the simulator
(`nvmlstm.sim.simulators`), builds the design or reuses the cached build (`nvmlstm.sim.build`) and runs the
cocotb testbench `nvmlstm.sim.tb`; `nvmlstm.sim.protocol` reads what the testbench needs from an RTL
directory's manifest; `nvmlstm.sim.cocotb_adapter` is the one place that relies on cocotb internals;
`nvmlstm.sim.cases` holds the configurations of the default regression. Imports point down: sim -> gen,
golden (hdl only through gen). cocotb is imported only where a simulation is built or run.
"""

if __name__ != "nvmlstm.sim":  # one name per module: never a second, top-level `sim` (README, Layout)
    raise ImportError(f"the sim/ folder is the package nvmlstm.sim; import nvmlstm.sim, not {__name__}")

from .errors import BuildError, InputMismatch, SimError, SimStopped
from .protocol import ManifestError, PayloadLayout, load_manifest, program_writes
from .runner import Stress, check_inputs, run_regression
from .simulators import SIMULATORS, SimulatorMissing, find_simulator, required_simulators, simulator_or_skip

__all__ = ["BuildError", "InputMismatch", "ManifestError", "SimError", "SimStopped", "SimulatorMissing"]  # errors
__all__ += ["SIMULATORS", "find_simulator", "required_simulators", "simulator_or_skip"]  # simulators
__all__ += ["PayloadLayout", "load_manifest", "program_writes"]  # the RTL directory's manifest
__all__ += ["Stress", "check_inputs", "run_regression"]  # the regression
