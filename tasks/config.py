"""The `LstmConfig` a model trained for a task has: the one rule that training and the flow both apply."""

from __future__ import annotations

from nvmlstm.golden.config import LstmConfig

from .loaders import TaskData

__all__ = ["TRAINED_FIELDS", "task_config"]

#: The config fields training sets (from its options); every other field keeps its `LstmConfig` default.
TRAINED_FIELDS = ("hidden_size", "weight_bits", "dac_bits", "adc_bits", "head_adc_bits", "array_rows", "array_cols")


def task_config(
    task: TaskData,
    *,
    hidden_size: int,
    weight_bits: int,
    dac_bits: int,
    adc_bits: int,
    head_adc_bits: int | None,
    array_rows: int,
    array_cols: int,
) -> LstmConfig:
    """One LSTM layer with the task's input and output sizes and the `TRAINED_FIELDS` given.

    Raises `nvmlstm.golden.config.ConfigError` for values the config does not accept.
    """
    return LstmConfig(
        input_size=task.input_size,
        hidden_size=hidden_size,
        num_layers=1,
        output_size=task.output_size,
        weight_bits=weight_bits,
        dac_bits=dac_bits,
        adc_bits=adc_bits,
        array_rows=array_rows,
        array_cols=array_cols,
        head_adc_bits=head_adc_bits,
    )
