"""Efficiency model of the accelerator: energy, area, latency and throughput of one inference, against
published GPU, FPGA, ASIC and NVM designs (docs/efficiency.md). Imports: golden only.
"""

if __name__ != "nvmlstm.bench":  # one name per module: never a second, top-level `bench` (README, Layout)
    raise ImportError(f"the bench/ folder is the package nvmlstm.bench; import nvmlstm.bench, not {__name__}")
