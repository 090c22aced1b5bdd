"""``nvmlstm train --resume`` reads the checkpoint with ``torch.load(weights_only=True)``: a crafted run
directory cannot execute code, and a genuine checkpoint (random generator states included) still resumes."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from cli_helpers import run  # noqa: E402
from config_helpers import digits_resume_argv  # noqa: E402


class _Payload:
    """Unpickling this writes a file: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_a_crafted_checkpoint_is_refused_without_running_it(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    marker = tmp_path / "marker"
    with open(run_dir / "checkpoint.pt", "wb") as f:
        pickle.dump({"args": {}, "evil": _Payload(marker)}, f)
    # The payload works when unpickled without restrictions (so the test can fail) ...
    pickle.loads(pickle.dumps(_Payload(tmp_path / "proof")))
    assert (tmp_path / "proof").read_text() == "pwned"
    # ... but --resume never runs it.
    rc, out, err = run(capsys, *digits_resume_argv(4, run_dir))
    assert rc == 2
    assert err.startswith(
        f"nvmlstm train: error: {run_dir / 'checkpoint.pt'}: unreadable checkpoint, or one "
        f"holding objects other than tensors"
    )
    assert err.count("\n") == 1
    assert not marker.exists()


def test_a_genuine_checkpoint_loads_with_weights_only_and_resumes_exactly(tmp_path):
    from nvmlstm.train.runner import TrainArgs, run_training

    common = dict(task="digits", mode="fp", epochs=3, hidden=4, progress=False)
    full = run_training(TrainArgs(out=str(tmp_path / "full"), **common), log=lambda s: None)
    part = tmp_path / "part"
    assert run_training(TrainArgs(out=str(part), **common), log=lambda s: None, stop_after_epoch=1) == {
        "interrupted_after_epoch": 1
    }
    torch.load(part / "checkpoint.pt", map_location="cpu", weights_only=True)  # no error
    resumed = run_training(TrainArgs(out=str(part), resume=True, **common), log=lambda s: None)
    assert resumed["test_metric"] == full["test_metric"]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in full["history"]]
