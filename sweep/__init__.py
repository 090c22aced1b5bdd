"""Resilience sweeps: task metric against bit widths and analog non-idealities, Monte Carlo on Dask.

Imports: golden and tasks only (numpy); no torch.
"""

if __name__ != "nvmlstm.sweep":  # one name per module: never a second, top-level `sweep` (README, Layout)
    raise ImportError(f"the sweep/ folder is the package nvmlstm.sweep; import nvmlstm.sweep, not {__name__}")

from .evaluate import golden_outputs, input_codes, retile, trial_seed
from .run import SweepInterrupted, local_cluster, run_sweep
from .spec import AXES, SweepError, build_spec

__all__ = ["SweepError", "SweepInterrupted"]  # errors
__all__ += ["AXES", "build_spec", "run_sweep", "local_cluster"]  # the sweep
__all__ += ["golden_outputs", "input_codes", "retile", "trial_seed"]  # one trial's evaluation
