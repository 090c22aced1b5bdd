"""The blocks' build parameters are read-only properties (as in `amaranth.lib.stream`); the interface
signatures expose their parameters and compare and print by them."""

from __future__ import annotations

import pytest
from amaranth.hdl import Fragment
from amaranth.lib import wiring
from config_helpers import small_config

from nvmlstm.golden.config import DEFAULT_MACRO_LATENCY_CYC
from nvmlstm.hdl.accelerator import NvmLstmAccelerator
from nvmlstm.hdl.array import MacroArray
from nvmlstm.hdl.lanes import CellLane, GateLane, HiddenLane, LaneBank
from nvmlstm.hdl.macro import NvmArrayMacro
from nvmlstm.hdl.progmap import ProgramMap
from nvmlstm.hdl.registers import ConfigRegisters, ProgramSignature, StepSignature

CFG = small_config()


def _elaborated(*blocks):
    """Elaborate blocks built only for their properties (so that none warns it was never used)."""
    for block in blocks:
        Fragment.get(block, None)


def _assert_read_only(obj, names):
    for name in names:
        value = getattr(obj, name)
        with pytest.raises(AttributeError):
            setattr(obj, name, value)
        assert getattr(obj, name) == value, name


def test_accelerator_parameters_and_parts_are_read_only():
    top = NvmLstmAccelerator(CFG, lanes=2, macro_latency=3, macro_model="sim", seq_len_bits=8, cycle_bits=24)
    assert (top.cfg, top.lanes, top.macro_latency, top.macro_model) == (CFG, 2, 3, "sim")
    assert (top.seq_len_bits, top.cycle_bits, top.groups) == (8, 24, 3)
    assert top.macros is top.array.macros and top.layer_acc_bits is top.array.layer_acc_bits
    assert top.acc_width == max(top.layer_acc_bits) and top.out_bits == top.array.out_bits
    assert top.pmap is top.regs.pmap is top.array.pmap
    assert top.lane_bank.acc_width == top.acc_width and top.lane_bank.n_tags == CFG.num_layers * top.groups
    _assert_read_only(
        top,
        [
            "cfg",
            "lanes",
            "macro_latency",
            "macro_model",
            "seq_len_bits",
            "cycle_bits",
            "groups",
            "pmap",
            "regs",
            "array",
            "lane_bank",
            "macros",
            "layer_acc_bits",
            "acc_width",
            "out_bits",
            "in_layout",
            "out_layout",
            "layer_step_cyc",
            "head_cyc",
            "timestep_cyc",
            "latency_formulas",
        ],
    )
    # lanes=None resolves to hidden_size; the default latency is the config module's
    default = NvmLstmAccelerator(CFG, macro_model="sim")
    assert (default.lanes, default.macro_latency, default.groups) == (CFG.hidden_size, DEFAULT_MACRO_LATENCY_CYC, 1)
    _elaborated(top, default)


def test_part_parameters_are_read_only():
    pmap = ProgramMap(CFG)
    regs = ConfigRegisters(pmap)
    _assert_read_only(regs, ["pmap", "latency_cyc"])
    array = MacroArray(pmap, macro_latency=2, macro_model="sim")
    assert array.latency_cyc == 2
    _assert_read_only(array, ["pmap", "macros", "layer_acc_bits", "out_bits", "latency_cyc"])
    bank = LaneBank(CFG, lanes=2, acc_width=8, n_tags=4)
    assert (bank.cfg, bank.lanes, bank.acc_width, bank.n_tags) == (CFG, 2, 8, 4)
    assert len(bank.gate_lanes) == len(bank.cell_lanes) == len(bank.hidden_lanes) == 2
    _assert_read_only(
        bank,
        [
            "cfg",
            "lanes",
            "acc_width",
            "n_tags",
            "gate_lanes",
            "cell_lanes",
            "hidden_lanes",
            "c_prev_cyc",
            "c_cyc",
            "latency_cyc",
        ],
    )
    gate = GateLane(CFG, 9)
    assert (gate.cfg, gate.acc_width) == (CFG, 9)
    _assert_read_only(gate, ["cfg", "acc_width", "latency_cyc"])
    stages = (CellLane(CFG), HiddenLane(CFG))
    for stage in stages:
        assert stage.cfg is CFG
        _assert_read_only(stage, ["cfg", "latency_cyc"])
    _elaborated(regs, array, bank, gate, *stages)


def test_macro_parameters_are_read_only():
    args = dict(rows=5, cols=3, weight_bits=4, dac_bits=4, adc_bits=6, adc_step_bits=16, read_latency=2)
    mac = NvmArrayMacro(**args, model="sim")
    assert {k: getattr(mac, k) for k in args} == args and mac.model == "sim"
    assert mac.verilog_parameters() == {
        "ROWS": 5,
        "COLS": 3,
        "WEIGHT_BITS": 4,
        "DAC_BITS": 4,
        "ADC_BITS": 6,
        "STEP_BITS": 16,
        "READ_LATENCY": 2,
    }
    _assert_read_only(mac, [*args, "model", "latency_cyc"])
    _elaborated(mac)


def test_step_signature_parameters_equality_and_repr():
    sig = StepSignature(num_layers=2, step_bits=5)
    assert (sig.num_layers, sig.step_bits) == (2, 5)
    _assert_read_only(sig, ["num_layers", "step_bits"])
    assert sig == StepSignature(num_layers=2, step_bits=5)
    assert sig != StepSignature(num_layers=3, step_bits=5)
    assert sig != StepSignature(num_layers=2, step_bits=6)
    assert repr(sig) == "StepSignature(num_layers=2, step_bits=5)"
    # a plain signature with the same members is not a StepSignature (the class is compared too)
    assert sig != wiring.Signature(dict(sig.members.items()))
    assert sig != ProgramSignature(addr_bits=2, data_bits=5)
    assert sig.flip().flip() == sig
    # the members follow the parameters: every step resets to 1
    iface = sig.create()
    assert len(iface.layer) == 2 and iface.head.shape().width == 5
    assert iface.layer.as_value().init == 0b00001_00001 and iface.head.init == 1


def test_program_signature_parameters_are_read_only():
    sig = ProgramSignature(addr_bits=7, data_bits=12)
    assert (sig.addr_bits, sig.data_bits) == (7, 12)
    _assert_read_only(sig, ["addr_bits", "data_bits"])
    assert repr(sig) == "ProgramSignature(addr_bits=7, data_bits=12)"
    assert sig != StepSignature(num_layers=7, step_bits=12)


def test_connected_parts_have_equal_signatures():
    """``wiring.connect`` of the registers' steps to the array's compares the signatures by parameters."""
    pmap = ProgramMap(CFG)
    regs, array = ConfigRegisters(pmap), MacroArray(pmap, macro_latency=1, macro_model="sim")
    steps = regs.signature.members["steps"].signature  # Out: the signature itself
    assert steps == StepSignature(num_layers=CFG.num_layers, step_bits=CFG.adc_step_bits)
    assert array.signature.members["steps"].signature.flip() == steps  # In: flipped
    assert regs.signature.members["prog"].signature == array.signature.members["prog"].signature
    assert regs.signature.members["prog"].signature.flip() == ProgramSignature(
        addr_bits=pmap.addr_bits, data_bits=pmap.data_bits
    )
    _elaborated(regs, array)
