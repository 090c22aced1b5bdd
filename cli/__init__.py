"""nvm-lstm: a 4-bit quantized, noise-resilient LSTM on NVM crossbar arrays, from training to bit-exact RTL.

The installed distribution is this one package. Its subpackages live in the repository's top-level folders
(``pyproject.toml`` maps them): `nvmlstm.golden` (golden/, the arithmetic contract), `nvmlstm.hdl` (hdl/,
Amaranth), `nvmlstm.gen` (gen/, Verilog), `nvmlstm.sim` (sim/, cocotb), `nvmlstm.train` (train/, PyTorch),
`nvmlstm.data` (data/, shipped data sets); this folder (cli/) is the package itself and the ``nvmlstm``
command (`nvmlstm.cli`). The folder is not named ``nvmlstm`` on purpose: run from the repository root, such a
folder would be found on ``sys.path`` before the installed mapping and hide every subpackage.
"""

if __name__ != "nvmlstm":  # one name per module (README, Layout)
    raise ImportError(f"the cli/ folder is the package nvmlstm; import nvmlstm, not {__name__}")
