/* One instruction set's tape interpreter for one block size: included by xor_kernel.c once per ISA
 * and block size, with V (the vector type), VW (floats per vector), the V* intrinsics, XI(name) (a
 * per-ISA name), BLOCK and XK(name) (a per-ISA, per-block-size name) defined first.
 *
 * Each op works on whole slots (BLOCK floats: one value for each of BLOCK jobs) and does exactly the
 * IEEE operation it names, once rounded: no contraction (the file is compiled with -ffp-contract=off),
 * FMAs only where the op says FMA. Which op stands where (fused or not, which sigmoid path, which
 * summation order) is the tape's business, decided in Python from what this machine measures.
 */

static inline void XK(sig_libm)(float *d, const float *a) {
    /* ATen's scalar sigmoid lambda: 1 / (1 + std::exp(-a)), glibc expf. */
    for (int l = 0; l < BLOCK; l++) d[l] = 1.0f / (1.0f + expf(-a[l]));
}

static inline void XK(sig_sleef)(float *d, const float *a, void *sleef) {
    /* ATen's vectorised sigmoid: (1 + exp(neg(a))).reciprocal(), exp = the SLEEF entry ATen calls. */
    VFN fn = (VFN)sleef;
    const V one = VSET1(1.0f);
    for (int v = 0; v < BLOCK; v += VW) {
        V e = fn(VNEG(VLD(a + v)));
        VST(d + v, VDIV(one, VADD(one, e)));
    }
}

static inline void XK(bce_term)(float *d, const float *x, const float *t) {
    /* binary_cross_entropy's loss: (t - 1) * max(log1p(-x), -100) - t * max(log(x), -100). */
    for (int l = 0; l < BLOCK; l++) {
        float lg1p = log1pf(-x[l]), lg = logf(x[l]);
        float a = lg1p < -100.0f ? -100.0f : lg1p;
        float b = lg < -100.0f ? -100.0f : lg;
        d[l] = (t[l] - 1.0f) * a - t[l] * b;
    }
}

/* Direct threading (a computed goto at the end of each op's code rather than one shared switch):
 * each op's jump to the next has its own branch history, which the tape's fixed but long sequence of
 * ops needs to be predicted well. */
static void XK(run)(const int32_t *ops, int n, float *S, void *sleef) {
    static const void *const labels[] = {
        [OP_MUL] = &&op_mul,       [OP_ADD] = &&op_add,           [OP_SUB] = &&op_sub,
        [OP_DIV] = &&op_div,       [OP_FMA] = &&op_fma,           [OP_MAXC] = &&op_maxc,
        [OP_COPY] = &&op_copy,     [OP_SIG_LIBM] = &&op_sig_libm, [OP_SIG_CLONE] = &&op_sig_clone,
        [OP_SIG_SLEEF] = &&op_sig_sleef, [OP_BCE_TERM] = &&op_bce_term, [OP_MUL_ADD] = &&op_mul_add,
        [OP_SIGMOID_BACKWARD] = &&op_sigmoid_backward, [OP_PRODUCT_CHAIN] = &&op_product_chain,
        [OP_BCE_GRAD] = &&op_bce_grad, [OP_SGD_FUSED] = &&op_sgd_fused,
        [OP_SGD_UNFUSED] = &&op_sgd_unfused, [OP_SUM4] = &&op_sum4,
    };
    const V one = VSET1(1.0f);
    const int32_t *o = ops, *end = ops + 5 * (size_t)n;
    float *d;
    const float *a, *b, *c;
    int v;
#define DECODE()                                 \
    do {                                         \
        d = S + (size_t)o[1] * BLOCK;            \
        a = S + (size_t)o[2] * BLOCK;            \
        b = S + (size_t)o[3] * BLOCK;            \
        c = S + (size_t)o[4] * BLOCK;            \
    } while (0)
#define NEXT()                                   \
    do {                                         \
        o += 5;                                  \
        if (o == end) return;                    \
        DECODE();                                \
        goto *labels[o[0]];                      \
    } while (0)
    if (n <= 0) return;
    DECODE();
    goto *labels[o[0]];
op_mul:
    for (v = 0; v < BLOCK; v += VW) VST(d + v, VMUL(VLD(a + v), VLD(b + v)));
    NEXT();
op_add:
    for (v = 0; v < BLOCK; v += VW) VST(d + v, VADD(VLD(a + v), VLD(b + v)));
    NEXT();
op_sub:
    for (v = 0; v < BLOCK; v += VW) VST(d + v, VSUB(VLD(a + v), VLD(b + v)));
    NEXT();
op_div:
    for (v = 0; v < BLOCK; v += VW) VST(d + v, VDIV(VLD(a + v), VLD(b + v)));
    NEXT();
op_fma:
    for (v = 0; v < BLOCK; v += VW) VST(d + v, VFMA(VLD(a + v), VLD(b + v), VLD(c + v)));
    NEXT();
op_mul_add:
    for (v = 0; v < BLOCK; v += VW) VST(d + v, VADD(VMUL(VLD(a + v), VLD(b + v)), VLD(c + v)));
    NEXT();
op_sigmoid_backward:
    for (v = 0; v < BLOCK; v += VW) {
        V h = VLD(a + v);
        VST(d + v, VMUL(VMUL(VSUB(one, h), VLD(b + v)), h));
    }
    NEXT();
op_product_chain: {
    /* Products outer, vectors inner: the BLOCK / VW running sums are independent, so their adds
     * overlap instead of waiting on each other. */
    const int count = o[2];
    const int32_t *pairs = o + 5;
    V acc[BLOCK / VW];
    int k = 0;
    if (o[3] >= 0) {
        const float *start = S + (size_t)o[3] * BLOCK;
#pragma GCC unroll 16
        for (int u = 0; u < BLOCK / VW; u++) acc[u] = VLD(start + u * VW);
    } else {
        const float *pa = S + (size_t)pairs[0] * BLOCK, *pb = S + (size_t)pairs[1] * BLOCK;
#pragma GCC unroll 16
        for (int u = 0; u < BLOCK / VW; u++) acc[u] = VMUL(VLD(pa + u * VW), VLD(pb + u * VW));
        k = 1;
    }
    for (; k < count; k++) {
        const float *pa = S + (size_t)pairs[2 * k] * BLOCK, *pb = S + (size_t)pairs[2 * k + 1] * BLOCK;
#pragma GCC unroll 16
        for (int u = 0; u < BLOCK / VW; u++) acc[u] = VADD(acc[u], VMUL(VLD(pa + u * VW), VLD(pb + u * VW)));
    }
    if (o[4] >= 0) {
        const float *last = S + (size_t)o[4] * BLOCK;
#pragma GCC unroll 16
        for (int u = 0; u < BLOCK / VW; u++) acc[u] = VADD(acc[u], VLD(last + u * VW));
    }
#pragma GCC unroll 16
    for (int u = 0; u < BLOCK / VW; u++) VST(d + u * VW, acc[u]);
    o += 5 * ((2 * count + 4) / 5); /* past the pair records */
    NEXT();
}
op_bce_grad:
    for (v = 0; v < BLOCK; v += VW) {
        V p = VLD(a + v);
        V denominator = VSEL_LT(VMUL(VSUB(one, p), p), VLD(c + v));
        VST(d + v, VDIV(VDIV(VSUB(p, VLD(b + v)), denominator), VSET1(4.0f)));
    }
    NEXT();
op_sgd_fused:
    for (int r = 0; r < o[4]; r++)
        for (v = 0; v < BLOCK; v += VW) {
            float *p = d + (size_t)r * BLOCK + v;
            VST(p, VFMA(VLD(a + (size_t)r * BLOCK + v), VLD(b + v), VLD(p)));
        }
    NEXT();
op_sgd_unfused:
    for (int r = 0; r < o[4]; r++)
        for (v = 0; v < BLOCK; v += VW) {
            float *p = d + (size_t)r * BLOCK + v;
            VST(p, VADD(VLD(p), VMUL(VLD(a + (size_t)r * BLOCK + v), VLD(b + v))));
        }
    NEXT();
op_sum4: {
    const size_t stride = (size_t)o[3] * BLOCK;
    for (v = 0; v < BLOCK; v += VW)
        VST(d + v, VADD(VADD(VADD(VLD(a + v), VLD(a + stride + v)), VLD(a + 2 * stride + v)),
                        VLD(a + 3 * stride + v)));
    NEXT();
}
op_maxc:
    /* std::max(a, b) = a < b ? b : a (a NaN stays a NaN). */
    for (v = 0; v < BLOCK; v += VW) VST(d + v, VSEL_LT(VLD(a + v), VLD(b + v)));
    NEXT();
op_copy:
    for (v = 0; v < BLOCK; v += VW) VST(d + v, VLD(a + v));
    NEXT();
op_sig_libm:
    XK(sig_libm)(d, a);
    NEXT();
op_sig_clone:
    XI(sig_clone)(d, a, BLOCK);
    NEXT();
op_sig_sleef:
    XK(sig_sleef)(d, a, sleef);
    NEXT();
op_bce_term:
    XK(bce_term)(d, a, b);
    NEXT();
#undef DECODE
#undef NEXT
}

static int XK(any_nan)(const float *S, const int32_t *slots, int count, int *lane_nan) {
    int any = 0;
    for (int l = 0; l < BLOCK; l++) lane_nan[l] = 0;
    for (int s = 0; s < count; s++) {
        const float *p = S + (size_t)slots[s] * BLOCK;
        for (int l = 0; l < BLOCK; l++)
            if (p[l] != p[l]) lane_nan[l] = any = 1;
    }
    return any;
}

static void XK(train)(const xk_pack *p, int step0, int step1, float *costs, int32_t *fail_step,
                      float *hyp_out) {
    size_t bytes = (size_t)p->nslots * BLOCK * sizeof(float);
    float *S = (float *)aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!S) return;
    int lane_nan[BLOCK];
    for (int j0 = 0; j0 < p->jobs; j0 += BLOCK) {
        memcpy(S, p->init, bytes);
        for (int r = 0; r < p->rows; r++)
            memcpy(S + (size_t)(p->param_slot + r) * BLOCK, p->theta + (size_t)r * p->jobs + j0,
                   BLOCK * sizeof(float));
        memcpy(S + (size_t)p->alpha_slot * BLOCK, p->alpha + j0, BLOCK * sizeof(float));
        int logged = 0;
        for (int step = step0; step < step1; step++) {
            XK(run)(p->ops, p->n_forward, S, p->sleef);
            int log_now = step % p->log_every == 0;
            if (log_now || step == p->last_step) {
                /* Solo's BCELoss raises at the first step whose hypothesis holds a NaN. */
                if (XK(any_nan)(S, p->hyp_slots, p->n_hyp, lane_nan))
                    for (int l = 0; l < BLOCK; l++)
                        if (lane_nan[l] && fail_step[j0 + l] > step) fail_step[j0 + l] = step;
            }
            if (log_now) {
                XK(run)(p->ops + 5 * p->n_forward, p->n_cost, S, p->sleef);
                memcpy(costs + (size_t)logged * p->jobs + j0, S + (size_t)p->cost_slot * BLOCK,
                       BLOCK * sizeof(float));
                logged++;
            }
            XK(run)(p->ops + 5 * (p->n_forward + p->n_cost), p->n_backward, S, p->sleef);
        }
        if (hyp_out) {
            XK(run)(p->ops, p->n_forward, S, p->sleef);
            for (int s = 0; s < p->n_hyp; s++)
                memcpy(hyp_out + (size_t)s * p->jobs + j0, S + (size_t)p->hyp_slots[s] * BLOCK,
                       BLOCK * sizeof(float));
        }
        for (int r = 0; r < p->rows; r++)
            memcpy(p->theta + (size_t)r * p->jobs + j0, S + (size_t)(p->param_slot + r) * BLOCK,
                   BLOCK * sizeof(float));
    }
    free(S);
}
