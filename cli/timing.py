"""The bench model's cycle counts from the accelerator's latency properties (the `bench` command and the flow).

It lives in the CLI layer because it joins two packages that never import each other: `nvmlstm.hdl` (the cycle
formula the RTL implements) and `nvmlstm.bench` (the efficiency model, which imports only `nvmlstm.golden`).
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import warnings

__all__ = ["accelerator_timing"]


def accelerator_timing(macro_latency: int):
    """``timing_fn(cfg, lanes)`` of the bench model: the cycle properties of the accelerator built for
    ``cfg`` (the formula the RTL implements and tests/test_bench.py checks against a simulation)."""
    from amaranth.hdl import UnusedElaboratable

    from nvmlstm.bench.model import Timing
    from nvmlstm.hdl.accelerator import NvmLstmAccelerator

    @functools.cache  # the sweeps ask again for the build's own point
    def timing(cfg, lanes):
        # Built for its latency properties only and dropped unelaborated (elaborating costs seconds to
        # minutes at large hidden sizes), so Amaranth's UnusedElaboratable warning would be a false alarm
        # here: it is filtered by its public category while the accelerator is built and collected (its
        # components hold reference cycles, hence the explicit collection inside the filter).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnusedElaboratable)
            top = NvmLstmAccelerator(cfg, lanes=lanes, macro_latency=macro_latency)
            t = Timing(**{f.name: getattr(top, f.name) for f in dataclasses.fields(Timing)})  # same-named properties
            del top
            gc.collect()
        return t

    return timing
