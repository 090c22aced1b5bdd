"""The one frozen configuration shared by every layer of the project.

`docs/datapath.md` defines what each field means in the arithmetic. Config files are JSON objects whose
keys are exactly the field names below; the nine hardware sizes are required, every other field has a
default.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .textfile import read_json_file

__all__ = [
    "ConfigError",
    "LstmConfig",
    "REQUIRED_KEYS",
    "DEFAULT_MACRO_LATENCY_CYC",
    "check_int",
    "default_config",
    "load_config",
]

REQUIRED_KEYS = (
    "input_size",
    "hidden_size",
    "num_layers",
    "output_size",
    "weight_bits",
    "dac_bits",
    "adc_bits",
    "array_rows",
    "array_cols",
)

#: Gate order of the 4H pre-activation columns (PyTorch's order).
GATES = ("i", "f", "g", "o")

WEIGHT_MAPPINGS = ("differential",)

#: The NVM macro's read latency (cycles from a read request to its ADC codes) when a build names none. It is a
#: build parameter, not part of the arithmetic, but it lives here because every layer that needs the default
#: (the accelerator, `nvmlstm generate`, `nvmlstm bench`, the benchmark scripts) imports this module, and the
#: CLI's parsers may name it without importing Amaranth.
DEFAULT_MACRO_LATENCY_CYC = 2


class ConfigError(ValueError):
    """A configuration value breaks a rule; the message names the field, the value and the rule."""


def check_int(
    name: str,
    value: object,
    lo: int,
    hi: int | None = None,
    *,
    type_error: type[Exception] = TypeError,
    range_error: type[Exception] = ValueError,
) -> int:
    """Return ``value`` if it is an integer (not a bool) in ``[lo, hi]``, else raise naming it.

    The one wording of integer rules across the project (config fields, hardware parameters):
    ``"hidden_size must be a positive integer, not 0"``, ``"rows must be an integer from 2 to 65536, not 1"``,
    ``"lanes must be an integer, not 2.5"``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise type_error(f"{name} must be an integer, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        if lo == 1 and hi is None:
            rule = "a positive integer"
        elif hi is None:
            rule = f"an integer >= {lo}"
        else:
            rule = f"an integer from {lo} to {hi}"
        raise range_error(f"{name} must be {rule}, not {value!r}")
    return value


# (field, lowest, highest) for every integer field. `None` as highest means unbounded.
_INT_RULES: dict[str, tuple[int, int | None]] = {
    "input_size": (1, None),
    "hidden_size": (1, None),
    "num_layers": (1, None),
    "output_size": (1, None),
    "weight_bits": (2, 16),
    "dac_bits": (2, 16),
    "adc_bits": (2, 16),
    "array_rows": (2, 65536),
    "array_cols": (2, 65536),
    "head_adc_bits": (2, 16),
    "lut_bits": (2, 16),
    "lut_frac": (0, 15),
    "frac_bits": (1, 14),
    "cell_bits": (3, 24),
    "scale_bits": (1, 24),
    "scale_shift": (0, 24),
    "adc_step_bits": (1, 24),
}


@dataclass(frozen=True)
class LstmConfig:
    """Hardware configuration of the NVM LSTM accelerator.

    Parameters
    ----------
    input_size, hidden_size, num_layers, output_size : int
        Network shape: features per timestep ``I``, hidden units ``H``, stacked LSTM layers ``L`` and
        outputs of the dense head ``O``.
    weight_bits : int
        Signed, symmetric NVM weight codes in ``[-(2**(weight_bits-1)-1), 2**(weight_bits-1)-1]``.
    dac_bits : int
        Signed, symmetric DAC codes of the array inputs (x_t, h_{t-1} and the bias row).
    adc_bits : int
        Signed, symmetric ADC codes of the LSTM layers' array columns.
    array_rows, array_cols : int
        Size of one crossbar tile: inputs (word lines) and differential output columns (one ADC each).
    head_adc_bits : int or None
        ADC width of the dense head's arrays; ``None`` means ``adc_bits``.
    lut_bits, lut_frac : int
        Signed index width of the sigmoid/tanh tables and the fractional bits of that index.
    frac_bits : int
        Fractional bits of gate outputs and of the cell state.
    cell_bits : int
        Signed width of the cell state c_t (saturating).
    scale_bits, scale_shift : int
        Unsigned width of the per-gate digital scale multiplier and the right shift after it.
    adc_step_bits : int
        Width of the (unsigned, non-zero) ADC step register.
    weight_mapping : str
        How a signed weight becomes conductances; only ``"differential"`` (a G+/G- pair).
    """

    input_size: int
    hidden_size: int
    num_layers: int
    output_size: int
    weight_bits: int
    dac_bits: int
    adc_bits: int
    array_rows: int
    array_cols: int
    head_adc_bits: int | None = None
    lut_bits: int = 8
    lut_frac: int = 4
    frac_bits: int = 7
    cell_bits: int = 11
    scale_bits: int = 12
    scale_shift: int = 6
    adc_step_bits: int = 16
    weight_mapping: str = "differential"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "weight_mapping":
                if value not in WEIGHT_MAPPINGS:
                    raise ConfigError(
                        f"weight_mapping must be one of {', '.join(map(repr, WEIGHT_MAPPINGS))}, not {repr(value)}"
                    )
                continue
            if f.name == "head_adc_bits" and value is None:
                continue
            lo, hi = _INT_RULES[f.name]
            check_int(f.name, value, lo, hi, type_error=ConfigError, range_error=ConfigError)
        # Cross-field rules: each says why it exists.
        if self.lut_frac > self.frac_bits:
            # The tanh(c_t) index is c_t shifted right by frac_bits - lut_frac.
            raise ConfigError(f"lut_frac must be at most frac_bits ({self.frac_bits}), not {self.lut_frac}")
        if self.lut_frac > self.lut_bits - 1:
            raise ConfigError(f"lut_frac must be at most lut_bits - 1 ({self.lut_bits - 1}), not {self.lut_frac}")
        if self.cell_bits < self.frac_bits + 2:
            # |i*g| reaches 1.0 = 2**frac_bits, so c_t needs at least one integer bit and a sign.
            raise ConfigError(f"cell_bits must be at least frac_bits + 2 ({self.frac_bits + 2}), not {self.cell_bits}")

    # ----------------------------------------------------------------------------------------------
    # Derived quantities (docs/datapath.md, "Number formats").
    @staticmethod
    def symmetric_max(bits: int) -> int:
        """Largest code of a signed, symmetric ``bits``-bit format: ``2**(bits-1) - 1``."""
        return (1 << (bits - 1)) - 1

    @property
    def weight_max(self) -> int:
        return self.symmetric_max(self.weight_bits)

    @property
    def dac_max(self) -> int:
        return self.symmetric_max(self.dac_bits)

    @property
    def adc_max(self) -> int:
        return self.symmetric_max(self.adc_bits)

    @property
    def head_adc_bits_eff(self) -> int:
        return self.adc_bits if self.head_adc_bits is None else self.head_adc_bits

    @property
    def head_adc_max(self) -> int:
        return self.symmetric_max(self.head_adc_bits_eff)

    @property
    def lut_min(self) -> int:
        return -(1 << (self.lut_bits - 1))

    @property
    def lut_max(self) -> int:
        return (1 << (self.lut_bits - 1)) - 1

    @property
    def lut_size(self) -> int:
        return 1 << self.lut_bits

    @property
    def one(self) -> int:
        """1.0 in the gate-output / cell-state fixed-point format."""
        return 1 << self.frac_bits

    @property
    def cell_max(self) -> int:
        return self.symmetric_max(self.cell_bits)

    @property
    def scale_max(self) -> int:
        return (1 << self.scale_bits) - 1

    @property
    def adc_step_max(self) -> int:
        return (1 << self.adc_step_bits) - 1

    def layer_input_size(self, layer: int) -> int:
        """Input features of LSTM layer ``layer``: I for the first, H for the others."""
        if not 0 <= layer < self.num_layers:
            raise IndexError(f"layer must be from 0 to {self.num_layers - 1}, not {layer}")
        return self.input_size if layer == 0 else self.hidden_size

    def layer_rows(self, layer: int) -> int:
        """Rows K of layer ``layer``'s matrix [W_x | W_h | b]: inputs + hidden + 1 bias row."""
        return self.layer_input_size(layer) + self.hidden_size + 1

    @property
    def layer_cols(self) -> int:
        """Columns of an LSTM layer's matrix: 4H (gates i, f, g, o)."""
        return 4 * self.hidden_size

    @property
    def head_rows(self) -> int:
        return self.hidden_size + 1

    def row_tiles(self, rows: int) -> int:
        return -(-rows // self.array_rows)

    def col_tiles(self, cols: int) -> int:
        return -(-cols // self.array_cols)

    def acc_bits(self, rows: int, adc_bits: int) -> int:
        """Signed width that holds the sum of one column's ADC codes over all row tiles."""
        total = self.row_tiles(rows) * self.symmetric_max(adc_bits)
        return total.bit_length() + 1

    # ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, fixed separators): the same config gives the same bytes."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "config") -> LstmConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a JSON object, not {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"valid keys are {', '.join(f.name for f in dataclasses.fields(cls))}"
            )
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise ConfigError(
                f"{where}: missing required key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"
            )
        try:
            return cls(**data)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def replace(self, **changes: Any) -> LstmConfig:
        return dataclasses.replace(self, **changes)


def load_config(path: str | Path) -> LstmConfig:
    """Read a JSON config file; every problem is a `ConfigError` naming the file."""
    path = Path(path)
    data = read_json_file(path, ConfigError, "config file")
    return LstmConfig.from_dict(data, where=str(path))


def default_config() -> LstmConfig:
    """The built-in default: the paper's 4/4/4 operating point on a small network with several tiles."""
    return LstmConfig(
        input_size=8,
        hidden_size=32,
        num_layers=1,
        output_size=10,
        weight_bits=4,
        dac_bits=4,
        adc_bits=4,
        array_rows=32,
        array_cols=64,
    )
