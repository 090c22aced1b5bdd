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

import hashlib
import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from nvmlstm.artifacts.files import json_sha256, sha256_file
from nvmlstm.artifacts.version import package_version

__all__ = ["FlowArgs", "FlowError", "run_flow", "REPORT_KEYS"]

#: Keys every report.json has (tests/test_flow.py checks them).
REPORT_KEYS = ("task", "metric_name", "fp_metric", "qat_metric", "golden_metric", "rtl_bit_exact",
               "values_compared", "simulators", "gate_level_bit_exact", "cycles_per_timestep", "tops_per_w",
               "tops_per_mm2", "verilog_files", "skipped", "seconds", "reused", "stages")
TORCH_INSTALL = "pip install torch==2.13.0"
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
    def __init__(self, a: FlowArgs, log: Callable[[str], None]):
        self.a = a
        self.out = Path(a.out)
        self.log = log
        self.state_path = self.out / STATE_FILE
        self.state: dict[str, Any] = {"format": FORMAT, "stages": {}}
        self.results: dict[str, Any] = {}
        self.skipped: dict[str, str] = {}
        self.seconds: dict[str, float] = {}
        self.reused: list[str] = []
        self._lock = threading.RLock()  # the simulation stages run in two threads

    # ---- the output directory and the stage records
    def open_dir(self) -> None:
        from nvmlstm.golden.textfile import read_json_file

        out = self.out
        if out.exists() and not out.is_dir():
            raise FlowError(f"{out}: exists and is not a directory")
        if out.is_dir() and any(out.iterdir()):
            if not self.state_path.is_file():
                raise FlowError(f"{out}: directory is not empty and not an earlier `nvmlstm flow` output (no "
                                f"{STATE_FILE}); give a new or empty directory")
            doc = read_json_file(self.state_path, FlowError, "flow state file")
            if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("stages"), dict):
                raise FlowError(f"{self.state_path}: not a flow state file of this version (format {FORMAT}); "
                                f"give a new or empty directory")
            self.state = doc
        out.mkdir(parents=True, exist_ok=True)

    def save_state(self) -> None:
        from nvmlstm.artifacts.files import write_text_atomic

        write_text_atomic(self.state_path, json.dumps(self.state, indent=2, sort_keys=True) + "\n")

    def stage(self, name: str, inputs: dict, outputs: list[str], fn: Callable[[list[Path]], dict]) -> dict | None:
        """Run stage ``name`` (or reuse it): ``fn(output_paths)`` writes ``outputs`` (relative to DIR) and returns
        a JSON-able result. Returns the result, or None when the stage is skipped. Thread-safe: the records are
        changed under a lock, ``fn`` runs outside it."""
        paths = [self.out / o for o in outputs]
        with self._lock:
            reused = self._reuse(name, inputs, paths)
        if reused is not None:
            return reused
        t0 = time.perf_counter()
        self.log(f"{name}: running")
        try:
            result = fn(paths)
        except _Skip as exc:
            with self._lock:
                self.seconds[name] = round(time.perf_counter() - t0, 3)
                self.skip(name, str(exc))
            return None
        with self._lock:
            self.seconds[name] = round(time.perf_counter() - t0, 3)
            self.state["stages"][name] = {"key": self._stage_key(name, inputs), "status": "done", "result": result,
                                          "outputs": _tree_hash(paths, self.out)}
            self.save_state()
            self.results[name] = result
            self.log(f"{name}: done in {self.seconds[name]:.1f} s")
        return result

    @staticmethod
    def _stage_key(name: str, inputs: dict) -> str:
        return json_sha256({"stage": name, "inputs": inputs, "version": package_version()})

    def _reuse(self, name: str, inputs: dict, paths: list[Path]) -> dict | None:
        """The recorded result when inputs and outputs are unchanged; otherwise clear the stage's outputs."""
        key = self._stage_key(name, inputs)
        rec = self.state["stages"].get(name)
        t0 = time.perf_counter()
        if (rec is not None and rec.get("key") == key and rec.get("status") == "done"
                and all(p.exists() for p in paths) and rec.get("outputs") == _tree_hash(paths, self.out)):
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

    def skip(self, name: str, why: str) -> None:
        self.skipped[name] = why
        self.results.pop(name, None)
        self.log(f"{name}: SKIPPED: {why}")


# --------------------------------------------------------------------------------------------------
def _check_args(a: FlowArgs) -> None:
    from nvmlstm.sim.simulators import SIMULATORS
    from nvmlstm.tasks import TASKS

    if a.task not in TASKS:
        raise FlowError(f"unknown task {a.task!r}; choose from {', '.join(TASKS)}")
    bad = [s for s in a.simulators if s not in SIMULATORS]
    if bad or not a.simulators:
        raise FlowError(f"--simulators: unknown simulator {bad[0]!r}; choose from {', '.join(SIMULATORS)}"
                        if bad else f"--simulators: name at least one of {', '.join(SIMULATORS)}")
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
        raise FlowError(f"{a.config}: input_size/output_size are {cfg.input_size}/{cfg.output_size}, but task "
                        f"{task.name} has {task.input_size}/{task.output_size}")
    fields = {k: getattr(cfg, k) for k in TRAINED_FIELDS}
    opts.update({"hidden" if k == "hidden_size" else k: v for k, v in fields.items()})  # TrainArgs' names
    # Training sets these fields and leaves the rest at their defaults: a config that changes the rest (table
    # or cell widths) cannot be trained for, and is refused rather than silently replaced.
    trained = task_config(task, **fields)
    diff = [k for k, v in cfg.to_dict().items() if trained.to_dict().get(k) != v]
    if diff:
        raise FlowError(f"{a.config}: {diff[0]} is {cfg.to_dict()[diff[0]]!r}; training builds it as "
                        f"{trained.to_dict()[diff[0]]!r} (the flow can train only for the fields "
                        f"{', '.join(TRAINED_FIELDS)})")
    return opts, cfg


def _have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        return False
    return True


def _metric(path: Path, key: str = "test_metric") -> float:
    return float(json.loads(path.read_text())[key])


def run_flow(a: FlowArgs, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the flow into ``a.out``; returns the report (also written as report.json/.md)."""
    from nvmlstm.tasks import load_task

    _check_args(a)
    task = load_task(a.task, a.data)
    opts, user_cfg = _train_config(a, task)
    fl = _Flow(a, log)
    fl.open_dir()
    t_all = time.perf_counter()
    data_hash = None if a.data is None else _tree_hash([Path(a.data)], Path(a.data).parent)
    common = {"task": a.task, "data": data_hash, "seed": a.seed, "epochs": a.epochs, "opts": opts}

    # ---- training ---------------------------------------------------------------------------------
    def train(mode: str, init: Path | None):
        def fn(paths: list[Path]) -> dict:
            if not _have_torch():
                raise _Skip(f"PyTorch is not installed: {TORCH_INSTALL}")
            from nvmlstm.train.runner import TrainArgs, run_training

            m = run_training(TrainArgs(task=a.task, mode=mode, out=str(paths[0]), data=a.data, seed=a.seed,
                                       epochs=a.epochs, init_from=None if init is None else str(init),
                                       progress=a.progress, **opts), log=lambda s: log(f"  {s}"))
            keep = ("test_metric", "golden_test_metric", "float_test_metric", "metric_name", "train_seconds",
                    "golden_matches_torch_eval", "model_sha256", "best_epoch")
            return {k: m[k] for k in keep if k in m}
        return fn

    fp = fl.stage("train_fp", common, ["train/fp"], train("fp", None))
    qat = None
    if fp is not None:
        fp_hash = _tree_hash([fl.out / "train/fp/float_model.pt"], fl.out)
        qat = fl.stage("train_qat", {**common, "init": fp_hash}, ["train/qat"], train("qat", fl.out / "train/fp"))
    else:
        fl.skip("train_qat", "needs train_fp")
    model_path = fl.out / "train/qat/model.npz"
    if qat is not None and user_cfg is not None:
        from nvmlstm.golden.io import load_model

        if load_model(model_path).config != user_cfg:  # _train_config promised this
            raise FlowError(f"{a.config}: the trained model's config differs from it")

    # ---- golden vectors on real test sequences -------------------------------------------------------
    def golden(paths: list[Path]) -> dict:
        from nvmlstm.golden.io import load_model
        from nvmlstm.golden.vectors import write_golden_dir
        from nvmlstm.golden.realio import golden_outputs, input_codes
        from nvmlstm.tasks import metric_from_outputs

        qm, meta = load_model(model_path, with_metadata=True)
        xte, yte = task.test
        codes = input_codes(qm, xte)
        golden_metric = metric_from_outputs(task, golden_outputs(qm, xte), yte)
        n = min(a.vectors, len(codes))
        write_golden_dir(paths[0], qm, codes[:n], metadata={
            "generator": "nvmlstm flow", "model": {"kind": "file", "file": "train/qat/model.npz"},
            "inputs": {"kind": "task-test-split", "task": a.task, "first_sequences": n}})
        return {"golden_metric": golden_metric, "sequences": n, "steps": int(codes.shape[1]),
                "model_sha256": qm.digest()}

    gold = None
    if qat is not None:
        gold = fl.stage("golden", {"model": sha256_file(model_path), "vectors": a.vectors}, ["golden"], golden)
    else:
        fl.skip("golden", "needs train_qat")

    # ---- Verilog ------------------------------------------------------------------------------------
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

    def generate(paths: list[Path]) -> dict:
        from nvmlstm.gen import generate_rtl
        from nvmlstm.golden.io import load_model

        qm = load_model(model_path)
        # With the PDK the sky130 mapping is the synthesis (its cell counts go into the manifest); the generic
        # Yosys synthesis would synthesize the same design a second time.
        res = generate_rtl(paths[0], qm.config, model=qm, model_name="model.npz", lanes=a.lanes,
                           synth=not isinstance(yosys, Exception) and not use_pdk,
                           pdk="sky130" if use_pdk else None, log=lambda s: log(f"  {s}"))
        man = res.manifest
        return {"timestep_cyc": man["latency"]["timestep_cyc"]["value"], "lanes": man["lanes"],
                "files": sorted(f for f in man["files"]), "synthesis": man.get("synthesis"),
                "signoff": man.get("signoff")}

    gen = None
    if gold is not None:
        gen = fl.stage("generate", {"model": sha256_file(model_path), "lanes": a.lanes, "pdk": use_pdk,
                                    "synth": not isinstance(yosys, Exception)}, ["rtl"], generate)
        if isinstance(yosys, Exception):
            fl.skipped["synthesis"] = str(yosys)
            log(f"synthesis: SKIPPED: {yosys}")
    else:
        fl.skip("generate", "needs golden")
    if not use_pdk:
        why = ("--pdk none" if a.pdk == "none" else str(yosys) if isinstance(yosys, Exception) else str(pdk_found))
        fl.skipped["sky130 mapping"] = why

    # ---- cocotb comparison on every available simulator ------------------------------------------------
    rtl_hash = None if gen is None else _tree_hash([fl.out / "rtl"], fl.out)
    vec_hash = None if gold is None else _tree_hash([fl.out / "golden"], fl.out)

    def simulate(sim: str, gate_level: bool):
        def fn(paths: list[Path]) -> dict:
            from nvmlstm.sim import SimError, run_regression
            from nvmlstm.sim.simulators import SimulatorMissing, find_simulator

            try:
                find_simulator(sim)
            except SimulatorMissing as exc:
                raise _Skip(str(exc)) from None
            try:
                rep = run_regression(fl.out / "rtl", fl.out / "golden", sim, report=paths[0], gate_level=gate_level,
                                     log=lambda s: log(f"  {s}"))
            except SimError as exc:
                raise FlowError(f"sim {sim}: {exc}") from None
            return {k: rep[k] for k in ("passed", "values_compared", "mismatches", "first_mismatch_text",
                                        "sim_seconds") if k in rep} | {"cycles": rep["cycles"]["done_sum"]}
        return fn

    # The simulations are independent and each is one simulator process (build, then run): two at a time on
    # two cores, gate level (the longest) first. Gate level runs on Verilator when it is installed: it compiles
    # the netlist in about a third of the time Icarus takes to simulate it (docs/performance.md, "Flow").
    jobs: list[tuple[str, str, bool]] = []
    if gen is not None and use_pdk:
        jobs.append(("gate_level", _gate_simulator(a.simulators), True))
    elif "gate_level" not in fl.skipped:
        fl.skip("gate_level", "needs generate" if gen is None else f"needs the sky130 mapping: "
                f"{fl.skipped.get('sky130 mapping')}")
    for sim in a.simulators:
        if gen is None:
            fl.skip(f"sim_{sim}", "needs generate")
        else:
            jobs.append((f"sim_{sim}", sim, False))
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(fl.stage, name, {"rtl": rtl_hash, "vectors": vec_hash},
                                     [f"sim/{'gate_level_' if gl else ''}{sim}.json"], simulate(sim, gl))
                   for name, sim, gl in jobs}
        done = {name: f.result() for name, f in futures.items()}
    sims = {sim: done[name] for name, sim, gl in jobs if not gl and done[name] is not None}
    gate = done.get("gate_level")
    if gate is not None:
        gate = gate | {"simulator": next(sim for name, sim, gl in jobs if gl)}

    # ---- efficiency -----------------------------------------------------------------------------------
    def bench(paths: list[Path]) -> dict:
        from nvmlstm.bench.model import read_rtl_manifest, timing_from_manifest
        from nvmlstm.bench.report import bench_report, write_bench_dir
        from nvmlstm.bench.technology import load_technology
        from nvmlstm.golden.config import LstmConfig

        from .timing import accelerator_timing

        man = read_rtl_manifest(fl.out / "rtl")
        cfg = LstmConfig.from_dict(man["config"], where="rtl/manifest.json config")
        built = timing_from_manifest(man)
        doc = bench_report(cfg, load_technology(None), accelerator_timing(built.macro_latency), lanes=built.lanes,
                           clock_mhz=200.0, synthesis=man.get("synthesis"), signoff=man.get("signoff"),
                           source={"kind": "rtl", "dir": "rtl"})
        write_bench_dir(paths[0], doc, charts=True)
        best = doc["ratios"]
        return {"tops_per_w": doc["tops_per_w"], "tops_per_mm2": doc["tops_per_mm2"],
                "vs_digital_tops_per_w": (best["tops_per_w"].get("digital") or {}).get("ratio"),
                "vs_digital_tops_per_mm2": (best["tops_per_mm2"].get("digital") or {}).get("ratio")}

    ben = fl.stage("bench", {"rtl": rtl_hash}, ["bench"], bench) if gen is not None else fl.skip("bench",
                                                                                                 "needs generate")

    # ---- short noise sweep ------------------------------------------------------------------------------
    sweep = None
    if qat is not None:
        sweep = fl.stage("sweep", {"model": sha256_file(model_path), "trials": a.sweep_trials, "task": a.task,
                                   "data": data_hash}, ["sweep"], lambda paths: _noise_sweep(a, fl, paths[0]))
    else:
        fl.skip("sweep", "needs train_qat")

    # ---- report ---------------------------------------------------------------------------------------
    fl.seconds["total"] = round(time.perf_counter() - t_all, 3)
    rep = _report(a, fl, task, fp, qat, gold, gen, sims, gate, ben, sweep)
    log(f"report: {fl.out / 'report.md'}")
    return rep


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


#: The flow's short noise sweep: programming noise (fraction of the conductance range) x ADC noise (LSB), the
#: grid around the paper's "reasonable levels" (docs/resilience.md has the full sweeps).
FLOW_SWEEP_AXES = ("weight_noise=0,0.05,0.1", "adc_noise=0,0.5,1")


def _noise_sweep(a: FlowArgs, fl: _Flow, out: Path) -> dict:
    try:
        import distributed  # noqa: F401
    except ModuleNotFoundError:
        raise _Skip("dask.distributed is not installed: pip install 'nvm-lstm[sweep]'") from None
    from nvmlstm.sweep.run import run_sweep
    from nvmlstm.sweep.spec import build_spec

    spec = build_spec(task=a.task, models=[f"qat={fl.out / 'train' / 'qat'}"], axes=list(FLOW_SWEEP_AXES),
                      trials=a.sweep_trials, seed=a.seed, data=a.data)
    summary = run_sweep(spec, out, workers=a.workers, progress=a.progress, log=lambda s: fl.log(f"  {s}"))
    grid = {(p["point"]["weight_noise"], p["point"]["adc_noise"]): p for p in summary["points"]}
    ideal, paper = grid[(0.0, 0.0)], grid[(0.05, 0.5)]
    return {"axes": list(FLOW_SWEEP_AXES), "trials": a.sweep_trials, "ideal_mean": ideal["mean"],
            "weight_noise_0.05_adc_noise_0.5": {k: paper[k] for k in ("mean", "std", "min", "max")},
            "plots": [f"sweep/{p}" for p in summary["plots"]]}


def fmt_metric(v: Any, metric: str | None = None) -> str:
    """A metric for people: accuracy in percent, others with 4 significant digits, None as a dash."""
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{100 * v:.2f}%" if metric == "accuracy" else f"{v:.4g}"
    return str(v)


def _report(a, fl: _Flow, task, fp, qat, gold, gen, sims, gate, ben, sweep) -> dict:
    from nvmlstm.artifacts.files import write_text_atomic

    ran = [s for s in sims.values()]
    rtl_bit_exact = bool(ran) and all(s["passed"] for s in ran)
    rep: dict[str, Any] = {
        "task": a.task, "metric_name": task.metric,
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
        "skipped": dict(sorted(fl.skipped.items())),
        "seconds": fl.seconds,
        "reused": fl.reused,
        "stages": {k: v for k, v in fl.results.items()},
        "args": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(a).items() if k not in ("out", "progress")},
    }
    if sweep is not None:
        rep["noise_sweep"] = sweep
    m = task.metric
    lines = [f"# nvmlstm flow: {a.task}", "",
             f"| | {m} |", "|---|---|",
             f"| float (fp) | {fmt_metric(rep['fp_metric'], m)} |",
             f"| 4-bit QAT (PyTorch eval) | {fmt_metric(rep['qat_metric'], m)} |",
             f"| golden integer model | {fmt_metric(rep['golden_metric'], m)} |", "",
             f"* RTL bit exact against the golden model: **{rtl_bit_exact}** "
             f"({rep['values_compared']} values on {', '.join(rep['simulators']) or 'no simulator'})",
             f"* gate-level (sky130 netlist) bit exact: **{rep['gate_level_bit_exact']}**"
             + (f" ({gate['values_compared']} values on {gate['simulator']})" if gate else ""),
             f"* cycles per timestep: {rep['cycles_per_timestep']}",
             f"* efficiency: {fmt_metric(rep['tops_per_w'])} TOPS/W, {fmt_metric(rep['tops_per_mm2'])} TOPS/mm^2 "
             f"(bench/bench.md)", ""]
    if sweep is not None:
        pt = sweep["weight_noise_0.05_adc_noise_0.5"]
        lines += ["## Noise (golden model, Monte Carlo)", "",
                  f"{m} without noise {fmt_metric(sweep['ideal_mean'], m)}; with programming noise 5% of the conductance "
                  f"range and ADC noise 0.5 LSB {fmt_metric(pt['mean'], m)} ± {fmt_metric(pt['std'], m)} over {sweep['trials']} "
                  f"trials (`sweep/summary.md`).", ""] + [f"![{p}]({p})" for p in sweep["plots"]] + [""]
    if fl.skipped:
        lines += ["## Skipped", ""] + [f"* {k}: {v}" for k, v in sorted(fl.skipped.items())] + [""]
    lines += ["## Seconds per stage", "", "| stage | s |", "|---|---|"]
    lines += [f"| {k}{' (reused)' if k in fl.reused else ''} | {v:.1f} |" for k, v in fl.seconds.items()]
    lines += ["", "## Files", "", "* Verilog: " + ", ".join(f"`{f}`" for f in rep["verilog_files"]),
              "* training curves: `train/fp/curve.png`, `train/qat/curve.png`", ""]
    write_text_atomic(fl.out / "report.json", json.dumps(rep, indent=2, sort_keys=True) + "\n")
    write_text_atomic(fl.out / "report.md", "\n".join(lines))
    return rep
