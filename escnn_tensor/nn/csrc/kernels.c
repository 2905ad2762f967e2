/* The native CPU kernels of escnn_tensor's layers, as plain C functions per dtype (float32: *_f32, float64: *_f64) on
 * contiguous CPU arrays (B, C, L) (L: the pixels). Built and loaded at run time by escnn_tensor._native (ctypes; only a
 * C compiler is needed). Sums are accumulated in double for both dtypes. Single-threaded: the callers use them where
 * per-call costs dominate.
 *
 * - norm_gate_kernels.h: TensorBatchNorm (training) followed by GatedNonLinearity, forward and backward
 *   (escnn_tensor.nn._norm_gate._NormGateNative);
 * - pointwise_kernels.h: PointwiseNonLinearity, forward and backward (escnn_tensor.nn._pointwise);
 * - activations.h: the scalar activations both use.
 *
 * Each header is included twice (REAL = float, then double).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GLIBC__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 6
/* glibc's vector math library (libmvec, reached through -lm): the declarations glibc's math.h makes only under
   -ffast-math, made here so that loops of exp vectorise while the build keeps IEEE semantics for NaN and inf */
__attribute__((__simd__("notinbranch"))) extern float expf(float);
__attribute__((__simd__("notinbranch"))) extern double exp(double);
#endif

/* the kinds of fields of PointwiseNonLinearity */
enum { KIND_SCALAR = 0, KIND_PSEUDO = 1, KIND_NORM = 2, KIND_UNCHANGED = 3 };

enum { ACT_ELU = 0, ACT_SILU = 1, ACT_RELU = 2, ACT_LEAKY_RELU = 3, ACT_GELU = 4, ACT_TANH = 5, ACT_SIGMOID = 6 };

/* version of the calling convention below; escnn_tensor._native checks it */
int64_t etn_abi_version(void) { return 3; }

#define REAL float
#define SFX(name) name##_f32
#define EXP expf
#define ERF erff
#define TANH tanhf
#define SQRT sqrtf
#define TINY FLT_MIN
#include "activations.h"
#include "norm_gate_kernels.h"
#include "pointwise_kernels.h"
#undef REAL
#undef SFX
#undef EXP
#undef ERF
#undef TANH
#undef SQRT
#undef TINY

#define REAL double
#define SFX(name) name##_f64
#define EXP exp
#define ERF erf
#define TANH tanh
#define SQRT sqrt
#define TINY DBL_MIN
#include "activations.h"
#include "norm_gate_kernels.h"
#include "pointwise_kernels.h"

