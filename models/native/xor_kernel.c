/* The native bit-exact engine's kernel: a tape of IEEE single-precision ops run over blocks of jobs.
 *
 * Loaded with ctypes by models/native_engine.py (no Python or torch headers). The tape, built in
 * Python from what this machine measures (the sgemm trees of models/blas_orders, ATen's CPU
 * capability), says which op computes each value of a solo run's step; the kernel only does those ops,
 * each exactly as named, for BLOCK jobs at once (one job per vector lane). Two instruction sets are
 * compiled from one body (kernel_body.h), AVX-512 and AVX2+FMA, chosen at run time by the caller.
 *
 * Build flags that matter for exactness: -ffp-contract=off (no FMA the tape does not ask for), never
 * -ffast-math. Everything runs in the calling thread, whose MXCSR (rounding, FTZ/DAZ) is the one the
 * solo runs use.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Jobs per block. The interpreter is compiled for two block sizes per instruction set: 128 (8 AVX-512
 * or 16 AVX2 vectors per slot; measured faster per lane) for full packs, and 32 (the smallest the
 * two-vector sigmoid loop allows on AVX-512) for the few lanes a stopping pack has left, or a small
 * pack, where a 128-lane block would mostly compute padding. A lane's ops are the same vector
 * instructions in either, so its numbers do not depend on the block size. */
#define BIG_BLOCK 128
#define SMALL_BLOCK 32

enum {
    OP_MUL = 0,
    OP_ADD = 1,
    OP_SUB = 2,
    OP_DIV = 3,
    OP_FMA = 4,
    OP_MAXC = 5,
    OP_COPY = 6,
    OP_SIG_LIBM = 7,
    OP_SIG_CLONE = 8,
    OP_SIG_SLEEF = 9,
    OP_BCE_TERM = 10,
    OP_MUL_ADD = 11, /* round(round(a * b) + c): two roundings, never an FMA */
    OP_SIGMOID_BACKWARD = 12, /* round(round(round(1 - a) * b) * a) */
    /* A left-deep sum of rounded products, in registers: (op, dest, count, start, end), then the
     * count (a, b) slot pairs packed five ints to a record; the sum starts from slot `start`, or from
     * the first product when start < 0, adds each product (rounded) in turn, rounding each sum, and
     * last slot `end` when end >= 0. */
    OP_PRODUCT_CHAIN = 13,
    /* binary_cross_entropy_backward (grad 1, mean over 4): round(round(round(a - b) /
     * max(round(round(1 - a) * a), c)) / 4), a = p, b = y, c = EPSILON */
    OP_BCE_GRAD = 14,
    /* SGD over c consecutive parameter slots from d, gradients from a, alpha (-lr) in b:
     * p = fma(g, alpha, p) (ATen's add_ on AVX2/AVX-512), or round(p + round(g * alpha)). */
    OP_SGD_FUSED = 15,
    OP_SGD_UNFUSED = 16,
    /* ((s[a] + s[a + b]) + s[a + 2b]) + s[a + 3b], each sum rounded: the solo 4-term reductions */
    OP_SUM4 = 17,
};

typedef struct {
    const int32_t *ops; /* (op, dest, a, b, c) per op: forward, then cost, then backward + update */
    int32_t n_forward, n_cost, n_backward;
    const float *init; /* every slot's starting value, (nslots, block) */
    int32_t nslots;
    float *theta; /* parameters, (rows, jobs): read at a block's start, written back at its end */
    int32_t rows, param_slot;
    const float *alpha; /* SGD's -lr as float, (jobs,) */
    int32_t alpha_slot;
    int32_t jobs; /* a multiple of block */
    const int32_t *hyp_slots;
    int32_t n_hyp, cost_slot, log_every, last_step;
    void *sleef; /* the SLEEF expf entry point ATen's vector sigmoid calls */
    int32_t block; /* BIG_BLOCK or SMALL_BLOCK: lanes per block, the layout of init */
} xk_pack;

/* glibc's expf (sysdeps/ieee754/flt-32/e_expf.c, the FMA variant x86-64 glibc selects on an FMA CPU),
 * in double precision over vector lanes: 2^(k/32) * poly(r). The table and constants are glibc's; the
 * FMA placement is that of its compiled code. Lanes glibc treats specially (|x| >= 88, inf, NaN) go to
 * the real expf. Checked against glibc's expf at start-up (models/native_probes.py); when the check
 * fails the tape uses OP_SIG_LIBM instead. */
static uint64_t exp_table[32];
static int exp_table_set = 0;
#define EXP_INV_LN2_N 0x1.71547652b82fep+5
#define EXP_SHIFT 0x1.8p+52
#define EXP_C0 0x1.c6af84b912394p-20
#define EXP_C1 0x1.ebfce50fac4f3p-13
#define EXP_C2 0x1.62e42ff0c52d6p-6

void xk_set_exp_table(const uint64_t *table) {
    memcpy(exp_table, table, sizeof(exp_table));
    exp_table_set = 1;
}


/* ---------------------------------------------------------------------------------------------- */
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx2,fma")
typedef __m512 V;
typedef __m512 (*VFN)(__m512);
#define VW 16
#define XI(name) name##_avx512
#define VLD _mm512_loadu_ps
#define VST _mm512_storeu_ps
#define VSET1 _mm512_set1_ps
#define VADD _mm512_add_ps
#define VSUB _mm512_sub_ps
#define VMUL _mm512_mul_ps
#define VDIV _mm512_div_ps
#define VFMA _mm512_fmadd_ps
#define VNEG(a) _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_set1_epi32(INT32_MIN)))
#define VSEL_LT(a, b) _mm512_mask_blend_ps(_mm512_cmp_ps_mask((a), (b), _CMP_LT_OQ), (a), (b))

static inline __m512d exp_core_avx512(__m512d xd) {
    const __m512d inv = _mm512_set1_pd(EXP_INV_LN2_N), shift = _mm512_set1_pd(EXP_SHIFT);
    __m512d kds = _mm512_fmadd_pd(inv, xd, shift);
    __m512i ki = _mm512_castpd_si512(kds);
    __m512d kd = _mm512_sub_pd(kds, shift);
    __m512d r = _mm512_fmsub_pd(inv, xd, kd);
    __m512d z = _mm512_fmadd_pd(r, _mm512_set1_pd(EXP_C0), _mm512_set1_pd(EXP_C1));
    /* T[ki % 32]: two 16-entry permutes, picked by bit 4 of the index. */
    const __m512i *tab = (const __m512i *)exp_table;
    __m512i low = _mm512_permutex2var_epi64(_mm512_loadu_si512(tab), ki, _mm512_loadu_si512(tab + 1));
    __m512i high = _mm512_permutex2var_epi64(_mm512_loadu_si512(tab + 2), ki, _mm512_loadu_si512(tab + 3));
    __mmask8 upper = _mm512_test_epi64_mask(ki, _mm512_set1_epi64(16));
    __m512i t = _mm512_add_epi64(_mm512_mask_blend_epi64(upper, low, high), _mm512_slli_epi64(ki, 47));
    __m512d r2 = _mm512_mul_pd(r, r);
    __m512d y = _mm512_fmadd_pd(r, _mm512_set1_pd(EXP_C2), _mm512_set1_pd(1.0));
    y = _mm512_fmadd_pd(z, r2, y);
    return _mm512_mul_pd(y, _mm512_castsi512_pd(t));
}

static inline V exp_clone_avx512(V x) {
    __m512d lo = exp_core_avx512(_mm512_cvtps_pd(_mm512_castps512_ps256(x)));
    __m512d hi = exp_core_avx512(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1))));
    V e = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)), _mm512_cvtpd_ps(hi), 1);
    /* Lanes glibc handles on its special path: ((bits >> 20) & 0x7ff) > 0x42a. */
    __m512i top = _mm512_and_si512(_mm512_srli_epi32(_mm512_castps_si512(x), 20), _mm512_set1_epi32(0x7ff));
    __mmask16 special = _mm512_cmpgt_epi32_mask(top, _mm512_set1_epi32(0x42a));
    if (special) {
        float lanes[VW] __attribute__((aligned(64)));
        float es[VW] __attribute__((aligned(64)));
        _mm512_store_ps(lanes, x);
        _mm512_store_ps(es, e);
        for (int l = 0; l < VW; l++)
            if (special & (1u << l)) es[l] = expf(lanes[l]);
        e = _mm512_load_ps(es);
    }
    return e;
}

static inline void sig_clone_avx512(float *d, const float *a, int n) {
    /* Two vectors per iteration: their long dependency chains (exp, then the division) overlap. */
    const V one = VSET1(1.0f);
    for (int v = 0; v < n; v += 2 * VW) {
        V e0 = exp_clone_avx512(VNEG(VLD(a + v))), e1 = exp_clone_avx512(VNEG(VLD(a + v + VW)));
        VST(d + v, VDIV(one, VADD(one, e0)));
        VST(d + v + VW, VDIV(one, VADD(one, e1)));
    }
}

#define BLOCK BIG_BLOCK
#define XK(name) XI(name##_128)
#include "kernel_body.h"
#undef BLOCK
#undef XK
#define BLOCK SMALL_BLOCK
#define XK(name) XI(name##_32)
#include "kernel_body.h"
#undef BLOCK
#undef XK

#undef VW
#undef XI
#undef VLD
#undef VST
#undef VSET1
#undef VADD
#undef VSUB
#undef VMUL
#undef VDIV
#undef VFMA
#undef VNEG
#undef VSEL_LT
#pragma GCC pop_options

/* ---------------------------------------------------------------------------------------------- */
#pragma GCC push_options
#pragma GCC target("avx2,fma")
typedef __m256 V2;
typedef __m256 (*VFN2)(__m256);
#define V V2
#define VFN VFN2
#define VW 8
#define XI(name) name##_avx2
#define VLD _mm256_loadu_ps
#define VST _mm256_storeu_ps
#define VSET1 _mm256_set1_ps
#define VADD _mm256_add_ps
#define VSUB _mm256_sub_ps
#define VMUL _mm256_mul_ps
#define VDIV _mm256_div_ps
#define VFMA _mm256_fmadd_ps
#define VNEG(a) _mm256_xor_ps((a), _mm256_castsi256_ps(_mm256_set1_epi32(INT32_MIN)))
#define VSEL_LT(a, b) _mm256_blendv_ps((a), (b), _mm256_cmp_ps((a), (b), _CMP_LT_OQ))

static inline __m256d exp_core_avx2(__m256d xd) {
    const __m256d inv = _mm256_set1_pd(EXP_INV_LN2_N), shift = _mm256_set1_pd(EXP_SHIFT);
    __m256d kds = _mm256_fmadd_pd(inv, xd, shift);
    __m256i ki = _mm256_castpd_si256(kds);
    __m256d kd = _mm256_sub_pd(kds, shift);
    __m256d r = _mm256_fmsub_pd(inv, xd, kd);
    __m256d z = _mm256_fmadd_pd(r, _mm256_set1_pd(EXP_C0), _mm256_set1_pd(EXP_C1));
    __m256i idx = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
    __m256i t = _mm256_add_epi64(_mm256_i64gather_epi64((const long long *)exp_table, idx, 8),
                                 _mm256_slli_epi64(ki, 47));
    __m256d r2 = _mm256_mul_pd(r, r);
    __m256d y = _mm256_fmadd_pd(r, _mm256_set1_pd(EXP_C2), _mm256_set1_pd(1.0));
    y = _mm256_fmadd_pd(z, r2, y);
    return _mm256_mul_pd(y, _mm256_castsi256_pd(t));
}

static inline V exp_clone_avx2(V x) {
    __m256d lo = exp_core_avx2(_mm256_cvtps_pd(_mm256_castps256_ps128(x)));
    __m256d hi = exp_core_avx2(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
    V e = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(lo)), _mm256_cvtpd_ps(hi), 1);
    __m256i top = _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(x), 20), _mm256_set1_epi32(0x7ff));
    int special = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(top, _mm256_set1_epi32(0x42a))));
    if (special) {
        float lanes[VW] __attribute__((aligned(32)));
        float es[VW] __attribute__((aligned(32)));
        _mm256_store_ps(lanes, x);
        _mm256_store_ps(es, e);
        for (int l = 0; l < VW; l++)
            if (special & (1 << l)) es[l] = expf(lanes[l]);
        e = _mm256_load_ps(es);
    }
    return e;
}

static inline void sig_clone_avx2(float *d, const float *a, int n) {
    const V one = VSET1(1.0f);
    for (int v = 0; v < n; v += 2 * VW) {
        V e0 = exp_clone_avx2(VNEG(VLD(a + v))), e1 = exp_clone_avx2(VNEG(VLD(a + v + VW)));
        VST(d + v, VDIV(one, VADD(one, e0)));
        VST(d + v + VW, VDIV(one, VADD(one, e1)));
    }
}

#define BLOCK BIG_BLOCK
#define XK(name) XI(name##_128)
#include "kernel_body.h"
#undef BLOCK
#undef XK
#define BLOCK SMALL_BLOCK
#define XK(name) XI(name##_32)
#include "kernel_body.h"
#undef BLOCK
#undef XK
#pragma GCC pop_options

/* ---------------------------------------------------------------------------------------------- */
/* The entry points ctypes calls. isa: 1 = AVX-512, 2 = AVX2. They return -1 when this CPU lacks the
 * instruction set (or the exp table is missing for a tape that may need it), 0 otherwise. */

enum { ISA_AVX512 = 1, ISA_AVX2 = 2 };

/* Bumped whenever an op code, an op's fields or xk_pack change: models/native_kernel.py refuses a
 * library built from other sources (an editable install not rebuilt) rather than misread its tape. */
#define ABI_VERSION 4

int xk_abi_version(void) { return ABI_VERSION; }

int xk_block(void) { return BIG_BLOCK; }

int xk_small_block(void) { return SMALL_BLOCK; }

int xk_isa_supported(int isa) {
    __builtin_cpu_init();
    if (isa == ISA_AVX512) return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
    if (isa == ISA_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return 0;
}

/* Run ops [0, n) once over each of `blocks` slot images (blocks, nslots, BIG_BLOCK), in place: the
 * primitive probes' entry. */
int xk_eval(int isa, const int32_t *ops, int n, float *slots, int nslots, int blocks, void *sleef) {
    if (!xk_isa_supported(isa) || !exp_table_set) return -1;
    for (int b = 0; b < blocks; b++) {
        float *S = slots + (size_t)b * nslots * BIG_BLOCK;
        if (isa == ISA_AVX512)
            run_128_avx512(ops, n, S, sleef);
        else
            run_128_avx2(ops, n, S, sleef);
    }
    return 0;
}

/* Steps [step0, step1) of every job of `pack`: costs (logged steps in the range, jobs) at its logged
 * steps, the first failing step of each job lowered into fail_step, and, when hyp_out is not NULL, a
 * last forward pass's hypothesis (n_hyp, jobs). */
int xk_train(int isa, const xk_pack *pack, int step0, int step1, float *costs, int32_t *fail_step,
             float *hyp_out) {
    if (!xk_isa_supported(isa) || !exp_table_set) return -1;
    if (pack->block != BIG_BLOCK && pack->block != SMALL_BLOCK) return -1;
    if (pack->jobs % pack->block) return -1;
    int big = pack->block == BIG_BLOCK;
    if (isa == ISA_AVX512)
        (big ? train_128_avx512 : train_32_avx512)(pack, step0, step1, costs, fail_step, hyp_out);
    else
        (big ? train_128_avx2 : train_32_avx2)(pack, step0, step1, costs, fail_step, hyp_out);
    return 0;
}
