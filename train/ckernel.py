"""Optional native kernel for the per-timestep elementwise work of `train.recurrence` (float32, table ADC).

Why: at the sizes we train (batch 64, hidden 32) every torch operation costs 3-5 us of dispatch whatever
its size, and one timestep of the contract is ~17 of them in the forward and ~10 in the backward, so a QAT
epoch cost ~3x a plain ``torch.nn.LSTM`` (``docs/performance.md``, "Training speed"). Here the elementwise
chain of one timestep (ADC lookup, tile sum, gate lookup, fixed-point cell update, h lookup -- and its
reversed STE chain in the backward) is one call of a small C function; only the GEMM ``h @ W_h`` stays a
torch operation.

Why plain C through ``ctypes`` rather than ``torch.compile`` or a torch C++ extension: the source is ~100
lines that ``cc`` compiles in well under a second (cached on disk afterwards), whereas inductor measured
~15 s per (batch size, sequence length) and a torch extension ~1 min of compilation -- longer than a whole
digits run.

Exactness: the forward does the same IEEE float32 operations as the torch path, in the same order, on
integer-valued numbers (``-ffp-contract=off``, no fast-math), so its outputs are the same integers;
``tests/test_train_model.py`` checks the recurrence (with this kernel when it is available) against the
autograd reference and bit for bit against golden, and checks the kernel against the torch path.

If no C compiler is available, the compilation fails, or ``NVMLSTM_NO_CKERNEL=1`` is set, `load` returns
``None`` and `train.recurrence` uses its torch implementation (same results, ~1.6x slower per epoch).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["load", "SOURCE"]

SOURCE = r"""
#include <stdint.h>
#include <math.h>

/* Forward, elementwise part of one timestep, for all B sequences.
 *   p       (B, R*N)  dot products of every row tile plus pmax: integers in [0, 2 pmax]
 *   kp      (B, R*N)  out: p as an index into adc_tab (saved for the backward)
 *   acc     (B, N)    out: sum over tiles of the ADC codes
 *   ka      (B, N)    out: index of acc into gate_tab (col_off[j] = gate * n_acc + R adc_max)
 *   gates   (B, N)    out: gate values i | f | g | o (N = 4 H)
 *   c_prev  (B, H)    c_{t-1};  craw, c, h (B, H) out: c_t before/after saturation, h_t
 * The float32 operations and their order are those of the torch path (train/recurrence.py). */
void fwd_step(int64_t B, int64_t R, int64_t N, int64_t H,
              const float *p, const float *adc_tab, const float *gate_tab, const int64_t *col_off,
              const float *h_oc, int64_t n_c, int64_t cell_max, float inv2F,
              const float *c_prev, int64_t *kp, float *acc, int64_t *ka, float *gates,
              float *craw, float *c, float *h)
{
    const int64_t RN = R * N;
    const float cm = (float)cell_max;
    for (int64_t b = 0; b < B; b++) {
        const float *pb = p + b * RN;
        int64_t *kpb = kp + b * RN;
        for (int64_t j = 0; j < RN; j++) kpb[j] = (int64_t)pb[j];
        float *accb = acc + b * N, *gb = gates + b * N;
        int64_t *kab = ka + b * N;
        for (int64_t j = 0; j < N; j++) {
            float s = adc_tab[kpb[j]];
            for (int64_t r = 1; r < R; r++) s += adc_tab[kpb[r * N + j]];
            accb[j] = s;
            kab[j] = (int64_t)(s + (float)col_off[j]);
            gb[j] = gate_tab[kab[j]];
        }
        const float *gi = gb, *gf = gb + H, *gg = gb + 2 * H, *go = gb + 3 * H;
        for (int64_t j = 0; j < H; j++) {
            float m = gf[j] * c_prev[b * H + j];
            float ig = gi[j] * gg[j];
            m = m + ig;
            float r = floorf(m * inv2F + 0.5f);
            craw[b * H + j] = r;
            float cc = r < -cm ? -cm : (r > cm ? cm : r);
            c[b * H + j] = cc;
            h[b * H + j] = h_oc[(int64_t)go[j] * n_c + (int64_t)cc + cell_max];
        }
    }
}

/* Backward (STE) of one timestep, for all B sequences; the caller then computes dh_{t-1} = dp @ W_h^T.
 * In/out: dh (B, H) enters as dL/dh_t from later steps (dhs, dL/dh_t from the loss, is added here);
 * dc (B, H) enters as dL/dc_t from later steps and leaves as dL/dc_{t-1}.
 * Forward values of step t: gates, ka, acc (B, N), c_prev = c_{t-1}, c = c_t, craw (B, H), kp (B, R*N).
 * The STE factors are looked up here rather than precomputed over all timesteps in torch (fewer passes):
 *   d a / d p = am_tab[kp], d gate / d acc = fac_tab[ka], d c / d m = [|craw| <= cell_max] 2^-F,
 *   d h / d c = dtanh_c[c] o kq, d h / d o = tanh_c[c] kq (kq = dac_max 2^-2F).
 * Out: dacc (B, N), dp (B, R*N); sums[0..3] += sum of dacc * acc per gate (for d/d gate_scale),
 * sums[4] += sum of dp * (kp - pmax) (= dp * p, for the LSQ step gradient). */
void bwd_step(int64_t B, int64_t R, int64_t N, int64_t H,
              float *dh, float *dc, const float *dhs,
              const float *gates, const int64_t *ka, const float *acc,
              const float *c_prev, const float *c, const float *craw, const int64_t *kp,
              const float *am_tab, const float *fac_tab, const float *tanh_c, const float *dtanh_c,
              int64_t cell_max, float inv2F, float kq, int64_t pmax,
              float *dacc, float *dp, double *sums)
{
    const int64_t RN = R * N;
    const float cm = (float)cell_max;
    double sg[4] = {0, 0, 0, 0}, sp = 0;
    for (int64_t b = 0; b < B; b++) {
        const float *gb = gates + b * N;
        const int64_t *kab = ka + b * N;
        float *da = dacc + b * N;
        for (int64_t j = 0; j < H; j++) {
            int64_t e = b * H + j;
            int64_t kc = (int64_t)c[e] + cell_max;
            float dq_o = dtanh_c[kc] * gb[3 * H + j] * kq;
            float cmask = fabsf(craw[e]) <= cm ? inv2F : 0.0f;
            float dhe = dh[e] + dhs[e];
            dh[e] = dhe;
            float dm = (dc[e] + dhe * dq_o) * cmask;
            da[j] = gb[2 * H + j] * dm * fac_tab[kab[j]];             /* i: d m / d i = g       */
            da[H + j] = c_prev[e] * dm * fac_tab[kab[H + j]];         /* f: d m / d f = c_{t-1} */
            da[2 * H + j] = gb[j] * dm * fac_tab[kab[2 * H + j]];     /* g: d m / d g = i       */
            da[3 * H + j] = dhe * (tanh_c[kc] * kq) * fac_tab[kab[3 * H + j]];  /* o: d h / d o */
            dc[e] = dm * gb[H + j];                                   /* d c_t / d c_{t-1} = f  */
        }
        const float *ab = acc + b * N;
        for (int64_t g = 0; g < 4; g++)
            for (int64_t j = 0; j < H; j++) sg[g] += (double)da[g * H + j] * ab[g * H + j];
        const int64_t *kpb = kp + b * RN;
        float *dpb = dp + b * RN;
        for (int64_t r = 0; r < R; r++)
            for (int64_t j = 0; j < N; j++) {
                int64_t q = r * N + j;
                dpb[q] = da[j] * am_tab[kpb[q]];
                sp += (double)dpb[q] * (double)(kpb[q] - pmax);
            }
    }
    for (int g = 0; g < 4; g++) sums[g] += sg[g];
    sums[4] += sp;
}
"""

_FLAGS = ["-O3", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC"]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    d = Path(base) / "nvmlstm"
    try:
        d.mkdir(parents=True, exist_ok=True)
        return d
    except OSError:  # read-only home: a private temporary directory
        return Path(tempfile.mkdtemp(prefix="nvmlstm-kernel-"))


def _compile(out: Path) -> bool:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return False
    with tempfile.TemporaryDirectory() as td:
        src = Path(td) / "recurrence.c"
        src.write_text(SOURCE)
        # Built next to its final name and renamed into place: concurrent processes never load half a file.
        tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
        # -march=native first (the library is built where it runs); a plain build if the compiler refuses.
        for extra in (["-march=native"], []):
            r = subprocess.run([cc, *_FLAGS, *extra, str(src), "-o", str(tmp), "-lm"],
                               capture_output=True, text=True)
            if r.returncode == 0:
                os.replace(tmp, out)
                return True
    return False


@functools.lru_cache(maxsize=1)
def load() -> ctypes.CDLL | None:
    """The compiled kernel library (``fwd_step``, ``bwd_step``), or ``None`` if unavailable (see module doc)."""
    if os.environ.get("NVMLSTM_NO_CKERNEL", "") not in ("", "0") or sys.byteorder != "little":
        return None
    key = hashlib.sha256((SOURCE + " ".join(_FLAGS)).encode()).hexdigest()[:16]
    so = _cache_dir() / f"recurrence-{key}.so"
    try:
        if not so.exists() and not _compile(so):
            return None
        lib = ctypes.CDLL(str(so))
    except (OSError, subprocess.SubprocessError):
        return None
    i64, ptr, f32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float
    lib.fwd_step.argtypes = [i64] * 4 + [ptr] * 5 + [i64, i64, f32] + [ptr] * 8
    lib.fwd_step.restype = None
    lib.bwd_step.argtypes = [i64] * 4 + [ptr] * 14 + [i64, f32, f32, i64] + [ptr] * 3
    lib.bwd_step.restype = None
    return lib
