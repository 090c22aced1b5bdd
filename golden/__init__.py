"""Golden model of the NVM LSTM accelerator: the bit-exact arithmetic contract (numpy only).

`docs/datapath.md` states the contract in words; this package is its executable form.
"""

if __name__ != "nvmlstm.golden":  # one name per module: never a second, top-level `golden` (README, Layout)
    raise ImportError(f"the golden/ folder is the package nvmlstm.golden; import nvmlstm.golden, not {__name__}")

from .config import ConfigError, LstmConfig, default_config, load_config
from .io import FileFormatError, load_model, load_vectors, save_model, save_vectors
from .lstm import InputError, golden_forward
from .model import FloatLayer, FloatModel, HeadParams, LayerParams, ModelError, QuantizedModel
from .nvm import NonIdealities
from .ptq import quantize_model, random_model
from .reference import float_forward

__all__ = ["ConfigError", "FileFormatError", "InputError", "ModelError"]  # errors
__all__ += ["LstmConfig", "default_config", "load_config"]  # configuration
__all__ += ["QuantizedModel", "LayerParams", "HeadParams", "FloatModel", "FloatLayer", "NonIdealities"]  # models
__all__ += ["golden_forward", "float_forward", "quantize_model", "random_model"]  # forward passes, quantization
__all__ += ["save_model", "load_model", "save_vectors", "load_vectors"]  # files
