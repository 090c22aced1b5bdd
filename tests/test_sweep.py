"""``nvmlstm sweep``: end to end on a local Dask cluster, worker-count independence, resume, refusals, the bad
inputs' one-line messages, and the numbers themselves (noise-free == the model's golden metric, trials differ
under noise, re-quantization and re-tiling as documented).

Models are tiny random digits models (torch-free): the mechanics, not accuracy, are under test. One cluster of
2 workers is shared by the module; the CLI path runs once, on a 1-worker cluster.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from cli_helpers import assert_error, run
from config_helpers import config_fields

from nvmlstm.golden.config import LstmConfig
from nvmlstm.golden.io import save_float_model, save_model
from nvmlstm.golden.lstm import golden_forward
from nvmlstm.golden.ptq import calibration_subset, quantize_model, random_float_model
from nvmlstm.sweep import build_spec, local_cluster, run_sweep
from nvmlstm.sweep.evaluate import CALIB_SEED, evaluate_point, trial_seed
from nvmlstm.sweep.spec import SweepError
from nvmlstm.tasks import load_task

pytest.importorskip("distributed")

TEST_SEQ = 120


def _cfg(**kw):
    return LstmConfig(**config_fields((8, 8, 1, 10), (4, 4, 4), (8, 16), **kw))


def _calib(td):
    xtr = td.train[0]
    return calibration_subset(xtr, CALIB_SEED).astype(np.float64)


@pytest.fixture(scope="module")
def td():
    return load_task("digits")


@pytest.fixture(scope="module")
def models(tmp_path_factory, td):
    """runs/ptq (model + float weights), runs/qat (model only, trained with noise), runs/fp (float only),
    runs/lm (a charlm-task model)."""
    root = tmp_path_factory.mktemp("runs")
    cfg = _cfg()
    fm = random_float_model(cfg, np.random.default_rng(1), gain=1.5)
    # calibrated on other inputs than the sweep's subset, so a re-quantization at its own width differs
    qm = quantize_model(fm, cfg, 0.5 * _calib(td)[:64], input_scale=1 / cfg.dac_max)
    fmeta = {"task": "digits", "mode": "fp", "seed": 0, "input_scale": 1 / cfg.dac_max, "config": cfg.to_dict()}
    for name, mode in (("ptq", "ptq"), ("qat", "qat"), ("lm", "qat")):
        (root / name).mkdir()
        save_model(
            qm,
            root / name / "model.npz",
            metadata={"task": "charlm" if name == "lm" else "digits", "mode": mode, "seed": 0},
        )
    save_float_model(fm, root / "ptq" / "float_model.npz", metadata=fmeta)
    (root / "qat" / "metrics.json").write_text(json.dumps({"weight_noise": 0.05, "adc_noise": 0.5}))
    (root / "fp").mkdir()
    save_float_model(fm, root / "fp" / "float_model.npz", metadata=fmeta)
    return {"root": root, "qm": qm, "fm": fm, "cfg": cfg}


@pytest.fixture(scope="module")
def client():
    with local_cluster(2) as c:
        yield c


def _spec(models, axes, trials=3, **kw):
    r = models["root"]
    return build_spec(
        task="digits",
        models=[str(r / "ptq"), str(r / "qat"), f"float={r / 'fp'}"],
        axes=axes,
        trials=trials,
        seed=5,
        test_sequences=TEST_SEQ,
        **kw,
    )


AXES = ["adc_noise=0,1", "array_rows=8,16"]
FILES = ("sweep.json", "sweep.csv", "summary.csv", "summary.json", "summary.md")


@pytest.fixture(scope="module")
def swept(models, client, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweeps") / "two"
    logs = []
    summary = run_sweep(_spec(models, AXES), out, client=client, progress=False, log=logs.append)
    return out, summary, logs


# --------------------------------------------------------------------------------------------------
def test_end_to_end_files_and_labels(swept):
    out, s, logs = swept
    assert logs == []
    for f in (
        *FILES,
        "accuracy_vs_adc_noise.png",
        "accuracy_vs_array_rows.png",
        "heatmap_ptq.png",
        "heatmap_qat-noise.png",
        "heatmap_float.png",
    ):
        assert (out / f).is_file(), f
    assert [l["label"] for l in s["labels"]] == ["ptq", "qat-noise", "float"]
    rows = (out / "sweep.csv").read_text().splitlines()
    assert rows[0] == "label,source,adc_noise,array_rows,trial,seed,accuracy,model_sha256"
    # 3 labels x (2 noise-free points x 1 trial + 2 noisy points x 3 trials)
    assert len(rows) == 1 + 3 * (2 + 6)
    src = {(p["label"], p["point"]["array_rows"]): p["source"] for p in s["points"]}
    assert src == {
        ("ptq", 8): "trained",
        ("ptq", 16): "retiled",
        ("qat-noise", 8): "trained",
        ("qat-noise", 16): "retiled",
        ("float", 8): "requantized",
        ("float", 16): "requantized",
    }
    text = (out / "summary.json").read_text() + (out / "sweep.json").read_text() + (out / "summary.md").read_text()
    assert str(out.parent) not in text and "/tmp" not in text  # no absolute paths in generated files


def test_noise_free_point_is_the_models_golden_metric(swept, models, td):
    sweep_dir, s, _ = swept
    x, y = td.test[0][:TEST_SEQ], td.test[1][:TEST_SEQ]
    qm = models["qm"]
    codes = np.clip(np.rint(x.astype(np.float64) * qm.config.dac_max), -7, 7).astype(np.int64)
    out = golden_forward(qm, codes, trace=False)["outputs"]
    acc = float(np.mean(np.argmax(out[:, -1], axis=1) == y))
    p = next(p for p in s["points"] if p["label"] == "ptq" and p["point"] == {"adc_noise": 0.0, "array_rows": 8})
    assert p["trials"] == 1 and p["std"] == 0.0 and p["mean"] == acc
    # the float baseline is float_forward of the float weights
    from nvmlstm.golden.reference import float_forward

    fo = float_forward(models["fm"], x.astype(np.float64))["outputs"]
    assert s["labels"][0]["float_metric"] == float(np.mean(np.argmax(fo[:, -1], axis=1) == y))
    assert s["labels"][1]["float_metric"] is None  # qat has no float weights beside it
    # summary.md says whose float weights the baseline is (a QAT run's own, not a float run's).
    md = (sweep_dir / "summary.md").read_text()
    assert "| float baseline (own float weights, unquantized) |" in md
    assert f"| 4/4/4, 8 | {100 * s['labels'][0]['float_metric']:.2f}% |" in md
    assert "not a separately trained float model" in md


def test_noisy_trials_differ_and_common_seeds_across_labels(swept):
    out, s, _ = swept
    rows = [r.split(",") for r in (out / "sweep.csv").read_text().splitlines()[1:]]
    noisy = [r for r in rows if r[0] == "ptq" and r[2] == "1.0" and r[3] == "8"]
    assert len(noisy) == 3 and len({r[5] for r in noisy}) == 3
    assert len({r[6] for r in noisy}) > 1  # different draws, different accuracy
    same_point_qat = [r for r in rows if r[0] == "qat-noise" and r[2] == "1.0" and r[3] == "8"]
    # ptq and qat are the same model here: the same seeds give the same draws and the same numbers
    assert [r[5:7] for r in same_point_qat] == [r[5:7] for r in noisy]
    p = next(p for p in s["points"] if p["label"] == "ptq" and p["point"] == {"adc_noise": 1.0, "array_rows": 8})
    assert p["std"] > 0 and p["min"] < p["max"]


def test_one_worker_cli_gives_byte_identical_files(swept, models, capsys, tmp_path):
    out2, _, _ = swept
    r = models["root"]
    out1 = tmp_path / "one"
    rc, so, se = run(
        capsys,
        "sweep",
        "--task",
        "digits",
        "--model",
        r / "ptq",
        "--model",
        r / "qat",
        "--model",
        f"float={r / 'fp'}",
        "--axis",
        AXES[0],
        "--axis",
        AXES[1],
        "--trials",
        3,
        "--seed",
        5,
        "--test-sequences",
        TEST_SEQ,
        "--workers",
        1,
        "--out",
        out1,
    )
    assert rc == 0, se
    assert so.splitlines()[-1].startswith(f"wrote {out1}: sweep.csv")
    # The announced job count is what the progress bar counts (points and float baselines), and its arithmetic
    # holds; the bar goes to stderr as plain lines (not a terminal), the last one at 100%.
    m = re.match(r"sweep: (\d+) label\(s\) x (\d+) point\(s\) \+ (\d+) float baseline\(s\) = (\d+) jobs, ", so)
    assert m is not None, so
    labels, points, baselines, jobs = map(int, m.groups())
    assert (labels, baselines, jobs) == (3, 2, labels * points + baselines)
    bar = [ln for ln in se.splitlines() if ln.startswith("sweep:")]
    assert bar and f"{jobs}/{jobs}" in bar[-1] and "\r" not in se, se
    for f in FILES:
        assert (out1 / f).read_bytes() == (out2 / f).read_bytes(), f
    assert sorted(p.name for p in (out1 / "points").iterdir()) == sorted(p.name for p in (out2 / "points").iterdir())


def test_resume_skips_finished_points_and_equals_uninterrupted(swept, models, client, tmp_path):
    out2, _, _ = swept
    out = tmp_path / "resumed"
    shutil.copytree(out2, out)
    pts = sorted((out / "points").iterdir())
    for f in pts[::3]:  # as if interrupted: some points never finished, no reports yet
        f.unlink()
    for f in (*FILES[1:], "accuracy_vs_adc_noise.png"):
        (out / f).unlink()
    logs = []
    run_sweep(_spec(models, AXES), out, client=client, progress=False, log=logs.append)
    n = len(pts) + 2  # the points and the float baselines of ptq and float (qat has no float weights)
    assert logs == [f"resuming {out}: {n - len(pts[::3])} of {n} results already done, skipped"]
    for f in FILES:
        assert (out / f).read_bytes() == (out2 / f).read_bytes(), f


def test_different_spec_is_refused_and_nothing_changes(swept, models, client, tmp_path):
    out2, _, _ = swept
    out = tmp_path / "other"
    shutil.copytree(out2, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(
        SweepError,
        match=rf"^{out}: holds a sweep with a different spec \(trials differs\); give a "
        r"new --out or the same arguments to resume$",
    ):
        run_sweep(_spec(models, AXES, trials=4), out, client=client, progress=False)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_array_rows_axis_retiles_the_same_codes(models, td):
    spec = _spec(models, ["array_rows=8,16"])
    recs = {(j["label"], j["point"]["array_rows"]): evaluate_point(j) for j in spec.jobs}
    assert recs[("ptq", 8)]["source"] == "trained" and recs[("ptq", 8)]["model_sha256"] == models["qm"].digest()
    assert recs[("ptq", 16)]["source"] == "retiled"
    assert recs[("ptq", 16)]["adc_steps"] != recs[("ptq", 8)]["adc_steps"]  # one tile per column: larger sums
    from nvmlstm.sweep.evaluate import point_model

    qm16, _ = point_model(next(j for j in spec.jobs if j["label"] == "ptq" and j["point"]["array_rows"] == 16))
    assert qm16.config.array_rows == 16 and np.array_equal(qm16.layers[0].weights, models["qm"].layers[0].weights)


def test_float_only_label_is_golden_ptq_on_the_documented_calibration_subset(models, td):
    spec = _spec(models, ["weight_bits=4"])
    rec = evaluate_point(next(j for j in spec.jobs if j["label"] == "float"))
    cfg = models["cfg"]
    want = quantize_model(models["fm"], cfg, _calib(td), input_scale=1 / cfg.dac_max)
    assert rec["source"] == "requantized" and rec["model_sha256"] == want.digest()
    # ... which is not the ptq label's model (calibrated on fewer sequences): the check can fail
    assert want.digest() != models["qm"].digest()


def test_bit_axis_uses_trained_widths_and_requantizes_the_others(models, td):
    spec = build_spec(
        task="digits", models=[str(models["root"] / "ptq")], axes=["weight_bits=3,4"], trials=2, test_sequences=TEST_SEQ
    )
    recs = {j["point"]["weight_bits"]: evaluate_point(j) for j in spec.jobs}
    assert recs[4]["source"] == "trained" and recs[4]["model_sha256"] == models["qm"].digest()
    assert recs[3]["source"] == "requantized"
    want = quantize_model(models["fm"], models["cfg"].replace(weight_bits=3), _calib(td), input_scale=1 / 7)
    assert recs[3]["model_sha256"] == want.digest()
    assert [len(r["trials"]) for r in recs.values()] == [1, 1]  # noise-free: one deterministic trial


def test_trial_seeds_are_stable_and_distinct():
    assert trial_seed(0, '{"adc_noise":0.5}', 0) == trial_seed(0, '{"adc_noise":0.5}', 0)
    seeds = {trial_seed(b, k, t) for b in (0, 1) for k in ('{"adc_noise":0.5}', '{"adc_noise":1.0}') for t in (0, 1)}
    assert len(seeds) == 8
    assert trial_seed(0, '{"adc_noise":0.5}', 0) == 2768458920765093437  # fixed forever: no hash(), no order


def test_default_labels_are_deduplicated(models):
    r = models["root"]
    spec = build_spec(
        task="digits", models=[str(r / "ptq"), str(r / "ptq" / "model.npz")], axes=["adc_noise=0"], trials=1
    )
    assert [l.name for l in spec.labels] == ["ptq", "ptq-2"]
    with pytest.raises(SweepError, match=r"label 'a' already has a model of the same config$"):
        build_spec(task="digits", models=[f"a={r / 'ptq'}", f"a={r / 'qat'}"], axes=["adc_noise=0"], trials=1)


# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "axis, message",
    [
        (
            "bits=4",
            r"--axis bits=4: unknown axis 'bits'; choose from weight_bits, dac_bits, adc_bits, weight_noise, "
            r"read_noise, adc_noise, stuck_rate, array_rows",
        ),
        ("adc_noise", r"--axis adc_noise: expected AXIS=V1,V2,\.\.\. \(for example adc_noise=0,0\.5,1\)"),
        ("weight_bits=4,x", r"--axis weight_bits=4,x: 'x' is not an integer"),
        ("adc_noise=0,abc", r"--axis adc_noise=0,abc: 'abc' is not a number"),
        ("weight_noise=-0.1", r"--axis weight_noise=-0\.1: weight_noise must be a finite number >= 0, not '-0\.1'"),
        ("read_noise=nan", r"--axis read_noise=nan: read_noise must be a finite number >= 0, not 'nan'"),
        (
            "stuck_rate=0,1.5",
            r"--axis stuck_rate=0,1\.5: stuck_rate is a fraction of cells and must be at most 1, "
            r"not '1\.5'",
        ),
        ("weight_bits=1,4", r"--axis weight_bits=1,4: weight_bits must be .*2.*16.*"),
        ("array_rows=1", r"--axis array_rows=1: array_rows must be .*"),
        ("adc_noise=0.5,0.50", r"--axis adc_noise=0\.5,0\.50: value 0\.50 is listed twice"),
    ],
)
def test_bad_axes_are_one_line_and_write_nothing(models, capsys, tmp_path, axis, message):
    out = tmp_path / "never"
    assert_error(
        capsys,
        ["sweep", "--task", "digits", "--model", models["root"] / "ptq", "--axis", axis, "--out", out],
        rf"nvmlstm sweep: error: {message}",
        absent=out,
    )


# Bad --model arguments (and options that only a model makes wrong), each as (id, the model under the runs
# root, further arguments, the run-root path the message starts with or None, the rest of the message).
BAD_MODELS = [
    ("other_task", "lm", ["--axis", "adc_noise=0"], "lm/model.npz", "a model of task 'charlm', but --task is 'digits'"),
    (
        "no_model_at_bits",
        "qat",
        ["--axis", "adc_bits=3,4"],
        None,
        r"label qat-noise: no model trained at \{\"adc_bits\": 3, \"array_rows\": 8, "
        r"\"dac_bits\": 4, \"weight_bits\": 4\} and no float_model\.npz beside qat/model\.npz to re-quantize",
    ),
    ("not_a_run", "nothing", ["--axis", "adc_noise=0"], "nothing", r"expected a run directory or a model \.npz file"),
    (
        "axis_twice",
        "ptq",
        ["--axis", "adc_noise=0", "--axis", "adc_noise=1"],
        None,
        r"--axis adc_noise is given twice \(give all its values in one --axis\)",
    ),
    (
        "too_many_test_sequences",
        "ptq",
        ["--axis", "adc_noise=0", "--test-sequences", 100000],
        None,
        r"--test-sequences must be from 1 to 359 \(the digits test split\), not 100000",
    ),
]


@pytest.mark.parametrize("model, args, where, message", [c[1:] for c in BAD_MODELS], ids=[c[0] for c in BAD_MODELS])
def test_bad_models_are_one_line_and_write_nothing(models, capsys, tmp_path, model, args, where, message):
    r, out = models["root"], tmp_path / "never"
    prefix = "" if where is None else f"{r / where}: "
    assert_error(
        capsys,
        ["sweep", "--task", "digits", "--out", out, "--model", r / model, *args],
        rf"nvmlstm sweep: error: {prefix}{message}",
        absent=out,
    )


def test_non_sweep_directory_is_refused(models, capsys, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    rc, so, se = run(
        capsys, "sweep", "--task", "digits", "--model", models["root"] / "ptq", "--axis", "adc_noise=0", "--out", out
    )
    assert rc == 2 and se == (
        f"nvmlstm sweep: error: {out}: directory is not empty and holds no sweep.json; give a new --out\n"
    )
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_cli_ctrl_c_is_one_line_on_stderr(models, capsys, tmp_path, monkeypatch):
    import nvmlstm.sweep as sweep_pkg
    from nvmlstm.sweep import SweepInterrupted

    def interrupted(spec, out, **kw):
        raise SweepInterrupted(f"interrupted: 0 results kept in {out}; rerun the same command to resume")

    monkeypatch.setattr(sweep_pkg, "run_sweep", interrupted)
    out = tmp_path / "stopped"
    rc, so, se = run(
        capsys, "sweep", "--task", "digits", "--model", models["root"] / "ptq", "--axis", "adc_noise=0", "--out", out
    )
    assert rc == 130
    assert so.startswith("sweep: 1 label(s) x 1 point(s) + 1 float baseline(s) = 2 jobs") and so.count("\n") == 1
    assert se == f"\nnvmlstm sweep: interrupted; finished points are kept in {out}; rerun the same command to resume\n"


def test_ctrl_c_keeps_finished_points_and_the_rerun_completes(swept, models, client, tmp_path, monkeypatch):
    import distributed

    from nvmlstm.sweep import SweepInterrupted

    real = distributed.as_completed

    def interrupted_after_one(futures):
        for i, f in enumerate(real(futures)):
            if i == 1:
                raise KeyboardInterrupt
            yield f

    out = tmp_path / "ctrlc"
    monkeypatch.setattr(distributed, "as_completed", interrupted_after_one)
    with pytest.raises(
        SweepInterrupted,
        match=rf"^interrupted: 1 results kept in {out}; rerun the same command to "
        r"resume$",
    ):
        run_sweep(_spec(models, AXES), out, client=client, progress=False)
    monkeypatch.setattr(distributed, "as_completed", real)
    assert len(list((out / "points").iterdir()) + list((out / "baselines").iterdir())) == 1
    assert not (out / "sweep.csv").exists()
    logs = []
    run_sweep(_spec(models, AXES), out, client=client, progress=False, log=logs.append)
    assert logs == [f"resuming {out}: 1 of 14 results already done, skipped"]
    for f in FILES:
        assert (out / f).read_bytes() == (swept[0] / f).read_bytes(), f
