/* TensorBatchNorm (training, batch statistics) followed by GatedNonLinearity, forward and backward, as two plain C
 * functions per dtype (float32: *_f32, float64: *_f64) on contiguous CPU arrays. Built and loaded at run time by
 * escnn_tensor._native (ctypes; only a C compiler is needed), called by escnn_tensor.nn._norm_gate._NormGateNative.
 *
 * The math is that of escnn_tensor.nn._norm_gate (module docstring), written as three passes over the input forward
 * (channel sums; squares of the centred input; normalise, gate) and two backward (gradient of the normalised input
 * with the per-channel sums it needs; the batch norm's backward), where the torch formulation makes ~45 tensor
 * operations each way. Shapes: x, z, gradients (B, C, L) with L the pixels; the first ns channels are the true
 * scalars, the other Cv = C - ns channels are the gated fields' (each channel c reads the gate gate_of[c]).
 * Sums are accumulated in double for both dtypes. Single-threaded: the caller uses it where per-call costs dominate.
 *
 * The kernels are in norm_gate_kernels.h, included twice (REAL = float, then double).
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

enum { ACT_ELU = 0, ACT_SILU = 1, ACT_RELU = 2, ACT_LEAKY_RELU = 3, ACT_GELU = 4, ACT_TANH = 5, ACT_SIGMOID = 6 };

/* version of the calling convention below; escnn_tensor._native checks it */
int64_t etn_abi_version(void) { return 2; }

#define REAL float
#define SFX(name) name##_f32
#define EXP expf
#define ERF erff
#define TANH tanhf
#define SQRT sqrtf
#define TINY FLT_MIN
#include "norm_gate_kernels.h"
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
#include "norm_gate_kernels.h"

