"""Without PyTorch (it is not a dependency of the package): ``nvmlstm train`` is one line saying how to install
it, exit status 2, and the training tests are collected and skipped instead of erroring.

A missing torch is simulated in a subprocess with ``sys.modules["torch"] = None`` (every ``import torch``
then raises ``ModuleNotFoundError``), so these tests run whether torch is installed or not.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

WITHOUT_TORCH = "import sys\nsys.modules['torch'] = None\n"


def _run(code: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH + code, *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_train_without_torch_is_one_line_with_the_install_command(tmp_path):
    out = tmp_path / "run"
    res = _run(
        "from nvmlstm.cli import main\nsys.exit(main(sys.argv[1:]))\n",
        "train",
        "--task",
        "digits",
        "--mode",
        "qat",
        "--out",
        str(out),
    )
    assert res.returncode == 2, res.stderr
    assert res.stdout == ""
    assert res.stderr == (
        "nvmlstm train: error: PyTorch is not installed; install the CPU build it is tested "
        "with: pip install torch==2.13.0\n"
    )
    assert not out.exists()
    # The other subcommands do not need torch: the same interpreter runs `golden` (it can tell the two apart).
    res = _run(
        "from nvmlstm.cli import main\nsys.exit(main(sys.argv[1:]))\n",
        "golden",
        "--config",
        str(tmp_path / "missing.json"),
        "--random-weights",
        "--out",
        str(out),
    )
    assert res.returncode == 2 and "PyTorch" not in res.stderr and "missing.json" in res.stderr, res.stderr


def test_training_tests_are_skipped_without_torch():
    files = sorted(
        str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_train_*.py") if p.name != Path(__file__).name
    )
    assert len(files) >= 3, files
    res = _run("import pytest\nsys.exit(pytest.main(sys.argv[1:]))\n", "-q", "-p", "no:cacheprovider", "-rs", *files)
    # Module-level skips leave no test items: exit status 5 ("no tests collected"), not 2 (collection errors).
    assert res.returncode == 5, res.stdout + res.stderr
    assert f"{len(files)} skipped" in res.stdout, res.stdout
    assert "could not import 'torch'" in res.stdout, res.stdout
    assert "error" not in res.stdout.lower(), res.stdout


def test_tasks_load_and_score_without_torch():
    # Sweeps and the flow read the task data and score outputs with nvmlstm.tasks, which must not need torch.
    res = _run(
        "import numpy as np\nfrom nvmlstm.tasks import load_task, metric_from_outputs\n"
        "from nvmlstm.tasks import SMALL_DATA\n"
        "t = load_task('charlm', SMALL_DATA['charlm'])\nx, y = t.test\n"
        "print(round(metric_from_outputs(t, np.zeros(x.shape[:2] + (t.output_size,)), y), 6), "
        "round(float(np.log2(t.output_size)), 6))\n"
    )
    assert res.returncode == 0, res.stderr
    uniform, expected = res.stdout.split()
    assert uniform == expected  # uniform outputs: log2(V) bits per character


def test_sweeps_and_the_flow_module_import_without_torch():
    # The sweep runs the golden model only; the flow module imports torch only inside its training stages.
    res = _run("import nvmlstm.sweep, nvmlstm.sweep.run, nvmlstm.sweep.evaluate, nvmlstm.flow\nprint('ok')\n")
    assert (res.returncode, res.stdout) == (0, "ok\n"), res.stderr


def test_the_flow_without_torch_skips_training_and_what_needs_it(tmp_path):
    import json

    out = tmp_path / "flow"
    # timeseries: scikit-learn (digits) inspects sys.modules["torch"] itself and breaks on the simulated absence.
    res = _run(
        "from nvmlstm.cli import main\nsys.exit(main(sys.argv[1:]))\n",
        "flow",
        "--task",
        "timeseries",
        "--no-progress",
        "--out",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["skipped"]["train_fp"] == "PyTorch is not installed: pip install torch==2.13.0"
    assert rep["skipped"]["train_qat"] == "needs train_fp" and rep["skipped"]["golden"] == "needs train_qat"
    assert rep["rtl_bit_exact"] is False and rep["simulators"] == [] and rep["values_compared"] == 0
    assert rep["gate_level_bit_exact"] is None
