#!/usr/bin/env python3
"""Wall time of CI as it runs: ``CI=true bash .ci/run`` in a fresh clone, with an empty simulator build cache.

Target (issue "Code health"): a fresh-clone ``.ci/run`` under 12 minutes on the 2-core machine, no check dropped.

    python3 benchmarks/ci_time.py                        # HEAD of this repository
    python3 benchmarks/ci_time.py --rev 0ba4925 --json runs/bench/ci_time_before.json

The clone is made with ``git clone`` into a temporary directory (``--rev`` checks out that commit), so nothing
of this working tree (its .venv, caches, untracked files) is used; what the machine already has is (system
packages, pip's download cache), as on CI's machine. The simulator build cache is a new empty directory
(``NVMLSTM_SIM_CACHE``), because a warm one hides the Verilator and Icarus builds that a new machine pays for.
Reported: the whole wall time, pytest's own closing line (tests passed, failed, skipped and its seconds), and
the rest (venv set-up, lint) as the difference. Run it with nothing else on the machine: a second job on
one of the two cores slows the parallel test run by about as much as it takes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 12 * 60
#: pytest's closing line, e.g. "887 passed, 1 warning in 834.67s (0:13:54)".
SUMMARY = re.compile(r"^=*\s*(?P<counts>\d+ passed[^\n]*?) in (?P<seconds>[\d.]+)s\b", re.M)


def _count(counts: str, word: str) -> int:
    m = re.search(rf"(\d+) {word}", counts)
    return int(m.group(1)) if m else 0


def measure(rev: str, keep_log: Path | None) -> dict:
    """Clone ``rev``, run its CI entry point, and return the measurement (raises on a failed run)."""
    with tempfile.TemporaryDirectory(prefix="nvmlstm-ci-time-") as tmp:
        clone = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", rev], check=True)
        commit = subprocess.run(
            ["git", "-C", str(clone), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
        ).stdout.strip()
        env = dict(os.environ, CI="true", NVMLSTM_SIM_CACHE=str(Path(tmp) / "sim-cache"))
        t0 = time.monotonic()
        res = subprocess.run(
            ["bash", ".ci/run"],
            cwd=clone,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wall = time.monotonic() - t0
        if keep_log is not None:
            keep_log.parent.mkdir(parents=True, exist_ok=True)
            keep_log.write_text(res.stdout)
    m = SUMMARY.search(res.stdout)
    if res.returncode != 0 or m is None:
        tail = "\n".join(res.stdout.splitlines()[-15:])
        raise SystemExit(f"ci_time: .ci/run of {rev} exited {res.returncode}; last lines:\n{tail}")
    counts, tests_s = m.group("counts"), float(m.group("seconds"))
    return {
        "rev": rev,
        "commit": commit,
        "wall_s": round(wall, 1),
        "pytest_s": tests_s,
        "setup_and_lint_s": round(wall - tests_s, 1),
        "passed": _count(counts, "passed"),
        "failed": _count(counts, "failed"),
        "skipped": _count(counts, "skipped"),
        "target_s": TARGET_S,
        "target_met": wall < TARGET_S,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", default="HEAD", help="commit to measure (default HEAD)")
    ap.add_argument("--json", type=Path, default=ROOT / "runs" / "bench" / "ci_time.json", help="output JSON")
    ap.add_argument("--log", type=Path, help="also keep the whole .ci/run output here")
    args = ap.parse_args(argv)
    if shutil.which("git") is None:
        print("ci_time: git is needed (apt-get install -y git)", file=sys.stderr)
        return 2
    doc = measure(args.rev, args.log)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_name(f".{args.json.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, args.json)  # whole or not at all (not nvmlstm.artifacts: this script needs no installed package)
    print(
        f"{doc['rev']} ({doc['commit'][:10]}): {doc['wall_s']:.0f} s wall, pytest {doc['pytest_s']:.0f} s "
        f"({doc['passed']} passed, {doc['failed']} failed, {doc['skipped']} skipped), set-up and lint "
        f"{doc['setup_and_lint_s']:.0f} s; target {TARGET_S} s: {'met' if doc['target_met'] else 'missed'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
