"""Amaranth simulation helpers shared by test files (a helper module, like cli_helpers.py: not a test file)."""

from __future__ import annotations

import types


def simulate_with_macros(m, macros: list, testbench) -> None:
    """Run module ``m`` in the Amaranth simulator (10 ns clock) with the simulator models of ``macros``,
    driven by the async ``testbench``."""
    from amaranth.sim import Simulator

    import nvmlstm.hdl.sim

    sim = Simulator(m)
    sim.add_clock(1e-8)
    nvmlstm.hdl.sim.add_macro_models(sim, types.SimpleNamespace(macros=macros))
    sim.add_testbench(testbench)
    sim.run()
