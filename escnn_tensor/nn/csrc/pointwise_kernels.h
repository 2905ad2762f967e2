/* PointwiseNonLinearity for one REAL (float or double); included by kernels.c only.

   Fields f = 0..F-1 in the input's own channel order: channels fstart[f] .. fstart[f] + fdim[f] - 1, kind fkind[f].
   With phi(r) = act(r - b) - act(-b) (b = threshold, offset = act(-b)), per pixel:
     scalar:    z = act(x)
     pseudo:    z = sign(x) phi(|x|)
     norm:      z = x phi(n) / max(n, eps), n = sqrt(max(|x|^2, TINY)) over the field's components
     unchanged: z = x
   The backward is the derivative of these formulas as torch's autograd takes it (escnn_tensor.nn._pointwise):
   a pseudoscalar's gradient is 0 at x = 0; a norm field's norm has no gradient where |x|^2 < TINY (clamped), and
   1 / max(n, eps) none where n < eps. */

/* phi(v[l]) into out[l] (v is not changed; out may be v) */
static void SFX(phi_row)(REAL *out, const REAL *v, int64_t L, int64_t act, REAL b, REAL offset) {
    for (int64_t l = 0; l < L; ++l) out[l] = v[l] - b;
    SFX(activation_row)(out, L, act);
    for (int64_t l = 0; l < L; ++l) out[l] -= offset;
}

/* the squared norms (clamped at TINY) of a field's components at every pixel: sq[l] */
static void SFX(field_sq_row)(REAL *sq, const REAL *x, int64_t dim, int64_t L) {
    for (int64_t l = 0; l < L; ++l) sq[l] = 0;
    for (int64_t c = 0; c < dim; ++c) {
        const REAL *xr = x + c * L;
        for (int64_t l = 0; l < L; ++l) sq[l] += xr[l] * xr[l];
    }
}

/* Forward: z (B, C, L). Returns 0, or 1 if out of memory. */
int64_t SFX(etn_pointwise_forward)(const REAL *x, int64_t B, int64_t C, int64_t L, const int64_t *fstart,
                                   const int64_t *fdim, const int64_t *fkind, int64_t F, int64_t act,
                                   double threshold, double offset, double eps, REAL *z) {
    REAL *scratch = (REAL *)malloc((size_t)(3 * L + 1) * sizeof(REAL));
    if (!scratch) return 1;
    REAL *n = scratch, *h = scratch + L, *t = scratch + 2 * L;
    const REAL b = (REAL)threshold, off = (REAL)offset, e = (REAL)eps;
    for (int64_t bi = 0; bi < B; ++bi)
        for (int64_t f = 0; f < F; ++f) {
            const REAL *xf = x + (bi * C + fstart[f]) * L;
            REAL *zf = z + (bi * C + fstart[f]) * L;
            const int64_t dim = fdim[f];
            switch (fkind[f]) {
            case KIND_SCALAR:
                memcpy(zf, xf, (size_t)(dim * L) * sizeof(REAL));
                SFX(activation_row)(zf, dim * L, act);
                break;
            case KIND_PSEUDO: /* (dim is 1) */
                for (int64_t l = 0; l < L; ++l) t[l] = xf[l] < 0 ? -xf[l] : xf[l];
                SFX(phi_row)(t, t, L, act, b, off);
                for (int64_t l = 0; l < L; ++l) zf[l] = xf[l] > 0 ? t[l] : (xf[l] < 0 ? -t[l] : xf[l] * t[l]);
                break;
            case KIND_NORM:
                SFX(field_sq_row)(n, xf, dim, L);
                for (int64_t l = 0; l < L; ++l) n[l] = SQRT(n[l] < TINY ? TINY : n[l]);
                SFX(phi_row)(h, n, L, act, b, off);
                for (int64_t l = 0; l < L; ++l) h[l] /= n[l] < e ? e : n[l];
                for (int64_t c = 0; c < dim; ++c)
                    for (int64_t l = 0; l < L; ++l) zf[c * L + l] = xf[c * L + l] * h[l];
                break;
            default:
                memcpy(zf, xf, (size_t)(dim * L) * sizeof(REAL));
            }
        }
    free(scratch);
    return 0;
}

/* Backward: gx (B, C, L) from g, the gradient of z. Returns 0, or 1 if out of memory. */
int64_t SFX(etn_pointwise_backward)(const REAL *g, const REAL *x, int64_t B, int64_t C, int64_t L,
                                    const int64_t *fstart, const int64_t *fdim, const int64_t *fkind, int64_t F,
                                    int64_t act, double threshold, double offset, double eps, REAL *gx) {
    REAL *scratch = (REAL *)malloc((size_t)(6 * L + 1) * sizeof(REAL));
    if (!scratch) return 1;
    REAL *sq = scratch, *n = scratch + L, *phi = scratch + 2 * L, *dphi = scratch + 3 * L, *one = scratch + 4 * L,
         *s = scratch + 5 * L;
    for (int64_t l = 0; l < L; ++l) one[l] = 1;
    const REAL b = (REAL)threshold, off = (REAL)offset, e = (REAL)eps;
    for (int64_t bi = 0; bi < B; ++bi)
        for (int64_t f = 0; f < F; ++f) {
            const int64_t at = (bi * C + fstart[f]) * L, dim = fdim[f];
            const REAL *xf = x + at, *gf = g + at;
            REAL *df = gx + at;
            switch (fkind[f]) {
            case KIND_SCALAR: /* act'(x) g */
                for (int64_t i = 0; i < dim * L; ++i) df[i] = 0;
                SFX(activation_backward_row)(df, gf, xf, dim * L, act);
                break;
            case KIND_PSEUDO: /* act'(|x| - b) g, 0 at x = 0 */
                for (int64_t l = 0; l < L; ++l) n[l] = (xf[l] < 0 ? -xf[l] : xf[l]) - b;
                for (int64_t l = 0; l < L; ++l) df[l] = 0;
                SFX(activation_backward_row)(df, gf, n, L, act);
                for (int64_t l = 0; l < L; ++l) df[l] = xf[l] == 0 ? (REAL)0 : df[l];
                break;
            case KIND_NORM: {
                /* z = x h(n), h = phi(n) / max(n, eps): dx = g h + x (sum_c g x) h'(n) / n where |x|^2 >= TINY,
                   h'(n) = phi'(n) / max(n, eps) - [n >= eps] phi(n) / n^2 */
                SFX(field_sq_row)(sq, xf, dim, L);
                for (int64_t l = 0; l < L; ++l) n[l] = SQRT(sq[l] < TINY ? TINY : sq[l]);
                SFX(phi_row)(phi, n, L, act, b, off);
                for (int64_t l = 0; l < L; ++l) {
                    dphi[l] = 0;
                    s[l] = n[l] - b;
                }
                SFX(activation_backward_row)(dphi, one, s, L, act);
                for (int64_t l = 0; l < L; ++l) s[l] = 0;
                for (int64_t c = 0; c < dim; ++c)
                    for (int64_t l = 0; l < L; ++l) s[l] += gf[c * L + l] * xf[c * L + l];
                for (int64_t l = 0; l < L; ++l) {
                    const REAL m = n[l] < e ? e : n[l];
                    const REAL hp = dphi[l] / m - (n[l] < e ? (REAL)0 : phi[l] / (n[l] * n[l]));
                    dphi[l] = sq[l] < TINY ? (REAL)0 : s[l] * hp / n[l]; /* the factor of x */
                    phi[l] /= m;                                          /* h */
                }
                for (int64_t c = 0; c < dim; ++c)
                    for (int64_t l = 0; l < L; ++l)
                        df[c * L + l] = gf[c * L + l] * phi[l] + xf[c * L + l] * dphi[l];
                break;
            }
            default:
                memcpy(df, gf, (size_t)(dim * L) * sizeof(REAL));
            }
        }
    free(scratch);
    return 0;
}
