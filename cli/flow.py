"""``nvmlstm flow``: the paper's story on one task, stage by stage, with a report (the main job).

Stages (each is also a subcommand): float training, quantization-aware training (4/4/4 by default), noise-aware
QAT (the same with the paper's noise injected), export and golden reference vectors on real test sequences of the
task, Verilog generation (with Yosys synthesis when Yosys is installed, and the sky130 standard-cell mapping when
that PDK is installed, with its static timing analysis), the cocotb comparison on every available simulator,
gate-level simulation of the sky130 netlist, its periphery power from the gate-level activity (OpenSTA), the
efficiency estimate at the analysed clock, a short noise sweep of plain and noise-aware QAT, and ``report.md`` /
``report.json``, which open with the paper's claims against what this run measured.

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
    "timing",
    "periphery_power",
    "verilog_files",
    "skipped",
    "seconds",
    "stage_seconds",
    "cumulative_seconds",
    "reused",
    "stages",
    "claims",
    "references",
    "plots",
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
        Stage name -> seconds it took this run (report.json's ``seconds``; for a reused stage, the check).
    reused : list
        The stages reused from the earlier run, in order.
    outputs : dict
        Stage name -> the files or directories it writes (its `_Job`'s), for the stages whose needs were met.
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
        self.outputs: dict[str, list[str]] = {}
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
        """Write the stage records to ``DIR/flow_state.json`` (atomically: an interrupted run keeps the old).

        Each record of a stage that ran in this run gets the seconds it took (``seconds``): a later run that
        reuses the stage reports that cost instead of the moment its check took.
        """
        for name, rec in self.state["stages"].items():
            if name in self.seconds and name not in self.reused and "seconds" not in rec:
                rec["seconds"] = self.seconds[name]
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

        A stop (Ctrl-C, SIGTERM) or an error starts no further stage: the queued ones are cancelled. On a stop the
        running ones also lose their processes (`nvmlstm.stopping.stop_children`, until their threads are done:
        a killed simulator is `SimStopped`, never a mismatch re-run with waveforms), then the stop propagates.
        """
        from . import stopping

        jobs = [(st.name, job) for st in stages if (job := self._ready(st)) is not None]
        pool = ThreadPoolExecutor(max_workers=workers)
        futures: list = []
        try:
            futures += [pool.submit(self._run, name, job) for name, job in jobs]
            for f in futures:
                f.result()  # a stage's error is the flow's
        except BaseException:
            for f in futures:
                f.cancel()
            if stopping.stop_signal() is not None:
                stopping.stop_children(until=lambda: all(f.done() for f in futures))
            raise
        finally:
            pool.shutdown(wait=True)

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
        job = st.job()
        with self._lock:
            self.outputs[st.name] = list(job.outputs)
        return job

    def stage_seconds(self) -> dict[str, float | None]:
        """Stage -> the seconds it took when it ran: in this run, or (reused) as recorded when it ran then.

        None for a reused stage recorded by an older version of the flow, which kept no seconds.
        """
        out: dict[str, float | None] = {}
        for name, s in self.seconds.items():
            if name == "total":
                continue
            rec = self.state["stages"].get(name) or {}
            out[name] = rec.get("seconds") if name in self.reused else s
        return out

    def cumulative_seconds(self) -> float:
        """This run's wall time plus the seconds the reused stages took when they ran: what the results cost."""
        past = [self.stage_seconds()[n] for n in self.reused]
        return round(self.seconds.get("total", 0.0) + sum(s for s in past if s is not None), 3)

    def _run(self, name: str, job: _Job) -> dict | None:
        """Run (or reuse) stage ``name``; returns its result, or None when it raises `_Skip`.

        Thread-safe: the records are changed under a lock, ``job.run`` runs outside it. A stage not yet begun
        when the command is stopped never begins (`nvmlstm.stopping.check`: worker threads see no signal).
        """
        from . import stopping

        stopping.check()
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
    paths: list[Path],
    *,
    a: FlowArgs,
    opts: dict,
    mode: str,
    init: Path | None,
    log: Callable[[str], None],
    extra: dict | None = None,
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
    extra : dict, optional
        More `TrainArgs` fields, over ``--epochs`` and ``opts`` (the noise-aware stage's noise, epochs and lr).

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

    fields = {"epochs": a.epochs, **opts, **(extra or {})}
    m = run_training(
        TrainArgs(
            task=a.task,
            mode=mode,
            out=str(paths[0]),
            data=a.data,
            seed=a.seed,
            init_from=None if init is None else str(init),
            progress=a.progress,
            **fields,
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
        "weight_noise",
        "adc_noise",
        "threads",
        "torch",
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
    from nvmlstm.sim import SimError, SimStopped, run_regression
    from nvmlstm.sim.simulators import SimulatorMissing, find_simulator

    from . import stopping

    try:
        find_simulator(sim)
    except SimulatorMissing as exc:
        raise _Skip(str(exc)) from None
    # The run's files (settings, log, waveforms) go beside the report, not in a temporary directory: a failed
    # run's log stays with the flow, and a stopped one leaves nothing behind anywhere.
    work = paths[0].with_suffix(".run")
    shutil.rmtree(work, ignore_errors=True)
    try:
        rep = run_regression(rtl_dir, vec_dir, sim, work_dir=work, gate_level=gate_level, log=log)
    except SimStopped as exc:
        if stopping.stop_signal() is not None:  # the flow itself is stopping: the stop's one line says so
            shutil.rmtree(work, ignore_errors=True)
            raise
        raise FlowError(f"sim {sim}: {exc}") from None  # killed from outside: one line naming the kept log
    except SimError as exc:
        raise FlowError(f"sim {sim}: {exc}") from None
    if rep["passed"] and not rep.get("waves"):
        shutil.rmtree(work, ignore_errors=True)
        rep |= {"run_dir": None, "log": None}  # the report names no file that is gone
    write_text_atomic(paths[0], json.dumps(rep, indent=2, sort_keys=True) + "\n")
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


def stage_power(paths: list[Path], *, rtl_dir: Path, vec_dir: Path, log: Callable[[str], None]) -> dict:
    """The periphery's power from the gate-level activity of the golden vectors (`nvmlstm power`), tt corner.

    Parameters
    ----------
    paths : list of Path
        One element: the stage's directory (``power.json``, the ``signoff.power`` entry, and its report).
    rtl_dir, vec_dir : Path
        The generate and golden stages' directories.
    log : callable
        Receives the power run's lines.

    Returns
    -------
    dict
        The ``signoff.power`` entry (`nvmlstm.power_cmd.measure_power`).

    Raises
    ------
    _Skip
        OpenSTA is not installed (the message says how to install it), or the RTL directory has no timing
        analysis (whose clock the power is reported at).
    FlowError
        The power run failed (one line).
    """
    from nvmlstm.bench.model import read_rtl_manifest

    timing = (read_rtl_manifest(rtl_dir).get("signoff") or {}).get("timing")
    if not isinstance(timing, dict):
        raise _Skip(f"no timing analysis in rtl/manifest.json: {timing or 'no signoff.timing'}")
    from nvmlstm.gen import GenError
    from nvmlstm.gen.tools import ToolNotFound, find_sta
    from nvmlstm.sim import SimError

    from .power_cmd import measure_power

    try:
        find_sta()
    except ToolNotFound as exc:
        raise _Skip(str(exc)) from None
    # measure_power writes its report and the manifest's signoff.power into the RTL directory it is given. It
    # gets a copy: the generate stage's files must stay as it wrote them (their hash decides its reuse).
    out = paths[0]
    work = out / "rtl"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(rtl_dir, work)
    try:
        entry = measure_power(work, vec_dir, corner="tt", clock_mhz=None, log=log)
        report = entry.get("report")
        if report and (work / report).is_file():
            shutil.move(work / report, out / report)
    except ToolNotFound as exc:
        raise _Skip(str(exc)) from None
    except (GenError, SimError, ValueError) as exc:
        raise FlowError(f"power: {exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_text_atomic(out / "power.json", json.dumps(entry, indent=2, sort_keys=True) + "\n")
    return entry


def stage_bench(paths: list[Path], *, rtl_dir: Path, power: dict | None) -> dict:
    """The efficiency estimate of the generated accelerator (``bench/``, with charts).

    Parameters
    ----------
    paths : list of Path
        One element: the directory of the efficiency report.
    rtl_dir : Path
        The generate stage's directory (its manifest gives the config, latencies, synthesis and signoff: the
        area, and the timing analysis whose clocks the figures are at).
    power : dict or None
        The power stage's ``signoff.power`` entry: the digital energy then is the measured one.

    Returns
    -------
    dict
        ``tops_per_w``, ``tops_per_mm2``, the ratios to the best digital design ``vs_digital_tops_per_w`` and
        ``vs_digital_tops_per_mm2`` (None when the literature has none), ``vs_digital`` (the claim's test with
        its range, `nvmlstm.bench.literature.digital_comparison`), ``corners`` (the clock-dependent figures at
        the nominal and conservative clocks) and ``assumptions``: the node the figures are at, the technology
        file, the clock and where it comes from, the digital energy and area and where they come from (with the
        sign-off's own area and node when it is the sky130 sign-off, scaled) and the ops convention.
    """
    from nvmlstm.bench.model import read_rtl_manifest, timing_from_manifest
    from nvmlstm.bench.report import bench_report, write_bench_dir
    from nvmlstm.bench.technology import load_technology
    from nvmlstm.golden.config import LstmConfig

    from .bench_cmd import rtl_signoff_inputs
    from .timing import accelerator_timing

    man = read_rtl_manifest(rtl_dir)
    cfg = LstmConfig.from_dict(man["config"], where="rtl/manifest.json config")
    built = timing_from_manifest(man)
    if power is not None and isinstance(man.get("signoff"), dict):
        man["signoff"] = man["signoff"] | {"power": power}  # measured on a copy of rtl/ (stage_power)
    clock, measured = rtl_signoff_inputs(man, "rtl/manifest.json", None)
    tech = load_technology(None)
    doc = bench_report(
        cfg,
        tech,
        accelerator_timing(built.macro_latency),
        lanes=built.lanes,
        clock=clock,
        synthesis=man.get("synthesis"),
        signoff=man.get("signoff"),
        measured_digital=measured,
        source={"kind": "rtl", "dir": "rtl"},
    )
    write_bench_dir(paths[0], doc, charts=True)
    best = doc["ratios"]
    signoff = man.get("signoff")
    d = doc["digital_energy_pj"]
    return {
        "tops_per_w": doc["tops_per_w"],
        "tops_per_mm2": doc["tops_per_mm2"],
        "vs_digital_tops_per_w": (best["tops_per_w"].get("digital") or {}).get("ratio"),
        "vs_digital_tops_per_mm2": (best["tops_per_mm2"].get("digital") or {}).get("ratio"),
        "vs_digital": doc["vs_digital"],
        "corners": doc["corners"],
        "assumptions": {
            "feature_nm": doc["feature_nm"],
            "technology": doc["technology"],
            "clock_mhz": doc["clock_mhz"],
            "clock_source": clock.source,
            "clock_text": clock.text,
            "digital_energy_source": d["source"],
            "digital_energy_pj": {k: d.get(k) for k in ("model", "measured", "measured_at_model_node", "scaling")},
            "digital_area_source": doc["digital_area_source"],
            "digital_area_um2": doc["area_breakdown_um2"]["digital"],
            "signoff_area_um2": None if signoff is None else signoff.get("area_um2"),
            "signoff_pdk": None if signoff is None else signoff.get("pdk"),
            "signoff_node_nm": tech["digital.signoff_node"],
            "ops_convention": doc["ops_convention"],
        },
    }


#: The flow's short noise sweep: programming noise (fraction of the conductance range) x ADC noise (LSB), the
#: grid around the paper's "reasonable levels" (docs/resilience.md has the full sweeps).
FLOW_SWEEP_AXES = ("weight_noise=0,0.05,0.1", "adc_noise=0,0.5,1")
#: The paper's noise levels: programming noise 5% of the conductance range and ADC noise 0.5 LSB. The noise-aware
#: model is trained with them and both models are compared at them (a point of `FLOW_SWEEP_AXES`).
PAPER_NOISE = {"weight_noise": 0.05, "adc_noise": 0.5}
#: Per task, the noise-aware recipe docs/resilience.md chose ("Finding the noise-aware setting": QAT's default
#: 30 epochs at lr 0.001 lost 3.3 points at the paper's levels, 60 at 0.01 lost 0.5); other tasks use their QAT
#: defaults. ``--epochs`` replaces the epochs, as for the other training stages.
NOISE_AWARE_RECIPE: dict[str, dict[str, Any]] = {"digits": {"epochs": 60, "lr": 0.01}}
#: The sweep's labels of the plain and the noise-aware QAT model.
SWEEP_LABELS = ("qat", "qat-noise")


def noise_aware_fields(a: FlowArgs) -> dict[str, Any]:
    """The `TrainArgs` fields of the noise-aware stage over the QAT stage's: `PAPER_NOISE` and the recipe."""
    recipe = dict(NOISE_AWARE_RECIPE.get(a.task, {}))
    if a.epochs is not None:
        recipe["epochs"] = a.epochs
    return {**PAPER_NOISE, **recipe}


def _noise_stats(summary: dict, label: str) -> dict[str, Any]:
    """One label's sweep results: the metric without noise, at `PAPER_NOISE` (mean, std, min, max) and its float
    baseline."""
    grid = {(p["point"]["weight_noise"], p["point"]["adc_noise"]): p for p in summary["points"] if p["label"] == label}
    ideal, paper = grid[(0.0, 0.0)], grid[(PAPER_NOISE["weight_noise"], PAPER_NOISE["adc_noise"])]
    base = next(lab["float_metric"] for lab in summary["labels"] if lab["label"] == label)
    return {"ideal": ideal["mean"], "paper": {k: paper[k] for k in ("mean", "std", "min", "max")}, "float": base}


def stage_sweep(paths: list[Path], *, a: FlowArgs, models: dict[str, Path], log: Callable[[str], None]) -> dict:
    """A short Monte Carlo noise sweep (`FLOW_SWEEP_AXES`) of the plain and noise-aware QAT models (golden model).

    Both models see the same noise draws at each point (the sweep's common random numbers), so their
    difference is the training's, not luck's.

    Parameters
    ----------
    paths : list of Path
        One element: the directory of the noise sweep.
    a : FlowArgs
        Task, data, seed, trials (``sweep_trials``), workers and progress.
    models : dict of str to Path
        Label (`SWEEP_LABELS`) -> the training stage's directory.
    log : callable
        Receives the sweep's lines.

    Returns
    -------
    dict
        ``axes``, ``trials``, ``paper_noise`` (`PAPER_NOISE`), ``labels`` (label -> ``ideal``: the metric
        without noise, ``paper``: mean, std, min and max over the trials at the paper's levels, ``float``: the
        label's float baseline in the sweep, its own float weights unquantized), ``plots`` (relative to DIR),
        and for the plain QAT model alone, as before, ``ideal_mean`` and ``weight_noise_0.05_adc_noise_0.5``.

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
        models=[f"{label}={d}" for label, d in models.items()],
        axes=list(FLOW_SWEEP_AXES),
        trials=a.sweep_trials,
        seed=a.seed,
        data=a.data,
    )
    summary = run_sweep(spec, paths[0], workers=a.workers, progress=a.progress, log=log)
    labels = {label: _noise_stats(summary, label) for label in models}
    plain = labels[SWEEP_LABELS[0]]
    return {
        "axes": list(FLOW_SWEEP_AXES),
        "trials": a.sweep_trials,
        "paper_noise": dict(PAPER_NOISE),
        "labels": labels,
        "ideal_mean": plain["ideal"],
        "weight_noise_0.05_adc_noise_0.5": plain["paper"],
        "plots": [f"sweep/{p}" for p in summary["plots"]],
    }


def _training_stages(fl: _Flow, a: FlowArgs, common: dict, train: Callable, user_cfg: Any) -> None:
    """The training rows of the stage table: train_fp, train_qat (checked against ``--config``) and its
    noise-aware twin train_qat_noise; ``train`` is `stage_train` with the flow's options bound."""
    out, partial = fl.out, functools.partial
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
        _check_trained_config(a.config, out / "train/qat/model.npz", user_cfg)
    # The noise-aware twin of train_qat (the paper's noise injected while training): only the sweep reads it,
    # to compare the two at the paper's noise levels. The hardware stages build the plain QAT model.
    noisy = noise_aware_fields(a)
    fl.stage(
        _Stage(
            "train_qat_noise",
            ("train_fp",),
            lambda: _Job(
                {**common, "init": _tree_hash([out / "train/fp/float_model.pt"], out), "noise_aware": noisy},
                ["train/qat_noise"],
                partial(train, mode="qat", init=out / "train/fp", extra=noisy),
            ),
        )
    )


def _analysis_stages(
    fl: _Flow, a: FlowArgs, hashes: dict[str, str | None], data_hash: str | None, log: Callable[[str], None]
) -> None:
    """The last rows of the stage table: the periphery's power (on the sky130 netlist with the golden vectors),
    bench (on the generated RTL, with the power when measured) and the noise sweep of the plain and noise-aware
    QAT models. ``hashes``: the ``rtl`` and ``vectors`` directories' content hashes."""
    out, partial = fl.out, functools.partial
    fl.stage(
        _Stage(
            "power",
            ("generate", "golden", "sky130 mapping", "timing analysis"),
            lambda: _Job(
                hashes | {"result": 1},
                ["power"],
                partial(stage_power, rtl_dir=out / "rtl", vec_dir=out / "golden", log=log),
            ),
        )
    )
    power = fl.results.get("power")
    fl.stage(
        _Stage(
            "bench",
            ("generate",),
            # "result": the version of this stage's result record, so a record of an older one is not reused.
            lambda: _Job(
                {"rtl": hashes["rtl"], "power": None if power is None else json_sha256(power), "result": 3},
                ["bench"],
                partial(stage_bench, rtl_dir=out / "rtl", power=power),
            ),
        )
    )
    dirs = (out / "train/qat", out / "train/qat_noise")
    fl.stage(
        _Stage(
            "sweep",
            ("train_qat", "train_qat_noise"),
            lambda: _Job(
                {
                    "model": sha256_file(dirs[0] / "model.npz"),
                    "noise_aware_model": sha256_file(dirs[1] / "model.npz"),
                    "trials": a.sweep_trials,
                    "task": a.task,
                    "data": data_hash,
                },
                ["sweep"],
                partial(stage_sweep, a=a, models=dict(zip(SWEEP_LABELS, dirs)), log=log),
            ),
        )
    )


def _timing_prerequisite(fl: _Flow, tools: _Tools) -> None:
    """Record the static timing analysis as the prerequisite "timing analysis" of the power stage: available when
    the generate stage's manifest has one, else left out with why (its manifest's string: OpenSTA missing, with
    the install line, or a Liberty without timing; or the sky130 mapping left out)."""
    gen = fl.results.get("generate")
    if gen is None:
        return
    timing = (gen.get("signoff") or {}).get("timing")
    if not tools.use_pdk:
        fl.prerequisite("timing analysis", f"needs the sky130 mapping: {tools.mapping_missing}")
    elif not isinstance(timing, dict):
        fl.prerequisite("timing analysis", str(timing or "the sky130 manifest has no signoff.timing"))
    else:
        fl.prerequisite("timing analysis", None)


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
    _training_stages(fl, a, common, train, user_cfg)
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

    _timing_prerequisite(fl, tools)
    _analysis_stages(fl, a, {"rtl": rtl_hash, "vectors": vec_hash}, data_hash, sub)

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


def _tolerance(metric: str) -> float:
    """How far a 4-bit metric may be from the float one (`nvmlstm.tasks.FLOAT_TOLERANCE`); a metric of a user's
    task that the table does not name gets 5%, as bpc and rmse."""
    from nvmlstm.tasks import FLOAT_TOLERANCE  # imported where used, as this module does with tasks

    return FLOAT_TOLERANCE.get(metric, 0.05)


def _worse_by(metric: str, value: float, ref: float) -> float:
    """How much worse ``value`` is than ``ref``: points of accuracy (fraction), or the relative excess of bpc or
    rmse; negative when it is better."""
    if metric == "accuracy":
        return ref - value
    return (value - ref) / ref if ref else float("inf") if value > ref else 0.0


def _delta_text(metric: str, value: float, ref: float) -> str:
    """``value`` against ``ref`` for people, with its direction: "0.28 points below", "1.2% above (worse)"."""
    if metric == "accuracy":
        d = 100 * (value - ref)
        return "equal" if d == 0 else f"{abs(d):.2f} points {'above' if d > 0 else 'below'}"
    if not ref:
        return "—"
    d = 100 * (value - ref) / ref
    return "equal" if d == 0 else f"{abs(d):.1f}% {'above (worse)' if d > 0 else 'below (better)'}"


def _tolerance_text(metric: str) -> str:
    t = _tolerance(metric)
    return f"{100 * t:g} point" if metric == "accuracy" else f"{100 * t:g}%"


def _not_measured(flow: _Flow, *stages: str) -> str:
    """Why a claim could not be measured: the first of ``stages`` that did not run, and its skip reason."""
    for s in stages:
        if s not in flow.results:
            return f"not measured: {s} {'skipped: ' + flow.skipped[s] if s in flow.skipped else 'did not run'}"
    return "not measured"


def _claim_bits(fl: _Flow, task, results: dict) -> dict[str, Any]:
    """The 4-bit claim: the golden integer model (what the RTL computes) against the float model."""
    claim = "QAT LSTMs with 4-bit NVM weights and 4-bit DAC/ADC reach floating-point accuracy"
    fp, gold = results.get("train_fp"), results.get("golden")
    row: dict[str, Any] = {"id": "4-bit vs float", "claim": claim}
    m = task.metric
    if fp is None or gold is None:
        return row | {"measured": "—", "verdict": _not_measured(fl, "train_fp", "golden"), "assumptions": ""}
    from nvmlstm.golden.io import load_model

    c = load_model(fl.out / "train/qat/model.npz").config
    bits = f"{c.weight_bits}/{c.dac_bits}/{c.adc_bits}"
    g, f = gold["golden_metric"], fp["test_metric"]
    worse = _worse_by(m, g, f)
    row["measured"] = (
        f"golden integer model ({bits} bits weight/DAC/ADC, the model in the RTL) {fmt_metric(g, m)} against the "
        f"float model (train_fp) {fmt_metric(f, m)}: {_delta_text(m, g, f)} float, on the same "
        f"{len(task.test[1])} test sequences"
    )
    row["verdict"] = "holds" if worse <= _tolerance(m) else "fails"
    row["assumptions"] = (
        f"criterion: within {_tolerance_text(m)} of float (docs/resilience.md); one training seed ({fl.a.seed}); "
        "see the metric table for the naive reference"
    )
    row["numbers"] = {"bits": bits, "golden": g, "float": f, "worse_by": worse, "tolerance": _tolerance(m)}
    return row


def _stat_text(m: str, p: dict) -> str:
    return (
        f"{fmt_metric(p['mean'], m)} ± {fmt_metric(p['std'], m)} (min {fmt_metric(p['min'], m)}, "
        f"max {fmt_metric(p['max'], m)})"
    )


def _claim_noise(fl: _Flow, task, results: dict) -> dict[str, Any]:
    """The noise claim: the noise-aware and the plain QAT model at the paper's noise levels (the flow's sweep)."""
    claim = "QAT LSTMs tolerate weight (device) and ADC noise; noise-aware training helps"
    sweep = results.get("sweep")
    row: dict[str, Any] = {"id": "noise tolerance", "claim": claim}
    m = task.metric
    if sweep is None or "labels" not in sweep:
        return row | {"measured": "—", "verdict": _not_measured(fl, "train_qat_noise", "sweep"), "assumptions": ""}
    plain, aware = (sweep["labels"][k] for k in SWEEP_LABELS)
    pw, pa = sweep["paper_noise"]["weight_noise"], sweep["paper_noise"]["adc_noise"]
    row["measured"] = (
        f"at programming noise {100 * pw:g}% of the conductance range and ADC noise {pa:g} LSB, "
        f"{sweep['trials']} trials: noise-aware {_stat_text(m, aware['paper'])}, plain QAT "
        f"{_stat_text(m, plain['paper'])}; without noise {fmt_metric(aware['ideal'], m)} and "
        f"{fmt_metric(plain['ideal'], m)}"
    )
    # Tolerated: the noise-aware model under noise stays within the tolerance of the plain 4-bit model without
    # noise (what the chip would score without noise). Helps: it beats plain QAT under the same draws.
    loss = _worse_by(m, aware["paper"]["mean"], plain["ideal"])
    helps = _worse_by(m, aware["paper"]["mean"], plain["paper"]["mean"]) < 0
    tolerated = loss <= _tolerance(m)
    # Both halves are said whatever the verdict: a failed tolerance does not hide that noise-aware training helps.
    parts = [
        f"tolerated: {'yes' if tolerated else 'no'}, noise-aware under noise is "
        f"{_delta_text(m, aware['paper']['mean'], plain['ideal'])} noise-free QAT",
        f"helps: {'yes' if helps else 'no'}, noise-aware is "
        f"{_delta_text(m, aware['paper']['mean'], plain['paper']['mean'])} plain QAT under the same noise",
    ]
    row["verdict"] = ("holds" if tolerated and helps else "fails") + " (" + "; ".join(parts) + ")"
    row["assumptions"] = (
        f"Gaussian programming error per device (σ {100 * pw:g}% of Gmax - Gmin, clipped) and ADC input noise "
        f"(σ {pa:g} LSB per conversion), golden/nvm.py; both models see the same draws; noise-aware = QAT "
        f"trained with these levels; tolerated = within {_tolerance_text(m)} of noise-free QAT; "
        f"{sweep['trials']} trials per point: the std and min/max say how far the mean can move"
    )
    row["numbers"] = {"noise_aware": aware, "plain_qat": plain, "loss": loss, "helps": helps}
    return row


def _ratio_text(c: dict, name: str) -> str:
    b, low = c["best"], c["at_our_node"]
    text = (
        f"{name} {c['ours']:.3g} = {b['ratio']:.3g}x the best digital design ({b['design']}, "
        f"{fmt_metric(b['node_nm'])} nm; range {c['range'][0]:.3g}x to {c['range'][1]:.3g}x over "
        f"{c['designs']} GPU/FPGA/ASIC designs)"
    )
    if low is not None:
        text += f", {low['ratio']:.3g}x with the designs scaled to this node"
    return text


def _claim_efficiency(fl: _Flow, results: dict) -> dict[str, Any]:
    """The efficiency claim: the bench's ratios to the digital designs, with their range and technology."""
    claim = "an NVM-array LSTM accelerator reaches >= 2.4x the TOPS/W and >= 40x the TOPS/mm^2 of GPU/FPGA/ASIC"
    ben = results.get("bench")
    row: dict[str, Any] = {"id": "efficiency", "claim": claim}
    if ben is None or "vs_digital" not in ben or None in ben["vs_digital"].values():
        return row | {"measured": "—", "verdict": _not_measured(fl, "generate", "bench"), "assumptions": ""}
    vs = {k: v | {"ours": ben[k]} for k, v in ben["vs_digital"].items()}
    w, a = vs["tops_per_w"], vs["tops_per_mm2"]
    row["measured"] = _ratio_text(w, "TOPS/W") + "; " + _ratio_text(a, "TOPS/mm^2")
    at_node = [n for n, c in (("TOPS/W", w), ("TOPS/mm^2", a)) if c["holds_at_our_node"] is False]
    if w["holds"] and a["holds"]:
        row["verdict"] = "holds" + (
            f" against the designs as published; fails for {' and '.join(at_node)} with them scaled to this node"
            if at_node
            else ""
        )
    else:
        row["verdict"] = "fails: " + ", ".join(n for n, c in (("TOPS/W", w), ("TOPS/mm^2", a)) if not c["holds"])
    s = ben["assumptions"]
    node = f"{s['feature_nm']:g} nm"
    digital = f"digital area {s['digital_area_um2']:.4g} um^2 ({s['digital_area_source']}"
    if s.get("signoff_area_um2") is not None and "sign-off of the RTL" in s["digital_area_source"]:
        digital += (
            f": {s['signoff_pdk']} standard cells {s['signoff_area_um2']:.6g} um^2 at {s['signoff_node_nm']:g} nm "
            f"x ({s['feature_nm']:g}/{s['signoff_node_nm']:g})^2"
        )
    energy = "Horowitz's 45 nm digital energies scaled"
    e = s.get("digital_energy_pj") or {}
    if s.get("digital_energy_source") == "measured":
        energy = (
            f"digital energy measured on the sky130 netlist, {e['measured']:.4g} pJ per timestep, scaled "
            f"{e['scaling'].split(':')[0]} to {e['measured_at_model_node']:.4g} pJ (the model's estimate: "
            f"{e['model']:.4g} pJ)"
        )
    clock = s.get("clock_text") or f"{s['clock_mhz']:g} MHz"
    row["assumptions"] = (
        f"analytical model (bench/, docs/efficiency.md), every figure of this build at {node} ({s['technology']}: "
        f"ISAAC's 32 nm converter and array figures, {energy}); {digital}); "
        f"{clock}; ops = {s['ops_convention']}; the digital designs at their published nodes, "
        f"scaled by classical scaling (TOPS/W ~ 1/F, TOPS/mm^2 ~ 1/F^2) for the at-this-node figure"
    )
    row["numbers"] = vs
    return row


def _claims(fl: _Flow, task, results: dict) -> list[dict[str, Any]]:
    """The claim-vs-measured rows of the report (report.json ``claims``)."""
    return [_claim_bits(fl, task, results), _claim_noise(fl, task, results), _claim_efficiency(fl, results)]


def _stage_pngs(flow: _Flow) -> dict[str, list[str]]:
    """Stage -> the PNGs under its outputs (relative to DIR), for the stages in this report."""
    out: dict[str, list[str]] = {}
    for name in flow.results:
        found = []
        for o in flow.outputs.get(name, []):
            p = flow.out / o
            found += sorted(p.rglob("*.png")) if p.is_dir() else [p] if p.suffix == ".png" else []
        if found:
            out[name] = [q.relative_to(flow.out).as_posix() for q in found]
    return out


def _references(task) -> dict[str, dict[str, Any]]:
    """Naive predictors on the test set (`nvmlstm.tasks.baseline.reference_metrics`), for report.json."""
    from nvmlstm.tasks.baseline import reference_metrics

    return {k: {"what": what, "metric": v} for k, (what, v) in reference_metrics(task).items()}


def _report(a: FlowArgs, task, results: dict[str, dict], flow: _Flow) -> dict:
    """Write ``report.json`` and ``report.md`` from the stage results.

    Parameters
    ----------
    a : FlowArgs
        The flow's options (recorded under ``args``).
    task : Task
        The task (its metric's name, test split and naive references).
    results : dict
        Stage name -> result of the stages that ran or were reused; ``gate_level``'s also has ``simulator``.
    flow : _Flow
        The records: skipped, seconds, reused, outputs and the stages' results as recorded.

    Returns
    -------
    dict
        The report (report.json's content).
    """
    fp, qat, gold = results.get("train_fp"), results.get("train_qat"), results.get("golden")
    gen, gate, ben = results.get("generate"), results.get("gate_level"), results.get("bench")
    sims = {sim: results[f"sim_{sim}"] for sim in a.simulators if f"sim_{sim}" in results}
    ran = list(sims.values())
    pngs = _stage_pngs(flow)
    rep: dict[str, Any] = {
        "task": a.task,
        "metric_name": task.metric,
        "test_sequences": len(task.test[1]),
        "fp_metric": None if fp is None else fp["test_metric"],
        "qat_metric": None if qat is None else qat["test_metric"],
        "qat_float_weights_metric": None if qat is None else qat.get("float_test_metric"),
        "noise_aware_metric": (results.get("train_qat_noise") or {}).get("golden_test_metric"),
        "training": {k: (qat or {}).get(k) for k in ("threads", "torch")},
        "golden_metric": None if gold is None else gold["golden_metric"],
        "references": _references(task),
        "claims": _claims(flow, task, results),
        "rtl_bit_exact": bool(ran) and all(s["passed"] for s in ran),
        "values_compared": int(sum(s["values_compared"] for s in ran)),
        "simulators": sorted(sims),
        "gate_level_bit_exact": None if gate is None else bool(gate["passed"]),
        "gate_level_simulator": None if gate is None else gate["simulator"],
        "cycles_per_timestep": None if gen is None else gen["timestep_cyc"],
        "tops_per_w": None if ben is None else ben["tops_per_w"],
        "tops_per_mm2": None if ben is None else ben["tops_per_mm2"],
        "timing": _timing_summary(gen),
        "periphery_power": _power_summary(results.get("power")),
        "verilog_files": [] if gen is None else sorted(f"rtl/{f}" for f in gen["files"] if f.endswith((".v", ".sv"))),
        "plots": sorted(p for ps in pngs.values() for p in ps),
        "skipped": dict(sorted(flow.skipped.items())),
        "seconds": flow.seconds,
        "stage_seconds": flow.stage_seconds(),
        "cumulative_seconds": flow.cumulative_seconds(),
        "reused": flow.reused,
        "stages": dict(flow.results),
        "args": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(a).items() if k not in ("out", "progress")
        },
    }
    if results.get("sweep") is not None:
        rep["noise_sweep"] = results["sweep"]
    lines = _claim_table(a, rep) + _metric_lines(task, rep) + _hardware_lines(rep, results, pngs)
    lines += _noise_lines(task.metric, results.get("sweep"), pngs) + _training_lines(pngs)
    lines += _other_pngs(pngs) + _time_lines(rep, flow)
    write_text_atomic(flow.out / "report.json", json.dumps(rep, indent=2, sort_keys=True) + "\n")
    write_text_atomic(flow.out / "report.md", "\n".join(lines))
    return rep


def _cell(text: str) -> str:
    """Text for a Markdown table cell (a ``|`` would end the cell)."""
    return text.replace("|", "\\|")


def _claim_table(a: FlowArgs, rep: dict) -> list[str]:
    lines = [
        f"# nvmlstm flow: {a.task}",
        "",
        "## The paper's claims against this run",
        "",
        "Ma et al., ICRC 2019 (arXiv:2002.10636). Verdicts are this run's, on its task, seed and settings.",
        "",
        "| claim | measured here | verdict | assumptions and range |",
        "|---|---|---|---|",
    ]
    for c in rep["claims"]:
        lines.append(
            f"| **{c['id']}**: {_cell(c['claim'])} | {_cell(c['measured'])} | **{_cell(c['verdict'])}** | "
            f"{_cell(c['assumptions'])} |"
        )
    return [*lines, ""]


def _metric_lines(task, rep: dict) -> list[str]:
    m = task.metric
    lines = [
        f"## {m} on the test set ({rep['test_sequences']} sequences, the same for every row)",
        "",
        f"| model | {m} |",
        "|---|---|",
        f"| float model (train_fp, trained in float) | {fmt_metric(rep['fp_metric'], m)} |",
        f"| 4-bit QAT (train_qat, PyTorch evaluation of the exported model) | {fmt_metric(rep['qat_metric'], m)} |",
        f"| golden integer model (train_qat's model.npz: the model in the RTL) | "
        f"{fmt_metric(rep['golden_metric'], m)} |",
        f"| float weights of the QAT model, unquantized (train_qat; the sweep's float baseline of `qat`) | "
        f"{fmt_metric(rep['qat_float_weights_metric'], m)} |",
        f"| noise-aware 4-bit QAT, golden model without noise (train_qat_noise) | "
        f"{fmt_metric(rep['noise_aware_metric'], m)} |",
    ]
    lines += [f"| reference: {r['what']} | {fmt_metric(r['metric'], m)} |" for r in rep["references"].values()]
    lines += [
        "",
        "Two float figures, two models: the 4-bit claim compares the golden model with the float model (train_fp). "
        "QAT starts from train_fp's weights and goes on training them with quantization in the loop; its own float "
        "weights, evaluated without quantization, are the sweep's float baseline (`sweep/summary.md`). The "
        "references are naive predictors on the same test set: a model must beat them by a margin to have learned "
        f"anything ({'lower' if m != 'accuracy' else 'higher'} is better).",
        "",
    ]
    threads, torch = ((rep.get("training") or {}).get(k) for k in ("threads", "torch"))
    if threads is not None:
        lines += [
            f"Training ran its steps on {threads['training']} torch thread and its integer evaluation on "
            f"{threads['evaluation']}; results do not depend on the thread count and repeat bit for bit with the "
            f"same seed, torch {torch} and the same kind of CPU (docs/training.md, Reproducibility).",
            "",
        ]
    return lines


def _images(paths: list[str]) -> list[str]:
    return [line for p in paths for line in (f"![{p}]({p})", "")]


def _timing_summary(gen: dict | None) -> dict | None:
    """report.json's ``timing``: the generate stage's static timing analysis (target, fmax, slack, met and the
    critical path per corner), or None when it has none (``skipped`` says why)."""
    from nvmlstm.bench.signoff import parse_timing

    t = parse_timing(((gen or {}).get("signoff") or {}).get("timing"), "rtl/manifest.json")
    if t is None:
        return None
    c = t["corners"]
    return {
        "clock_mhz": t["clock_mhz"],
        "period_ns": t["period_ns"],
        "fmax_mhz": {k: v["fmax_mhz"] for k, v in c.items()},
        "wns_ns": {k: v["wns_ns"] for k, v in c.items()},
        "met": {k: v["met"] for k, v in c.items()},
        "critical_path": {k: v["critical_path"] for k, v in c.items()},
        "tool": t["tool"],
    }


def _power_summary(power: dict | None) -> dict | None:
    """report.json's ``periphery_power``: the power stage's figures, or None when it did not run."""
    if power is None:
        return None
    keys = ("corner", "clock_mhz", "total_mw", "internal_mw", "switching_mw", "leakage_mw", "energy_per_timestep_pj")
    return {k: power.get(k) for k in keys} | {"report": f"power/{power['report']}" if power.get("report") else None}


def _timing_line(rep: dict, skipped: dict) -> str:
    """report.md's timing line: fmax per corner against the target, and the critical path; or why not."""
    t = rep.get("timing")
    if t is None:
        return f"* timing: skipped: {skipped.get('timing analysis', 'not analysed')}"
    f, met, p = t["fmax_mhz"], t["met"], t["critical_path"]["tt"]
    verdict = "met" if all(met.values()) else "violated" if not met["tt"] else "met at tt, violated at ss"
    return (
        f"* timing: fmax {f['tt']:.4g} MHz (tt), {f['ss']:.4g} MHz (ss) at target {t['clock_mhz']:g} MHz, {verdict}; "
        f"critical path (tt) {p['start']} -> {p['end']}, {p['cells']} cells, {p['delay_ns']:.3g} ns "
        f"(OpenSTA, pre-layout: no wire parasitics; `rtl/timing_tt.rpt`, `rtl/timing_ss.rpt`)"
    )


def _power_line(rep: dict, skipped: dict) -> str:
    """report.md's periphery power line, or why it is missing."""
    p = rep.get("periphery_power")
    if p is None:
        return f"* periphery power: skipped: {skipped.get('power', 'not measured')}"
    return (
        f"* periphery power: {p['total_mw']:.4g} mW at {p['clock_mhz']:.4g} MHz, {p['energy_per_timestep_pj']:.4g} pJ "
        f"per timestep (sky130 standard cells, {p['corner']}, OpenSTA report_power on the gate-level activity of the "
        f"golden vectors; `{p['report'] or 'power/power.json'}`)"
    )


def _hardware_lines(rep: dict, results: dict, pngs: dict) -> list[str]:
    gate, ben = results.get("gate_level"), results.get("bench")
    s = None if ben is None else ben.get("assumptions")
    node = "" if s is None else f" at {s['feature_nm']:g} nm"
    clock = "" if s is None or "clock_text" not in s else f"; {s['clock_text']}"
    lines = [
        "## Hardware",
        "",
        f"* RTL bit exact against the golden model: **{rep['rtl_bit_exact']}** "
        f"({rep['values_compared']} values on {', '.join(rep['simulators']) or 'no simulator'})",
        f"* gate-level (sky130 netlist) bit exact: **{rep['gate_level_bit_exact']}**"
        + (f" ({gate['values_compared']} values on {gate['simulator']})" if gate else ""),
        f"* cycles per timestep: {rep['cycles_per_timestep']}",
        _timing_line(rep, rep["skipped"]),
        _power_line(rep, rep["skipped"]),
        f"* efficiency{node}: {fmt_metric(rep['tops_per_w'])} TOPS/W, {fmt_metric(rep['tops_per_mm2'])} TOPS/mm^2 "
        f"(`bench/bench.md`; the assumptions are in the claim table){clock}",
        "",
    ]
    return lines + _images(pngs.get("bench", []))


def _noise_lines(m: str, sweep: dict | None, pngs: dict) -> list[str]:
    if sweep is None:
        return []
    lines = ["## Noise (golden model, Monte Carlo)", ""]
    if "labels" in sweep:
        pw, pa = sweep["paper_noise"]["weight_noise"], sweep["paper_noise"]["adc_noise"]
        lines += [
            f"| model (sweep label) | without noise | at {100 * pw:g}% programming + {pa:g} LSB ADC noise, "
            f"{sweep['trials']} trials: mean ± std | min | max | float baseline (own float weights) |",
            "|---|---|---|---|---|---|",
        ]
        for label, s in sweep["labels"].items():
            p = s["paper"]
            lines.append(
                f"| {label} | {fmt_metric(s['ideal'], m)} | {fmt_metric(p['mean'], m)} ± {fmt_metric(p['std'], m)} "
                f"| {fmt_metric(p['min'], m)} | {fmt_metric(p['max'], m)} | {fmt_metric(s['float'], m)} |"
            )
        lines += ["", f"The whole grid ({', '.join(sweep['axes'])}): `sweep/summary.md`.", ""]
    return lines + _images(pngs.get("sweep", []))


def _training_lines(pngs: dict) -> list[str]:
    curves = [p for s in ("train_fp", "train_qat", "train_qat_noise") for p in pngs.get(s, [])]
    return ["## Training curves", "", *_images(curves)] if curves else []


def _other_pngs(pngs: dict) -> list[str]:
    """Charts of stages no section above shows (so that every PNG the flow writes is linked)."""
    shown = {"bench", "sweep", "train_fp", "train_qat", "train_qat_noise"}
    rest = [p for s, ps in pngs.items() if s not in shown for p in ps]
    return ["## Other charts", "", *_images(rest)] if rest else []


def _time_lines(rep: dict, flow: _Flow) -> list[str]:
    lines = []
    if rep["skipped"]:
        lines += ["## Skipped", ""] + [f"* {k}: {v}" for k, v in rep["skipped"].items()] + [""]
    lines += [
        "## Seconds per stage",
        "",
        "| stage | s when it ran | this run |",
        "|---|---|---|",
    ]
    for k, s in rep["stage_seconds"].items():
        now = f"reused (checked in {flow.seconds[k]:.1f} s)" if k in flow.reused else f"{flow.seconds[k]:.1f}"
        lines.append(f"| {k} | {'—' if s is None else f'{s:.1f}'} | {now} |")
    total = rep["seconds"].get("total", 0.0)
    lines += [
        "",
        f"Total: {total:.1f} s this run; {rep['cumulative_seconds']:.1f} s cumulative (this run plus the reused "
        "stages' seconds when they ran; the simulations run side by side, so stage seconds add up to more than "
        "wall time).",
        "",
        "## Files",
        "",
        "* Verilog: " + ", ".join(f"`{f}`" for f in rep["verilog_files"]),
        "* report.json: every number above; flow_state.json: the stage records",
        "",
    ]
    return lines
