/* The scalar activations of the native kernels, for one REAL (float or double); included by kernels.c only. */

static inline REAL SFX(sigmoid)(REAL v) { return (REAL)1 / ((REAL)1 + EXP(-v)); }

/* z = activation(v) on a row of L values, in place (torch.nn.functional's elu (alpha 1), silu, relu, leaky_relu
   (0.01), gelu (erf), tanh, sigmoid). The switch is outside the loops, and the loops have no branches, so that they
   vectorise (exp through glibc's vector library where norm_gate.c declares it). */
static void SFX(activation_row)(REAL *v, int64_t L, int64_t act) {
    switch (act) {
    case ACT_ELU:
        for (int64_t l = 0; l < L; ++l) {
            const REAL e = EXP(v[l] < 0 ? v[l] : (REAL)0) - (REAL)1;
            v[l] = v[l] <= 0 ? e : v[l]; /* NaN stays NaN */
        }
        break;
    case ACT_SILU:
        for (int64_t l = 0; l < L; ++l) v[l] = v[l] * SFX(sigmoid)(v[l]);
        break;
    case ACT_RELU: /* NaN stays NaN, as in torch */
        for (int64_t l = 0; l < L; ++l) v[l] = v[l] > 0 || v[l] != v[l] ? v[l] : (REAL)0;
        break;
    case ACT_LEAKY_RELU:
        for (int64_t l = 0; l < L; ++l) v[l] = v[l] > 0 ? v[l] : (REAL)0.01 * v[l];
        break;
    case ACT_GELU:
        for (int64_t l = 0; l < L; ++l) v[l] = (REAL)0.5 * v[l] * ((REAL)1 + ERF(v[l] * (REAL)0.70710678118654752440));
        break;
    case ACT_TANH:
        for (int64_t l = 0; l < L; ++l) v[l] = TANH(v[l]);
        break;
    default:
        for (int64_t l = 0; l < L; ++l) v[l] = SFX(sigmoid)(v[l]);
    }
}

/* d[l] = activation'(v[l]) g[l] + d[l] on a row (d holds the gates' part of the gradient on entry) */
static void SFX(activation_backward_row)(REAL *d, const REAL *g, const REAL *v, int64_t L, int64_t act) {
    switch (act) {
    case ACT_ELU:
        for (int64_t l = 0; l < L; ++l) {
            const REAL e = EXP(v[l] < 0 ? v[l] : (REAL)0);
            d[l] += v[l] > 0 ? g[l] : g[l] * e;
        }
        break;
    case ACT_SILU:
        for (int64_t l = 0; l < L; ++l) {
            const REAL s = SFX(sigmoid)(v[l]);
            d[l] += g[l] * s * ((REAL)1 + v[l] * ((REAL)1 - s));
        }
        break;
    case ACT_RELU:
        for (int64_t l = 0; l < L; ++l) d[l] += v[l] > 0 ? g[l] : (REAL)0;
        break;
    case ACT_LEAKY_RELU:
        for (int64_t l = 0; l < L; ++l) d[l] += v[l] > 0 ? g[l] : (REAL)0.01 * g[l];
        break;
    case ACT_GELU:
        for (int64_t l = 0; l < L; ++l) {
            const REAL cdf = (REAL)0.5 * ((REAL)1 + ERF(v[l] * (REAL)0.70710678118654752440));
            const REAL pdf = EXP((REAL)-0.5 * v[l] * v[l]) * (REAL)0.39894228040143267794;
            d[l] += g[l] * (cdf + v[l] * pdf);
        }
        break;
    case ACT_TANH:
        for (int64_t l = 0; l < L; ++l) {
            const REAL t = TANH(v[l]);
            d[l] += g[l] * ((REAL)1 - t * t);
        }
        break;
    default:
        for (int64_t l = 0; l < L; ++l) {
            const REAL s = SFX(sigmoid)(v[l]);
            d[l] += g[l] * s * ((REAL)1 - s);
        }
    }
}
