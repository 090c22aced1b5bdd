"""Amaranth components of the accelerator: the NVM array macro boundary, hidden-unit lanes, the accelerator
with its control, and the Amaranth-simulator model of the macros (`docs/rtl.md`). Imports: golden only.
"""

if __name__ != "nvmlstm.hdl":  # one name per module: never a second, top-level `hdl` (README, Layout)
    raise ImportError(f"the hdl/ folder is the package nvmlstm.hdl; import nvmlstm.hdl, not {__name__}")
