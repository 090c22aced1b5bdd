"""Configurations several test files share (a helper module, like cli_helpers.py: not a test file)."""

from __future__ import annotations

from nvmlstm.golden import LstmConfig, default_config


def small_config(**changes) -> LstmConfig:
    """The small configuration several test files build on: I=3, H=5, two layers, O=2, 4/4/4 bits, 4 x 6
    arrays (several row and column tiles per matrix): `nvmlstm.golden.default_config` with smaller sizes and
    arrays, every other field at its default, then ``changes`` applied (`LstmConfig.replace`).

    Test modules that need it at import time (module constants, parametrize lists) import it from here;
    tests may request the ``small_config`` fixture (tests/conftest.py) instead.
    """
    sizes = dict(input_size=3, hidden_size=5, num_layers=2, output_size=2, array_rows=4, array_cols=6)
    return default_config().replace(**{**sizes, **changes})


def config_fields(sizes, bits, arrays, **extra) -> dict:
    """The nine required `LstmConfig` fields as a dict, written compactly: ``sizes`` is (input_size,
    hidden_size, num_layers, output_size), ``bits`` (weight_bits, dac_bits, adc_bits), ``arrays``
    (array_rows, array_cols); ``extra`` adds further fields."""
    (i, h, layers, o), (w, d, a), (rows, cols) = sizes, bits, arrays
    required = dict(input_size=i, hidden_size=h, num_layers=layers, output_size=o, weight_bits=w, dac_bits=d)
    return {**required, "adc_bits": a, "array_rows": rows, "array_cols": cols, **extra}


def digits_resume_argv(hidden: int, out) -> list[str]:
    """``nvmlstm train`` arguments that resume a two-epoch fp digits run with ``hidden`` units from the run
    directory ``out``."""
    run = ["--task", "digits", "--mode", "fp", "--epochs", "2", "--hidden", str(hidden)]
    return ["train", *run, "--resume", "--out", str(out), "--no-progress"]
