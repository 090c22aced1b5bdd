"""One training run: fp, ptq or (noise-aware) qat on a task, with checkpoints, resume, metrics and a curve.

Files of a run directory:

``checkpoint.pt``
    After every epoch (atomically replaced): run arguments, epoch, model (float weights and learned ADC
    steps), optimizer and scheduler state, history, the best-validation weights so far, RNG states.
    ``resume=True`` continues from it and ends with the same weights as an uninterrupted run.
``float_model.pt``
    The float weights as an ``nn.LSTM`` + ``nn.Linear`` state dict (``lstm.*``, ``head.*``): what
    ``--init-from`` reads.
``model.npz`` + ``model.json`` (quantized modes)
    The exported `golden.QuantizedModel` (`golden.io.save_model`).
``metrics.json``, ``curve.png``
    Final metrics and the training curve. The final model is the epoch with the best validation metric.
    ``threads`` and ``torch`` record what ran: the training steps always on one thread (`train.evaluate`),
    so the results are the same with any ``--threads``; bit-for-bit equal needs the same torch and CPU kind.

While it runs: a progress bar over all epochs, then one over the test-set evaluation (float, integer,
golden and noisy golden passes; charlm's take minutes); in a log file (stderr not a terminal) they are plain
lines at most every 30 s (`nvmlstm.artifacts.progress`).
``float/`` (qat with float pre-training, the default recipe)
    The complete fp run the quantized phase starts from (its own checkpoint, resume and files); its test
    metric is also in ``metrics.json`` under ``float_run``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nvmlstm.artifacts.files import atomic_output_dir, write_bytes_atomic, write_text_atomic
from nvmlstm.artifacts.png import save_png
from nvmlstm.artifacts.progress import progress
from nvmlstm.golden.config import LstmConfig
from nvmlstm.golden.io import save_model
from nvmlstm.golden.model import QuantizedModel
from nvmlstm.golden.ptq import calibration_subset
from nvmlstm.golden.realio import golden_outputs  # the one definition (re-exported below)
from nvmlstm.tasks import HIGHER_IS_BETTER, TaskData, TaskError, load_task, metric_from_outputs
from nvmlstm.tasks.config import task_config

from .args import MODES, RESUME_KEYS, TASK_DEFAULTS, TrainArgs, TrainError, check_args
from .evaluate import (
    TRAIN_THREADS,
    exact_outputs,
    final_test_metrics,
    float_outputs,
    on_terminal,
    torch_threads,
    valid_metric,
)
from .loss import task_loss
from .memory import keep_freed_memory
from .model import QuantLSTM, StateDictError

__all__ = ["TrainArgs", "TrainError", "run_training", "MODES", "TASK_DEFAULTS", "load_float_state_file"]


# --------------------------------------------------------------------------------------------------
def _config(a: TrainArgs, task: TaskData) -> LstmConfig:
    from nvmlstm.golden.config import ConfigError

    try:
        return task_config(
            task,
            hidden_size=a.hidden,
            weight_bits=a.weight_bits,
            dac_bits=a.dac_bits,
            adc_bits=a.adc_bits,
            head_adc_bits=a.head_adc_bits,
            array_rows=a.array_rows,
            array_cols=a.array_cols,
        )
    except ConfigError as exc:
        raise TrainError(str(exc)) from None


def load_float_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a float state dict: a ``.pt`` file, or a run directory (its ``float_model.pt``)."""
    p = Path(path)
    if p.is_dir():
        p = p / "float_model.pt"
    if not p.is_file():
        raise TrainError(f"{path}: --init-from file not found (a float run directory or a .pt state dict)")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or non-torch file
        raise TrainError(f"{p}: not a readable PyTorch state dict ({type(exc).__name__})") from None
    if not isinstance(sd, dict):
        raise TrainError(f"{p}: expected a state dict (a dict of tensors), not {type(sd).__name__}")
    return sd


def _torch_save_atomic(obj: Any, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes_atomic(path, buf.getvalue())


def _warn_if_near_chance(model: QuantLSTM, task: TaskData, source: str, log: Callable[[str], None]) -> None:
    """One warning line when an imported float model scores near chance on the validation split: its inputs
    were most likely scaled differently from the task's."""
    from nvmlstm.tasks.baseline import chance_metric, near_chance

    xv, yv = task.valid
    m = metric_from_outputs(task, float_outputs(model, xv), yv)
    if near_chance(task, m):
        log(
            f"warning: the float model from {source} scores {task.metric} {m:.4g} on the validation split, near "
            f"chance ({chance_metric(task):.4g}): were its inputs scaled as the task's (every task feeds values in "
            f'[-1, 1]; README, "Bring your own model")?'
        )


# --------------------------------------------------------------------------------------------------
def _rng_state() -> dict[str, Any]:
    """Every random generator's state as tensors, numbers and lists only: a checkpoint must load with
    ``torch.load(weights_only=True)``, which refuses any other object (and so cannot run code)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": [version, list(internal), gauss_next],
    }


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss_next = s["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _make_optimizer(model: QuantLSTM, a: TrainArgs, quantized: bool, steps: int):
    groups = [{"params": model.float_parameters(), "lr": a.lr}]
    if quantized:
        # log(step): Adam's update is scale-free, so the same learning rate moves a step by ~lr per update
        # relative to itself.
        groups.append({"params": model.quantizer_parameters(), "lr": a.lr})
    opt = torch.optim.Adam(groups)
    # Cosine decay to 5% over the run: the late small steps settle the weights near code boundaries.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(i, steps) / max(1, steps)))
    )
    return opt, sched


def _plot(history: list[dict], metric: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ep = [h["epoch"] for h in history]
    if ep:
        ax[0].plot(ep, [h["train_loss"] for h in history], marker=".")
        ax[1].plot(ep, [h["valid_metric"] for h in history], marker=".")
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("training loss")
    ax[1].set_xlabel("epoch")
    ax[1].set_ylabel(f"validation {metric}")
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path)


def run_training(
    a: TrainArgs, *, log: Callable[[str], None] = print, stop_after_epoch: int | None = None
) -> dict[str, Any]:
    """Run (or resume) one training run and write its directory; returns the metrics dict.

    Phases, in this order (the order of the random draws, which a resumed run repeats): the run directory
    (`_open_run_dir`), the float pre-training of the qat recipe (`_float_pretraining`), the model and
    optimizer (`_start`), the epochs (`_train_epochs`), and the final metrics and files (`_final_metrics`,
    `_write_run_dir`).

    Everything but the integer evaluation runs on one torch thread (`train.evaluate.TRAIN_THREADS`: the
    results do not depend on ``a.threads``); torch's thread count is restored on return.

    Parameters
    ----------
    a : TrainArgs
        The run's arguments (``None`` entries take the task defaults, `TrainArgs.resolved`).
    log : callable, optional
        Receives the run's few message lines (float pre-training, resume, near-chance warning).
    stop_after_epoch : int, optional
        End the run after that epoch's checkpoint, as an interruption would (tests); the result is then
        ``{"interrupted_after_epoch": epoch}``.

    Returns
    -------
    dict
        The metrics written to ``metrics.json``.

    Raises
    ------
    TrainError
        Bad arguments, data, checkpoint or --init-from file (one line).
    """
    a = a.resolved()
    check_args(a)
    eval_threads = a.threads or torch.get_num_threads()  # None: torch's current (default) count
    with torch_threads(TRAIN_THREADS):
        return _run(a, eval_threads, log, stop_after_epoch)


def _run(a: TrainArgs, eval_threads: int, log: Callable[[str], None], stop_after_epoch: int | None) -> dict[str, Any]:
    """`run_training` after its argument checks, on `TRAIN_THREADS` threads."""
    keep_freed_memory()  # large per-batch tensors reuse mapped memory (train/memory.py: QAT 1.37x faster)
    task = load_task(
        a.task,
        a.data,
        seq_len=a.seq_len if a.task != "digits" else None,
        **({"char_repeat": a.char_repeat} if a.task == "charlm" and a.char_repeat is not None else {}),
    )
    cfg = _config(a, task)
    out = Path(a.out)
    init_sd = load_float_state_file(a.init_from) if a.init_from is not None else None
    ckpt = _open_run_dir(a, out)
    float_run = None
    if a.fp_epochs:
        # threads: this run's count, not the one torch has inside it (1) when --threads 0 asks for the default.
        float_run, init_sd = _float_pretraining(dataclasses.replace(a, threads=eval_threads), out / "float", log)
    run = _start(a, cfg, task, init_sd, ckpt, out, log)
    run.eval_threads = eval_threads
    out.mkdir(parents=True, exist_ok=True)
    interrupted = _train_epochs(a, task, run, out / "checkpoint.pt", stop_after_epoch)
    if interrupted is not None:
        return {"interrupted_after_epoch": interrupted}
    metrics, qm = _final_metrics(a, cfg, task, run, float_run)
    _write_run_dir(out, a, cfg, task, run, qm, metrics)
    return metrics


def _open_run_dir(a: TrainArgs, out: Path) -> dict[str, Any] | None:
    """The checkpoint to resume from (``a.resume``), or ``None`` for a new run (or a fresh quantized phase).

    Raises
    ------
    TrainError
        No or an unreadable checkpoint to resume, one made with other arguments (`RESUME_KEYS`), or a new
        run into a non-empty directory.
    """
    ckpt_path = out / "checkpoint.pt"
    if a.resume and not ckpt_path.is_file() and a.fp_epochs and (out / "float").is_dir():
        return None  # interrupted in (or right after) the float pre-training: it resumes, QAT starts fresh
    if not a.resume:
        if out.exists() and any(out.iterdir()):
            raise TrainError(f"{out}: run directory exists and is not empty (use --resume to continue it)")
        return None
    if not ckpt_path.is_file():
        raise TrainError(f"{ckpt_path}: no checkpoint to resume from")
    try:
        # weights_only: tensors, numbers, strings and containers only; a crafted file cannot run code.
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainError(
            f"{ckpt_path}: unreadable checkpoint, or one holding objects other than tensors, "
            f"numbers and strings ({type(exc).__name__}); start a new run"
        ) from None
    saved = ckpt.get("args", {})
    diff = [k for k in RESUME_KEYS if saved.get(k) != getattr(a, k)]
    if diff:
        k = diff[0]
        raise TrainError(
            f"--resume: {k} is {getattr(a, k)!r} but the checkpoint in {out} was made with {saved.get(k)!r}"
        )
    return ckpt


def _float_pretraining(
    a: TrainArgs, float_dir: Path, log: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The qat recipe's first phase: a complete fp run (its own checkpoint, resume, files) in ``float_dir``.

    It runs at the task's float learning rate, and only if ``float_dir`` has no ``metrics.json`` yet (a
    finished phase is reused; an interrupted one resumes).

    Returns
    -------
    float_run : dict
        The fp run's metrics.
    init_sd : dict
        Its best float weights, where the quantized phase starts.
    """
    if not (float_dir / "metrics.json").is_file():
        fa = dataclasses.replace(
            a,
            mode="fp",
            out=str(float_dir),
            epochs=a.fp_epochs,
            lr=TASK_DEFAULTS[a.task]["lr"],
            fp_epochs=0,
            learn_weight_scales=False,
            resume=(float_dir / "checkpoint.pt").is_file(),
            weight_noise=0.0,
            adc_noise=0.0,
        )
        log(f"float pre-training ({a.fp_epochs} epochs) in {float_dir}")
        run_training(fa, log=log)
    return json.loads((float_dir / "metrics.json").read_text()), load_float_state_file(float_dir)


@dataclass
class _Run:
    """The state of a run between its phases: what the epochs update and the checkpoint holds."""

    model: QuantLSTM
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    shuffle: torch.Generator
    calib: np.ndarray  #: the PTQ calibration sequences (golden.ptq.calibration_subset)
    input_scale: float
    epochs: int  #: epochs of this run (0: ptq from an imported float model)
    n_batches: int  #: batches per epoch
    history: list[dict]
    #: Model selection on the validation split: the run ends with the weights of its best validation epoch
    #: (the small charlm corpus overfits long before the learning rate has decayed).
    best: dict[str, Any] | None = None
    start_epoch: int = 0
    t_train: float = 0.0
    eval_threads: int = 1  #: torch threads of the integer evaluation (`train.evaluate`)


def _start(
    a: TrainArgs,
    cfg: LstmConfig,
    task: TaskData,
    init_sd: dict[str, torch.Tensor] | None,
    ckpt: dict[str, Any] | None,
    out: Path,
    log: Callable[[str], None],
) -> _Run:
    """Seed the generators, build the model (from ``init_sd``) and its optimizer, and restore ``ckpt``.

    The order of the random draws (model initialization, calibration subset, shuffling generator) is part
    of a run's results for its seed: keep it.
    """
    torch.manual_seed(a.seed)
    np.random.seed(a.seed % (2**32))
    random.seed(a.seed)
    input_scale = 1.0 / cfg.dac_max  # every task's inputs are in [-1, 1]
    model = QuantLSTM(cfg, input_scale, learn_weight_scales=a.learn_weight_scales and a.mode == "qat")
    if init_sd is not None:
        try:
            model.load_float_state(init_sd, where=str(a.init_from))
        except StateDictError as exc:
            raise TrainError(str(exc)) from None
        if a.init_from is not None:  # a user's model; not the recipe's own float phase (short in tests)
            _warn_if_near_chance(model, task, a.init_from, log)

    xtr = task.train[0]
    calib = calibration_subset(xtr, a.seed)  # the run's seed: golden.ptq.calibration_subset says why
    quantized = a.mode == "qat"
    # ptq trains the float model first unless it starts from one; qat trains quantized.
    epochs = 0 if (a.mode == "ptq" and init_sd is not None) else a.epochs
    n_batches = math.ceil(len(xtr) / a.batch_size)
    if quantized and ckpt is None:
        model.calibrate(calib)  # ADC steps start at the PTQ calibration of the initial float weights
        if model.learn_weight_scales:
            model.init_weight_scales()  # ... and learned weight scales at its max-abs weight scales
    model.quantized = quantized
    model.weight_noise, model.adc_noise = a.weight_noise, a.adc_noise
    opt, sched = _make_optimizer(model, a, quantized, epochs * n_batches)
    run = _Run(
        model, opt, sched, torch.Generator().manual_seed(a.seed), calib, input_scale, epochs, n_batches, history=[]
    )
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        run.shuffle.set_state(ckpt["shuffle_rng"])
        _set_rng_state(ckpt["rng"])
        run.history = ckpt["history"]
        run.best = ckpt["best"]
        run.start_epoch = ckpt["epoch"]
        run.t_train = ckpt.get("train_seconds", 0.0)
        log(f"resuming {out} after epoch {run.start_epoch}/{epochs}")
    return run


def _train_epochs(a: TrainArgs, task: TaskData, run: _Run, ckpt_path: Path, stop_after_epoch: int | None) -> int | None:
    """The epochs from ``run.start_epoch``, each ending with its validation metric and checkpoint.

    Returns
    -------
    int or None
        The last epoch done when ``stop_after_epoch`` ended the run early, else ``None``.
    """
    xtr, ytr = task.train
    xt_all, yt_all = torch.from_numpy(xtr), torch.from_numpy(ytr)
    higher = HIGHER_IS_BETTER[task.metric]
    # One bar over the run (ETA of the whole run), showing the epoch, the running training loss and the
    # last validation metric: redrawn on a terminal, a line every 30 s in a log (artifacts.progress).
    bar = progress(
        run.epochs * run.n_batches,
        f"{a.task} {a.mode}",
        unit="batch",
        enabled=a.progress,
        initial=run.start_epoch * run.n_batches,
    )
    last_valid = run.history[-1]["valid_metric"] if run.history else None
    for epoch in range(run.start_epoch, run.epochs):
        t0 = time.perf_counter()
        train_loss = _train_epoch(a, task, run, xt_all, yt_all, bar, epoch, last_valid)
        run.t_train += time.perf_counter() - t0
        if a.progress and a.mode == "qat" and on_terminal():
            # The integer validation takes seconds (charlm: ~30 s) while the bar stands still: say so. Not in
            # a log, where it would be a line per epoch.
            bar.set_postfix_str(f"{bar.postfix}, validating", refresh=True)
        vm = last_valid = valid_metric(task, run.model, a.mode == "qat", run.eval_threads)
        run.history.append(
            {"epoch": epoch + 1, "train_loss": train_loss, "valid_metric": vm, "seconds": time.perf_counter() - t0}
        )
        # Ties go to the later epoch (more updates at a smaller learning rate).
        if run.best is None or (vm >= run.best["valid_metric"] if higher else vm <= run.best["valid_metric"]):
            run.best = {
                "epoch": epoch + 1,
                "valid_metric": vm,
                "model": {k: v.detach().clone() for k, v in run.model.state_dict().items()},
            }
        _torch_save_atomic(
            {
                "args": dataclasses.asdict(a),
                "epoch": epoch + 1,
                "model": run.model.state_dict(),
                "optimizer": run.opt.state_dict(),
                "scheduler": run.sched.state_dict(),
                "shuffle_rng": run.shuffle.get_state(),
                "rng": _rng_state(),
                "history": run.history,
                "best": run.best,
                "train_seconds": run.t_train,
            },
            ckpt_path,
        )
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < run.epochs:
            bar.close()
            return epoch + 1
    bar.close()
    return None


def _train_epoch(
    a: TrainArgs,
    task: TaskData,
    run: _Run,
    xt_all: torch.Tensor,
    yt_all: torch.Tensor,
    bar,
    epoch: int,
    last_valid: float | None,
) -> float:
    """One pass over the training split in shuffled batches; returns the mean training loss."""
    model = run.model
    model.train()
    perm = torch.randperm(len(xt_all), generator=run.shuffle)
    total, count = 0.0, 0
    for i in range(0, len(xt_all), a.batch_size):
        idx = perm[i : i + a.batch_size]
        xb, yb = xt_all[idx], yt_all[idx]
        loss = task_loss(task, model(xb, last_only=not task.per_step), yb)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        run.opt.step()
        run.sched.step()
        total += float(loss.detach()) * len(idx)
        count += len(idx)
        post = {"epoch": f"{epoch + 1}/{run.epochs}", "loss": f"{total / count:.4f}"}
        if last_valid is not None:
            post[f"valid_{task.metric}"] = f"{last_valid:.4f}"
        bar.set_postfix(post, refresh=False)  # before the update, which draws it
        bar.update(1)
    return total / count


def _final_metrics(
    a: TrainArgs, cfg: LstmConfig, task: TaskData, run: _Run, float_run: dict[str, Any] | None
) -> tuple[dict[str, Any], QuantizedModel | None]:
    """Load the best epoch's weights and evaluate them on the test split.

    Returns
    -------
    metrics : dict
        What ``metrics.json`` holds.
    qm : QuantizedModel or None
        The exported model of a quantized mode (``None`` for fp).
    """
    model, best = run.model, run.best
    if best is not None:
        model.load_state_dict(best["model"])
    model.eval()
    metrics: dict[str, Any] = {
        "task": a.task,
        "mode": a.mode,
        "metric_name": task.metric,
        "higher_is_better": HIGHER_IS_BETTER[task.metric],
        "seed": a.seed,
        "epochs": run.epochs,
        "hidden": a.hidden,
        "bits": {"weight": a.weight_bits, "dac": a.dac_bits, "adc": a.adc_bits, "head_adc": cfg.head_adc_bits_eff},
        "array": [a.array_rows, a.array_cols],
        "weight_noise": a.weight_noise,
        "adc_noise": a.adc_noise,
        "init_from": a.init_from,
        "train_seconds": round(run.t_train, 3),
        "fp_epochs": a.fp_epochs,
        "learn_weight_scales": a.learn_weight_scales,
        "lr": a.lr,
        "best_epoch": None if best is None else best["epoch"],
        "best_valid_metric": None if best is None else best["valid_metric"],
        "data": task.info,
        # What the float results depend on besides the arguments: the same torch (and kind of CPU) gives the
        # same bits; the thread counts do not change them (train.evaluate), recorded to show what ran.
        "threads": {"training": TRAIN_THREADS, "evaluation": run.eval_threads},
        "torch": torch.__version__,
    }
    # ptq: the PTQ of the float weights; qat: the trained model's own export (learned steps).
    qm = None if a.mode == "fp" else model.calibrate(run.calib) if a.mode == "ptq" else model.export()
    m = final_test_metrics(
        task,
        model,
        qm,
        threads=run.eval_threads,
        noise=(a.weight_noise, a.adc_noise),
        show=a.progress,
        desc=f"{a.task} {a.mode}: test set",
    )
    if qm is None:
        metrics["test_metric"] = m.pop("float_test_metric")
    metrics |= m  # a quantized mode's float_test_metric: the float weights without quantization
    if float_run is not None:
        # The float pre-training (RUN_DIR/float): its test metric is the fp baseline of this qat model.
        metrics["float_run"] = {
            "dir": "float",
            "epochs": float_run["epochs"],
            "test_metric": float_run["test_metric"],
            "train_seconds": float_run["train_seconds"],
        }
    metrics["history"] = run.history
    return metrics, qm


def _write_run_dir(
    out: Path,
    a: TrainArgs,
    cfg: LstmConfig,
    task: TaskData,
    run: _Run,
    qm: QuantizedModel | None,
    metrics: dict[str, Any],
) -> None:
    """Write the run's final files (module docstring) into ``out``, all of them or none (`atomic_output_dir`)."""
    # The same float weights without torch (sweeps re-quantize them): golden.io.load_float_model.
    from nvmlstm.golden.io import save_float_model

    with atomic_output_dir(out) as tmp:
        _torch_save_atomic(run.model.float_state(), tmp / "float_model.pt")
        save_float_model(
            run.model.float_model(),
            tmp / "float_model.npz",
            metadata={
                "task": a.task,
                "mode": a.mode,
                "metric_name": task.metric,
                "seed": a.seed,
                "input_scale": run.input_scale,
                "config": cfg.to_dict(),
            },
        )
        if qm is not None:
            meta = {
                "task": a.task,
                "mode": a.mode,
                "metric_name": task.metric,
                "test_metric": metrics["test_metric"],
                "seed": a.seed,
            }
            if task.metric == "rmse":
                meta |= {"y_scale": task.y_scale, "y_offset": task.y_offset}
            if "vocab" in task.info:
                meta["vocab"] = task.info["vocab"]
            save_model(qm, tmp / "model.npz", metadata=meta)
        write_text_atomic(tmp / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        _plot(run.history, task.metric, tmp / "curve.png", f"{a.task} {a.mode} (seed {a.seed})")


__all__ += ["exact_outputs", "golden_outputs", "TaskError"]
