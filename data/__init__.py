"""Small public-domain data sets shipped with nvm-lstm (provenance in README.md beside this file)."""

if __name__ != "nvmlstm.data":  # one name per module: never a second, top-level `data` (README, Layout)
    raise ImportError(f"the data/ folder is the package nvmlstm.data; import nvmlstm.data, not {__name__}")
