"""cocotb testbench: the generated ``nvm_lstm_top`` against the golden vectors, bit for bit.

This module runs inside the simulator (Icarus Verilog or Verilator, started by `nvmlstm.sim.runner`), which
imports it as ``nvmlstm.sim.tb`` from the installed package. The runner writes a settings JSON (RTL directory,
vector directory, stress knobs, report path) and names it in the plusarg ``+nvmlstm_settings=FILE``.

Structure (after cocotb's ``examples/matrix_multiplier``; run-time stress inside one simulation as in
cocotbext-axi): one `TB` holding and wiring

* a clock and a synchronous reset;
* `ProgramDriver`: loads the model through ``prog_addr``/``prog_data``/``prog_we`` while idle, with the
  writes computed from the RTL manifest's address map (`sim.protocol.program_writes`);
* `InputDriver`: streams x_t beats on ``inp`` with an idle-gap inserter (a beat is withheld from a waiting
  ``inp.ready`` with probability ``gap_prob`` per cycle, and is sometimes offered before ``ready`` rises);
* `OutputMonitor`: takes beats from ``out`` with a backpressure inserter (``out.ready`` low with probability
  ``backpressure_prob`` per cycle, independent of ``out.valid``);
* `Scoreboard`: expected ``outputs`` and every layer's ``l{l}_h`` per (sequence, timestep) from the golden
  vectors, an in-order checker that pairs each beat with the next expected (sequence, timestep), compares
  every code with ``==`` and remembers the first difference.

The components know nothing of `TB`: the TB hands beats to the input driver through its queue (`InputDriver.
send`), and the components report through callbacks the TB gives them (an accepted input beat, an output
beat, an X on a handshake signal, a protocol error). The TB reads their counters (stall cycles) and decides
what is an error.

Race-freedom: every input is driven and every output sampled at the **falling** clock edge; the design
samples at the rising edge, and ``inp.ready``/``out.valid`` do not depend combinationally on
``inp.valid``/``out.ready`` (docs/rtl.md), so the value seen at falling edge n is the one the rising edge
n+1 uses, on both simulators. A handshake decided at falling edge n (valid and ready both high) is the
transfer at rising edge n+1.

Per sequence: ``clear`` (every golden sequence starts from c = h = 0), a few idle cycles, ``start`` with
``seq_len``, then the beats; ``done`` must come exactly one cycle after the last beat was accepted, with
``busy`` low and ``cycles`` equal to ``steps * timestep_cyc`` plus the stall cycles the inserters caused.
With ``split_prob`` a sequence is run in two chunks, the second started without ``clear`` (the state
carries over, docs/rtl.md section 3). At the end the test asserts that every expected beat arrived once, in
order, with no extra beat, and that every compared value matched; the JSON report is written first.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge

from nvmlstm.golden.io import load_model, load_vectors

from .protocol import PayloadLayout, load_manifest, program_writes
from .runner import SETTINGS_PLUSARG

REPORT_FORMAT = "nvm-lstm-sim-report"
#: Protocol errors kept verbatim in the report (the count is always exact).
MAX_ERRORS = 20


def _read(handle) -> int | None:
    """The integer value of a signal, or None while it holds X/Z bits."""
    v = handle.value  # Logic (1 bit) or LogicArray; int() of either is the unsigned value
    return int(v) if v.is_resolvable else None


class Cycle:
    """Clock-cycle numbering: cycle n is the period that begins with rising edge n (edge 0 at time 0)."""

    def __init__(self, period_steps: int):
        self.period = period_steps

    def now(self) -> int:
        return int(get_sim_time("step")) // self.period


# ------------------------------------------------------------------------------------------------------
class ProgramDriver:
    """Writes ``(prog_addr, prog_data)`` pairs, one per cycle, while the accelerator is idle."""

    def __init__(self, dut):
        self.dut = dut
        self.fe = FallingEdge(dut.clk)

    async def load(self, writes: list[tuple[int, int]]) -> None:
        dut = self.dut
        for addr, data in writes:
            dut.prog_addr.value = addr
            dut.prog_data.value = data
            dut.prog_we.value = 1
            await self.fe  # the write happened at the rising edge in between
        dut.prog_we.value = 0


class InputDriver:
    """Drives x_t beats on the ``inp`` stream.

    Each beat is either offered early, as soon as it is pending (probability ``early_prob``: ``valid`` high
    while the accelerator computes, which it must ignore until it raises ``inp.ready``), or offered only
    once ``inp.ready`` is seen high, with the idle-gap inserter withholding it in each such cycle with
    probability ``gap_prob`` (stall cycles the accelerator must wait through). An offered beat stays
    offered, payload unchanged, until it is taken.

    Parameters
    ----------
    dut : cocotb handle of the top
    rng : numpy Generator
        This component's own random stream.
    gap_prob, early_prob : float
        See `nvmlstm.sim.runner.Stress`.
    on_accept : callable
        Called with no argument when a beat is taken (the handshake of the next rising edge).
    on_x : callable
        Called with the signal's name when ``inp__ready`` holds X or Z (treated as low).
    """

    def __init__(
        self,
        dut,
        rng: np.random.Generator,
        gap_prob: float,
        early_prob: float,
        *,
        on_accept: Callable[[], None],
        on_x: Callable[[str], None],
    ):
        self.dut, self.rng = dut, rng
        self.gap_prob, self.early_prob = gap_prob, early_prob
        self.on_accept, self.on_x = on_accept, on_x
        self._queue: deque[int] = deque()
        self.offering = False
        self.early: bool | None = None  # drawn once per beat
        self.accepted = 0
        self.stall_cycles = 0

    def send(self, payloads: list[int]) -> None:
        """Queue ``inp.payload`` values, sent in order."""
        self._queue.extend(payloads)

    @property
    def pending(self) -> int:
        """Queued beats not yet taken."""
        return len(self._queue)

    def flush(self) -> None:
        """Drop every queued beat (after a run that ended without taking them)."""
        self._queue.clear()
        self.offering = False
        self.early = None

    async def run(self) -> None:
        dut, fe = self.dut, FallingEdge(self.dut.clk)
        valid_now = 0
        while True:
            await fe
            ready = _read(dut.inp__ready)
            if ready is None:
                self.on_x("inp__ready")
                ready = 0
            if not self.offering and self._queue:
                if self.early is None:
                    self.early = bool(self.rng.random() < self.early_prob)
                if self.early or (ready and self.rng.random() >= self.gap_prob):
                    dut.inp__payload.value = self._queue[0]
                    self.offering = True
            if valid_now != self.offering:
                valid_now = int(self.offering)
                dut.inp__valid.value = valid_now
            if not self.offering:
                if ready:
                    self.stall_cycles += 1
            elif ready:  # taken at the next rising edge
                self._queue.popleft()
                self.accepted += 1
                self.offering = False
                self.early = None
                self.on_accept()


class OutputMonitor:
    """Takes beats from the ``out`` stream and hands them to the scoreboard.

    Backpressure inserter: ``out.ready`` is low with probability ``backpressure_prob`` in each cycle,
    independent of ``out.valid``.

    Parameters
    ----------
    dut : cocotb handle of the top
    rng : numpy Generator
        This component's own random stream.
    backpressure_prob : float
        See `nvmlstm.sim.runner.Stress`.
    on_beat : callable
        Called with the ``out__payload`` value (a cocotb ``LogicArray``) of every beat taken.
    on_x : callable
        Called with the signal's name when ``out__valid`` holds X or Z (treated as low).
    """

    def __init__(
        self,
        dut,
        rng: np.random.Generator,
        backpressure_prob: float,
        *,
        on_beat: Callable[[Any], None],
        on_x: Callable[[str], None],
    ):
        self.dut, self.rng = dut, rng
        self.backpressure_prob = backpressure_prob
        self.on_beat, self.on_x = on_beat, on_x
        self.stall_cycles = 0

    async def run(self) -> None:
        dut, fe = self.dut, FallingEdge(self.dut.clk)
        ready_now = None
        while True:
            await fe
            valid = _read(dut.out__valid)
            if valid is None:
                self.on_x("out__valid")
                valid = 0
            take = int(self.rng.random() >= self.backpressure_prob)
            if take != ready_now:
                dut.out__ready.value = take
                ready_now = take
            if valid and take:  # taken at the next rising edge; the payload is stable while valid
                self.on_beat(dut.out__payload.value)
            elif valid:
                self.stall_cycles += 1


class Scoreboard:
    """Expected beats from the golden vectors and the in-order checker.

    Parameters
    ----------
    layout : PayloadLayout
    outputs : ndarray (S, T, O)
        Golden output codes.
    h : list of ndarray (S, T, H)
        Golden h_t codes of each layer (``l{l}_h``).
    error : callable
        Receives one line per protocol error (an extra beat).
    now_ns : callable
        The simulation time, recorded with the first mismatch.
    log : logging.Logger, optional
        Where the first mismatch is logged.
    """

    def __init__(
        self,
        layout: PayloadLayout,
        outputs: np.ndarray,
        h: list[np.ndarray],
        *,
        error: Callable[[str], None],
        now_ns: Callable[[], float],
        log: logging.Logger | None = None,
    ):
        self.error, self.now_ns = error, now_ns
        self.log = log or logging.getLogger(__name__)
        self.layout = layout
        self.outputs = outputs.tolist()
        self.h = [a.tolist() for a in h]
        S, T = outputs.shape[:2]
        self.values_per_beat = outputs.shape[2] + sum(a.shape[2] for a in h)
        self.expected_beats = S * T
        self._pending: deque[tuple[int, int]] = deque()
        self.received: Counter[tuple[int, int]] = Counter()
        self.extra = 0
        self.values_compared = 0
        self.mismatches = 0
        self.first_mismatch: dict | None = None

    def expect(self, keys: list[tuple[int, int]]) -> None:
        """The beats of the run just started, in the order they must arrive."""
        self._pending.extend(keys)

    def end_run(self) -> int:
        """A run ended (``done``): how many of its beats never arrived; they stay missing, no longer expected."""
        n = len(self._pending)
        self._pending.clear()
        return n

    def _decode(self, value) -> tuple[list, list[list]]:
        if value.is_resolvable:
            return self.layout.unpack_out(int(value))
        bits = str(value)  # MSB first; a field with an X/Z bit decodes to "X"
        n = len(bits)

        def field(f):
            s = bits[n - f.lsb - f.width : n - f.lsb]
            return f.extract(int(s, 2) << f.lsb) if set(s) <= {"0", "1"} else "X"

        return ([field(f) for f in self.layout.outputs], [[field(f) for f in row] for row in self.layout.h])

    def on_beat(self, value, cycle: int) -> None:
        if not self._pending:
            self.extra += 1
            self.error(f"extra output beat at cycle {cycle} (no beat expected)")
            return
        s, t = key = self._pending.popleft()
        self.received[key] += 1
        outputs, h = self._decode(value)
        # Dataflow order within a beat: layer 0's h, ..., the last layer's h, then the head's outputs.
        checks = [(l, "h", h[l], self.h[l][s][t]) for l in range(len(h))]
        checks.append((None, "outputs", outputs, self.outputs[s][t]))
        for layer, signal, got, want in checks:
            self.values_compared += len(want)
            if got != want:
                bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
                self.mismatches += len(bad)
                if self.first_mismatch is None:
                    i = bad[0]
                    self.first_mismatch = {
                        "sequence": s,
                        "timestep": t,
                        "layer": layer,
                        "signal": signal,
                        "index": i,
                        "expected": want[i],
                        "actual": got[i],
                        "cycle": cycle,
                        "time_ns": self.now_ns(),
                    }
                    self.log.error("first mismatch: %s", describe_mismatch(self.first_mismatch))

    def summary(self) -> dict[str, int]:
        dup = sum(n - 1 for n in self.received.values() if n > 1)
        return {
            "expected": self.expected_beats,
            "received": sum(self.received.values()) + self.extra,
            "missing": self.expected_beats - len(self.received),
            "extra": self.extra,
            "duplicate": dup,
        }


def describe_mismatch(m: dict) -> str:
    """One line naming a mismatch: where (sequence, timestep, layer, signal, index) and the two codes."""
    where = f"sequence {m['sequence']}, timestep {m['timestep']}, "
    where += f"layer {m['layer']} h[{m['index']}]" if m["signal"] == "h" else f"outputs[{m['index']}]"
    return f"{where}: expected {m['expected']}, got {m['actual']} (cycle {m.get('cycle')})"


# ------------------------------------------------------------------------------------------------------
class TB:
    """The testbench of one simulation: components, sequencing, checks and the report.

    Parameters
    ----------
    dut : cocotb handle of ``nvm_lstm_top``
    settings : dict
        As written by `sim.runner` (``rtl_dir``, ``vec_dir``, ``report``, ``stress``, ``clock_ns``).
    """

    def __init__(self, dut, settings: dict[str, Any]):
        self.dut = dut
        self.settings = settings
        self.log = cocotb.log
        self.t_wall = time.monotonic()
        self.manifest = load_manifest(settings["rtl_dir"], verify=False)  # the runner verified it
        self.layout = PayloadLayout(self.manifest)
        doc, arrays = load_vectors(settings["vec_dir"])
        self.model = load_model(Path(settings["vec_dir"]) / "model.npz")
        cfg = self.manifest["config"]
        self.L = cfg["num_layers"]
        self.inputs = arrays["inputs"]
        self.S, self.T = self.inputs.shape[:2]
        self.timestep_cyc = int(self.manifest["latency"]["timestep_cyc"]["value"])
        st = settings["stress"]
        self.stress = st
        seed = int(st["seed"])
        # Independent streams per component, so changing one knob does not reshuffle the others.
        self.rng = np.random.default_rng([seed, 0])
        self.clock_ns = float(settings.get("clock_ns", 10))
        self.cycle = Cycle(self._period_steps())
        self.started = False
        self.progress = 0  # beats moved in either direction: the hang detector's measure
        self.last_out_cycle: int | None = None
        self.errors: list[str] = []
        self.error_count = 0
        self.scoreboard = Scoreboard(
            self.layout,
            arrays["outputs"],
            [arrays[f"l{l}_h"] for l in range(self.L)],
            error=self.error,
            now_ns=self.time_ns,
            log=self.log,
        )
        self.inp = InputDriver(
            dut,
            np.random.default_rng([seed, 1]),
            float(st["gap_prob"]),
            float(st.get("early_prob", 0.25)),
            on_accept=self._on_in_beat,
            on_x=self._on_x,
        )
        self.out = OutputMonitor(
            dut,
            np.random.default_rng([seed, 2]),
            float(st["backpressure_prob"]),
            on_beat=self._on_out_beat,
            on_x=self._on_x,
        )
        self.prog = ProgramDriver(dut)
        self.runs = 0
        self.done_sum = 0
        self.expected_done_sum = 0
        self.n_writes = 0
        self.hung = False

    def _period_steps(self) -> int:
        from cocotb.simtime import convert

        return int(convert(self.clock_ns, "ns", to="step"))

    def time_ns(self) -> float:
        return get_sim_time("ns")

    def error(self, msg: str) -> None:
        """A protocol error: counted, the first `MAX_ERRORS` kept, logged."""
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(msg)
            self.log.error("%s", msg)

    # Callbacks of the components
    def _on_in_beat(self) -> None:
        self.progress += 1

    def _on_out_beat(self, value) -> None:
        cyc = self.cycle.now()
        self.last_out_cycle = cyc
        self.progress += 1
        self.scoreboard.on_beat(value, cyc)

    def _on_x(self, signal: str) -> None:
        if self.started:  # before the first start the handshake outputs may still be X (reset, programming)
            self.error(f"{signal} is X at cycle {self.cycle.now()}")

    # --------------------------------------------------------------------------------------------------
    async def reset(self) -> None:
        dut = self.dut
        for name in (
            "inp__valid",
            "inp__payload",
            "out__ready",
            "start",
            "seq_len",
            "clear",
            "prog_addr",
            "prog_data",
            "prog_we",
        ):
            getattr(dut, name).value = 0
        dut.rst.value = 1
        Clock(dut.clk, self.clock_ns, unit="ns").start()
        fe = FallingEdge(dut.clk)
        for _ in range(2):
            await fe
        dut.rst.value = 0
        await fe

    async def run_chunk(self, s: int, t0: int, t1: int, clear: bool) -> None:
        """Run timesteps ``t0 .. t1-1`` of sequence ``s``; ``clear`` first unless it continues the sequence."""
        dut, fe = self.dut, FallingEdge(self.dut.clk)
        if clear:
            dut.clear.value = 1
            await fe
            dut.clear.value = 0
        for _ in range(int(self.rng.integers(0, 3))):  # 0-2 idle cycles between clear and start
            await fe
        n = t1 - t0
        self.inp.send([self.layout.pack_x(self.inputs[s, t]) for t in range(t0, t1)])
        self.scoreboard.expect([(s, t) for t in range(t0, t1)])
        stalls0 = self.inp.stall_cycles + self.out.stall_cycles
        dut.seq_len.value = n
        dut.start.value = 1
        await fe
        dut.start.value = 0
        self.started = True
        self.runs += 1
        limit = int(self.settings.get("stall_limit", 0)) or (20 * self.timestep_cyc + 200)
        idle, seen = 0, self.progress
        while True:
            done = _read(dut.done)
            if done:
                break
            if self.progress != seen:
                idle, seen = 0, self.progress
            idle += 1
            if idle > limit:
                self.hung = True
                self.error(
                    f"sequence {s}: no progress for {limit} cycles at cycle {self.cycle.now()} "
                    f"({self.scoreboard.summary()['received']} beats so far): the design hangs"
                )
                return
            await fe
        now = self.cycle.now()
        cycles, busy = _read(dut.cycles), _read(dut.busy)
        expected = n * self.timestep_cyc + (self.inp.stall_cycles + self.out.stall_cycles - stalls0)
        self.done_sum += cycles or 0
        self.expected_done_sum += expected
        missing = self.scoreboard.end_run()
        if missing:
            self.error(f"sequence {s}: done at cycle {now} with {missing} of {n} beats missing")
        elif self.last_out_cycle != now - 1:
            self.error(
                f"sequence {s}: done at cycle {now}, not one cycle after the last beat was accepted "
                f"(cycle {self.last_out_cycle})"
            )
        if busy != 0:
            self.error(f"sequence {s}: busy is {busy} together with done at cycle {now}")
        if cycles != expected:
            self.error(
                f"sequence {s}, steps {t0}-{t1 - 1}: cycles = {cycles} at done, expected {expected} "
                f"({n} x timestep_cyc {self.timestep_cyc} + stall cycles)"
            )
        if self.inp.pending:
            self.error(f"sequence {s}: done with {self.inp.pending} input beats not taken")
            self.inp.flush()

    async def run(self) -> None:
        st = self.stress
        await self.reset()
        writes = program_writes(self.manifest, self.model, skip_zero_weights=True)
        self.n_writes = len(writes)
        await self.prog.load(writes)
        tasks = [cocotb.start_soon(self.inp.run()), cocotb.start_soon(self.out.run())]
        fe = FallingEdge(self.dut.clk)
        try:
            for s in range(self.S):
                cuts = [0, self.T]
                if self.T > 1 and self.rng.random() < float(st.get("split_prob", 0.0)):
                    cuts.insert(1, int(self.rng.integers(1, self.T)))
                for k in range(len(cuts) - 1):
                    await self.run_chunk(s, cuts[k], cuts[k + 1], clear=(k == 0))
                    if self.hung:
                        return
                    for _ in range(int(self.rng.integers(0, int(st.get("idle_max", 0)) + 1))):
                        await fe
            # Watch a little longer: a beat after the last done is an extra beat.
            for _ in range(2 * self.timestep_cyc):
                await fe
        finally:
            for t in tasks:
                t.cancel()

    # --------------------------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        sb = self.scoreboard
        beats = sb.summary()
        values_expected = sb.expected_beats * sb.values_per_beat
        bit_exact = (
            sb.mismatches == 0
            and sb.values_compared == values_expected
            and beats["missing"] == 0
            and beats["extra"] == 0
            and beats["duplicate"] == 0
        )
        simulated = self.cycle.now()
        wall = time.monotonic() - self.t_wall
        return {
            "format": REPORT_FORMAT,
            "schema_version": 1,
            "bit_exact": bit_exact,
            "passed": bit_exact and self.error_count == 0,
            "values_compared": sb.values_compared,
            "values_expected": values_expected,
            "mismatches": sb.mismatches,
            "first_mismatch": sb.first_mismatch,
            "first_mismatch_text": None if sb.first_mismatch is None else describe_mismatch(sb.first_mismatch),
            "beats": beats,
            "sequences": self.S,
            "steps": self.T,
            "runs": self.runs,
            "cycles": {
                "done_sum": self.done_sum,
                "expected_done_sum": self.expected_done_sum,
                "simulated": simulated,
                "programming_writes": self.n_writes,
                "input_stall": self.inp.stall_cycles,
                "output_stall": self.out.stall_cycles,
            },
            "protocol_errors": self.errors,
            "protocol_error_count": self.error_count,
            "stress": self.stress,
            "sim_wall_seconds": round(wall, 3),
            "simulated_cycles_per_second": round(simulated / wall, 1) if wall > 0 else None,
        }


def load_settings() -> dict[str, Any]:
    """The settings the runner wrote, from the file the plusarg names."""
    path = cocotb.plusargs.get(SETTINGS_PLUSARG)
    if not isinstance(path, str) or not path:
        raise RuntimeError(
            f"plusarg +{SETTINGS_PLUSARG}=FILE is not set: run this testbench through "
            f"nvmlstm.sim.run_regression / `nvmlstm sim`"
        )
    return json.loads(Path(path).read_text(encoding="utf-8"))


@cocotb.test()
async def regression(dut):
    """Program the model, run every golden sequence under the configured stress, compare every code."""
    settings = load_settings()
    tb = TB(dut, settings)
    try:
        await tb.run()
    except Exception as exc:  # recorded so that the report says why the run stopped
        tb.error(f"testbench error: {type(exc).__name__}: {exc}")
        raise
    finally:
        rep = tb.report()
        Path(settings["report"]).write_text(json.dumps(rep, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    beats = rep["beats"]
    assert not tb.hung, tb.errors[-1]
    assert beats["missing"] == 0, f"{beats['missing']} of {beats['expected']} expected beats never arrived"
    assert beats["extra"] == 0, f"{beats['extra']} extra output beats"
    assert beats["duplicate"] == 0, f"{beats['duplicate']} beats arrived twice"
    assert rep["first_mismatch"] is None, (
        f"{rep['mismatches']} of {rep['values_compared']} values differ; first: {rep['first_mismatch_text']}"
    )
    assert rep["bit_exact"]
    assert tb.error_count == 0, f"{tb.error_count} protocol errors; first: {tb.errors[0]}"
