/* The kernels of norm_gate.c for one REAL (float or double); included by norm_gate.c only. */

/* A row of dy: adds the gradient of the norm's output (gyr, if not NULL), then its sum and its sum against the
   centred input (x - m) to the channel's accumulators */
static void SFX(finish_row)(REAL *dr, const REAL *gyr, const REAL *xr, REAL m, int64_t L, double *sum_dy,
                            double *sum_dyc) {
    if (gyr)
        for (int64_t l = 0; l < L; ++l) dr[l] += gyr[l];
    double s1 = 0, s2 = 0;
    for (int64_t l = 0; l < L; ++l) {
        s1 += dr[l];
        s2 += (double)(dr[l] * (xr[l] - m));
    }
    *sum_dy += s1;
    *sum_dyc += s2;
}

/* The per-field and per-channel statistics, from the channel sums S and the centred squares Q (both (C,), double).
   Writes coeff (NK), var (F), mu (C), a (C), shift (C), r (F), af (F) = r * weight. */
static void SFX(statistics)(const double *Q, const double *mu_d, int64_t C, int64_t n,
                            const REAL *Fm, const REAL *fdim, const int64_t *field_of, int64_t F,
                            const REAL *K, int64_t NK, const REAL *weight, const REAL *bias, double eps,
                            REAL *var, REAL *mu, REAL *a, REAL *shift, REAL *r, REAL *af) {
    for (int64_t f = 0; f < F; ++f) {
        double v = 0;
        for (int64_t c = 0; c < C; ++c) v += (double)Fm[f * C + c] * Q[c];
        var[f] = (REAL)(v / (double)fdim[f] / (double)n);
        r[f] = (REAL)(1.0 / sqrt((double)var[f] + eps));
        af[f] = weight ? r[f] * weight[f] : r[f];
    }
    for (int64_t c = 0; c < C; ++c) {
        mu[c] = (REAL)mu_d[c];
        a[c] = af[field_of[c]];
        double s = 0;
        if (bias)
            for (int64_t k = 0; k < NK; ++k) s += (double)K[k * C + c] * (double)bias[k];
        shift[c] = (REAL)s;
    }
}

/* Forward. In: x (B, C, L); K (NK, C) invariant coefficients; Fm (F, C) field membership; fdim (F,); field_of (C,);
   weight (F,) or NULL; bias (NK,) or NULL; MS (G, Cv) mean-square weights (one entry per column, at gate_of[c]);
   gate_of (Cv,); W (G, ns + G); gb (G,) or NULL; act. Out: z (B, C, L); coeff (NK,); var (F,); saved (3 C + 2 F,):
   mu, a, shift (C each), r, af (F each); gamma (B, G, L) gates; ms (B, G, L) mean squares of the gated fields;
   y (B, C, L) the normalised input (the norm's output), if not NULL. Returns 0, or 1 if out of memory. */
int64_t SFX(etn_norm_gate_forward)(const REAL *x, int64_t B, int64_t C, int64_t L,
                                   const REAL *K, int64_t NK, const REAL *Fm, const REAL *fdim,
                                   const int64_t *field_of, int64_t F, const REAL *weight, const REAL *bias,
                                   double eps, int64_t ns, const REAL *MS, const int64_t *gate_of, int64_t G,
                                   const REAL *W, const REAL *gb, int64_t act,
                                   REAL *z, REAL *coeff, REAL *var, REAL *saved, REAL *gamma, REAL *ms, REAL *y) {
    const int64_t Cv = C - ns, Fp = ns + G, n = B * L;
    double *S = (double *)calloc((size_t)(3 * C + 1), sizeof(double));
    REAL *rms = (REAL *)malloc((size_t)(G * L + 1) * sizeof(REAL));
    if (!S || !rms) { free(S); free(rms); return 1; }
    double *Q = S + C, *mu_d = S + 2 * C;
    REAL *mu = saved, *a = saved + C, *shift = saved + 2 * C, *r = saved + 3 * C, *af = r + F;

    /* pass 1: channel sums, invariant coefficients of the mean, the mean */
    for (int64_t b = 0; b < B; ++b)
        for (int64_t c = 0; c < C; ++c) {
            const REAL *row = x + (b * C + c) * L;
            double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            int64_t l = 0;
            for (; l + 8 <= L; l += 8)
                for (int j = 0; j < 8; ++j) acc[j] += row[l + j];
            for (; l < L; ++l) acc[0] += row[l];
            S[c] += ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        }
    for (int64_t k = 0; k < NK; ++k) {
        double s = 0;
        for (int64_t c = 0; c < C; ++c) s += (double)K[k * C + c] * S[c];
        coeff[k] = (REAL)(s / (double)n);
    }
    for (int64_t c = 0; c < C; ++c) {
        double m = 0;
        for (int64_t k = 0; k < NK; ++k) m += (double)K[k * C + c] * (double)coeff[k];
        mu_d[c] = (double)(REAL)m;
    }
    /* pass 2: squares of the centred input */
    for (int64_t b = 0; b < B; ++b)
        for (int64_t c = 0; c < C; ++c) {
            const REAL *row = x + (b * C + c) * L;
            const REAL m = (REAL)mu_d[c];
            double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            int64_t l = 0;
            for (; l + 8 <= L; l += 8)
                for (int j = 0; j < 8; ++j) {
                    REAL t = row[l + j] - m;
                    acc[j] += (double)(t * t);
                }
            for (; l < L; ++l) {
                REAL t = row[l] - m;
                acc[0] += (double)(t * t);
            }
            Q[c] += ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        }
    SFX(statistics)(Q, mu_d, C, n, Fm, fdim, field_of, F, K, NK, weight, bias, eps, var, mu, a, shift, r, af);

    /* pass 3, sample by sample: y into z, the gated fields' mean squares, the gates, the outputs */
    for (int64_t b = 0; b < B; ++b) {
        const REAL *xb = x + b * C * L;
        REAL *zb = z + b * C * L, *msb = ms + b * G * L, *gab = gamma + b * G * L;
        for (int64_t c = 0; c < C; ++c) {
            const REAL *xr = xb + c * L;
            REAL *zr = zb + c * L;
            const REAL m = mu[c], s = a[c], t = shift[c];
            for (int64_t l = 0; l < L; ++l) zr[l] = (xr[l] - m) * s + t;
        }
        if (y) memcpy(y + b * C * L, zb, (size_t)(C * L) * sizeof(REAL));
        memset(msb, 0, (size_t)(G * L) * sizeof(REAL));
        for (int64_t c = 0; c < Cv; ++c) {
            const int64_t g = gate_of[c];
            const REAL w = MS[g * Cv + c];
            const REAL *yr = zb + (ns + c) * L;
            REAL *mr = msb + g * L;
            for (int64_t l = 0; l < L; ++l) mr[l] += w * (yr[l] * yr[l]);
        }
        for (int64_t i = 0; i < G * L; ++i) rms[i] = SQRT(msb[i] < TINY ? TINY : msb[i]);
        for (int64_t g = 0; g < G; ++g) {
            REAL *pr = gab + g * L;
            const REAL b0 = gb ? gb[g] : (REAL)0;
            for (int64_t l = 0; l < L; ++l) pr[l] = b0;
            for (int64_t f = 0; f < Fp; ++f) {
                const REAL w = W[g * Fp + f];
                const REAL *in = f < ns ? zb + f * L : rms + (f - ns) * L;
                for (int64_t l = 0; l < L; ++l) pr[l] += w * in[l];
            }
            for (int64_t l = 0; l < L; ++l) pr[l] = SFX(sigmoid)(pr[l]);
        }
        for (int64_t c = 0; c < ns; ++c) SFX(activation_row)(zb + c * L, L, act);
        for (int64_t c = 0; c < Cv; ++c) {
            REAL *zr = zb + (ns + c) * L;
            const REAL *gr = gab + gate_of[c] * L;
            for (int64_t l = 0; l < L; ++l) zr[l] *= gr[l];
        }
    }
    free(S);
    free(rms);
    return 0;
}

/* Backward. In: g (B, C, L) gradient of z; x and the constants as in forward; saved, gamma, ms from forward; gy
   (B, C, L) gradient of the normalised input y (forward's optional output) or NULL.
   Out: gx (B, C, L); gw (F,) (if not NULL); gbias (NK,) (if NK); ggw (G, ns + G); ggb (G,) (if gb).
   Returns 0, or 1 if out of memory. */
int64_t SFX(etn_norm_gate_backward)(const REAL *g, const REAL *x, int64_t B, int64_t C, int64_t L,
                                    const REAL *K, int64_t NK, const REAL *Fm, const REAL *fdim,
                                    const int64_t *field_of, int64_t F, int64_t ns, const REAL *MS,
                                    const int64_t *gate_of, int64_t G, const REAL *W,
                                    int64_t has_gb, int64_t act, const REAL *saved, const REAL *gamma,
                                    const REAL *ms, const REAL *gy, REAL *gx, REAL *gw, REAL *gbias, REAL *ggw,
                                    REAL *ggb) {
    const int64_t Cv = C - ns, Fp = ns + G, n = B * L;
    const REAL *mu = saved, *a = saved + C, *shift = saved + 2 * C, *r = saved + 3 * C, *af = r + F;
    double *acc = (double *)calloc((size_t)(2 * C + G * Fp + G + F + NK + 1), sizeof(double));
    REAL *scratch = (REAL *)malloc((size_t)((2 * G + Fp) * L + ns * L + 1) * sizeof(REAL));
    if (!acc || !scratch) { free(acc); free(scratch); return 1; }
    double *sum_dy = acc, *sum_dyc = acc + C, *aggw = acc + 2 * C, *aggb = aggw + G * Fp, *gcf = aggb + G, *sk = gcf + F;
    REAL *rms = scratch, *dpre = scratch + G * L, *dinv = dpre + G * L, *ys = dinv + Fp * L;

    /* pass 1, sample by sample: dy (into gx) and its per-channel sums */
    for (int64_t b = 0; b < B; ++b) {
        const REAL *xb = x + b * C * L, *gbb = g + b * C * L, *msb = ms + b * G * L, *gab = gamma + b * G * L;
        REAL *dyb = gx + b * C * L;
        for (int64_t i = 0; i < G * L; ++i) rms[i] = SQRT(msb[i] < TINY ? TINY : msb[i]);
        for (int64_t c = 0; c < ns; ++c) {
            const REAL *xr = xb + c * L;
            REAL *yr = ys + c * L;
            for (int64_t l = 0; l < L; ++l) yr[l] = (xr[l] - mu[c]) * a[c] + shift[c];
        }
        /* d gamma = sum over each gate's channels of g y; d pre = d gamma * gamma (1 - gamma) */
        memset(dpre, 0, (size_t)(G * L) * sizeof(REAL));
        for (int64_t c = 0; c < Cv; ++c) {
            const int64_t ch = ns + c;
            const REAL *xr = xb + ch * L, *gr = gbb + ch * L;
            REAL *dr = dpre + gate_of[c] * L;
            const REAL m = mu[ch], s = a[ch], t = shift[ch];
            for (int64_t l = 0; l < L; ++l) dr[l] += gr[l] * ((xr[l] - m) * s + t);
        }
        for (int64_t i = 0; i < G * L; ++i) dpre[i] = dpre[i] * ((REAL)1 - gab[i]) * gab[i];
        /* the gate parameters' gradients, and the gradient of the invariants W^T d pre */
        for (int64_t gg = 0; gg < G; ++gg) {
            const REAL *dr = dpre + gg * L;
            double s0 = 0;
            for (int64_t l = 0; l < L; ++l) s0 += dr[l];
            aggb[gg] += s0;
            for (int64_t f = 0; f < Fp; ++f) {
                const REAL *in = f < ns ? ys + f * L : rms + (f - ns) * L;
                double s = 0;
                for (int64_t l = 0; l < L; ++l) s += (double)(dr[l] * in[l]);
                aggw[gg * Fp + f] += s;
            }
        }
        for (int64_t f = 0; f < Fp; ++f) {
            REAL *di = dinv + f * L;
            for (int64_t l = 0; l < L; ++l) di[l] = 0;
            for (int64_t gg = 0; gg < G; ++gg) {
                const REAL w = W[gg * Fp + f];
                const REAL *dr = dpre + gg * L;
                for (int64_t l = 0; l < L; ++l) di[l] += w * dr[l];
            }
        }
        for (int64_t gg = 0; gg < G; ++gg) { /* d rho / rho, zero where the norm was clamped */
            REAL *di = dinv + (ns + gg) * L;
            const REAL *mr = msb + gg * L, *rr = rms + gg * L;
            for (int64_t l = 0; l < L; ++l) di[l] = mr[l] < TINY ? (REAL)0 : di[l] / rr[l];
        }
        /* dy of the scalars: the gates' part (W^T d pre) plus the activation's backward */
        for (int64_t c = 0; c < ns; ++c) {
            const REAL *xr = xb + c * L;
            REAL *dr = dyb + c * L;
            memcpy(dr, dinv + c * L, (size_t)L * sizeof(REAL));
            SFX(activation_backward_row)(dr, gbb + c * L, ys + c * L, L, act);
            SFX(finish_row)(dr, gy ? gy + (b * C + c) * L : NULL, xr, mu[c], L, sum_dy + c, sum_dyc + c);
        }
        /* dy of the gated fields: g gamma + y MS^T (d rho / rho) */
        for (int64_t c = 0; c < Cv; ++c) {
            const int64_t ch = ns + c, gg = gate_of[c];
            const REAL *xr = xb + ch * L, *gr = gbb + ch * L, *gar = gab + gg * L, *di = dinv + (ns + gg) * L;
            REAL *dr = dyb + ch * L;
            const REAL m = mu[ch], s = a[ch], t = shift[ch], w = MS[gg * Cv + c];
            for (int64_t l = 0; l < L; ++l) dr[l] = gr[l] * gar[l] + ((xr[l] - m) * s + t) * (w * di[l]);
            SFX(finish_row)(dr, gy ? gy + (b * C + ch) * L : NULL, xr, m, L, sum_dy + ch, sum_dyc + ch);
        }
    }
    /* the batch norm's parameter gradients and the input gradient's per-channel factors */
    for (int64_t f = 0; f < F; ++f) {
        double s = 0;
        for (int64_t c = 0; c < C; ++c) s += (double)Fm[f * C + c] * sum_dyc[c];
        gcf[f] = s;
        if (gw) gw[f] = (REAL)(s * (double)r[f]);
    }
    for (int64_t k = 0; k < NK; ++k) { /* the bias gradient: the invariant coefficients of sum dy */
        double s = 0;
        for (int64_t c = 0; c < C; ++c) s += (double)K[k * C + c] * sum_dy[c];
        sk[k] = s;
        if (gbias) gbias[k] = (REAL)s;
    }
    for (int64_t gg = 0; gg < G; ++gg) {
        for (int64_t f = 0; f < Fp; ++f) ggw[gg * Fp + f] = (REAL)aggw[gg * Fp + f];
        if (has_gb) ggb[gg] = (REAL)aggb[gg];
    }
    /* pass 2: gx = a (dy - P sum dy / n) + k c, k = -(sum_f <dy, c>) af r^2 / (n D) on each field's channels */
    for (int64_t c = 0; c < C; ++c) {
        double sub = 0;
        for (int64_t k = 0; k < NK; ++k) sub += (double)K[k * C + c] * sk[k];
        const int64_t f = field_of[c];
        const REAL kc = (REAL)(-gcf[f] * (double)af[f] * (double)r[f] * (double)r[f] / (double)fdim[f] / (double)n);
        const REAL sc = (REAL)(sub / (double)n), s = a[c], m = mu[c];
        for (int64_t b = 0; b < B; ++b) {
            const REAL *xr = x + (b * C + c) * L;
            REAL *dr = gx + (b * C + c) * L;
            for (int64_t l = 0; l < L; ++l) dr[l] = (dr[l] - sc) * s + (xr[l] - m) * kc;
        }
    }
    free(acc);
    free(scratch);
    return 0;
}

