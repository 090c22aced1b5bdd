"""``nvmlstm flow``: the paper's story on one task, stage by stage, with a report (the main job).

Stages (each is also a subcommand): float training, quantization-aware training (4/4/4 by default), export and
golden reference vectors on real test sequences of the task, Verilog generation (with Yosys synthesis when Yosys
is installed, and the sky130 standard-cell mapping when that PDK is installed), the cocotb comparison on every
available simulator, gate-level simulation of the sky130 netlist, the efficiency estimate, a short noise sweep,
and ``report.md`` / ``report.json``.

Every stage records in ``DIR/flow_state.json`` the content hash of its inputs (parameters and the files it reads)
and of the files it wrote. A later run in the same directory reuses a stage whose inputs and outputs are
unchanged and says so; a stage whose inputs changed runs again, and so does everything downstream of it (their
inputs are its outputs). A stage whose tool is missing is reported as skipped with the command that installs it,
and the stages that need its results are skipped with the reason; nothing skipped is ever reported as passed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nvmlstm.artifacts.files import json_sha256, sha256_file, write_text_atomic
from nvmlstm.artifacts.version import package_version

from .train_cmd import TORCH_INSTALL_HINT  # the one install hint (the Makefile's TORCH_SPEC default)

__all__ = ["FlowArgs", "FlowError", "run_flow", "REPORT_KEYS"]

#: Keys every report.json has (tests/test_flow.py checks them).
REPORT_KEYS = (
    "task",
    "metric_name",
    "fp_metric",
    "qat_metric",
    "golden_metric",
    "rtl_bit_exact",
    "values_compared",
    "simulators",
    "gate_level_bit_exact",
    "cycles_per_timestep",
    "tops_per_w",
    "tops_per_mm2",
    "verilog_files",
    "skipped",
    "seconds",
    "reused",
    "stages",
)
STATE_FILE = "flow_state.json"
FORMAT = "nvmlstm-flow-1"


class FlowError(ValueError):
    """A user error in the flow's arguments or output directory (one line)."""


class _Skip(Exception):
    """A stage cannot run here: its tool is missing (the message says how to install it) or an input is."""


@dataclass(frozen=True)
class FlowArgs:
    """The flow's options (the CLI's); see ``nvmlstm flow --help``."""

    out: str
    task: str = "digits"
    data: str | None = None
    config: str | None = None
    simulators: tuple[str, ...] = ("icarus", "verilator")
    pdk: str = "auto"  # "auto": sky130 when installed; "sky130": required; "none"
    lanes: int | None = 4
    seed: int = 0
    epochs: int | None = None
    hidden: int | None = None
    vectors: int = 16
    sweep_trials: int = 3
    workers: int = 1
    progress: bool = True


@dataclass(frozen=True)
class _Job:
    """A stage whose needs are met, ready to run: what its reuse is keyed on, what it writes and how.

    Attributes
    ----------
    inputs : dict
        Hashed into the stage key (`_Flow._stage_key`): the parameters and the content hashes of the files the
        stage reads. The stage is reused only when these and its outputs are unchanged since the earlier run.
    outputs : list of str
        The files or directories the stage writes, relative to DIR (removed before it runs again).
    run : callable
        ``run(output_paths) -> dict``: writes the outputs and returns the stage's JSON-able result; raises
        `_Skip` when a tool it needs is missing.
    goes_without : dict of str to str
        Optional parts the stage leaves out, name -> why (a missing tool): reported as skipped each time the
        stage runs or is reused, since the report of every run must say so.
    """

    inputs: dict
    outputs: list[str]
    run: Callable[[list[Path]], dict]
    goes_without: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Stage:
    """One row of the flow's stage table.

    Attributes
    ----------
    name : str
        The stage's name: its key in flow_state.json and in report.json's ``stages``, ``seconds`` and ``skipped``.
    needs : tuple of str
        The earlier stages whose results (files) it reads, or prerequisites recorded with `_Flow.prerequisite`.
        When one is missing the runner skips the stage with "needs X" (the first missing one, in this order).
    job : callable
        ``job() -> _Job``. Called only once the needs are met: the inputs hash the needed stages' files, which
        exist only then, and some choices (the gate-level simulator) are made only for a stage that runs.
    """

    name: str
    needs: tuple[str, ...]
    job: Callable[[], _Job]


# --------------------------------------------------------------------------------------------------
def _tree_hash(paths: list[Path], root: Path) -> str:
    """sha256 over the relative names and contents of every file under ``paths`` (files or directories)."""
    h = hashlib.sha256()
    for p in paths:
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for q in files:
            h.update(q.relative_to(root).as_posix().encode() + b"\0" + sha256_file(q).encode() + b"\n")
    return h.hexdigest()


class _Flow:
    """The flow's output directory, its stage records and the stage runner (see the module docstring).

    Parameters
    ----------
    a : FlowArgs
        The flow's options.
    log : callable
        Receives each progress line.

    Attributes
    ----------
    results : dict
        Stage name -> result, for the stages that ran or were reused in this run (report.json's ``stages``).
    skipped : dict
        Stage, prerequisite or optional part -> why it was left out (report.json's ``skipped``).
    prerequisites : dict
        Prerequisite that is not a stage (the sky130 mapping) -> None when available, else why it is missing.
    seconds : dict
        Stage name -> seconds it took this run (report.json's ``seconds``).
    reused : list
        The stages reused from the earlier run, in order.
    """

    def __init__(self, a: FlowArgs, log: Callable[[str], None]):
        self.a = a
        self.out = Path(a.out)
        self.log = log
        self.state_path = self.out / STATE_FILE
        self.state: dict[str, Any] = {"format": FORMAT, "stages": {}}
        self.results: dict[str, Any] = {}
        self.skipped: dict[str, str] = {}
        self.prerequisites: dict[str, str | None] = {}
        self.seconds: dict[str, float] = {}
        self.reused: list[str] = []
        self._lock = threading.RLock()  # the simulation stages run in two threads

    # ---- the output directory and the stage records
    def open_dir(self) -> None:
        """Create DIR, or take over the state of an earlier flow in it.

        Raises
        ------
        FlowError
            DIR is a file, or a non-empty directory without a flow state file of this version.
        """
        from nvmlstm.golden.textfile import read_json_file

        out = self.out
        if out.exists() and not out.is_dir():
            raise FlowError(f"{out}: exists and is not a directory")
        if out.is_dir() and any(out.iterdir()):
            if not self.state_path.is_file():
                raise FlowError(
                    f"{out}: directory is not empty and not an earlier `nvmlstm flow` output (no "
                    f"{STATE_FILE}); give a new or empty directory"
                )
            doc = read_json_file(self.state_path, FlowError, "flow state file")
            if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("stages"), dict):
                raise FlowError(
                    f"{self.state_path}: not a flow state file of this version (format {FORMAT}); "
                    f"give a new or empty directory"
                )
            self.state = doc
        out.mkdir(parents=True, exist_ok=True)

    def save_state(self) -> None:
        """Write the stage records to ``DIR/flow_state.json`` (atomically: an interrupted run keeps the old)."""
        write_text_atomic(self.state_path, json.dumps(self.state, indent=2, sort_keys=True) + "\n")

    # ---- the stage runner
    def stage(self, st: _Stage) -> dict | None:
        """Run stage ``st``, reuse it, or skip it (a need unmet or its tool missing).

        Parameters
        ----------
        st : _Stage
            The stage's row of the table.

        Returns
        -------
        dict or None
            The stage's result (also in `results`), or None when it is skipped (the reason is in `skipped`).
        """
        job = self._ready(st)
        return None if job is None else self._run(st.name, job)

    def stages_in_parallel(self, stages: list[_Stage], workers: int = 2) -> None:
        """Run (or reuse, or skip) independent ``stages``, ``workers`` at a time; the results go to `results`.

        The needs of every stage are checked first, in the order given, so the skip lines come in table order
        whatever order the runs finish in.
        """
        jobs = [(st.name, job) for st in stages if (job := self._ready(st)) is not None]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(self._run, name, job) for name, job in jobs]
            for f in futures:
                f.result()  # a stage's error is the flow's

    def prerequisite(self, name: str, missing: str | None) -> None:
        """Record a prerequisite that is not a stage (the sky130 mapping) for the stages that name it in ``needs``.

        Parameters
        ----------
        name : str
            The prerequisite's name.
        missing : str or None
            None when it is available, else why not. A missing one is listed in `skipped` without a log line of
            its own: the stages that need it log theirs, with this reason.
        """
        self.prerequisites[name] = missing
        if missing is not None:
            self.skipped[name] = missing

    def skip(self, name: str, why: str) -> None:
        """Record and log that ``name`` is left out, and why."""
        self.skipped[name] = why
        self.results.pop(name, None)
        self.log(f"{name}: SKIPPED: {why}")

    def _unmet(self, needs: tuple[str, ...]) -> str | None:
        """Why a stage with ``needs`` cannot run ("needs X", the first unmet need), or None when all are met."""
        for need in needs:
            if need in self.prerequisites:
                if self.prerequisites[need] is not None:
                    # A prerequisite has no skip line of its own, so its reason is repeated in the stage's.
                    return f"needs the {need}: {self.prerequisites[need]}"
            elif need not in self.results:
                return f"needs {need}"
        return None

    def _ready(self, st: _Stage) -> _Job | None:
        """The job of ``st`` when its needs are met; otherwise skip it (logged) and return None."""
        why = self._unmet(st.needs)
        if why is not None:
            with self._lock:
                self.skip(st.name, why)
            return None
        return st.job()

    def _run(self, name: str, job: _Job) -> dict | None:
        """Run (or reuse) stage ``name``; returns its result, or None when it raises `_Skip`.

        Thread-safe: the records are changed under a lock, ``job.run`` runs outside it.
        """
        paths = [self.out / o for o in job.outputs]
        with self._lock:
            result = self._reuse(name, job.inputs, paths)
        if result is None:
            result = self._execute(name, job, paths)
        with self._lock:
            for part, why in job.goes_without.items():
                self.skip(part, why)
        return result

    def _execute(self, name: str, job: _Job, paths: list[Path]) -> dict | None:
        """Run ``job`` of stage ``name`` and record its result and output hash (None when it raises `_Skip`)."""
        t0 = time.perf_counter()
        self.log(f"{name}: running")
        try:
            result = job.run(paths)
        except _Skip as exc:
            with self._lock:
                self.seconds[name] = round(time.perf_counter() - t0, 3)
                self.skip(name, str(exc))
            return None
        with self._lock:
            self.seconds[name] = round(time.perf_counter() - t0, 3)
            self.state["stages"][name] = {
                "key": self._stage_key(name, job.inputs),
                "status": "done",
                "result": result,
                "outputs": _tree_hash(paths, self.out),
            }
            self.save_state()
            self.results[name] = result
            self.log(f"{name}: done in {self.seconds[name]:.1f} s")
        return result

    @staticmethod
    def _stage_key(name: str, inputs: dict) -> str:
        """The key a stage's record must have to be reused: its name, inputs and the package version."""
        return json_sha256({"stage": name, "inputs": inputs, "version": package_version()})

    def _reuse(self, name: str, inputs: dict, paths: list[Path]) -> dict | None:
        """The recorded result when inputs and outputs are unchanged; otherwise clear the stage's outputs."""
        key = self._stage_key(name, inputs)
        rec = self.state["stages"].get(name)
        t0 = time.perf_counter()
        if (
            rec is not None
            and rec.get("key") == key
            and rec.get("status") == "done"
            and all(p.exists() for p in paths)
            and rec.get("outputs") == _tree_hash(paths, self.out)
        ):
            self.log(f"{name}: reused (inputs and outputs unchanged since the earlier run)")
            self.reused.append(name)
            self.results[name] = rec["result"]
            self.seconds[name] = round(time.perf_counter() - t0, 3)
            return rec["result"]
        for p in paths:  # a stage rewrites its outputs as a whole
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        self.state["stages"].pop(name, None)
        self.save_state()
        return None


# --------------------------------------------------------------------------------------------------
def _check_args(a: FlowArgs) -> None:
    """Refuse unknown task, simulator or ``--pdk`` values before anything is written (`FlowError`)."""
    from nvmlstm.sim.simulators import SIMULATORS
    from nvmlstm.tasks import TASKS

    if a.task not in TASKS:
        raise FlowError(f"unknown task {a.task!r}; choose from {', '.join(TASKS)}")
    bad = [s for s in a.simulators if s not in SIMULATORS]
    if bad or not a.simulators:
        raise FlowError(
            f"--simulators: unknown simulator {bad[0]!r}; choose from {', '.join(SIMULATORS)}"
            if bad
            else f"--simulators: name at least one of {', '.join(SIMULATORS)}"
        )
    if a.pdk not in ("auto", "sky130", "none"):
        raise FlowError(f"--pdk must be auto, sky130 or none, not {a.pdk!r}")


def _train_config(a: FlowArgs, task) -> tuple[dict, Any]:
    """Training options from ``--config`` (or the defaults) and the config the trained model will have."""
    from nvmlstm.golden.config import load_config
    from nvmlstm.tasks.config import TRAINED_FIELDS, task_config

    opts: dict[str, Any] = {}
    if a.hidden is not None:
        opts["hidden"] = a.hidden
    if a.config is None:
        return opts, None
    cfg = load_config(a.config)
    if cfg.num_layers != 1:
        raise FlowError(f"{a.config}: num_layers is {cfg.num_layers}; the flow trains one LSTM layer")
    if (cfg.input_size, cfg.output_size) != (task.input_size, task.output_size):
        raise FlowError(
            f"{a.config}: input_size/output_size are {cfg.input_size}/{cfg.output_size}, but task "
            f"{task.name} has {task.input_size}/{task.output_size}"
        )
    fields = {k: getattr(cfg, k) for k in TRAINED_FIELDS}
    opts.update({"hidden" if k == "hidden_size" else k: v for k, v in fields.items()})  # TrainArgs' names
    # Training sets these fields and leaves the rest at their defaults: a config that changes the rest (table
    # or cell widths) cannot be trained for, and is refused rather than silently replaced.
    trained = task_config(task, **fields)
    diff = [k for k, v in cfg.to_dict().items() if trained.to_dict().get(k) != v]
    if diff:
        raise FlowError(
            f"{a.config}: {diff[0]} is {cfg.to_dict()[diff[0]]!r}; training builds it as "
            f"{trained.to_dict()[diff[0]]!r} (the flow can train only for the fields "
            f"{', '.join(TRAINED_FIELDS)})"
        )
    return opts, cfg


def _check_trained_config(config_file: str, model_path: Path, cfg) -> None:
    """Refuse a trained model whose config is not ``cfg`` (the one ``--config`` asked for; `_train_config`
    promised training would build exactly it)."""
    from nvmlstm.golden.io import load_model

    if load_model(model_path).config != cfg:
        raise FlowError(f"{config_file}: the trained model's config differs from it")


def _have_torch() -> bool:
    """Whether PyTorch is installed (an error inside it is raised, not taken for its absence)."""
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        return False
    return True


def _indented(log: Callable[[str], None]) -> Callable[[str], None]:
    """``log`` for the lines a stage's tools print: indented under the stage's "running" line."""
    return lambda s: log(f"  {s}")


@dataclass(frozen=True)
class _Tools:
    """The optional tools of the generate stage, found or not.

    Attributes
    ----------
    yosys : object
        `nvmlstm.gen.tools.find_yosys`'s tool, or its `ToolNotFound` (which says how to install Yosys).
    use_pdk : bool
        Whether the Verilog is mapped to sky130 standard cells (the PDK and Yosys are installed, and not
        ``--pdk none``).
    mapping_missing : str or None
        Why the sky130 mapping is left out, or None when it is made.
    """

    yosys: Any
    use_pdk: bool
    mapping_missing: str | None

    @property
    def synth(self) -> bool:
        """Whether Yosys is installed."""
        return not isinstance(self.yosys, Exception)


def _probe_tools(a: FlowArgs) -> _Tools:
    """Look for Yosys and (unless ``--pdk none``) the sky130 PDK.

    Raises
    ------
    FlowError
        ``--pdk sky130`` and the mapping cannot be made (the message says what is missing).
    """
    from nvmlstm.gen.liberty import find_pdk
    from nvmlstm.gen.tools import ToolNotFound, find_yosys

    def tool_or_none(find):
        try:
            return find()
        except ToolNotFound as exc:
            return exc

    yosys = tool_or_none(find_yosys)
    pdk_found = tool_or_none(find_pdk) if a.pdk != "none" else None
    use_pdk = a.pdk != "none" and not isinstance(pdk_found, Exception) and not isinstance(yosys, Exception)
    if a.pdk == "sky130" and not use_pdk:
        raise FlowError(f"--pdk sky130: {yosys if isinstance(yosys, Exception) else pdk_found}")
    why = (
        None
        if use_pdk
        else ("--pdk none" if a.pdk == "none" else str(yosys) if isinstance(yosys, Exception) else str(pdk_found))
    )
    return _Tools(yosys=yosys, use_pdk=use_pdk, mapping_missing=why)


def _gate_simulator(requested: tuple[str, ...]) -> str:
    """Verilator when it is requested and installed, else Icarus (which the gate-level stage then needs)."""
    from nvmlstm.sim.simulators import SimulatorMissing, find_simulator

    if "verilator" in requested:
        try:
            find_simulator("verilator")
            return "verilator"
        except SimulatorMissing:
            pass
    return "icarus"


# ---- the stages ---------------------------------------------------------------------------------------------
def stage_train(
    paths: list[Path], *, a: FlowArgs, opts: dict, mode: str, init: Path | None, log: Callable[[str], None]
) -> dict:
    """Train the task's model (``train_fp`` / ``train_qat``) into ``paths[0]``.

    Parameters
    ----------
    paths : list of Path
        One element: the run directory `nvmlstm train` writes.
    a : FlowArgs
        Task, data, seed, epochs and progress.
    opts : dict
        More `TrainArgs` fields (hidden size and ``--config``'s fields; see `_train_config`).
    mode : str
        ``"fp"`` or ``"qat"``.
    init : Path or None
        The run directory whose float model QAT starts from.
    log : callable
        Receives the training's lines.

    Returns
    -------
    dict
        Those of ``test_metric``, ``golden_test_metric``, ``float_test_metric``, ``metric_name``,
        ``train_seconds``, ``golden_matches_torch_eval``, ``model_sha256`` and ``best_epoch`` the training
        reports.

    Raises
    ------
    _Skip
        PyTorch is not installed.
    """
    if not _have_torch():
        raise _Skip(f"PyTorch is not installed: {TORCH_INSTALL_HINT}")
    from nvmlstm.train.runner import TrainArgs, run_training

    m = run_training(
        TrainArgs(
            task=a.task,
            mode=mode,
            out=str(paths[0]),
            data=a.data,
            seed=a.seed,
            epochs=a.epochs,
            init_from=None if init is None else str(init),
            progress=a.progress,
            **opts,
        ),
        log=log,
    )
    keep = (
        "test_metric",
        "golden_test_metric",
        "float_test_metric",
        "metric_name",
        "train_seconds",
        "golden_matches_torch_eval",
        "model_sha256",
        "best_epoch",
    )
    return {k: m[k] for k in keep if k in m}


def stage_golden(paths: list[Path], *, model_path: Path, task, task_name: str, vectors: int) -> dict:
    """Golden reference vectors of the trained model on the first real test sequences of the task.

    Parameters
    ----------
    paths : list of Path
        One element: the directory of the reference vectors.
    model_path : Path
        The exported integer model (``train/qat/model.npz``).
    task : Task
        The loaded task (its test split).
    task_name : str
        The task's name, recorded in the vectors' metadata.
    vectors : int
        At most this many test sequences are written.

    Returns
    -------
    dict
        ``golden_metric`` (the integer model's metric on the whole test split), ``sequences``, ``steps`` and
        ``model_sha256``.
    """
    from nvmlstm.golden.io import load_model
    from nvmlstm.golden.realio import golden_outputs, input_codes
    from nvmlstm.golden.vectors import write_golden_dir
    from nvmlstm.tasks import metric_from_outputs

    qm, _meta = load_model(model_path, with_metadata=True)
    xte, yte = task.test
    codes = input_codes(qm, xte)
    golden_metric = metric_from_outputs(task, golden_outputs(qm, xte), yte)
    n = min(vectors, len(codes))
    write_golden_dir(
        paths[0],
        qm,
        codes[:n],
        metadata={
            "generator": "nvmlstm flow",
            "model": {"kind": "file", "file": "train/qat/model.npz"},
            "inputs": {"kind": "task-test-split", "task": task_name, "first_sequences": n},
        },
    )
    return {"golden_metric": golden_metric, "sequences": n, "steps": int(codes.shape[1]), "model_sha256": qm.digest()}


def stage_generate(
    paths: list[Path], *, model_path: Path, lanes: int | None, tools: _Tools, log: Callable[[str], None]
) -> dict:
    """The accelerator's Verilog for the trained model, synthesized or mapped to sky130 when the tools allow.

    Parameters
    ----------
    paths : list of Path
        One element: the RTL directory `nvmlstm generate` writes.
    model_path : Path
        The exported integer model.
    lanes : int or None
        The accelerator's lanes (``--lanes``).
    tools : _Tools
        Whether Yosys synthesis and the sky130 mapping are made.
    log : callable
        Receives the generator's lines.

    Returns
    -------
    dict
        ``timestep_cyc``, ``lanes``, ``files`` (relative to the RTL directory), ``synthesis`` and ``signoff``
        (from the manifest; None when not made).
    """
    from nvmlstm.gen import generate_rtl
    from nvmlstm.golden.io import load_model

    qm = load_model(model_path)
    # With the PDK the sky130 mapping is the synthesis (its cell counts go into the manifest); the generic
    # Yosys synthesis would synthesize the same design a second time.
    res = generate_rtl(
        paths[0],
        qm.config,
        model=qm,
        model_name="model.npz",
        lanes=lanes,
        synth=tools.synth and not tools.use_pdk,
        pdk="sky130" if tools.use_pdk else None,
        log=log,
    )
    man = res.manifest
    return {
        "timestep_cyc": man["latency"]["timestep_cyc"]["value"],
        "lanes": man["lanes"],
        "files": sorted(f for f in man["files"]),
        "synthesis": man.get("synthesis"),
        "signoff": man.get("signoff"),
    }


def stage_simulate(
    paths: list[Path], *, rtl_dir: Path, vec_dir: Path, sim: str, gate_level: bool, log: Callable[[str], None]
) -> dict:
    """The cocotb comparison of the RTL (or the sky130 netlist) against the golden vectors on simulator ``sim``.

    Parameters
    ----------
    paths : list of Path
        One element: the simulation report (JSON).
    rtl_dir, vec_dir : Path
        The generate and golden stages' directories.
    sim : str
        ``"icarus"`` or ``"verilator"``.
    gate_level : bool
        Simulate the gate-level netlist instead of the RTL.
    log : callable
        Receives the regression's lines.

    Returns
    -------
    dict
        ``passed``, ``values_compared``, ``mismatches``, ``first_mismatch_text``, ``sim_seconds`` (those the
        regression reports) and ``cycles`` (the sum over the sequences).

    Raises
    ------
    _Skip
        The simulator is not installed (the message says how to install it).
    FlowError
        The regression cannot run on these inputs.
    """
    from nvmlstm.sim import SimError, run_regression
    from nvmlstm.sim.simulators import SimulatorMissing, find_simulator

    try:
        find_simulator(sim)
    except SimulatorMissing as exc:
        raise _Skip(str(exc)) from None
    try:
        rep = run_regression(rtl_dir, vec_dir, sim, report=paths[0], gate_level=gate_level, log=log)
    except SimError as exc:
        raise FlowError(f"sim {sim}: {exc}") from None
    return {
        k: rep[k] for k in ("passed", "values_compared", "mismatches", "first_mismatch_text", "sim_seconds") if k in rep
    } | {"cycles": rep["cycles"]["done_sum"]}


def _simulation_job(
    *, out: Path, inputs: dict, sim: str | Callable[[], str], gate_level: bool, log: Callable[[str], None]
) -> _Job:
    """The job of a simulation stage; ``sim`` is the simulator or the function choosing it (for gate level,
    asked only when the stage runs, since it looks for Verilator)."""
    sim = sim() if callable(sim) else sim
    return _Job(
        inputs,
        [f"sim/{'gate_level_' if gate_level else ''}{sim}.json"],
        functools.partial(
            stage_simulate, rtl_dir=out / "rtl", vec_dir=out / "golden", sim=sim, gate_level=gate_level, log=log
        ),
    )


def stage_bench(paths: list[Path], *, rtl_dir: Path) -> dict:
    """The efficiency estimate of the generated accelerator (``bench/``, with charts).

    Parameters
    ----------
    paths : list of Path
        One element: the directory of the efficiency report.
    rtl_dir : Path
        The generate stage's directory (its manifest gives the config, latencies, synthesis and signoff).

    Returns
    -------
    dict
        ``tops_per_w``, ``tops_per_mm2`` and the ratios to the digital baseline ``vs_digital_tops_per_w`` and
        ``vs_digital_tops_per_mm2`` (None when the report has no digital baseline).
    """
    from nvmlstm.bench.model import read_rtl_manifest, timing_from_manifest
    from nvmlstm.bench.report import bench_report, write_bench_dir
    from nvmlstm.bench.technology import load_technology
    from nvmlstm.golden.config import LstmConfig

    from .timing import accelerator_timing

    man = read_rtl_manifest(rtl_dir)
    cfg = LstmConfig.from_dict(man["config"], where="rtl/manifest.json config")
    built = timing_from_manifest(man)
    doc = bench_report(
        cfg,
        load_technology(None),
        accelerator_timing(built.macro_latency),
        lanes=built.lanes,
        clock_mhz=200.0,
        synthesis=man.get("synthesis"),
        signoff=man.get("signoff"),
        source={"kind": "rtl", "dir": "rtl"},
    )
    write_bench_dir(paths[0], doc, charts=True)
    best = doc["ratios"]
    return {
        "tops_per_w": doc["tops_per_w"],
        "tops_per_mm2": doc["tops_per_mm2"],
        "vs_digital_tops_per_w": (best["tops_per_w"].get("digital") or {}).get("ratio"),
        "vs_digital_tops_per_mm2": (best["tops_per_mm2"].get("digital") or {}).get("ratio"),
    }


#: The flow's short noise sweep: programming noise (fraction of the conductance range) x ADC noise (LSB), the
#: grid around the paper's "reasonable levels" (docs/resilience.md has the full sweeps).
FLOW_SWEEP_AXES = ("weight_noise=0,0.05,0.1", "adc_noise=0,0.5,1")


def stage_sweep(paths: list[Path], *, a: FlowArgs, qat_dir: Path, log: Callable[[str], None]) -> dict:
    """A short Monte Carlo noise sweep (`FLOW_SWEEP_AXES`) of the QAT model on the golden model.

    Parameters
    ----------
    paths : list of Path
        One element: the directory of the noise sweep.
    a : FlowArgs
        Task, data, seed, trials (``sweep_trials``), workers and progress.
    qat_dir : Path
        The train_qat stage's directory.
    log : callable
        Receives the sweep's lines.

    Returns
    -------
    dict
        ``axes``, ``trials``, ``ideal_mean`` (no noise), ``weight_noise_0.05_adc_noise_0.5`` (mean, std, min,
        max at the paper's levels) and ``plots`` (relative to DIR).

    Raises
    ------
    _Skip
        dask.distributed is not installed.
    """
    try:
        import distributed  # noqa: F401
    except ModuleNotFoundError:
        raise _Skip("dask.distributed is not installed: pip install 'nvm-lstm[sweep]'") from None
    from nvmlstm.sweep.run import run_sweep
    from nvmlstm.sweep.spec import build_spec

    spec = build_spec(
        task=a.task,
        models=[f"qat={qat_dir}"],
        axes=list(FLOW_SWEEP_AXES),
        trials=a.sweep_trials,
        seed=a.seed,
        data=a.data,
    )
    summary = run_sweep(spec, paths[0], workers=a.workers, progress=a.progress, log=log)
    grid = {(p["point"]["weight_noise"], p["point"]["adc_noise"]): p for p in summary["points"]}
    ideal, paper = grid[(0.0, 0.0)], grid[(0.05, 0.5)]
    return {
        "axes": list(FLOW_SWEEP_AXES),
        "trials": a.sweep_trials,
        "ideal_mean": ideal["mean"],
        "weight_noise_0.05_adc_noise_0.5": {k: paper[k] for k in ("mean", "std", "min", "max")},
        "plots": [f"sweep/{p}" for p in summary["plots"]],
    }


# ---- the flow --------------------------------------------------------------------------------------------------
def run_flow(a: FlowArgs, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the flow into ``a.out``.

    Parameters
    ----------
    a : FlowArgs
        The flow's options.
    log : callable
        Receives each progress line.

    Returns
    -------
    dict
        The report (also written as ``report.json`` / ``report.md``; keys `REPORT_KEYS` and more).

    Raises
    ------
    FlowError
        Bad arguments or output directory, a missing ``--pdk sky130``, or a simulation that cannot run.
    """
    from nvmlstm.tasks import load_task

    _check_args(a)
    task = load_task(a.task, a.data)
    opts, user_cfg = _train_config(a, task)
    fl = _Flow(a, log)
    fl.open_dir()
    t_all = time.perf_counter()
    out, sub, partial = fl.out, _indented(log), functools.partial
    data_hash = None if a.data is None else _tree_hash([Path(a.data)], Path(a.data).parent)
    common = {"task": a.task, "data": data_hash, "seed": a.seed, "epochs": a.epochs, "opts": opts}
    model = out / "train/qat/model.npz"
    train = partial(stage_train, a=a, opts=opts, log=sub)

    # The stage table, in the order the stages run. Each row's inputs dict is its reuse key: the parameters and
    # the content hashes of the files it reads (so a changed stage reruns everything downstream of it).
    fl.stage(_Stage("train_fp", (), lambda: _Job(common, ["train/fp"], partial(train, mode="fp", init=None))))
    fl.stage(
        _Stage(
            "train_qat",
            ("train_fp",),
            lambda: _Job(
                {**common, "init": _tree_hash([out / "train/fp/float_model.pt"], out)},
                ["train/qat"],
                partial(train, mode="qat", init=out / "train/fp"),
            ),
        )
    )
    if user_cfg is not None and "train_qat" in fl.results:
        _check_trained_config(a.config, model, user_cfg)
    fl.stage(
        _Stage(
            "golden",
            ("train_qat",),
            lambda: _Job(
                {"model": sha256_file(model), "vectors": a.vectors},
                ["golden"],
                partial(stage_golden, model_path=model, task=task, task_name=a.task, vectors=a.vectors),
            ),
        )
    )

    tools = _probe_tools(a)
    fl.prerequisite("sky130 mapping", tools.mapping_missing)
    fl.stage(
        _Stage(
            "generate",
            ("golden",),
            lambda: _Job(
                {"model": sha256_file(model), "lanes": a.lanes, "pdk": tools.use_pdk, "synth": tools.synth},
                ["rtl"],
                partial(stage_generate, model_path=model, lanes=a.lanes, tools=tools, log=sub),
                goes_without={} if tools.synth else {"synthesis": str(tools.yosys)},
            ),
        )
    )

    # Hashed once, before the simulations: they and bench read these files.
    rtl_hash = _tree_hash([out / "rtl"], out) if "generate" in fl.results else None
    vec_hash = _tree_hash([out / "golden"], out) if "golden" in fl.results else None
    sim_job = partial(_simulation_job, out=out, inputs={"rtl": rtl_hash, "vectors": vec_hash}, log=sub)
    gate_sim = functools.cache(partial(_gate_simulator, a.simulators))
    # The simulations are independent and each is one simulator process (build, then run): two at a time on
    # two cores, gate level (the longest) first. Gate level runs on Verilator when it is installed: it compiles
    # the netlist in about a third of the time Icarus takes to simulate it (docs/performance.md, "Flow").
    fl.stages_in_parallel(
        [_Stage("gate_level", ("generate", "sky130 mapping"), partial(sim_job, sim=gate_sim, gate_level=True))]
        + [_Stage(f"sim_{sim}", ("generate",), partial(sim_job, sim=sim, gate_level=False)) for sim in a.simulators],
        workers=2,
    )

    fl.stage(
        _Stage(
            "bench",
            ("generate",),
            lambda: _Job({"rtl": rtl_hash}, ["bench"], partial(stage_bench, rtl_dir=out / "rtl")),
        )
    )
    fl.stage(
        _Stage(
            "sweep",
            ("train_qat",),
            lambda: _Job(
                {"model": sha256_file(model), "trials": a.sweep_trials, "task": a.task, "data": data_hash},
                ["sweep"],
                partial(stage_sweep, a=a, qat_dir=out / "train" / "qat", log=sub),
            ),
        )
    )

    fl.seconds["total"] = round(time.perf_counter() - t_all, 3)
    results = dict(fl.results)
    if "gate_level" in results:  # the report names the simulator gate level ran on (chosen when it ran)
        results["gate_level"] = results["gate_level"] | {"simulator": gate_sim()}
    rep = _report(a, task, results, fl)
    log(f"report: {out / 'report.md'}")
    return rep


# ---- the report ----------------------------------------------------------------------------------------------
def fmt_metric(v: Any, metric: str | None = None) -> str:
    """A metric for people: accuracy in percent, others with 4 significant digits, None as a dash."""
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{100 * v:.2f}%" if metric == "accuracy" else f"{v:.4g}"
    return str(v)


def _report(a: FlowArgs, task, results: dict[str, dict], flow: _Flow) -> dict:
    """Write ``report.json`` and ``report.md`` from the stage results.

    Parameters
    ----------
    a : FlowArgs
        The flow's options (recorded under ``args``).
    task : Task
        The task (its metric's name).
    results : dict
        Stage name -> result of the stages that ran or were reused; ``gate_level``'s also has ``simulator``.
    flow : _Flow
        The records: skipped, seconds, reused and the stages' results as recorded.

    Returns
    -------
    dict
        The report (report.json's content).
    """
    fp, qat, gold = results.get("train_fp"), results.get("train_qat"), results.get("golden")
    gen, gate = results.get("generate"), results.get("gate_level")
    ben, sweep = results.get("bench"), results.get("sweep")
    sims = {sim: results[f"sim_{sim}"] for sim in a.simulators if f"sim_{sim}" in results}
    skipped = dict(sorted(flow.skipped.items()))
    ran = [s for s in sims.values()]
    rtl_bit_exact = bool(ran) and all(s["passed"] for s in ran)
    rep: dict[str, Any] = {
        "task": a.task,
        "metric_name": task.metric,
        "fp_metric": None if fp is None else fp["test_metric"],
        "qat_metric": None if qat is None else qat["test_metric"],
        "golden_metric": None if gold is None else gold["golden_metric"],
        "rtl_bit_exact": rtl_bit_exact,
        "values_compared": int(sum(s["values_compared"] for s in ran)),
        "simulators": sorted(sims),
        "gate_level_bit_exact": None if gate is None else bool(gate["passed"]),
        "gate_level_simulator": None if gate is None else gate["simulator"],
        "cycles_per_timestep": None if gen is None else gen["timestep_cyc"],
        "tops_per_w": None if ben is None else ben["tops_per_w"],
        "tops_per_mm2": None if ben is None else ben["tops_per_mm2"],
        "verilog_files": [] if gen is None else sorted(f"rtl/{f}" for f in gen["files"] if f.endswith((".v", ".sv"))),
        "skipped": skipped,
        "seconds": flow.seconds,
        "reused": flow.reused,
        "stages": {k: v for k, v in flow.results.items()},
        "args": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(a).items() if k not in ("out", "progress")
        },
    }
    if sweep is not None:
        rep["noise_sweep"] = sweep
    m = task.metric
    lines = [
        f"# nvmlstm flow: {a.task}",
        "",
        f"| | {m} |",
        "|---|---|",
        f"| float (fp) | {fmt_metric(rep['fp_metric'], m)} |",
        f"| 4-bit QAT (PyTorch eval) | {fmt_metric(rep['qat_metric'], m)} |",
        f"| golden integer model | {fmt_metric(rep['golden_metric'], m)} |",
        "",
        f"* RTL bit exact against the golden model: **{rtl_bit_exact}** "
        f"({rep['values_compared']} values on {', '.join(rep['simulators']) or 'no simulator'})",
        f"* gate-level (sky130 netlist) bit exact: **{rep['gate_level_bit_exact']}**"
        + (f" ({gate['values_compared']} values on {gate['simulator']})" if gate else ""),
        f"* cycles per timestep: {rep['cycles_per_timestep']}",
        f"* efficiency: {fmt_metric(rep['tops_per_w'])} TOPS/W, {fmt_metric(rep['tops_per_mm2'])} TOPS/mm^2 "
        f"(bench/bench.md)",
        "",
    ]
    if sweep is not None:
        pt = sweep["weight_noise_0.05_adc_noise_0.5"]
        lines += [
            "## Noise (golden model, Monte Carlo)",
            "",
            f"{m} without noise {fmt_metric(sweep['ideal_mean'], m)}; with programming noise 5% of the "
            f"conductance range and ADC noise 0.5 LSB {fmt_metric(pt['mean'], m)} ± {fmt_metric(pt['std'], m)} "
            f"over {sweep['trials']} trials (`sweep/summary.md`).",
            "",
        ]
        lines += [f"![{p}]({p})" for p in sweep["plots"]] + [""]
    if skipped:
        lines += ["## Skipped", ""] + [f"* {k}: {v}" for k, v in skipped.items()] + [""]
    lines += ["## Seconds per stage", "", "| stage | s |", "|---|---|"]
    lines += [f"| {k}{' (reused)' if k in flow.reused else ''} | {v:.1f} |" for k, v in flow.seconds.items()]
    lines += [
        "",
        "## Files",
        "",
        "* Verilog: " + ", ".join(f"`{f}`" for f in rep["verilog_files"]),
        "* training curves: `train/fp/curve.png`, `train/qat/curve.png`",
        "",
    ]
    write_text_atomic(flow.out / "report.json", json.dumps(rep, indent=2, sort_keys=True) + "\n")
    write_text_atomic(flow.out / "report.md", "\n".join(lines))
    return rep
