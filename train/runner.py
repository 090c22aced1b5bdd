"""One training run: fp, ptq or (noise-aware) qat on a task, with checkpoints, resume, metrics and a curve.

Files of a run directory:

``checkpoint.pt``
    After every epoch (atomically replaced): run arguments, epoch, model (float weights and learned ADC
    steps), optimizer and scheduler state, history, the best-validation weights so far, RNG states. ``resume=True`` continues from it and ends
    with the same weights as an uninterrupted run.
``float_model.pt``
    The float weights as an ``nn.LSTM`` + ``nn.Linear`` state dict (``lstm.*``, ``head.*``): what
    ``--init-from`` reads.
``model.npz`` + ``model.json`` (quantized modes)
    The exported `golden.QuantizedModel` (`golden.io.save_model`).
``metrics.json``, ``curve.png``
    Final metrics and the training curve. The final model is the epoch with the best validation metric.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from nvmlstm.golden.config import LstmConfig
from nvmlstm.golden.io import save_model
from nvmlstm.artifacts.png import save_png
from nvmlstm.artifacts.files import atomic_output_dir, write_bytes_atomic, write_text_atomic
from nvmlstm.golden.model import QuantizedModel
from nvmlstm.golden.nvm import NonIdealities
from nvmlstm.golden.ptq import calibration_subset
from nvmlstm.golden.realio import golden_outputs, input_codes  # the one definition of both rules

from .exact import exact_forward
from .model import QuantLSTM, StateDictError
from nvmlstm.tasks import HIGHER_IS_BETTER, TaskData, TaskError, load_task, metric_from_outputs
from nvmlstm.tasks.config import task_config
from nvmlstm.tasks.generic import GENERIC_TASKS

from .loss import task_loss
from .memory import keep_freed_memory

__all__ = ["TrainArgs", "TrainError", "run_training", "MODES", "TASK_DEFAULTS", "load_float_state_file"]

MODES = ("fp", "ptq", "qat")

#: Per-task defaults: hidden size, epochs, batch size, learning rate, sequence length (the float model), and
#: the QAT recipe (docs/training.md, "The QAT recipe"): ``qat`` without --init-from first trains the float
#: model for ``fp_epochs`` epochs (a complete fp run in ``RUN_DIR/float``), then fine-tunes it quantized
#: for ``qat_epochs`` epochs at ``qat_lr`` with learned weight scales (``learn_weight_scales``).
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"hidden": 32, "epochs": 60, "batch_size": 64, "lr": 1e-2, "seq_len": 8,
               "fp_epochs": 60, "qat_epochs": 30, "qat_lr": 1e-3, "learn_weight_scales": True},
    "charlm": {"hidden": 128, "epochs": 10, "batch_size": 32, "lr": 5e-3, "seq_len": 64,
               "fp_epochs": 10, "qat_epochs": 6, "qat_lr": 2e-3, "learn_weight_scales": True},
    "timeseries": {"hidden": 32, "epochs": 60, "batch_size": 64, "lr": 5e-3, "seq_len": 24,
                   "fp_epochs": 60, "qat_epochs": 30, "qat_lr": 2e-3, "learn_weight_scales": True},
    # A user's own sequences (tasks/generic.py): the digits recipe for classification, the series' for regression.
    "classify": {"hidden": 32, "epochs": 60, "batch_size": 64, "lr": 1e-2, "seq_len": None,
                 "fp_epochs": 60, "qat_epochs": 30, "qat_lr": 1e-3, "learn_weight_scales": True},
    "regress": {"hidden": 32, "epochs": 60, "batch_size": 64, "lr": 5e-3, "seq_len": None,
                "fp_epochs": 60, "qat_epochs": 30, "qat_lr": 2e-3, "learn_weight_scales": True},
}

# Noisy golden evaluations: seeds of the NonIdealities draws averaged in metrics.json.
_NOISE_EVAL_SEEDS = (0, 1, 2)


class TrainError(ValueError):
    """A user error in a training run (bad arguments, data, checkpoint or --init-from file)."""


@dataclass
class TrainArgs:
    """Arguments of a run (the CLI's options); ``None`` means the task default (`TASK_DEFAULTS`)."""

    task: str
    mode: str
    out: str
    data: str | None = None
    weight_bits: int = 4
    dac_bits: int = 4
    adc_bits: int = 4
    head_adc_bits: int | None = None
    array_rows: int = 32
    array_cols: int = 64
    weight_noise: float = 0.0
    adc_noise: float = 0.0
    epochs: int | None = None
    seed: int = 0
    hidden: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seq_len: int | None = None
    init_from: str | None = None
    resume: bool = False
    progress: bool = True
    threads: int | None = 1
    #: qat without init_from: float pre-training epochs (0: QAT from scratch). None: the task default.
    fp_epochs: int | None = None
    #: qat: learned (LSQ) per-gate weight scales instead of max-abs ones. None: the task default.
    learn_weight_scales: bool | None = None
    #: charlm: input rows per character (its one-hot repeated). None: `nvmlstm.tasks.CHAR_REPEAT`, the
    #: loader's default, which sweeps and the flow read too.
    char_repeat: int | None = None

    def resolved(self) -> "TrainArgs":
        """The arguments with every ``None`` replaced by its task default (`TASK_DEFAULTS`).

        In ``qat`` mode ``epochs`` and ``lr`` are those of the quantized phase: ``qat_epochs`` and, when it
        starts from a float model (``init_from`` or float pre-training), ``qat_lr``.
        """
        d = TASK_DEFAULTS.get(self.task, {})
        out = dataclasses.replace(self)
        qat = self.mode == "qat"
        if out.fp_epochs is None:
            out.fp_epochs = d.get("fp_epochs", 0) if qat and self.init_from is None else 0
        if out.learn_weight_scales is None:
            out.learn_weight_scales = bool(d.get("learn_weight_scales", False)) if qat else False
        from_float = qat and (self.init_from is not None or (out.fp_epochs or 0) > 0)
        if out.epochs is None:
            out.epochs = d.get("qat_epochs", d.get("epochs")) if qat else d.get("epochs")
        if out.lr is None:
            out.lr = d.get("qat_lr", d.get("lr")) if from_float else d.get("lr")
        for k in ("hidden", "batch_size", "seq_len"):
            if getattr(out, k) is None:
                setattr(out, k, d.get(k))
        return out


# --------------------------------------------------------------------------------------------------
def _check_args(a: TrainArgs) -> None:
    if a.task not in TASK_DEFAULTS:
        raise TrainError(f"unknown task {a.task!r}; choose from {', '.join(TASK_DEFAULTS)}")
    if a.mode not in MODES:
        raise TrainError(f"unknown mode {a.mode!r}; choose from {', '.join(MODES)}")
    for k in ("weight_noise", "adc_noise"):
        v = getattr(a, k)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise TrainError(f"--{k.replace('_', '-')} must be a finite number >= 0, not {v!r}")
    if (a.weight_noise or a.adc_noise) and a.mode != "qat":
        raise TrainError("--weight-noise/--adc-noise inject noise during quantization-aware training: use "
                         "them with --mode qat")
    for k in ("epochs", "hidden", "batch_size", "seq_len", "fp_epochs"):
        v = getattr(a, k)
        if k == "seq_len" and a.task in GENERIC_TASKS:
            if v is not None:
                raise TrainError(f"--seq-len: {a.task} sequences come from the data file as they are")
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v < (0 if k in ("epochs", "fp_epochs") else 1):
            kind = " non-negative" if k in ("epochs", "fp_epochs") else " positive"
            raise TrainError(f"--{k.replace('_', '-')} must be a{kind} "
                             f"integer, not {v!r}")
    if not (isinstance(a.lr, (int, float)) and math.isfinite(a.lr) and a.lr > 0):
        raise TrainError(f"--lr must be a positive number, not {a.lr!r}")
    if a.fp_epochs and a.mode != "qat":
        raise TrainError("fp_epochs (float pre-training) belongs to --mode qat")
    if a.char_repeat is not None and a.task != "charlm":
        raise TrainError(f"--char-repeat belongs to the charlm task, not {a.task}")
    if a.fp_epochs and a.init_from is not None:
        raise TrainError("fp_epochs (float pre-training) and --init-from both give the float model; use one")


def _config(a: TrainArgs, task: TaskData) -> LstmConfig:
    from nvmlstm.golden.config import ConfigError

    try:
        return task_config(task, hidden_size=a.hidden, weight_bits=a.weight_bits, dac_bits=a.dac_bits,
                           adc_bits=a.adc_bits, head_adc_bits=a.head_adc_bits, array_rows=a.array_rows,
                           array_cols=a.array_cols)
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


# --------------------------------------------------------------------------------------------------
# Evaluation
def _batches(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


@torch.no_grad()
def _float_outputs(model: QuantLSTM, x: np.ndarray) -> np.ndarray:
    model.eval()
    was = model.quantized
    model.quantized = False
    out = np.concatenate([model(torch.from_numpy(x[s])).numpy() for s in _batches(len(x), 1024)])
    model.quantized = was
    return out.astype(np.float64)


def _warn_if_near_chance(model: QuantLSTM, task: TaskData, source: str, log: Callable[[str], None]) -> None:
    """One warning line when an imported float model scores near chance on the validation split: its inputs
    were most likely scaled differently from the task's."""
    from nvmlstm.tasks.baseline import chance_metric, near_chance

    xv, yv = task.valid
    m = metric_from_outputs(task, _float_outputs(model, xv), yv)
    if near_chance(task, m):
        log(f"warning: the float model from {source} scores {task.metric} {m:.4g} on the validation split, near "
            f"chance ({chance_metric(task):.4g}): were its inputs scaled as the task's (every task feeds values in "
            f"[-1, 1]; README, \"Bring your own model\")?")


def exact_outputs(qm: QuantizedModel, x: np.ndarray) -> np.ndarray:
    """Real outputs of the PyTorch integer evaluation path (output codes x output_scale; `exact_forward`
    bounds its own memory by evaluating in chunks of sequences)."""
    return exact_forward(qm, input_codes(qm, x)).numpy() * qm.output_scale


# --------------------------------------------------------------------------------------------------
def _rng_state() -> dict[str, Any]:
    """Every random generator's state as tensors, numbers and lists only: a checkpoint must load with
    ``torch.load(weights_only=True)``, which refuses any other object (and so cannot run code)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": [version, list(internal), gauss_next]}


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss_next = s["python"]
    random.setstate((version, tuple(internal), gauss_next))


_RESUME_KEYS = ("task", "mode", "data", "weight_bits", "dac_bits", "adc_bits", "head_adc_bits", "array_rows",
                "array_cols", "weight_noise", "adc_noise", "epochs", "seed", "hidden", "batch_size", "lr",
                "seq_len", "init_from", "fp_epochs", "learn_weight_scales", "char_repeat")


def _make_optimizer(model: QuantLSTM, a: TrainArgs, quantized: bool, steps: int):
    groups = [{"params": model.float_parameters(), "lr": a.lr}]
    if quantized:
        # log(step): Adam's update is scale-free, so the same learning rate moves a step by ~lr per update
        # relative to itself.
        groups.append({"params": model.quantizer_parameters(), "lr": a.lr})
    opt = torch.optim.Adam(groups)
    # Cosine decay to 5% over the run: the late small steps settle the weights near code boundaries.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(i, steps) / max(1, steps))))
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


def run_training(a: TrainArgs, *, log: Callable[[str], None] = print,
                 stop_after_epoch: int | None = None) -> dict[str, Any]:
    """Run (or resume) one training run and write its directory; returns the metrics dict.

    ``stop_after_epoch`` ends the run after that epoch's checkpoint, as an interruption would (tests).
    """
    a = a.resolved()
    _check_args(a)
    keep_freed_memory()  # large per-batch tensors reuse mapped memory (train/memory.py: QAT 1.37x faster)
    task = load_task(a.task, a.data, seq_len=a.seq_len if a.task != "digits" else None,
                     **({"char_repeat": a.char_repeat} if a.task == "charlm" and a.char_repeat is not None else {}))
    cfg = _config(a, task)
    out = Path(a.out)
    ckpt_path = out / "checkpoint.pt"
    init_sd = load_float_state_file(a.init_from) if a.init_from is not None else None
    float_dir = out / "float"  # the float pre-training run of qat (fp_epochs > 0)
    ckpt = None
    if a.resume and not ckpt_path.is_file() and a.fp_epochs and float_dir.is_dir():
        pass  # interrupted in (or right after) the float pre-training: it resumes below, QAT starts fresh
    elif a.resume:
        if not ckpt_path.is_file():
            raise TrainError(f"{ckpt_path}: no checkpoint to resume from")
        try:
            # weights_only: tensors, numbers, strings and containers only; a crafted file cannot run code.
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise TrainError(f"{ckpt_path}: unreadable checkpoint, or one holding objects other than tensors, "
                             f"numbers and strings ({type(exc).__name__}); start a new run") from None
        saved = ckpt.get("args", {})
        diff = [k for k in _RESUME_KEYS if saved.get(k) != getattr(a, k)]
        if diff:
            k = diff[0]
            raise TrainError(f"--resume: {k} is {getattr(a, k)!r} but the checkpoint in {out} was made with "
                             f"{saved.get(k)!r}")
    elif out.exists() and any(out.iterdir()):
        raise TrainError(f"{out}: run directory exists and is not empty (use --resume to continue it)")

    float_run = None
    if a.fp_epochs:
        # The recipe's first phase: a complete fp run (its own checkpoint, resume, files) in RUN_DIR/float,
        # at the task's float learning rate; the quantized phase then starts from its best weights.
        if not (float_dir / "metrics.json").is_file():
            fa = dataclasses.replace(a, mode="fp", out=str(float_dir), epochs=a.fp_epochs,
                                     lr=TASK_DEFAULTS[a.task]["lr"], fp_epochs=0, learn_weight_scales=False,
                                     resume=(float_dir / "checkpoint.pt").is_file(), weight_noise=0.0,
                                     adc_noise=0.0)
            log(f"float pre-training ({a.fp_epochs} epochs) in {float_dir}")
            run_training(fa, log=log)
        float_run = json.loads((float_dir / "metrics.json").read_text())
        init_sd = load_float_state_file(float_dir)
    if a.threads:
        torch.set_num_threads(a.threads)
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
        _warn_if_near_chance(model, task, a.init_from, log)

    xtr, ytr = task.train
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
    shuffle = torch.Generator().manual_seed(a.seed)
    history: list[dict] = []
    # Model selection on the validation split: the run ends with the weights of its best validation epoch
    # (the small charlm corpus overfits long before the learning rate has decayed).
    best: dict[str, Any] | None = None
    start_epoch = 0
    t_train = 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        shuffle.set_state(ckpt["shuffle_rng"])
        _set_rng_state(ckpt["rng"])
        history = ckpt["history"]
        best = ckpt["best"]
        start_epoch = ckpt["epoch"]
        t_train = ckpt.get("train_seconds", 0.0)
        log(f"resuming {out} after epoch {start_epoch}/{epochs}")
    out.mkdir(parents=True, exist_ok=True)

    def valid_metric() -> float:
        xv, yv = task.valid
        if quantized:
            return metric_from_outputs(task, exact_outputs(model.export(), xv), yv)
        return metric_from_outputs(task, _float_outputs(model, xv), yv)

    xt_all, yt_all = torch.from_numpy(xtr), torch.from_numpy(ytr)
    higher = HIGHER_IS_BETTER[task.metric]
    # One bar over the run (ETA of the whole run), showing the epoch, the running training loss and the
    # last validation metric.
    bar = _progress(epochs * n_batches, f"{a.task} {a.mode}", a.progress, initial=start_epoch * n_batches)
    last_valid = history[-1]["valid_metric"] if history else None
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(xtr), generator=shuffle)
        total, count = 0.0, 0
        for s in _batches(len(xtr), a.batch_size):
            idx = perm[s]
            xb, yb = xt_all[idx], yt_all[idx]
            loss = task_loss(task, model(xb, last_only=not task.per_step), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
            bar.update(1)
            post = {"epoch": f"{epoch + 1}/{epochs}", "loss": f"{total / count:.4f}"}
            if last_valid is not None:
                post[f"valid_{task.metric}"] = f"{last_valid:.4f}"
            bar.set_postfix(post, refresh=False)
        t_train += time.perf_counter() - t0
        vm = last_valid = valid_metric()
        history.append({"epoch": epoch + 1, "train_loss": total / count, "valid_metric": vm,
                        "seconds": time.perf_counter() - t0})
        # Ties go to the later epoch (more updates at a smaller learning rate).
        if best is None or (vm >= best["valid_metric"] if higher else vm <= best["valid_metric"]):
            best = {"epoch": epoch + 1, "valid_metric": vm,
                    "model": {k: v.detach().clone() for k, v in model.state_dict().items()}}
        _torch_save_atomic({"args": dataclasses.asdict(a), "epoch": epoch + 1, "model": model.state_dict(),
                            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                            "shuffle_rng": shuffle.get_state(), "rng": _rng_state(), "history": history, "best": best,
                            "train_seconds": t_train}, ckpt_path)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < epochs:
            bar.close()
            return {"interrupted_after_epoch": epoch + 1}
    bar.close()

    # ---- final evaluation and files
    if best is not None:
        model.load_state_dict(best["model"])
    model.eval()
    metrics: dict[str, Any] = {
        "task": a.task, "mode": a.mode, "metric_name": task.metric,
        "higher_is_better": HIGHER_IS_BETTER[task.metric],
        "seed": a.seed, "epochs": epochs, "hidden": a.hidden,
        "bits": {"weight": a.weight_bits, "dac": a.dac_bits, "adc": a.adc_bits,
                 "head_adc": cfg.head_adc_bits_eff},
        "array": [a.array_rows, a.array_cols],
        "weight_noise": a.weight_noise, "adc_noise": a.adc_noise,
        "init_from": a.init_from, "train_seconds": round(t_train, 3),
        "fp_epochs": a.fp_epochs, "learn_weight_scales": a.learn_weight_scales, "lr": a.lr,
        "best_epoch": None if best is None else best["epoch"],
        "best_valid_metric": None if best is None else best["valid_metric"],
        "data": task.info,
    }
    xte, yte = task.test
    fp_metric = metric_from_outputs(task, _float_outputs(model, xte), yte)
    qm = None
    if a.mode == "fp":
        metrics["test_metric"] = fp_metric
    else:
        # ptq: the PTQ of the float weights; qat: the trained model's own export (learned steps).
        qm = model.calibrate(calib) if a.mode == "ptq" else model.export()
        metrics["float_test_metric"] = fp_metric  # the float weights without quantization
        metrics["test_metric"] = metric_from_outputs(task, exact_outputs(qm, xte), yte)
        golden_out = golden_outputs(qm, xte)
        metrics["golden_test_metric"] = metric_from_outputs(task, golden_out, yte)
        metrics["golden_matches_torch_eval"] = bool(np.array_equal(golden_out, exact_outputs(qm, xte)))
        metrics["model_sha256"] = qm.digest()
        metrics["adc_steps"] = [lp.adc_step for lp in qm.layers] + [qm.head.adc_step]
        if a.weight_noise or a.adc_noise:
            vals = [metric_from_outputs(task, golden_outputs(qm, xte, NonIdealities(
                prog_noise=a.weight_noise, adc_noise=a.adc_noise, seed=s)), yte) for s in _NOISE_EVAL_SEEDS]
            metrics["golden_noisy_test_metric"] = float(np.mean(vals))
            metrics["golden_noisy_test_metrics"] = vals
    if float_run is not None:
        # The float pre-training (RUN_DIR/float): its test metric is the fp baseline of this qat model.
        metrics["float_run"] = {"dir": "float", "epochs": float_run["epochs"], "test_metric": float_run["test_metric"],
                                "train_seconds": float_run["train_seconds"]}
    metrics["history"] = history
    with atomic_output_dir(out) as tmp:
        _torch_save_atomic(model.float_state(), tmp / "float_model.pt")
        # The same float weights without torch (sweeps re-quantize them): golden.io.load_float_model.
        from nvmlstm.golden.io import save_float_model

        save_float_model(model.float_model(), tmp / "float_model.npz",
                         metadata={"task": a.task, "mode": a.mode, "metric_name": task.metric, "seed": a.seed,
                                   "input_scale": input_scale, "config": cfg.to_dict()})
        if qm is not None:
            meta = {"task": a.task, "mode": a.mode, "metric_name": task.metric, "test_metric": metrics["test_metric"],
                    "seed": a.seed}
            if task.metric == "rmse":
                meta |= {"y_scale": task.y_scale, "y_offset": task.y_offset}
            if "vocab" in task.info:
                meta["vocab"] = task.info["vocab"]
            save_model(qm, tmp / "model.npz", metadata=meta)
        write_text_atomic(tmp / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        _plot(history, task.metric, tmp / "curve.png", f"{a.task} {a.mode} (seed {a.seed})")
    return metrics


def _progress(total: int, desc: str, enabled: bool, initial: int = 0):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, disable=not enabled, dynamic_ncols=True,
                unit="batch")


__all__ += ["exact_outputs", "golden_outputs", "TaskError"]
