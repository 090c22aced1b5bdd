"""train.model / train.recurrence / train.exact: the quantized forward is the contract, gradients are the STE.

Equalities between integer paths are exact (==). The one float comparison (hand-written backward vs the
same STE written with autograd) has a stated relative bound.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # torch is optional: without it these tests are skipped

from train_reference import reference_recurrence  # noqa: E402

from nvmlstm.golden.config import default_config  # noqa: E402
from nvmlstm.golden.lstm import golden_forward  # noqa: E402
from nvmlstm.golden.ptq import random_model  # noqa: E402
from nvmlstm.golden.reference import float_forward  # noqa: E402
from nvmlstm.train.exact import exact_forward, tile_matrix  # noqa: E402
from nvmlstm.train.model import QuantLSTM, StateDictError  # noqa: E402
from nvmlstm.train.ops import round_half_away, ste, tables  # noqa: E402
from nvmlstm.train.recurrence import QuantRecurrence  # noqa: E402

# Configs that move every boundary of the contract: several row tiles, two layers, no shift rounding term
# (scale_shift 0), tanh(c) indexed without a shift (lut_frac == frac_bits), other widths.
CONFIGS = {
    "default": default_config(),
    "two_layers_small_tiles": default_config().replace(num_layers=2, hidden_size=12, array_rows=8),
    "no_shift_rounding": default_config().replace(scale_shift=0, scale_bits=8),
    "lut_frac_eq_frac": default_config().replace(lut_frac=7, frac_bits=7),
    "wide": default_config().replace(
        weight_bits=6,
        dac_bits=5,
        adc_bits=6,
        head_adc_bits=8,
        cell_bits=14,
        frac_bits=9,
        lut_bits=10,
        lut_frac=6,
        hidden_size=16,
    ),
    # 5 row tiles of input rows only (converted before the recurrence, `recurrence.InputTiles`).
    "many_input_tiles": default_config().replace(input_size=42, hidden_size=12, array_rows=8),
}


def _codes(cfg, seed, S=40, T=9):
    return np.random.default_rng(seed).integers(-cfg.dac_max, cfg.dac_max + 1, (S, T, cfg.input_size))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_exact_forward_equals_golden_on_random_models(name):
    cfg = CONFIGS[name]
    x = _codes(cfg, 1)
    qm, _ = random_model(cfg, 7, x)
    want = golden_forward(qm, x, trace=False)
    got, h = exact_forward(qm, x, return_h=True)
    assert np.array_equal(got.numpy(), want["outputs"])
    assert np.array_equal(h.numpy(), want["h"])


def test_exact_forward_in_chunks_of_sequences_equals_golden(monkeypatch):
    # exact_forward evaluates a large split in chunks of sequences (bounded memory): forced to chunks of 1
    # and of 7 sequences, outputs and h equal golden's.
    from nvmlstm.train import exact

    cfg = CONFIGS["two_layers_small_tiles"]
    x = _codes(cfg, 2, S=23)
    qm, _ = random_model(cfg, 5, x)
    want = golden_forward(qm, x, trace=False)
    per_seq = x.shape[1] * 4 * cfg.layer_cols * 8  # 4 row tiles in the larger layer
    for seqs in (1, 7):
        monkeypatch.setattr(exact, "_CHUNK_BYTES", seqs * per_seq)
        got, h = exact_forward(qm, x, return_h=True)
        assert np.array_equal(got.numpy(), want["outputs"]) and np.array_equal(h.numpy(), want["h"])


def test_round_half_away_ties_and_near_ties():
    v = torch.tensor(
        [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999999999999994, -0.49999999999999994, 3.0], dtype=torch.float64
    )
    assert round_half_away(v).tolist() == [-3, -2, -1, 1, 2, 3, 0, 0, 3]


def _trained_like(cfg, seed=0):
    """A QuantLSTM with PyTorch-initialized weights scaled up (so gates and cell saturate), calibrated."""
    torch.manual_seed(seed)
    m = QuantLSTM(cfg, 1.0 / cfg.dac_max)
    with torch.no_grad():
        for p in m.lstm.parameters():
            p.mul_(3.0)
    x = torch.rand(64, 10, cfg.input_size) * 2 - 1
    m.calibrate(x.numpy())
    m.quantized = True
    return m, x


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_training_forward_computes_the_exported_integers(name):
    # The training-mode forward (float32, STE, noise off) gives the same output codes as the exact
    # evaluation of the exported model and as golden: training optimizes what the chip computes.
    m, x = _trained_like(CONFIGS[name])
    m.train()
    fake = m.forward_codes(x, fake_quant=True)
    exact = m.forward_codes(x)
    qm = m.export()
    gold = golden_forward(qm, m.input_codes(x.double()).numpy().astype(np.int64), trace=False)["outputs"]
    assert torch.equal(fake.double(), exact)
    assert np.array_equal(exact.numpy(), gold)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("noise", ["table_adc", "formula_adc", "adc_noise"])
@pytest.mark.parametrize("name", ["default", "two_layers_small_tiles", "lut_frac_eq_frac"])
def test_hand_written_backward_equals_autograd_ste(name, noise, dtype):
    cfg = CONFIGS[name]
    m, x = _trained_like(cfg, seed=3)
    layers, _ = m.quant_params()
    p = layers[0]
    n, H = cfg.input_size, cfg.hidden_size
    wt = tile_matrix(p["codes"].detach(), cfg.array_rows).to(dtype)
    T, B = x.shape[1], x.shape[0]
    R = wt.shape[1] // (4 * H)
    xc = m.input_codes(x).transpose(0, 1).reshape(T * B, n).to(dtype)
    pre = (xc @ wt[:n] + cfg.dac_max * wt[n + H]).view(T, B, R, 4 * H)
    ins = [pre, wt[n : n + H], p["step"].detach().to(dtype), p["gate_scale"].detach().to(dtype)]
    ins = [t.clone().requires_grad_() for t in ins]
    # The ADC is a table lookup for exact integer dot products, the formula otherwise (noisy weights
    # or ADC noise): both must give the reference gradients.
    noisy = noise == "adc_noise"
    nz = torch.randn(T, B, R, 4 * H, generator=torch.Generator().manual_seed(1), dtype=dtype) * 0.4 if noisy else None
    tab = tables(cfg, dtype)
    w = torch.randn(T, B, H, generator=torch.Generator().manual_seed(2), dtype=dtype)
    pmax = min(cfg.array_rows, n + H + 1) * cfg.weight_max * cfg.dac_max if noise == "table_adc" else None
    h1 = QuantRecurrence.apply(*ins, nz, pmax, m._consts, tab)
    g1 = torch.autograd.grad((h1 * w).sum(), ins)
    h2 = reference_recurrence(*ins[:3], ins[3].repeat_interleave(H), nz, m._consts, tab)
    g2 = torch.autograd.grad((h2 * w).sum(), ins)
    assert torch.equal(h1, h2)
    # Same math in another summation order: relative difference at the rounding level of the dtype.
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for a, b in zip(g1, g2):
        assert float((a - b).abs().max()) <= tol * max(1.0, float(b.abs().max()))
        assert float(b.abs().max()) > 0


@pytest.mark.parametrize("name", ["default", "two_layers_small_tiles", "lut_frac_eq_frac", "wide"])
def test_native_kernel_equals_the_torch_recurrence(name, monkeypatch):
    # train/ckernel.py is a second implementation of the per-timestep work (float32, table ADC). The tests
    # above run it whenever a C compiler is available; here it must also agree with the torch loop it
    # replaces: h bit for bit, gradients at float32 rounding level (other summation order).
    from nvmlstm.train import ckernel

    if ckernel.load() is None:
        pytest.skip("native kernel unavailable (no C compiler or NVMLSTM_NO_CKERNEL=1)")
    cfg = CONFIGS[name]
    m, x = _trained_like(cfg, seed=4)
    p = m.quant_params()[0][0]
    n, H = cfg.input_size, cfg.hidden_size
    wt = tile_matrix(p["codes"].detach(), cfg.array_rows)
    T, B = x.shape[1], x.shape[0]
    R = wt.shape[1] // (4 * H)
    xc = m.input_codes(x).transpose(0, 1).reshape(T * B, n)
    pre = (xc @ wt[:n] + cfg.dac_max * wt[n + H]).view(T, B, R, 4 * H)
    pmax = min(cfg.array_rows, n + H + 1) * cfg.weight_max * cfg.dac_max
    w = torch.randn(T, B, H, generator=torch.Generator().manual_seed(2))
    outs = []
    for native in (True, False):
        monkeypatch.setattr(ckernel, "load", (lambda lib: lambda: lib)(ckernel.load() if native else None))
        ins = [t.clone().requires_grad_() for t in (pre, wt[n : n + H], p["step"].detach(), p["gate_scale"].detach())]
        h = QuantRecurrence.apply(*ins, None, pmax, m._consts, tables(cfg))
        outs.append((h, torch.autograd.grad((h * w).sum(), ins)))
    (h1, g1), (h2, g2) = outs
    assert torch.equal(h1, h2)
    for a, b in zip(g1, g2):
        assert float((a - b).abs().max()) <= 1e-5 * max(1.0, float(b.abs().max()))


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("name", ["default", "two_layers_small_tiles", "wide"])
def test_segmented_gemm_equals_the_tiled_matrix(name, native, monkeypatch):
    # The training forward multiplies h by the compact recurrent rows per row-tile segment
    # (train.exact.tile_segments) instead of the zero-padded tile_matrix: h must be bit-identical and the
    # gradients equal (the compact weight gradient is the tiled one's nonzero blocks).
    from nvmlstm.train import ckernel
    from nvmlstm.train.exact import tile_segments, tiled_inputs

    if native and ckernel.load() is None:
        pytest.skip("native kernel unavailable (no C compiler or NVMLSTM_NO_CKERNEL=1)")
    lib = ckernel.load() if native else None
    monkeypatch.setattr(ckernel, "load", lambda: lib)
    cfg = CONFIGS[name]
    m, x = _trained_like(cfg, seed=5)
    codes = m.quant_params()[0][0]["codes"].detach()
    n, H = cfg.input_size, cfg.hidden_size
    K, N = n + H + 1, 4 * H
    wt = tile_matrix(codes, cfg.array_rows)
    T, B = x.shape[1], x.shape[0]
    R = wt.shape[1] // N
    xc = m.input_codes(x).transpose(0, 1).reshape(T * B, n)
    pre_tiled = (xc @ wt[:n] + cfg.dac_max * wt[n + H]).view(T, B, R, N)
    pre_seg = tiled_inputs(xc, codes.t()[:n], cfg.dac_max * codes.t()[n + H], K, cfg.array_rows).view(T, B, R, N)
    assert torch.equal(pre_seg, pre_tiled)
    hseg = tile_segments(K, cfg.array_rows, n, n + H)
    assert sum(b - a for _, a, b in hseg) == H
    pmax = min(cfg.array_rows, K) * cfg.weight_max * cfg.dac_max
    w = torch.randn(T, B, H, generator=torch.Generator().manual_seed(2))
    step, gs = m.quant_params()[0][0]["step"].detach(), m.quant_params()[0][0]["gate_scale"].detach()
    a = [t.clone().requires_grad_() for t in (pre_tiled, wt[n : n + H], step, gs)]
    h1 = QuantRecurrence.apply(*a, None, pmax, m._consts, tables(cfg))
    g1 = torch.autograd.grad((h1 * w).sum(), a)
    b = [t.clone().requires_grad_() for t in (pre_tiled, codes.t()[n : n + H], step, gs)]
    h2 = QuantRecurrence.apply(*b, None, pmax, m._consts, tables(cfg), hseg)
    g2 = torch.autograd.grad((h2 * w).sum(), b)
    assert torch.equal(h1, h2)
    dwh_tiled = g1[1].view(H, R, N)
    for r, lo, hi in hseg:
        assert float((g2[1][lo:hi] - dwh_tiled[lo:hi, r]).abs().max()) <= 1e-5 * max(1.0, float(dwh_tiled.abs().max()))
    for i in (0, 2, 3):
        assert float((g1[i] - g2[i]).abs().max()) <= 1e-5 * max(1.0, float(g1[i].abs().max()))
    assert float(g2[1].abs().max()) > 0


def _same_training_step(m, x, attr: str, tol: float) -> None:
    """``m`` with ``attr`` True and then False: the same output codes and outputs, gradients within ``tol``
    (relative to the largest)."""
    res = []
    for value in (True, False):
        setattr(m, attr, value)
        m.zero_grad()
        out = m(x)
        out.square().mean().backward()
        res.append(
            (
                m.forward_codes(x, fake_quant=True),
                out.detach(),
                [q.grad.clone() for q in m.parameters() if q.grad is not None],
            )
        )
    (c1, o1, g1), (c2, o2, g2) = res
    assert torch.equal(c1, c2) and torch.equal(o1, o2)
    assert len(g1) == len(g2) > 0
    for a, b in zip(g1, g2):
        assert float((a - b).abs().max()) <= tol * max(1.0, float(b.abs().max()))


@pytest.mark.parametrize("name", ["default", "two_layers_small_tiles", "wide"])
def test_model_segmented_gemms_equal_the_tiled_form(name):
    # The whole training forward (layers and head) with per-segment GEMMs equals the zero-padded tiled form:
    # the same output codes, the same loss, gradients equal to float rounding.
    m, x = _trained_like(CONFIGS[name], seed=6)
    m.train()
    _same_training_step(m, x, "segmented_gemm", 1e-4)


def test_learned_weight_scales_clip_and_export_exactly():
    # Learned (LSQ) weight scales: a scale below the max-abs one clips the largest weights to +-weight_max;
    # the training forward still computes the exported integers (== golden), and the scale gets the LSQ
    # gradient (nonzero: clipped weights pull it up, rounding errors move it).
    cfg = CONFIGS["default"]
    torch.manual_seed(0)
    m = QuantLSTM(cfg, 1.0 / cfg.dac_max, learn_weight_scales=True)
    x = torch.rand(32, 10, cfg.input_size) * 2 - 1
    m.calibrate(x.numpy())
    m.init_weight_scales()
    max_abs = m._quant_params(learned=False)
    assert torch.allclose(m.quant_params()[0][0]["scale"], max_abs[0][0]["scale"])
    with torch.no_grad():
        m.log_wscale.sub_(0.5)  # scales x 0.61: the largest weights clip
    m.quantized = True
    m.train()
    layers, head = m.quant_params()
    n_clipped = lambda codes: int((codes.abs() == cfg.weight_max).sum())  # noqa: E731
    assert n_clipped(layers[0]["codes"]) > n_clipped(max_abs[0][0]["codes"])
    fake = m.forward_codes(x, fake_quant=True)
    qm = m.export()
    gold = golden_forward(qm, m.input_codes(x.double()).numpy().astype(np.int64), trace=False)["outputs"]
    assert np.array_equal(fake.double().numpy(), gold)
    m(x).square().mean().backward()
    assert float(m.log_wscale.grad.abs().min()) > 0 and float(m.log_head_wscale.grad.abs()) > 0
    assert any(p is m.log_wscale for p in m.quantizer_parameters())


def test_step_gradient_is_lsq():
    # A single ADC step: out = step * clip(round(p / step)). LSQ: d out / d step = round(v) - v inside the
    # range, +-adc_max outside.
    cfg = default_config()
    step = torch.tensor(10.0, requires_grad=True)
    p = torch.tensor([3.0, 14.0, 26.0, 200.0, -200.0])
    a = ste(round_half_away(p / step), p / step).clamp(-cfg.adc_max, cfg.adc_max)
    (step * a).sum().backward()
    v = p / 10.0
    want = torch.where(
        v.abs() < cfg.adc_max + 0.5, torch.round(v + 1e-9 * torch.sign(v)) - v, torch.sign(v) * cfg.adc_max
    )
    assert torch.allclose(step.grad, want.sum(), atol=1e-6)


# --------------------------------------------------------------------------------------------------
# Import of a float nn.LSTM + nn.Linear
def _torch_float_net(I=8, H=16, O=10, seed=0):
    torch.manual_seed(seed)
    return torch.nn.LSTM(I, H), torch.nn.Linear(H, O)


@pytest.mark.parametrize("layout", ["flat", "nested"])
def test_state_dict_import_runs_the_same_float_network(layout):
    lstm, head = _torch_float_net()
    if layout == "flat":
        sd = {f"lstm.{k}": v for k, v in lstm.state_dict().items()} | {
            f"head.{k}": v for k, v in head.state_dict().items()
        }
    else:
        sd = {"lstm": lstm.state_dict(), "head": head.state_dict()}
    cfg = default_config().replace(hidden_size=16)
    m = QuantLSTM(cfg, 1 / 7)
    m.load_float_state(sd)
    x = torch.rand(5, 7, 8) * 2 - 1
    with torch.no_grad():
        want = head(lstm(x.transpose(0, 1))[0]).transpose(0, 1)
        got = m(x)
    assert torch.equal(got, want)
    # golden's float model sums the two biases; its float64 forward agrees to float32 rounding.
    fm = m.float_model()
    assert np.array_equal(
        fm.layers[0].bias, lstm.bias_ih_l0.detach().double().numpy() + lstm.bias_hh_l0.detach().double().numpy()
    )
    ref = float_forward(fm, x.double().numpy())["outputs"]
    assert np.max(np.abs(ref - want.double().numpy())) < 1e-5


def test_state_dict_import_rejects_another_shape():
    lstm, head = _torch_float_net(H=24)
    sd = {"lstm": lstm.state_dict(), "head": head.state_dict()}
    m = QuantLSTM(default_config().replace(hidden_size=16), 1 / 7)
    with pytest.raises(StateDictError, match=r"lstm.weight_ih_l0 has shape \(96, 8\), this network needs \(64, 8\)"):
        m.load_float_state(sd)
    bi = torch.nn.LSTM(8, 16, bidirectional=True)
    with pytest.raises(StateDictError, match="unexpected key"):
        m.load_float_state({"lstm": bi.state_dict(), "head": torch.nn.Linear(16, 10).state_dict()})


@pytest.mark.parametrize("name", ["two_layers_small_tiles", "many_input_tiles"])
def test_input_tiles_before_the_loop_equal_converting_them_in_the_loop(name, monkeypatch):
    # Row tiles of input rows only are converted for every timestep before the recurrence
    # (recurrence.InputTiles, native kernel) and enter it as acc_in: the same output codes and loss as
    # converting every tile in the loop, gradients (weights, steps, gate scales, and through layer 2's input
    # rows to layer 1) equal to float rounding.
    from nvmlstm.train import ckernel
    from nvmlstm.train import model as model_mod
    from nvmlstm.train.exact import input_only_tiles

    if ckernel.load() is None:
        pytest.skip("native kernel unavailable (no C compiler or NVMLSTM_NO_CKERNEL=1)")
    cfg = CONFIGS[name]
    n = cfg.input_size
    assert input_only_tiles(n + cfg.hidden_size + 1, cfg.array_rows, n)  # the case exists in this config
    calls = []
    real = model_mod.InputTiles

    class Counting:
        @staticmethod
        def apply(*a):
            calls.append(a[4])
            return real.apply(*a)

    monkeypatch.setattr(model_mod, "InputTiles", Counting)
    m, x = _trained_like(cfg, seed=8)
    m.train()
    _same_training_step(m, x, "split_input_tiles", 1e-5)
    assert len(calls) == 2 * cfg.num_layers  # the split ran (training and forward_codes), then not


def test_distinct_rows_are_exact_even_when_fingerprints_collide(monkeypatch):
    # distinct_rows gives each distinct row once and u[inv] == x; when different rows share a fingerprint,
    # its check notices and torch.unique decides (with the check removed, the colliding case below would
    # merge all rows into one).
    from nvmlstm.train import exact

    g = torch.Generator().manual_seed(0)
    base = torch.randint(-7, 8, (9, 40), generator=g).float()
    base[1] = base[0]
    base[1, 39] += 1  # two rows that differ in one code only
    x = base[torch.randint(0, 9, (300,), generator=g)]
    n_distinct = torch.unique(x, dim=0).shape[0]
    u, inv = exact.distinct_rows(x)
    assert torch.equal(u[inv], x) and u.shape[0] == n_distinct
    monkeypatch.setattr(exact, "_row_fingerprint", lambda x: torch.zeros(x.shape[0], dtype=torch.float64))
    u, inv = exact.distinct_rows(x)
    assert torch.equal(u[inv], x) and u.shape[0] == n_distinct


@pytest.mark.parametrize("name", ["two_layers_small_tiles", "many_input_tiles"])
def test_distinct_input_rows_equal_computing_every_row(name, monkeypatch):
    # Character-like input (one code vector per symbol, 8 symbols): InputTiles computes each distinct row
    # once and gathers; the same output codes and loss as computing every row, gradients equal to float
    # rounding. Deeper layers' inputs carry gradient and are computed row by row.
    from nvmlstm.train import ckernel, recurrence

    if ckernel.load() is None:
        pytest.skip("native kernel unavailable (no C compiler or NVMLSTM_NO_CKERNEL=1)")
    cfg = CONFIGS[name]
    sizes = []
    real = recurrence.distinct_rows

    def recording(x):
        u, inv = real(x)
        sizes.append((u.shape[0], x.shape[0]))
        return u, inv

    monkeypatch.setattr(recurrence, "distinct_rows", recording)
    m, _ = _trained_like(cfg, seed=9)
    g = torch.Generator().manual_seed(1)
    x = torch.nn.functional.one_hot(torch.randint(0, 8, (64, 10), generator=g), cfg.input_size).float()
    m.calibrate(x.numpy())
    m.train()
    _same_training_step(m, x, "distinct_input_rows", 1e-5)
    # the first layer's rows were deduplicated (training step and forward_codes); none after the flag is off
    assert sizes and sizes[0] == (8, 640) and len(sizes) == 2 * cfg.num_layers - (cfg.num_layers > 1)


def test_tiled_inputs_from_a_tile_boundary():
    # tiled_inputs(lo=...) is the tail of the full form (the tiles before lo are InputTiles'); lo inside a
    # tile is refused.
    from nvmlstm.train.exact import input_only_tiles, tiled_inputs

    cfg = CONFIGS["many_input_tiles"]
    n, H, rows = cfg.input_size, cfg.hidden_size, cfg.array_rows
    K, N = n + H + 1, 4 * H
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-7, 8, (30, n), generator=g).float()
    wt = torch.randint(-7, 8, (K, N), generator=g).float()
    segs = input_only_tiles(K, rows, n)
    assert [r for r, _, _ in segs] == [0, 1, 2, 3, 4] and segs[-1][2] == 40
    full = tiled_inputs(x, wt[:n], wt[K - 1], K, rows)
    tail = tiled_inputs(x[:, 40:], wt[40:n], wt[K - 1], K, rows, lo=40)
    assert torch.equal(tail, full[:, 5:])
    with pytest.raises(ValueError, match="tiled_inputs: row 36 is not the first row of a row tile"):
        tiled_inputs(x[:, 36:], wt[36:n], wt[K - 1], K, rows, lo=36)
