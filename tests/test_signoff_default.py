"""The default configuration at gate level (docs/signoff.md): mapped to sky130 and simulated bit for bit.

The longest test of the suite (minutes: the mapping and a 121k-cell Icarus simulation), so it runs only with
``NVMLSTM_SIGNOFF_DEFAULT=1`` (CI sets it), and it is a file of its own: a parallel test run (``make test``,
``--dist loadfile``) gives it a worker while the other sign-off tests run on the other one.
"""

from __future__ import annotations

import os

import pytest

# Scheduling hint for parallel workers: about 5 minutes of work (tests/conftest.py starts the longest first).
pytestmark = pytest.mark.slow(5)


@pytest.mark.skipif(
    os.environ.get("NVMLSTM_SIGNOFF_DEFAULT") != "1",
    reason="the default config's mapping takes many minutes: set NVMLSTM_SIGNOFF_DEFAULT=1",
)
def test_gate_level_default_config(mapped, gate_level_bit_exact):
    # Icarus only: Verilator's build of the 121k-cell default netlist has not been measured (docs/signoff.md).
    gate_level_bit_exact("default", "icarus", mapped)
