/* Native kernel of nvmlstm.train.recurrence: the elementwise work of one LSTM timestep, forward and backward
 * (float32, ADC as a table lookup). Built and loaded by train/ckernel.py, which is the only caller: it checks
 * every pointer's dtype, shape and contiguity before the first call, so this file trusts the array sizes it
 * is given. What the caller cannot check cheaply -- values that become table indices -- is checked here,
 * so that no table is ever read out of bounds: a function returns a nonzero code (NVK_BAD_*) with the flat
 * position of the first bad element in *where, and the Python side raises. The tables' contents are checked
 * once per sequence (fwd_check), so that every index the forward derives from them is in bounds; the dot
 * products are checked each step before the ADC lookup, and the backward's saved values before (c_t) or as
 * (ka, kp) they are used -- an out-of-bounds saved index reads entry 0 instead and the call fails.
 *
 * Exactness: the float32 operations and their order are those of the torch loop of train/recurrence.py,
 * on integer-valued numbers; compiled with -ffp-contract=off and without fast-math (ckernel.py), so the
 * results are the same integers.
 */
#include <stddef.h>
#include <stdint.h>
#include <math.h>

#define NVK_OK 0
#define NVK_BAD_P 1         /* p + pmax not an integer in [0, n_adc) */
#define NVK_BAD_ADC_TAB 2   /* adc_tab entry not an integer of magnitude < 2^20 */
#define NVK_BAD_COL_OFF 3   /* col_off[j] +- R max|adc_tab| outside [0, n_gate) */
#define NVK_BAD_GATE_TAB 4  /* gate_tab entry not finite or of magnitude > 2^24 */
#define NVK_BAD_GATE_O 5    /* gate_tab entry reachable by gate o not an integer in [0, n_hoc / n_c) */
#define NVK_BAD_CELL 6      /* saved c_t not an integer in [-cell_max, cell_max] */
#define NVK_BAD_KA 7        /* saved gate-table index outside [0, n_fac) */
#define NVK_BAD_KP 8        /* saved ADC-table index outside [0, n_am) */
#define NVK_BAD_ACC_IN 9    /* acc_in not an integer in [-acc_in_max, acc_in_max] */

/* Checks of float data that becomes indices. The per-step ones are branch-free loops that vectorize (a few
 * percent of a step; with && or floorf, which GCC does not vectorize without fast-math, they cost a third).
 * all_in_range_f runs first, so the float -> int conversions after it are defined. */
static inline int in_range_f(float x, float lo, float hi)
{
    return (x >= lo) & (x < hi);  /* NaN: false */
}

/* 1 if every x[q] is in [lo, hi) (lo, hi integers, |x| < 2^31: the table sizes are checked by ckernel.py). */
static int all_in_range_f(const float *x, int64_t len, float lo, float hi)
{
    int ok = 1;
    for (int64_t q = 0; q < len; q++) ok &= in_range_f(x[q], lo, hi);
    return ok;
}

/* 1 if every x[q] (all in range, see above) is an integer. */
static int all_integer_f(const float *x, int64_t len)
{
    int ok = 1;
    for (int64_t q = 0; q < len; q++) ok &= (float)(int32_t)x[q] == x[q];
    return ok;
}

/* First position in [0, len) where x[q] is not an integer in [lo, hi) (the slow path after a failed check). */
static int64_t first_bad_f(const float *x, int64_t len, float lo, float hi)
{
    for (int64_t q = 0; q < len; q++)
        if (!in_range_f(x[q], lo, hi) || (float)(int32_t)x[q] != x[q]) return q;
    return -1;
}

static inline int bad_index_i(int64_t k, int64_t n)
{
    return (uint64_t)k >= (uint64_t)n;
}

static int64_t first_bad_i(const int64_t *x, int64_t len, int64_t n)
{
    for (int64_t q = 0; q < len; q++)
        if (bad_index_i(x[q], n)) return q;
    return -1;
}

static int64_t first_bad_i32(const int32_t *x, int64_t len, int64_t n)
{
    for (int64_t q = 0; q < len; q++)
        if (bad_index_i(x[q], n)) return q;
    return -1;
}

/* k if it indexes a table of n entries, else 0 (and *bad is set): branch-free, so a lookup through it is
 * always in bounds and checking costs no extra pass over the indices. */
static inline int64_t safe_index(int64_t k, int64_t n, int *bad)
{
    const int out = bad_index_i(k, n);
    *bad |= out;
    return out ? 0 : k;
}

/* The gradient sums are accumulated in eight partial sums, added pairwise at the end: one running double sum
 * is a chain of dependent additions (latency-bound, ~4 cycles an element), eight are independent. */

/* dp[q] = d[q] * am_tab[kp[q]] for q < len (kp checked as used, *bad set if outside [0, n_am)); returns the
 * sum of dp[q] * (kp[q] - pmax). */
static double dp_and_sum(int64_t len, const float *d, const int32_t *kp, const float *am_tab, int64_t n_am,
                         int64_t pmax, float *dp, int *bad)
{
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t q = 0;
    for (; q + 8 <= len; q += 8)
        for (int l = 0; l < 8; l++) {
            const int64_t k = kp[q + l];
            const float v = d[q + l] * am_tab[safe_index(k, n_am, bad)];
            dp[q + l] = v;
            s[l] += (double)v * (double)(k - pmax);
        }
    for (; q < len; q++) {
        const int64_t k = kp[q];
        const float v = d[q] * am_tab[safe_index(k, n_am, bad)];
        dp[q] = v;
        s[0] += (double)v * (double)(k - pmax);
    }
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* The sum of a[q] * b[q] for q < len, in double. */
static double dot_f64(int64_t len, const float *a, const float *b)
{
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t q = 0;
    for (; q + 8 <= len; q += 8)
        for (int l = 0; l < 8; l++) s[l] += (double)a[q + l] * b[q + l];
    for (; q < len; q++) s[0] += (double)a[q] * b[q];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* Tables of one sequence, checked once before its first fwd_step (all indices the forward derives from
 * table contents are then in bounds):
 *   adc_tab (n_adc): integers of magnitude < 2^20, A = the largest magnitude;
 *   col_off (N): col_off[j] - S >= 0 and col_off[j] + S < n_gate with S = R A + acc_in_max, so
 *     acc + col_off indexes gate_tab (acc, a sum of R entries and of acc_in, which each step checks to be
 *     an integer of magnitude <= acc_in_max (0 without acc_in), is exact in float32);
 *   gate_tab (n_gate): finite, magnitude <= 2^24, so f c + i g is finite and c_t = clip(floor(...)) is an
 *     integer in [-cell_max, cell_max];
 *   every entry gate o (columns 3H..4H) can read, col_off[j] + [-S, S]: an integer in [0, n_hoc / n_c),
 *     so o * n_c + c + cell_max indexes h_oc.
 * Returns NVK_OK or a code with *where the position in the array it names (adc_tab, col_off, gate_tab). */
int64_t fwd_check(int64_t R, int64_t N, int64_t H, const float *adc_tab, int64_t n_adc,
                  const float *gate_tab, int64_t n_gate, const int64_t *col_off, int64_t n_o,
                  int64_t acc_in_max, int64_t *where)
{
    const float lim = 1048576.0f;  /* 2^20 */
    if (!all_in_range_f(adc_tab, n_adc, -lim, lim) || !all_integer_f(adc_tab, n_adc)) {
        *where = first_bad_f(adc_tab, n_adc, -lim, lim);
        return NVK_BAD_ADC_TAB;
    }
    int64_t A = 0;
    for (int64_t q = 0; q < n_adc; q++) {
        int64_t a = (int64_t)fabsf(adc_tab[q]);
        A = a > A ? a : A;
    }
    const int64_t span = R * A + acc_in_max;  /* |acc|: R tiles in the loop plus the offset acc_in */
    for (int64_t j = 0; j < N; j++)
        if (col_off[j] < span || col_off[j] > n_gate - 1 - span) {  /* int64: any col_off is compared safely */
            *where = j;
            return NVK_BAD_COL_OFF;
        }
    for (int64_t q = 0; q < n_gate; q++)
        if (!(fabsf(gate_tab[q]) <= 16777216.0f)) {  /* NaN: false */
            *where = q;
            return NVK_BAD_GATE_TAB;
        }
    for (int64_t j = 3 * H; j < N; j++)
        for (int64_t q = col_off[j] - span; q <= col_off[j] + span; q++)
            if (!in_range_f(gate_tab[q], 0.0f, (float)n_o) || (float)(int32_t)gate_tab[q] != gate_tab[q]) {
                *where = q;
                return NVK_BAD_GATE_O;
            }
    return NVK_OK;
}

/* Forward, elementwise part of one timestep, for all B sequences.
 *   p       (B, R*N)  dot products of every row tile: integers in [-pmax, pmax] (n_adc = 2 pmax + 1)
 *   kp      (B, R*N)  out: p + pmax, the index into adc_tab (int32; saved for the backward)
 *   acc_in  (B, N)    ADC codes of the tiles converted before the loop (nvk_input_tile), or NULL; checked
 *                     here to be integers of magnitude <= acc_in_max
 *   acc     (B, N)    out: sum over the R tiles of the ADC codes, plus acc_in
 *   ka      (B, N)    out: index of acc into gate_tab (col_off[j] = gate * n_acc + R adc_max)
 *   gates   (B, N)    out: gate values i | f | g | o (N = 4 H)
 *   c_prev  (B, H)    c_{t-1};  craw, c, h (B, H) out: c_t before/after saturation, h_t
 *   h_oc    (n_hoc)   h_t for (o, c): entry o * n_c + c + cell_max
 * The tables must have passed fwd_check; c_prev must be c of the previous step (or zeros).
 * Returns NVK_OK, or NVK_BAD_P / NVK_BAD_ACC_IN with *where the flat position of the first bad element of
 * p / acc_in. The float32 operations and their order are those of the torch path (train/recurrence.py). */
/* noinline (here and for bwd_step): inlined into the nvk_* entry points, whose arguments come from a struct,
 * GCC 12 compiled the loops measurably slower (the backward by ~15%). */
__attribute__((noinline)) static int64_t fwd_step(int64_t B, int64_t R, int64_t N, int64_t H,
                 const float *p, const float *adc_tab, int64_t n_adc,
                 const float *gate_tab, const int64_t *col_off,
                 const float *h_oc, int64_t n_c, int64_t cell_max, float inv2F,
                 const float *c_prev, const float *acc_in, int64_t acc_in_max, int32_t *kp, float *acc,
                 int64_t *ka, float *gates, float *craw, float *c, float *h, int64_t *where)
{
    const int64_t RN = R * N;
    const float cm = (float)cell_max;
    /* Every table index this step derives from p and acc_in is checked before the first lookup. */
    const int64_t pmax = (n_adc - 1) / 2;
    const float plo = -(float)pmax, phi = (float)(n_adc - pmax);
    if (!all_in_range_f(p, B * RN, plo, phi) || !all_integer_f(p, B * RN)) {
        *where = first_bad_f(p, B * RN, plo, phi);
        return NVK_BAD_P;
    }
    const float am = (float)acc_in_max;
    if (acc_in && (!all_in_range_f(acc_in, B * N, -am, am + 1.0f) || !all_integer_f(acc_in, B * N))) {
        *where = first_bad_f(acc_in, B * N, -am, am + 1.0f);
        return NVK_BAD_ACC_IN;
    }
    for (int64_t b = 0; b < B; b++) {
        const float *pb = p + b * RN;
        int32_t *kpb = kp + b * RN;
        for (int64_t j = 0; j < RN; j++) kpb[j] = (int32_t)pb[j] + (int32_t)pmax;
        float *accb = acc + b * N, *gb = gates + b * N;
        int64_t *kab = ka + b * N;
        /* Tile by tile over contiguous columns (the sum is of small integers: exact in any order). */
        for (int64_t j = 0; j < N; j++) accb[j] = adc_tab[kpb[j]];
        for (int64_t r = 1; r < R; r++) {
            const int32_t *kr = kpb + r * N;
            for (int64_t j = 0; j < N; j++) accb[j] += adc_tab[kr[j]];
        }
        if (acc_in) {  /* the tiles summed before the loop (nvk_input_tile) */
            const float *ai = acc_in + b * N;
            for (int64_t j = 0; j < N; j++) accb[j] += ai[j];
        }
        for (int64_t j = 0; j < N; j++) {
            kab[j] = (int64_t)(accb[j] + (float)col_off[j]);  /* in bounds: fwd_check */
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
            h[b * H + j] = h_oc[(int64_t)go[j] * n_c + (int64_t)cc + cell_max];  /* in bounds: fwd_check */
        }
    }
    return NVK_OK;
}

/* Backward (STE) of one timestep, for all B sequences; the caller then computes dh_{t-1} = dp @ W_h^T.
 * In/out: dh (B, H) enters as dL/dh_t from later steps (dhs, dL/dh_t from the loss, is added here);
 * dc (B, H) enters as dL/dc_t from later steps and leaves as dL/dc_{t-1}.
 * Forward values of step t: gates, ka, acc (B, N), c_prev = c_{t-1}, c = c_t, craw (B, H), kp (B, R*N).
 * The STE factors are looked up here rather than precomputed over all timesteps in torch (fewer passes):
 *   d a / d p = am_tab[kp], d gate / d acc = fac_tab[ka], d c / d m = [|craw| <= cell_max] 2^-F,
 *   d h / d c = dtanh_c[c] o kq, d h / d o = tanh_c[c] kq (kq = dac_max 2^-2F).
 * Out: dacc (B, N), dp (B, R*N); sums[0..3] += sum of dacc * acc per gate (for d/d gate_scale),
 * sums[4] += sum of dp * (kp - pmax) (= dp * p, for the LSQ step gradient).
 * Returns NVK_OK, or NVK_BAD_CELL / NVK_BAD_KA / NVK_BAD_KP with *where the flat position of the first bad
 * element of c / ka / kp. c is checked before anything is written; ka and kp as they are used (an index out
 * of bounds reads entry 0 instead), so after those two codes dh, dc, dacc and dp hold meaningless values
 * (the caller raises and discards them); sums are unchanged after every error. */
__attribute__((noinline)) static int64_t bwd_step(int64_t B, int64_t R, int64_t N, int64_t H,
                 float *dh, float *dc, const float *dhs,
                 const float *gates, const int64_t *ka, const float *acc,
                 const float *c_prev, const float *c, const float *craw, const int32_t *kp,
                 const float *am_tab, int64_t n_am, const float *fac_tab, int64_t n_fac,
                 const float *tanh_c, const float *dtanh_c,
                 int64_t cell_max, float inv2F, float kq, int64_t pmax,
                 float *dacc, float *dp, double *sums, int64_t *where)
{
    const int64_t RN = R * N;
    const float cm = (float)cell_max;
    /* The saved values come from the caller: c (float, becomes an index) before use, ka and kp in use. */
    if (!all_in_range_f(c, B * H, -cm, cm + 1.0f) || !all_integer_f(c, B * H)) {
        *where = first_bad_f(c, B * H, -cm, cm + 1.0f);
        return NVK_BAD_CELL;
    }
    int bad_ka = 0, bad_kp = 0;
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
            const float fi = fac_tab[safe_index(kab[j], n_fac, &bad_ka)];
            const float ff = fac_tab[safe_index(kab[H + j], n_fac, &bad_ka)];
            const float fg = fac_tab[safe_index(kab[2 * H + j], n_fac, &bad_ka)];
            const float fo = fac_tab[safe_index(kab[3 * H + j], n_fac, &bad_ka)];
            da[j] = gb[2 * H + j] * dm * fi;             /* i: d m / d i = g       */
            da[H + j] = c_prev[e] * dm * ff;             /* f: d m / d f = c_{t-1} */
            da[2 * H + j] = gb[j] * dm * fg;             /* g: d m / d g = i       */
            da[3 * H + j] = dhe * (tanh_c[kc] * kq) * fo;  /* o: d h / d o         */
            dc[e] = dm * gb[H + j];                                   /* d c_t / d c_{t-1} = f  */
        }
        const float *ab = acc + b * N;
        for (int64_t g = 0; g < 4; g++) sg[g] += dot_f64(H, da + g * H, ab + g * H);
        const int32_t *kpb = kp + b * RN;
        float *dpb = dp + b * RN;
        for (int64_t r = 0; r < R; r++)
            sp += dp_and_sum(N, da, kpb + r * N, am_tab, n_am, pmax, dpb + r * N, &bad_kp);
    }
    if (bad_ka) {
        *where = first_bad_i(ka, B * N, n_fac);
        return NVK_BAD_KA;
    }
    if (bad_kp) {
        *where = first_bad_i32(kp, B * RN, n_am);
        return NVK_BAD_KP;
    }
    for (int g = 0; g < 4; g++) sums[g] += sg[g];
    sums[4] += sp;
    return NVK_OK;
}

/* Entry points called once per timestep. Everything constant over a sequence -- sizes, tables, the whole
 * (T, ...) buffers -- is passed once in a struct that ckernel.py fills (a ctypes.Structure with the same
 * fields and C types; nvk_layout lets it check the layout); per step only t and p cross the ctypes
 * boundary, whose conversion costs ~0.1 us per argument. */
typedef struct {
    int64_t B, R, N, H;
    const float *adc_tab;
    int64_t n_adc;
    const float *gate_tab;
    const int64_t *col_off;
    const float *h_oc;
    int64_t n_c, cell_max;
    float inv2F;
    const float *acc_in;  /* (T, B, N) or NULL: ADC codes of tiles summed before the loop */
    int64_t acc_in_max;   /* bound of |acc_in| (0 without it) */
    int32_t *kp;        /* (T, B, R*N) */
    float *acc;         /* (T, B, N) */
    int64_t *ka;        /* (T, B, N) */
    float *gates;       /* (T, B, N) */
    float *craw;        /* (T, B, H) */
    float *cs, *hs;     /* (T + 1, B, H) */
    int64_t *where;
} nvk_fwd;

typedef struct {
    int64_t B, R, N, H;
    float *dh, *dc;     /* (B, H) */
    const float *dhs;   /* (T, B, H) */
    const float *gates; /* (T, B, N) */
    const int64_t *ka;  /* (T, B, N) */
    const float *acc;   /* (T, B, N) */
    const float *cs;    /* (T + 1, B, H) */
    const float *craw;  /* (T, B, H) */
    const int32_t *kp;  /* (T, B, R*N) */
    const float *am_tab;
    int64_t n_am;
    const float *fac_tab;
    int64_t n_fac;
    const float *tanh_c, *dtanh_c;
    int64_t cell_max;
    float inv2F, kq;
    int64_t pmax;
    float *dacc;        /* (T, B, N) */
    float *dp;          /* (T, B, R*N) */
    double *sums;       /* (5) */
    int64_t *where;
} nvk_bwd;

/* sizeof and offsetof(where) of both structs, for ckernel.py's layout check. */
void nvk_layout(int64_t *out)
{
    out[0] = (int64_t)sizeof(nvk_fwd);
    out[1] = (int64_t)offsetof(nvk_fwd, where);
    out[2] = (int64_t)sizeof(nvk_bwd);
    out[3] = (int64_t)offsetof(nvk_bwd, where);
}

/* fwd_step for timestep t: p (B, R*N) is pre[t] + h_{t-1} @ W_h. */
int64_t nvk_forward_step(const nvk_fwd *a, int64_t t, const float *p)
{
    const int64_t bh = a->B * a->H, bn = a->B * a->N, brn = bn * a->R;
    return fwd_step(a->B, a->R, a->N, a->H, p, a->adc_tab, a->n_adc, a->gate_tab, a->col_off, a->h_oc, a->n_c,
                    a->cell_max, a->inv2F, a->cs + t * bh, a->acc_in ? a->acc_in + t * bn : NULL, a->acc_in_max,
                    a->kp + t * brn, a->acc + t * bn, a->ka + t * bn,
                    a->gates + t * bn, a->craw + t * bh, a->cs + (t + 1) * bh, a->hs + (t + 1) * bh, a->where);
}

/* bwd_step for timestep t (called for t = T-1 down to 0). */
int64_t nvk_backward_step(const nvk_bwd *a, int64_t t)
{
    const int64_t bh = a->B * a->H, bn = a->B * a->N, brn = bn * a->R;
    return bwd_step(a->B, a->R, a->N, a->H, a->dh, a->dc, a->dhs + t * bh, a->gates + t * bn, a->ka + t * bn,
                    a->acc + t * bn, a->cs + t * bh, a->cs + (t + 1) * bh, a->craw + t * bh, a->kp + t * brn,
                    a->am_tab, a->n_am, a->fac_tab, a->n_fac, a->tanh_c, a->dtanh_c, a->cell_max, a->inv2F, a->kq,
                    a->pmax, a->dacc + t * bn, a->dp + t * brn, a->sums, a->where);
}

/* Row tiles whose rows are all inputs do not depend on h: their ADC codes are computed for every timestep
 * at once before the recurrence, one tile per call, and enter the loop as the offset acc_in of fwd_step
 * (the loop then converts only the tiles that hold h rows or the bias row).
 *   p   (M, N)  the tile's dot products (M = T B rows): integers in [-pmax, n_adc - pmax)
 *   acc (M, N)  in/out: += adc_tab[p + pmax]
 *   kp  (M, N)  out: p + pmax, the ADC-table index (int32: tables have at most 2^24 entries, ckernel.py)
 * Returns NVK_OK, or NVK_BAD_P with *where the flat position of the first bad element of p (then nothing
 * has been written). */
int64_t nvk_input_tile(int64_t M, int64_t N, const float *p, int64_t pmax, const float *adc_tab, int64_t n_adc,
                       float *acc, int32_t *kp, int64_t *where)
{
    const int64_t MN = M * N;
    const float lo = -(float)pmax, hi = (float)(n_adc - pmax);
    /* The checks first, in separate branch-free passes that vectorize: a single pass that checks as it
     * converts measured ~5x slower (the table lookup keeps the whole loop scalar). */
    if (!all_in_range_f(p, MN, lo, hi) || !all_integer_f(p, MN)) {
        *where = first_bad_f(p, MN, lo, hi);
        return NVK_BAD_P;
    }
    for (int64_t q = 0; q < MN; q++) {
        const int32_t k = (int32_t)p[q] + (int32_t)pmax;
        kp[q] = k;
        acc[q] += adc_tab[k];
    }
    return NVK_OK;
}

/* Backward (STE) of nvk_input_tile: dp (M, N) = dacc * am_tab[kp] (dacc: dL/dacc of every timestep, from
 * the recurrence's backward), and *sum += the sum of dp * (kp - pmax) (= dp * p, for the LSQ step gradient),
 * the same products as bwd_step's for the tiles in the loop. kp is checked as it is used: NVK_BAD_KP with
 * *where the first bad position (then dp holds meaningless values and *sum is unchanged). */
int64_t nvk_input_tile_backward(int64_t M, int64_t N, const float *dacc, const int32_t *kp, const float *am_tab,
                                int64_t n_am, int64_t pmax, float *dp, double *sum, int64_t *where)
{
    const int64_t MN = M * N;
    int bad = 0;
    const double sp = dp_and_sum(MN, dacc, kp, am_tab, n_am, pmax, dp, &bad);
    if (bad) {
        *where = first_bad_i32(kp, MN, n_am);
        return NVK_BAD_KP;
    }
    *sum += sp;
    return NVK_OK;
}
