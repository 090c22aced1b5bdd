"""LstmConfig: validation messages, the file format (from_dict / load_config / to_json), derived sizes."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from config_helpers import config_fields

from nvmlstm.golden.config import REQUIRED_KEYS, ConfigError, LstmConfig, default_config, load_config

BASE = dict(
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

# Every field that is not required, with the default docs/datapath.md section 0 states.
DEFAULTED = "head_adc_bits lut_bits lut_frac frac_bits cell_bits scale_bits scale_shift adc_step_bits weight_mapping"
DOC_DEFAULTS = dict(zip(DEFAULTED.split(), (None, 8, 4, 7, 11, 12, 6, 16, "differential"), strict=True))


def make(**changes) -> LstmConfig:
    return LstmConfig(**{**BASE, **changes})


# --------------------------------------------------------------------------------------------------
# Validation: every message names the field, the value and the rule
def _broken(rule: str, *cases) -> list:
    """(changes, message) rows: each (field, value) of ``cases`` breaks ``rule``, so the message is
    "<field> must be <rule>, not <value!r>"."""
    return [(dict([(field, value)]), f"{field} must be {rule}, not {value!r}") for field, value in cases]


BAD_CONFIGS = [
    *_broken("a positive integer", ("hidden_size", 0), ("input_size", -3)),
    *_broken("an integer", ("num_layers", True), ("output_size", "10"), ("dac_bits", 4.0), ("adc_bits", None)),
    *_broken("an integer from 2 to 16", ("weight_bits", 1), ("weight_bits", 17)),
    *_broken("an integer from 2 to 65536", ("array_rows", 1), ("array_cols", 65537)),
    *_broken("an integer from 2 to 16", ("head_adc_bits", 1)),
    *_broken("an integer", ("head_adc_bits", False)),
    *_broken("an integer from 2 to 16", ("lut_bits", 17)),
    *_broken("an integer from 1 to 14", ("frac_bits", 0), ("frac_bits", 15)),
    *_broken("an integer from 3 to 24", ("cell_bits", 25)),
    *_broken("an integer from 0 to 24", ("scale_shift", -1)),
    *_broken("an integer from 1 to 24", ("adc_step_bits", 0)),
    (dict(lut_frac=8), r"lut_frac must be at most frac_bits \(7\), not 8"),
    (dict(lut_bits=4, lut_frac=4), r"lut_frac must be at most lut_bits - 1 \(3\), not 4"),
    (dict(cell_bits=8), r"cell_bits must be at least frac_bits \+ 2 \(9\), not 8"),
    (dict(frac_bits=10, cell_bits=11), r"cell_bits must be at least frac_bits \+ 2 \(12\), not 11"),
    *_broken("one of 'differential'", ("weight_mapping", "single"), ("weight_mapping", None)),
]


@pytest.mark.parametrize("changes, message", BAD_CONFIGS, ids=[m for _, m in BAD_CONFIGS])
def test_bad_config_is_rejected_with_its_rule(changes, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        make(**changes)


@pytest.mark.parametrize("changes, message", BAD_CONFIGS[:6], ids=[m for _, m in BAD_CONFIGS[:6]])
def test_from_dict_prefixes_where(changes, message):
    with pytest.raises(ConfigError, match=f"^model.json: config: {message}$"):
        LstmConfig.from_dict({**BASE, **changes}, where="model.json: config")


def test_boundary_values_are_accepted():
    # the limits of every range are inclusive
    make(weight_bits=2, dac_bits=16, adc_bits=16, array_rows=2, array_cols=65536)
    make(head_adc_bits=2, scale_shift=0, lut_frac=0, adc_step_bits=24)
    make(frac_bits=14, cell_bits=16, lut_frac=4)
    make(frac_bits=7, lut_frac=7, lut_bits=8, cell_bits=9)  # lut_frac == frac_bits == lut_bits - 1


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_config_is_frozen():
    cfg = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.hidden_size = 64  # type: ignore[misc]
    assert cfg.hidden_size == 32
    # replace validates
    with pytest.raises(ConfigError, match="^hidden_size must be a positive integer, not 0$"):
        cfg.replace(hidden_size=0)
    assert cfg.replace(hidden_size=64).hidden_size == 64


def test_defaults_are_the_documented_ones():
    cfg = make()
    for k, v in DOC_DEFAULTS.items():
        assert getattr(cfg, k) == v, k
    assert default_config() == LstmConfig(**BASE)


# --------------------------------------------------------------------------------------------------
# from_dict
def test_from_dict_rejects_non_objects():
    for data, name in (([1, 2], "list"), ("x", "str"), (None, "NoneType"), (3, "int")):
        with pytest.raises(ConfigError, match=f"^config: expected a JSON object, not {name}$"):
            LstmConfig.from_dict(data)


def test_from_dict_unknown_keys():
    with pytest.raises(
        ConfigError,
        match=r"^config: unknown key 'hiden_size'; valid keys are input_size, hidden_size, .*weight_mapping$",
    ):
        LstmConfig.from_dict({**BASE, "hiden_size": 3})
    with pytest.raises(ConfigError, match=r"^c.json: unknown keys 'a', 'b'; valid keys are "):
        LstmConfig.from_dict({**BASE, "b": 1, "a": 2}, where="c.json")


def test_from_dict_missing_required_keys():
    d = dict(BASE)
    del d["hidden_size"]
    with pytest.raises(ConfigError, match=r"^config: missing required key 'hidden_size'$"):
        LstmConfig.from_dict(d)
    with pytest.raises(
        ConfigError,
        match=r"^config: missing required keys 'input_size', 'hidden_size', 'num_layers', "
        r"'output_size', 'weight_bits', 'dac_bits', 'adc_bits', 'array_rows', 'array_cols'$",
    ):
        LstmConfig.from_dict({})


def test_from_dict_with_all_fields():
    full = {**BASE, **DOC_DEFAULTS, "head_adc_bits": 6, "cell_bits": 12}
    cfg = LstmConfig.from_dict(full)
    assert cfg.head_adc_bits == 6 and cfg.cell_bits == 12
    assert cfg.to_dict() == full


# --------------------------------------------------------------------------------------------------
# load_config
# Config files load_config rejects, each as (id, what the file holds: text, bytes, None for no file or
# "<directory>", the message after "<path>: ").
BAD_CONFIG_FILES = [
    ("missing_file", None, "config file not found$"),
    ("directory", "<directory>", "cannot read config file: Is a directory$"),
    (
        "invalid_json_names_line_and_column",
        '{\n  "input_size": 8,\n  "hidden_size": 32,,\n}\n',  # the second comma of line 3 is column 21
        "config file is not valid JSON: Expecting property name enclosed in double quotes at line 3 column 21$",
    ),
    ("not_utf8", b'{"input_size": \xff}', "config file is not UTF-8 text \\(byte 15\\)$"),
    ("bad_value", json.dumps({**BASE, "adc_bits": 20}), "adc_bits must be an integer from 2 to 16, not 20$"),
    ("not_an_object", "[1, 2]", "expected a JSON object, not list$"),
    ("unknown_key", json.dumps({**BASE, "extra": 1}), "unknown key 'extra'"),
]


@pytest.mark.parametrize("content, message", [c[1:] for c in BAD_CONFIG_FILES], ids=[c[0] for c in BAD_CONFIG_FILES])
def test_load_config_errors_name_the_file(tmp_path, content, message):
    p = tmp_path / "c.json"
    if content == "<directory>":
        p.mkdir()
    elif isinstance(content, bytes):
        p.write_bytes(content)
    elif content is not None:
        p.write_text(content)
    with pytest.raises(ConfigError, match=f"^{re.escape(str(p))}: {message}"):
        load_config(p)


def test_load_config_required_keys_only_gets_defaults(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({k: BASE[k] for k in REQUIRED_KEYS}))
    assert set(REQUIRED_KEYS) == set(BASE)
    cfg = load_config(str(p))  # a str path works as well as a Path
    assert cfg == LstmConfig(**BASE)
    assert {k: getattr(cfg, k) for k in DOC_DEFAULTS} == DOC_DEFAULTS


# --------------------------------------------------------------------------------------------------
# to_json
def test_to_json_is_canonical_and_round_trips(tmp_path):
    cfg = make(head_adc_bits=5, hidden_size=7)
    text = cfg.to_json()
    assert text.endswith("}\n")
    doc = json.loads(text)
    assert list(doc) == sorted(doc)  # sorted keys
    assert set(doc) == {f.name for f in dataclasses.fields(LstmConfig)}
    assert LstmConfig.from_dict(doc) == cfg
    # the same config built with keys in another order gives the same bytes
    shuffled = dict(reversed(list(cfg.to_dict().items())))
    assert LstmConfig.from_dict(shuffled).to_json() == text
    # a written config file loads back to the same config
    p = tmp_path / "c.json"
    p.write_text(text)
    assert load_config(p) == cfg
    assert load_config(p).to_json() == text
    # different configs, different text
    assert make(hidden_size=8).to_json() != text


# --------------------------------------------------------------------------------------------------
# Derived quantities, computed by hand
def test_derived_default():
    cfg = default_config()  # I=8, H=32, L=1, O=10, 4/4/4 bits, 32x64 arrays
    assert (cfg.weight_max, cfg.dac_max, cfg.adc_max, cfg.head_adc_max) == (7, 7, 7, 7)
    assert cfg.head_adc_bits_eff == 4
    assert (cfg.lut_min, cfg.lut_max, cfg.lut_size) == (-128, 127, 256)
    assert (cfg.one, cfg.cell_max) == (128, 1023)
    assert (cfg.scale_max, cfg.adc_step_max) == (4095, 65535)
    assert cfg.layer_input_size(0) == 8
    assert cfg.layer_rows(0) == 8 + 32 + 1 == 41
    assert cfg.layer_cols == 128
    assert cfg.head_rows == 33
    assert cfg.row_tiles(41) == 2  # rows 0..31 and 32..40
    assert cfg.row_tiles(32) == 1 and cfg.row_tiles(33) == 2
    assert cfg.col_tiles(128) == 2 and cfg.col_tiles(10) == 1
    # two row tiles of a 4-bit ADC: |acc| <= 14 needs 4 magnitude bits and a sign
    assert cfg.acc_bits(41, 4) == 5
    assert cfg.acc_bits(33, 4) == 5


def test_derived_second_example():
    cfg = make(
        **config_fields(
            (3, 20, 3, 2), (5, 3, 6), (16, 25), head_adc_bits=8, lut_bits=6, lut_frac=2, frac_bits=5, cell_bits=9
        )
    )
    assert (cfg.weight_max, cfg.dac_max, cfg.adc_max, cfg.head_adc_max) == (15, 3, 31, 127)
    assert cfg.head_adc_bits_eff == 8
    assert (cfg.lut_min, cfg.lut_max, cfg.lut_size) == (-32, 31, 64)
    assert (cfg.one, cfg.cell_max) == (32, 255)
    assert [cfg.layer_input_size(l) for l in range(3)] == [3, 20, 20]
    assert [cfg.layer_rows(l) for l in range(3)] == [24, 41, 41]
    assert [cfg.row_tiles(cfg.layer_rows(l)) for l in range(3)] == [2, 3, 3]
    assert cfg.layer_cols == 80 and cfg.col_tiles(80) == 4
    assert cfg.head_rows == 21 and cfg.row_tiles(21) == 2
    assert cfg.acc_bits(41, 6) == 8  # 3 * 31 = 93: 7 bits + sign
    assert cfg.acc_bits(21, 8) == 9  # 2 * 127 = 254: 8 bits + sign


def test_layer_index_out_of_range():
    cfg = make(num_layers=2)
    with pytest.raises(IndexError, match=r"^layer must be from 0 to 1, not 2$"):
        cfg.layer_rows(2)
    with pytest.raises(IndexError, match=r"^layer must be from 0 to 1, not -1$"):
        cfg.layer_input_size(-1)
