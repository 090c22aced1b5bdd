#!/usr/bin/env python3
"""Wall time of the default cocotb regression and simulated cycles per second on Icarus and Verilator.

Two measurements:

1. Per case and simulator (the cases of `sim.cases.REGRESSION_CASES`, their stress settings): vector and
   RTL generation time, build time with an empty build cache (cold), simulation time, simulated cycles
   and cycles per second, then the same run again with the builds cached (warm).
2. The default regression as CI runs it, ``pytest -q tests/test_regression.py`` with
   ``NVMLSTM_REQUIRE_SIMS=icarus,verilator``, once with an empty build cache and once warm (skip with
   ``--no-pytest``).

    .venv/bin/python benchmarks/regression_speed.py            # table, runs/bench/regression_speed.json

"cycles/s (in sim)" is simulated clock cycles over the testbench's own wall time (from its start inside
the simulator to its report); "cycles/s (run)" divides by the whole run including simulator start-up,
Python start-up inside the simulator and loading the vectors. Exit status 1 if any run is not bit exact.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nvmlstm.sim import SIMULATORS, find_simulator, run_regression
from nvmlstm.sim.cases import REGRESSION_CASES

#: The repository (outputs go to its runs/ and docs/); the package comes from the environment, not from here.
ROOT = Path(__file__).resolve().parent.parent


def measure_cases(work: Path, sims: list[str]) -> list[dict]:
    rows = []
    cache = work / "cache"
    for case in REGRESSION_CASES:
        t0 = time.monotonic()
        model = case.write_vectors(work / case.name / "vectors")
        t_vec = time.monotonic() - t0
        t0 = time.monotonic()
        case.write_rtl(work / case.name / "rtl", model)
        t_gen = time.monotonic() - t0
        rtl, vec = work / case.name / "rtl", work / case.name / "vectors"
        for sim in sims:
            runs = {}
            for phase in ("cold", "warm"):
                t0 = time.monotonic()
                rep = run_regression(rtl, vec, sim, stress=case.stress, cache=cache, waves=False)
                runs[phase] = (time.monotonic() - t0, rep)
            cold_s, cold = runs["cold"]
            warm_s, warm = runs["warm"]
            cyc = warm["cycles"]["simulated"]
            rows.append(
                {
                    "case": case.id,
                    "simulator": sim,
                    "bit_exact": cold["bit_exact"] and warm["bit_exact"],
                    "vectors_s": round(t_vec, 2),
                    "generate_s": round(t_gen, 2),
                    "build_s": cold["build"]["seconds"],
                    "cold_run_s": round(cold_s, 2),
                    "warm_run_s": round(warm_s, 2),
                    "sim_s": warm["sim_seconds"],
                    "tb_s": warm["sim_wall_seconds"],
                    "cycles": cyc,
                    "programming_writes": warm["cycles"]["programming_writes"],
                    "values_compared": warm["values_compared"],
                    "cycles_per_s_in_sim": round(cyc / warm["sim_wall_seconds"]),
                    "cycles_per_s_run": round(cyc / warm["sim_seconds"]),
                }
            )
            r = rows[-1]
            print(
                f"{case.name:10s} {sim:9s} build {r['build_s']:6.1f} s  sim {r['sim_s']:5.2f} s  "
                f"{cyc:6d} cycles  {r['cycles_per_s_in_sim']:7d} cyc/s in sim  "
                f"{'bit exact' if r['bit_exact'] else 'MISMATCH'}",
                flush=True,
            )
    return rows


def time_pytest(cache: Path) -> tuple[float, int, str]:
    env = dict(os.environ, NVMLSTM_SIM_CACHE=str(cache), NVMLSTM_REQUIRE_SIMS="icarus,verilator")
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_regression.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    last = (p.stdout.strip().splitlines() or [""])[-1]
    return time.monotonic() - t0, p.returncode, last


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "regression_speed.json")
    ap.add_argument("--no-pytest", action="store_true", help="skip timing the pytest command")
    args = ap.parse_args()
    sims = [s for s in SIMULATORS]
    versions = {s: find_simulator(s).version_text for s in sims}
    with tempfile.TemporaryDirectory(prefix="nvmlstm-bench-") as tmp:
        work = Path(tmp)
        rows = measure_cases(work, sims)
        result = {
            "cases": rows,
            "simulators": versions,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
        }
        for sim in sims:
            mine = [r for r in rows if r["simulator"] == sim]
            cyc = sum(r["cycles"] for r in mine)
            result[f"{sim}_total"] = {
                "build_s": round(sum(r["build_s"] for r in mine), 1),
                "sim_s": round(sum(r["sim_s"] for r in mine), 1),
                "cycles": cyc,
                "cycles_per_s_in_sim": round(cyc / sum(r["tb_s"] for r in mine)),
                "cycles_per_s_run": round(cyc / sum(r["sim_s"] for r in mine)),
            }
        result["generate_s"] = round(
            sum(r["generate_s"] + r["vectors_s"] for r in rows if r["simulator"] == sims[0]), 1
        )
        if not args.no_pytest:
            cold, rc_c, last_c = time_pytest(work / "pytest-cache")
            warm, rc_w, last_w = time_pytest(work / "pytest-cache")
            result["pytest"] = {
                "cold_s": round(cold, 1),
                "warm_s": round(warm, 1),
                "cold_result": last_c,
                "warm_result": last_w,
                "ok": rc_c == 0 and rc_w == 0,
            }
            print(f"pytest tests/test_regression.py: cold cache {cold:.0f} s ({last_c}), warm {warm:.0f} s ({last_w})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for sim in sims:
        t = result[f"{sim}_total"]
        print(
            f"{sim}: builds {t['build_s']} s, simulations {t['sim_s']} s, {t['cycles']} cycles, "
            f"{t['cycles_per_s_in_sim']} cycles/s in sim, {t['cycles_per_s_run']} cycles/s per run"
        )
    print(f"wrote {args.out}")
    ok = all(r["bit_exact"] for r in rows) and result.get("pytest", {}).get("ok", True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
