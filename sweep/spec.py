"""The sweep specification: axes, models and labels, points, jobs; every input checked before anything runs.

A `SweepSpec` is built from the command line's values by `build_spec`, which raises `SweepError` (one line:
what, where, what was expected) for a bad axis name or value, a model of another task or shape, a missing
file, or a bit width that needs float weights a label does not have. Nothing is written before it returns.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nvmlstm.artifacts.files import sha256_file
from nvmlstm.golden.config import ConfigError, LstmConfig
from nvmlstm.golden.io import FileFormatError, load_float_model, load_model
from nvmlstm.golden.textfile import read_json_file
from nvmlstm.tasks import HIGHER_IS_BETTER, METRICS, TASKS, TaskData, load_task

from .evaluate import BIT_AXES, CALIB_SEED, CALIB_SEQUENCES, STOCHASTIC_AXES, target_config

__all__ = [
    "SweepError",
    "AXES",
    "parse_axis",
    "parse_model_arg",
    "build_spec",
    "SweepSpec",
    "Label",
    "choose_source",
    "SWEEP_FORMAT",
]

SWEEP_FORMAT = "nvm-lstm-sweep"
SCHEMA_VERSION = 1

#: Axis name -> value kind: ``int`` (checked by the config's own rules) or ``noise`` (finite, >= 0) or
#: ``rate`` (in [0, 1]).
AXES: dict[str, str] = {
    "weight_bits": "int",
    "dac_bits": "int",
    "adc_bits": "int",
    "weight_noise": "noise",
    "read_noise": "noise",
    "adc_noise": "noise",
    "stuck_rate": "rate",
    "array_rows": "int",
}
_LABEL_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")


class SweepError(ValueError):
    """A user error in a sweep's arguments, models or output directory (one line)."""


# --------------------------------------------------------------------------------------------------
def parse_axis(text: str) -> tuple[str, tuple]:
    """``"AXIS=V1,V2,..."`` -> (axis, values); ints for bit and array axes, floats for the others."""
    where = f"--axis {text}"
    name, sep, vals = text.partition("=")
    name = name.strip()
    if not sep or not vals.strip():
        raise SweepError(f"{where}: expected AXIS=V1,V2,... (for example adc_noise=0,0.5,1)")
    if name not in AXES:
        raise SweepError(f"{where}: unknown axis {name!r}; choose from {', '.join(AXES)}")
    kind = AXES[name]
    out: list = []
    for raw in vals.split(","):
        s = raw.strip()
        if kind == "int":
            try:
                v: Any = int(s)
            except ValueError:
                raise SweepError(f"{where}: {s!r} is not an integer") from None
        else:
            try:
                v = float(s)
            except ValueError:
                raise SweepError(f"{where}: {s!r} is not a number") from None
            if not math.isfinite(v) or v < 0:
                raise SweepError(f"{where}: {name} must be a finite number >= 0, not {s!r}")
            if kind == "rate" and v > 1:
                raise SweepError(f"{where}: {name} is a fraction of cells and must be at most 1, not {s!r}")
            v = v + 0.0  # -0.0 -> 0.0: one canonical text per value
        if v in out:
            raise SweepError(f"{where}: value {s} is listed twice")
        out.append(v)
    return name, tuple(out)


def parse_model_arg(text: str) -> tuple[str | None, Path]:
    """``PATH`` or ``LABEL=PATH`` -> (label or None, path)."""
    left, sep, right = text.partition("=")
    if sep and left and "/" not in left and _LABEL_RE.match(left):
        if not right:
            raise SweepError(f"--model {text}: expected LABEL=PATH, the path is empty")
        return left, Path(right)
    if sep and not left:
        raise SweepError(f"--model {text}: expected PATH or LABEL=PATH (a label of letters, digits, _ . + -)")
    return None, Path(text)


@dataclass
class _ModelFile:
    path: Path  # the file that identifies the model (model.npz, or float_model.npz alone)
    qpath: Path | None  # the quantized model.npz; None for a float-only (fp) run
    fpath: Path | None  # the float weights (float_model.npz), if any
    config: LstmConfig
    meta: dict
    default_label: str


@dataclass
class Label:
    """One line of the plots: a label's models (one per config) and its float weights."""

    name: str
    models: list[tuple[Path, LstmConfig]] = field(default_factory=list)
    float_path: Path | None = None
    base_config: LstmConfig | None = None
    files: list[dict] = field(default_factory=list)


def _describe(path: Path) -> str:
    """A path as written in generated files: never absolute (the run directory's name and the file name)."""
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def _read_metrics(run_dir: Path) -> dict:
    p = run_dir / "metrics.json"
    if not p.is_file():
        return {}
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _resolve_model(path: Path, task: str) -> _ModelFile:
    if path.is_dir():
        if (path / "model.npz").is_file():
            qpath: Path | None = path / "model.npz"
        elif (path / "float_model.npz").is_file():
            qpath = None
        else:
            raise SweepError(f"{path}: no model.npz or float_model.npz in this run directory")
        run_dir = path
    elif path.suffix == ".npz":
        if not path.is_file():
            raise SweepError(f"{path}: model file not found")
        fmt = read_json_file(path.with_suffix(".json"), FileFormatError, "manifest")
        qpath = None if isinstance(fmt, dict) and fmt.get("format") == "nvm-lstm-float-model" else path
        run_dir = path.parent
    else:
        raise SweepError(f"{path}: expected a run directory or a model .npz file")
    fpath = (
        (run_dir / "float_model.npz")
        if qpath is not None
        else (path if path.is_file() else run_dir / "float_model.npz")
    )
    if qpath is not None and not fpath.is_file():
        fpath = None
    if qpath is not None:
        qm, meta = load_model(qpath, with_metadata=True)
        cfg = qm.config
        where = qpath
    else:
        _, meta = load_float_model(fpath, with_metadata=True)
        where = fpath
        try:
            cfg = LstmConfig.from_dict(meta.get("config"), where=f"{fpath}: metadata config")
        except ConfigError as exc:
            raise SweepError(
                f"{exc} (a float model needs its hardware config in its metadata to be quantized)"
            ) from None
    if fpath is not None and qpath is not None:
        load_float_model(fpath)  # validated now: a corrupt file is one line before anything runs
    mtask = meta.get("task")
    if mtask != task:
        raise SweepError(f"{where}: a model of task {mtask!r}, but --task is {task!r}")
    mode = str(meta.get("mode", "model"))
    metrics = _read_metrics(run_dir)
    noisy = bool(metrics.get("weight_noise") or metrics.get("adc_noise"))
    return _ModelFile(where, qpath, fpath, cfg, meta, mode + ("-noise" if noisy else ""))


def choose_source(members: Sequence[LstmConfig], cfg: LstmConfig, has_float: bool) -> tuple[str, int | None]:
    """How a label gets its model at config ``cfg``: ("trained", i), ("retiled", i), ("requantized", None),
    or ("missing", None) when it would need float weights it does not have."""
    for i, m in enumerate(members):
        if m == cfg:
            return "trained", i
    for i, m in enumerate(members):
        if m.replace(array_rows=cfg.array_rows) == cfg:
            return "retiled", i
    return ("requantized", None) if has_float else ("missing", None)


# --------------------------------------------------------------------------------------------------
@dataclass
class SweepSpec:
    """A checked sweep: the canonical document (``sweep.json``) and the jobs it expands to."""

    doc: dict
    labels: list[Label]
    axes: list[tuple[str, tuple]]
    points: list[dict]
    jobs: list[dict]
    baseline_jobs: list[dict]

    @property
    def metric(self) -> str:
        return self.doc["metric"]


def point_key(point: dict) -> str:
    """Canonical text of a point (axis values; independent of the order of the --axis options)."""
    return json.dumps(point, sort_keys=True, separators=(",", ":"))


def job_file(label: str, pkey: str) -> str:
    """File name of a (label, point) result under ``points/``: a hash of label and point (any characters)."""
    return hashlib.sha256(f"{label}\n{pkey}".encode()).hexdigest()[:24] + ".json"


def _check_arguments(task: str, models: Sequence[str], axes: Sequence[str], trials: int) -> None:
    """The checks that need no file: a known task, at least one model and one axis, a positive trial count.

    Raises
    ------
    SweepError
        On the first bad argument.
    """
    if task not in TASKS:
        raise SweepError(f"--task {task}: unknown task; choose from {', '.join(TASKS)}")
    if not models:
        raise SweepError("give at least one --model")
    if not axes:
        raise SweepError("give at least one --axis AXIS=V1,V2,...")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise SweepError(f"--trials must be a positive integer, not {trials!r}")


def _parse_axes(axes: Sequence[str]) -> list[tuple[str, tuple]]:
    """Parse every ``--axis`` (`parse_axis`); an axis given twice is an error, since the values of one
    option would silently replace or multiply those of the other.

    Returns
    -------
    list of (str, tuple)
        (axis, values) in the order given.
    """
    parsed = [parse_axis(a) for a in axes]
    seen: set[str] = set()
    for name, _ in parsed:
        if name in seen:
            raise SweepError(f"--axis {name} is given twice (give all its values in one --axis)")
        seen.add(name)
    return parsed


def _check_test_sequences(test_sequences: int | None, n_test: int, task: str) -> None:
    """``test_sequences`` (``None``: all) must select 1 to ``n_test`` sequences of the test split."""
    if test_sequences is not None and not 1 <= test_sequences <= n_test:
        raise SweepError(f"--test-sequences must be from 1 to {n_test} (the {task} test split), not {test_sequences}")


def _model_files(models: Sequence[str], task: str, td: TaskData) -> list[tuple[str | None, _ModelFile, str]]:
    """Resolve every ``--model`` argument (`_resolve_model`) and check its shape against the task.

    Parameters
    ----------
    models : sequence of str
        ``PATH`` or ``LABEL=PATH`` (`parse_model_arg`).
    task : str
    td : TaskData
        The loaded task: its ``input_size`` and ``output_size``.

    Returns
    -------
    list of (label or None, _ModelFile, argument)
    """
    files: list[tuple[str | None, _ModelFile, str]] = []
    for arg in models:
        label, path = parse_model_arg(arg)
        mf = _resolve_model(path, task)
        c = mf.config
        if (c.input_size, c.output_size) != (td.input_size, td.output_size):
            raise SweepError(
                f"{mf.path}: a model with {c.input_size} inputs and {c.output_size} outputs, but "
                f"{task} has {td.input_size} and {td.output_size}"
            )
        files.append((label, mf, arg))
    return files


def _build_labels(files: list[tuple[str | None, _ModelFile, str]]) -> dict[str, Label]:
    """Group the models into labels: an explicit label collects every model given with it; an unlabelled
    model takes its default label, numbered (``-2``, ``-3``, ...) if that label already has its config.

    Raises
    ------
    SweepError
        An explicit label given two models of the same config (which one to use would be ambiguous).
    """
    labels: dict[str, Label] = {}
    for label, mf, arg in files:
        name = label if label is not None else mf.default_label
        if name in labels and any(c == mf.config for _, c in labels[name].models):
            if label is not None:
                raise SweepError(f"--model {arg}: label {name!r} already has a model of the same config")
            k = 2
            while f"{name}-{k}" in labels:
                k += 1
            name = f"{name}-{k}"
        lab = labels.setdefault(name, Label(name))
        if mf.qpath is not None:
            lab.models.append((mf.qpath, mf.config))
        if lab.base_config is None:
            lab.base_config = mf.config
        if lab.float_path is None and mf.fpath is not None:
            lab.float_path = mf.fpath
        entry = {"file": _describe(mf.path), "sha256": sha256_file(mf.path)}
        if mf.fpath is not None and mf.fpath != mf.path:
            entry |= {"float_file": _describe(mf.fpath), "float_sha256": sha256_file(mf.fpath)}
        lab.files.append(entry)
    return labels


def _check_axis_values(parsed: list[tuple[str, tuple]], labels: dict[str, Label]) -> None:
    """Check every integer axis value against each label's config, with the config's own rules and
    messages, so that a bad width fails here and not in a worker."""
    for name, vals in parsed:
        if AXES[name] != "int":
            continue
        for v in vals:
            for lab in labels.values():
                try:
                    lab.base_config.replace(**{name: v})
                except ConfigError as exc:
                    raise SweepError(f"--axis {name}={','.join(map(str, vals))}: {exc}") from None


def _expand_jobs(
    labels: dict[str, Label], points: list[dict], common: dict, seed: int, trials: int
) -> tuple[list[dict], list[dict]]:
    """One job per (label, point) and one float-baseline job per label with float weights.

    Parameters
    ----------
    labels : dict
        From `_build_labels`.
    points : list of dict
        Axis values of every point.
    common : dict
        Entries every job shares (task, data, seq_len, test_sequences).
    seed, trials : int

    Returns
    -------
    jobs, baseline_jobs : list of dict

    Raises
    ------
    SweepError
        A point the label's config cannot take, or that needs float weights the label does not have.
    """
    hashes: dict[Path, str] = {}

    def sha(p: Path) -> str:  # workers cache what they load by content, not by path (files can be replaced)
        if p not in hashes:
            hashes[p] = sha256_file(p)
        return hashes[p]

    jobs, baseline_jobs = [], []
    for lab in labels.values():
        member_cfgs = [c for _, c in lab.models]
        for point in points:
            try:
                cfg = target_config(lab.base_config, point)
            except ConfigError as exc:
                raise SweepError(f"label {lab.name} at {point_key(point)}: {exc}") from None
            how, _ = choose_source(member_cfgs, cfg, lab.float_path is not None)
            if how == "missing":
                diff = {k: getattr(cfg, k) for k in (*BIT_AXES, "array_rows")}
                raise SweepError(
                    f"label {lab.name}: no model trained at {json.dumps(diff, sort_keys=True)} and no "
                    f"float_model.npz beside {lab.files[0]['file']} to re-quantize"
                )
            pkey = point_key(point)
            jobs.append(
                {
                    **common,
                    "key": job_file(lab.name, pkey),
                    "label": lab.name,
                    "point": point,
                    "noise_key": pkey,
                    "seed": seed,
                    "trials": trials,
                    "base_config": lab.base_config.to_dict(),
                    "models": [
                        {"path": str(p.resolve()), "config": c.to_dict(), "sha256": sha(p)} for p, c in lab.models
                    ],
                    "float_path": None if lab.float_path is None else str(lab.float_path.resolve()),
                    "float_sha256": None if lab.float_path is None else sha(lab.float_path),
                }
            )
        if lab.float_path is not None:
            baseline_jobs.append(
                {
                    **common,
                    "key": job_file(lab.name, "float-baseline"),
                    "label": lab.name,
                    "float_path": str(lab.float_path.resolve()),
                    "float_sha256": sha(lab.float_path),
                }
            )
    return jobs, baseline_jobs


def _data_entry(data: str | None) -> dict | None:
    """The data set in ``sweep.json``: its base name (never a path) and the sha256 of each of its files."""
    if data is None:
        return None
    dp = Path(data)
    fs = sorted(dp.iterdir()) if dp.is_dir() else [dp]
    return {"name": dp.name, "sha256": {f.name: sha256_file(f) for f in fs if f.is_file()}}


def _sweep_doc(
    task: str,
    data: str | None,
    seq_len: int | None,
    test_sequences: int | None,
    parsed: list[tuple[str, tuple]],
    trials: int,
    seed: int,
    labels: dict[str, Label],
) -> dict:
    """The canonical document of the sweep (``sweep.json``)."""
    return {
        "format": SWEEP_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "task": task,
        "metric": METRICS[task],
        "higher_is_better": HIGHER_IS_BETTER[METRICS[task]],
        "data": _data_entry(data),
        "seq_len": seq_len,
        "test_sequences": test_sequences,
        "axes": [[n, list(v)] for n, v in parsed],
        "trials": trials,
        "seed": seed,
        "calibration": {"sequences": CALIB_SEQUENCES, "seed": CALIB_SEED},
        "stochastic_axes": list(STOCHASTIC_AXES),
        "labels": [
            {
                "label": lab.name,
                "config": lab.base_config.to_dict(),
                "files": lab.files,
                "trained_configs": [c.to_dict() for _, c in lab.models],
                "float_weights": lab.float_path is not None,
            }
            for lab in labels.values()
        ],
    }


def build_spec(
    *,
    task: str,
    models: Sequence[str],
    axes: Sequence[str],
    trials: int,
    seed: int = 0,
    data: str | None = None,
    seq_len: int | None = None,
    test_sequences: int | None = None,
) -> SweepSpec:
    """Check every input and expand the sweep; raises `SweepError` (one line) on the first problem.

    Parameters
    ----------
    task : str
        One of `nvmlstm.tasks.TASKS`.
    models : sequence of str
        ``--model`` arguments: ``PATH`` or ``LABEL=PATH`` (a run directory or a model ``.npz``).
    axes : sequence of str
        ``--axis`` arguments: ``AXIS=V1,V2,...`` (`AXES`).
    trials : int
        Noise trials per point, at least 1.
    seed : int
        Seed of the noise trials.
    data : str, optional
        Data file or directory of the task (default: the task's own).
    seq_len : int, optional
        Sequence length of the task's data.
    test_sequences : int, optional
        Evaluate only the first this many test sequences (default all).

    Returns
    -------
    SweepSpec

    Raises
    ------
    SweepError
        The first bad argument, model or axis value; nothing has been written.
    """
    _check_arguments(task, models, axes, trials)
    parsed = _parse_axes(axes)
    td = load_task(task, data, seq_len=seq_len)
    _check_test_sequences(test_sequences, len(td.test[0]), task)
    labels = _build_labels(_model_files(models, task, td))
    _check_axis_values(parsed, labels)
    points = [dict(zip([n for n, _ in parsed], combo)) for combo in itertools.product(*[v for _, v in parsed])]
    common = {
        "task": task,
        "data": None if data is None else str(Path(data).resolve()),
        "seq_len": seq_len,
        "test_sequences": test_sequences,
    }
    jobs, baseline_jobs = _expand_jobs(labels, points, common, seed, trials)
    doc = _sweep_doc(task, data, seq_len, test_sequences, parsed, trials, seed, labels)
    return SweepSpec(doc, list(labels.values()), parsed, points, jobs, baseline_jobs)
