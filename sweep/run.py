"""Running a sweep on dask.distributed: one task per (label, point), results written atomically per point.

Output directory::

    DIR/sweep.json          the spec (axes, trials, seed, labels, input file hashes): what a rerun must match
    DIR/points/KEY.json     one (label, point) result, written as it finishes (atomic); a rerun skips these
    DIR/baselines/KEY.json  one label's float baseline
    DIR/sweep.csv, summary.csv, summary.json, summary.md, *.png   assembled in canonical order at the end

The numbers do not depend on the number of workers or on completion order: every trial's seed comes from
(``--seed``, the point, the trial) and the files are assembled in the order of labels and grid points.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nvmlstm.artifacts.files import write_text_atomic

from .evaluate import canonical_json, evaluate_baseline, evaluate_point
from .report import write_reports
from .spec import SweepError, SweepSpec

__all__ = ["run_sweep", "local_cluster", "SweepInterrupted"]

# BLAS/OpenMP threads of each worker process: one, so W workers use W cores (and float results do not
# depend on a thread count).
_WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C (or another stop) during a sweep: finished points are kept; the message says how to resume. A
    `KeyboardInterrupt`, so a caller that handles a stop (the ``nvmlstm`` command, the flow) handles this one."""


@contextlib.contextmanager
def local_cluster(workers: int):
    """A `distributed.Client` on a new ``LocalCluster`` of ``workers`` single-threaded processes."""
    import logging

    import dask
    from distributed import Client, LocalCluster

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    # Dask's default MALLOC_TRIM_THRESHOLD_=65536 makes glibc return freed memory to the system at once; the
    # golden model allocates and frees large temporaries every timestep, so each one page-faults again:
    # measured 2.5x slower per trial (docs/performance.md, "Sweep speed"). The workers keep glibc's default.
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    env.update(_WORKER_ENV)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        # No dashboard; the scheduler's small HTTP server (always started) on a free port, not 8787, so
        # several sweeps (or a user's own cluster) can run side by side.
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": ":0"},
            silence_logs=logging.ERROR,
            preload=[__name__],  # `dask_setup` in each worker process
        )
    try:
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def dask_setup(worker: Any) -> None:
    """Dask's preload hook, run in each worker process of `local_cluster`: ignore SIGINT.

    The workers are in the command's process group, so Ctrl-C reaches each of them as well as the command; the
    command stops them itself (it cancels the jobs and closes the cluster), while a worker left to Python's
    default would print a KeyboardInterrupt traceback of its own: one line per stop, not one per worker.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _check_dir(out: Path, spec: SweepSpec) -> dict[str, dict]:
    """Check ``out`` without writing; returns the results already there (resume)."""
    spec_text = canonical_json(spec.doc)
    done: dict[str, dict] = {}
    if out.exists():
        if not out.is_dir():
            raise SweepError(f"{out}: exists and is not a directory")
        if any(out.iterdir()):
            sj = out / "sweep.json"
            if not sj.is_file():
                raise SweepError(f"{out}: directory is not empty and holds no sweep.json; give a new --out")
            try:
                old = json.loads(sj.read_text(encoding="utf-8"))
            except ValueError:
                raise SweepError(f"{sj}: not valid JSON; give a new --out") from None
            if old != json.loads(spec_text):
                diff = next((k for k in sorted(set(old) | set(spec.doc)) if old.get(k) != spec.doc.get(k)), "?")
                raise SweepError(
                    f"{out}: holds a sweep with a different spec ({diff} differs); give a new --out "
                    f"or the same arguments to resume"
                )
            for sub in ("points", "baselines"):
                for f in sorted((out / sub).glob("*.json")) if (out / sub).is_dir() else []:
                    try:
                        rec = json.loads(f.read_text(encoding="utf-8"))
                    except ValueError:
                        continue  # a file is only ever written whole; an unreadable one is redone
                    if isinstance(rec, dict) and rec.get("key") == f.name:
                        done[f"{sub}/{f.name}"] = rec
    return done


def _create_dir(out: Path, spec: SweepSpec) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("points", "baselines"):
        (out / sub).mkdir(exist_ok=True)
    write_text_atomic(out / "sweep.json", canonical_json(spec.doc))


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Run every (label, point) of ``spec`` not already in ``out`` and write the reports; returns summary.json.

    Exactly one of ``client`` (an existing `distributed.Client`), ``scheduler`` (an address) or ``workers``
    (a new local cluster; default ``os.cpu_count()``) is used, in that order.
    """
    out = Path(out)
    done = _check_dir(out, spec)
    tasks = [("points", j, evaluate_point) for j in spec.jobs] + [
        ("baselines", j, evaluate_baseline) for j in spec.baseline_jobs
    ]
    todo = [(sub, j, fn) for sub, j, fn in tasks if f"{sub}/{j['key']}" not in done]
    n_done = len(tasks) - len(todo)
    if n_done:
        log(f"resuming {out}: {n_done} of {len(tasks)} results already done, skipped")
    if not todo:
        _create_dir(out, spec)
    elif client is not None:
        _create_dir(out, spec)
        _compute(client, todo, out, done, progress, n_done)
    elif scheduler is not None:
        from distributed import Client

        try:  # connected before the directory is made: a wrong address leaves nothing behind
            c = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise SweepError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        try:
            _create_dir(out, spec)
            _compute(c, todo, out, done, progress, n_done)
        finally:
            c.close()
    else:
        with local_cluster(workers or os.cpu_count() or 1) as c:
            _create_dir(out, spec)
            _compute(c, todo, out, done, progress, n_done)
    results = {k: v for k, v in done.items()}
    return write_reports(spec, out, results)


def _compute(client: Any, todo: list, out: Path, done: dict, progress: bool, n_done: int) -> None:
    from distributed import as_completed

    from nvmlstm.artifacts.progress import progress as progress_bar

    futures = {}
    for sub, job, fn in todo:
        fut = client.submit(fn, job, key=f"{sub}-{job['key'][:-5]}-{id(todo)}", pure=False)
        futures[fut] = (sub, job)
    # Counts every job of the sweep (points and float baselines, as `nvmlstm sweep` announces them), a resumed
    # run starting at those already done; a line per interval rather than redraws when stderr is a log file.
    bar = progress_bar(n_done + len(futures), "sweep", unit="job", enabled=progress, initial=n_done)
    try:
        for fut in as_completed(futures):
            sub, job = futures[fut]
            rec = fut.result()
            write_text_atomic(out / sub / job["key"], canonical_json(rec))
            done[f"{sub}/{job['key']}"] = rec
            bar.update(1)
    except KeyboardInterrupt:
        for f in futures:
            f.cancel()
        raise SweepInterrupted(
            f"interrupted: {len(done)} results kept in {out}; rerun the same command to resume"
        ) from None
    finally:
        bar.close()
