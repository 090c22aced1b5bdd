"""Resilience sweeps: task metric against bit widths and analog non-idealities, Monte Carlo on Dask.

Imports: golden and tasks only (numpy); no torch.
"""

if __name__ != "nvmlstm.sweep":  # one name per module: never a second, top-level `sweep` (README, Layout)
    raise ImportError(f"the sweep/ folder is the package nvmlstm.sweep; import nvmlstm.sweep, not {__name__}")
