#include "model/vector_loops.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace undo::loops {
namespace {

// 16 fp32 lanes: one AVX-512 register, two AVX2 ones, four SSE ones. GCC
// lowers each operation on these types to what each copy's ISA has.
constexpr int L = 16;
typedef float Vf __attribute__((vector_size(64)));
typedef int32_t Vi __attribute__((vector_size(64)));
typedef uint32_t Vu __attribute__((vector_size(64)));
typedef uint16_t Vh __attribute__((vector_size(32)));

#define UNDO_INLINE inline __attribute__((always_inline))
// Each kernel is compiled three times, for AVX-512, AVX2 with FMA and
// baseline x86-64 (the helpers below are always inlined, so each copy is
// compiled for its ISA), and loop_isa() picks one per process: the widest
// this CPU has, no wider than ATEN_CPU_CAPABILITY says where it is set
// (default | avx2 | avx512), so that these loops follow ATen's dispatch and
// launch/test's variants run every copy on one machine.
enum class Isa { base, avx2, avx512 };
#if defined(__x86_64__) && defined(__GNUC__)
#define UNDO_ISA_VARIANTS(name, params, call)                                                           \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma"))) void name##_avx512 params { call; } \
  __attribute__((target("avx2,fma"))) void name##_avx2 params { call; }                                 \
  void name##_base params { call; }
// The copy loop_isa() picks, called with `args`.
#define UNDO_DISPATCH(name, args) \
  (loop_isa() == Isa::avx512 ? name##_avx512 : loop_isa() == Isa::avx2 ? name##_avx2 : name##_base) args
Isa loop_isa() {
  static const Isa isa = [] {
    __builtin_cpu_init();
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const char* env = std::getenv("ATEN_CPU_CAPABILITY");
    const std::string cap = env ? env : "";
    if (avx512 && cap != "avx2" && cap != "default") return Isa::avx512;
    if (avx2 && cap != "default") return Isa::avx2;
    return Isa::base;
  }();
  return isa;
}
#else
#define UNDO_ISA_VARIANTS(name, params, call) \
  void name##_base params { call; }
#define UNDO_DISPATCH(name, args) name##_base args
Isa loop_isa() { return Isa::base; }
#endif

constexpr float kInf = std::numeric_limits<float>::infinity();

UNDO_INLINE Vf splat(float v) { return Vf{} + v; }

// Loads and stores, whole lanes and a tail of n < L (padded with `pad`).
// bf16 -> fp32 is exact; fp32 -> bf16 rounds to nearest even, NaN stays NaN
// (as c10::BFloat16 rounds).
UNDO_INLINE float load1(const float* p) { return *p; }
UNDO_INLINE float load1(const uint16_t* p) {
  const uint32_t u = uint32_t(*p) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
UNDO_INLINE void store1(float* p, float v) { *p = v; }
UNDO_INLINE void store1(uint16_t* p, float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  *p = v != v ? uint16_t(0x7fc0) : uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
UNDO_INLINE Vf load(const float* p) {
  Vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
UNDO_INLINE Vf load(const uint16_t* p) {
  Vh h;
  std::memcpy(&h, p, sizeof h);
  return (Vf)(__builtin_convertvector(h, Vu) << 16);
}
UNDO_INLINE void store(float* p, Vf v) { std::memcpy(p, &v, sizeof v); }
UNDO_INLINE void store(uint16_t* p, Vf v) {
  const Vu u = (Vu)v;
  const Vu rounded = v != v ? Vu{} + 0x7fc0u : (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const Vh h = __builtin_convertvector(rounded, Vh);
  std::memcpy(p, &h, sizeof h);
}
template <class S>
UNDO_INLINE Vf load_n(const S* p, int64_t n, float pad) {
  float buf[L];
  for (int i = 0; i < L; ++i) buf[i] = i < n ? load1(p + i) : pad;
  return load(buf);
}
template <class S>
UNDO_INLINE void store_n(S* p, Vf v, int64_t n) {
  float buf[L];
  store(buf, v);
  for (int64_t i = 0; i < n; ++i) store1(p + i, buf[i]);
}

UNDO_INLINE float hsum(Vf v) {
  float s = 0;
  for (int i = 0; i < L; ++i) s += v[i];
  return s;
}
// NaN-propagating where it matters: a NaN in a row makes its exp sum NaN.
UNDO_INLINE Vf vmax(Vf a, Vf b) { return a > b ? a : b; }
UNDO_INLINE float hmax(Vf v) {
  float m = v[0];
  for (int i = 1; i < L; ++i) m = v[i] > m ? v[i] : m;
  return m;
}

// exp: Cephes' expf (S. Moshier): x = n ln2 + r, |r| <= ln2 / 2, ln2 split in
// two for an exact reduction, a degree-6 polynomial for exp(r), 2^n from the
// exponent bits. About 1 ulp on [-87.3, 88]; below, 0 (FLT_MIN and the
// subnormals flush to 0, -inf gives 0); above 88, exp(88) (no caller needs
// more: softmax arguments are <= 0, tanh and the sigmoid saturate long
// before). NaN stays NaN.
UNDO_INLINE Vf vexp(Vf x) {
  const Vi underflow = x < splat(-87.33654f);
  x = x < splat(-87.33654f) ? splat(-87.33654f) : x;
  x = x > splat(88.0f) ? splat(88.0f) : x;
  const Vf t = x * 1.44269504088896341f;
  const Vi n = __builtin_convertvector(t + (t >= 0 ? splat(0.5f) : splat(-0.5f)), Vi);  // round to nearest
  const Vf nf = __builtin_convertvector(n, Vf);
  Vf r = x - nf * 0.693359375f;
  r = r + nf * 2.12194440e-4f;
  Vf p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const Vf scale = (Vf)(((Vu)(n + 127)) << 23);
  return underflow ? splat(0) : p * scale;
}

// erfc(z) for z >= 0 by Abramowitz and Stegun 7.1.26 (erf's |error| <=
// 1.5e-7), the formula ATen's own vectorised erf uses: poly(t) t exp(-z^2)
// with t = 1 / (1 + p z). `e` is that exp(-z^2), which gelu's gradient needs
// too. Kept as erfc, not 1 - erf: gelu's lower tail is this, small, and 1 -
// (1 - it) would lose it to cancellation.
UNDO_INLINE Vf verfc_nonnegative(Vf z, Vf e) {
  const Vf t = 1.0f / (1.0f + 0.3275911f * z);
  Vf p = splat(1.061405429f);
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  return p * t * e;
}

// act(x) and, when `grad` is not null, act'(x). Each is written so that no
// term is a difference of two near-equal ones: 1 - sigmoid(y) as
// exp(-y) sigmoid(y), gelu_tanh's 1 + tanh(y) as 2 sigmoid(2y), the lower
// tail of gelu's Phi as erfc, so that a small activation keeps its relative
// accuracy (and its bf16 rounding is that of the exact value).
UNDO_INLINE Vf activate(Activation act, Vf x, Vf* grad) {
  switch (act) {
    case Activation::silu: {  // x sigmoid(x)
      const Vf e = vexp(-x), s = 1.0f / (1.0f + e);
      if (grad) *grad = s * (1.0f + x * (e * s));
      return x * s;
    }
    case Activation::gelu_tanh: {  // x (1 + tanh(y)) / 2 = x sigmoid(2y), y = k0 (x + k1 x^3)
      constexpr float k0 = 0.7978845608028654f, k1 = 0.044715f;  // sqrt(2 / pi)
      const Vf x2 = x * x;
      const Vf e = vexp(-2.0f * k0 * x * (1.0f + k1 * x2)), s = 1.0f / (1.0f + e);
      if (grad) *grad = s + 2.0f * x * (e * s) * s * k0 * (1.0f + 3.0f * k1 * x2);
      return x * s;
    }
    case Activation::gelu_erf:
    default: {  // x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2, Phi'(x) = exp(-x^2 / 2) / sqrt(2 pi)
      const Vf z = (x < 0 ? -x : x) * 0.70710678118654752f, e = vexp(-(z * z));
      const Vf half_erfc = 0.5f * verfc_nonnegative(z, e);
      const Vf cdf = x < 0 ? half_erfc : 1.0f - half_erfc;
      if (grad) *grad = cdf + x * e * 0.3989422804014327f;
      return x * cdf;
    }
  }
}

// A thread's fp32 row of n: the exps of a softmax, kept between its passes
// so that each is computed once.
UNDO_INLINE float* scratch_row(int64_t n) {
  thread_local std::vector<float> row;
  if (int64_t(row.size()) < n + L) row.resize(n + L);
  return row.data();
}

// e[j] = exp(x[j] - max(x)) over n elements, in fp32; returns their sum,
// and the max in *max_out when asked.
template <class S>
UNDO_INLINE float exp_of_row(const S* x, int64_t n, float* e, float* max_out = nullptr) {
  const int64_t full = n - n % L;
  Vf m = splat(-kInf);
  for (int64_t j = 0; j < full; j += L) m = vmax(m, load(x + j));
  if (full < n) m = vmax(m, load_n(x + full, n - full, -kInf));
  const float mx = hmax(m);
  if (max_out) *max_out = mx;
  Vf s = splat(0);
  for (int64_t j = 0; j < full; j += L) {
    const Vf v = vexp(load(x + j) - mx);
    store(e + j, v);
    s += v;
  }
  if (full < n) {
    const Vf v = vexp(load_n(x + full, n - full, -kInf) - mx);  // the padding's exp is 0
    store(e + full, v);
    s += v;
  }
  return hsum(s);
}

// out[j] = e[j] * mul over n elements, in out's type.
template <class S>
UNDO_INLINE void scaled_into(const float* e, int64_t n, float mul, S* out) {
  const int64_t full = n - n % L;
  for (int64_t j = 0; j < full; j += L) store(out + j, load(e + j) * mul);
  if (full < n) store_n(out + full, load(e + full) * mul, n - full);
}

template <class S>
UNDO_INLINE void cross_entropy_body(const S* z, int64_t V, const int64_t* targets, int64_t begin, int64_t end,
                                    float* loss, S* grad) {
  float* e = scratch_row(V);
  for (int64_t r = begin; r < end; ++r) {
    const S* row = z + r * V;
    const int64_t t = targets[r];
    float mx;
    const float sum = exp_of_row(row, V, e, &mx);
    loss[r] = mx + std::log(sum) - load1(row + t);  // log-sum-exp - z[t]
    if (!grad) continue;
    S* g = grad + r * V;
    const float inv = 1.0f / sum;
    scaled_into(e, V, inv, g);
    store1(g + t, e[t] * inv - 1.0f);  // softmax - onehot
  }
}

template <class S>
UNDO_INLINE void gated_body(Activation act, const S* gu, int64_t F, int64_t begin, int64_t end, S* out) {
  const int64_t full = F - F % L;
  for (int64_t r = begin; r < end; ++r) {
    const S *g = gu + r * 2 * F, *u = g + F;
    S* o = out + r * F;
    for (int64_t j = 0; j < full; j += L) store(o + j, activate(act, load(g + j), nullptr) * load(u + j));
    if (full < F)
      store_n(o + full, activate(act, load_n(g + full, F - full, 0), nullptr) * load_n(u + full, F - full, 0),
              F - full);
  }
}

template <class S>
UNDO_INLINE void gated_grad_lanes(Activation act, const S* g, const S* u, const S* d, S* dg, S* du, int64_t n) {
  Vf da;
  if (n == L) {
    const Vf a = activate(act, load(g), &da), dv = load(d);
    store(dg, dv * load(u) * da);
    store(du, dv * a);
  } else {
    const Vf a = activate(act, load_n(g, n, 0), &da), dv = load_n(d, n, 0);
    store_n(dg, dv * load_n(u, n, 0) * da, n);
    store_n(du, dv * a, n);
  }
}

template <class S>
UNDO_INLINE void gated_grad_body(Activation act, const S* gu, const S* dout, int64_t F, int64_t begin, int64_t end,
                                 S* dgu) {
  for (int64_t r = begin; r < end; ++r) {
    const S *g = gu + r * 2 * F, *u = g + F, *d = dout + r * F;
    S *dg = dgu + r * 2 * F, *du = dg + F;
    for (int64_t j = 0; j < F; j += L)
      gated_grad_lanes(act, g + j, u + j, d + j, dg + j, du + j, std::min<int64_t>(L, F - j));
  }
}

// The keys query i sees: [lo, i].
UNDO_INLINE int64_t first_key(int64_t i, int window) { return window > 0 && i - window + 1 > 0 ? i - window + 1 : 0; }

template <class S>
UNDO_INLINE void causal_softmax_body(const S* scores, int64_t T, int window, int64_t begin, int64_t end, S* out) {
  for (int64_t r = begin; r < end; ++r) {
    const int64_t i = r % T, lo = first_key(i, window), n = i - lo + 1;
    const S* x = scores + r * T + lo;
    S* o = out + r * T;
    std::memset(o, 0, sizeof(S) * lo);  // 0 has all bits clear in fp32 and bf16
    std::memset(o + i + 1, 0, sizeof(S) * (T - i - 1));
    float* e = scratch_row(n);
    scaled_into(e, n, 1.0f / exp_of_row(x, n, e), o + lo);  // as ATen's softmax: times the sum's reciprocal
  }
}

template <class S>
UNDO_INLINE void causal_softmax_grad_body(const S* p, const S* dp, int64_t T, int window, int64_t begin, int64_t end,
                                          S* ds) {
  for (int64_t r = begin; r < end; ++r) {
    const int64_t i = r % T, lo = first_key(i, window), n = i - lo + 1, full = n - n % L;
    const S *pr = p + r * T + lo, *dr = dp + r * T + lo;
    S* o = ds + r * T;
    std::memset(o, 0, sizeof(S) * lo);
    std::memset(o + i + 1, 0, sizeof(S) * (T - i - 1));
    Vf acc = splat(0);
    for (int64_t j = 0; j < full; j += L) acc += load(pr + j) * load(dr + j);
    if (full < n) acc += load_n(pr + full, n - full, 0) * load_n(dr + full, n - full, 0);
    const float dot = hsum(acc);
    for (int64_t j = 0; j < full; j += L) store(o + lo + j, load(pr + j) * (load(dr + j) - dot));
    if (full < n)
      store_n(o + lo + full, load_n(pr + full, n - full, 0) * (load_n(dr + full, n - full, 0) - dot), n - full);
  }
}

template <class S>
UNDO_INLINE Vf lanes(const S* p, int64_t n, float pad = 0) {
  return n == L ? load(p) : load_n(p, n, pad);
}
template <class S>
UNDO_INLINE void put(S* p, Vf v, int64_t n) {
  if (n == L)
    store(p, v);
  else
    store_n(p, v, n);
}

template <class S, class O>
UNDO_INLINE void rms_norm_body(const S* x, const float* w, double eps, int64_t d, int64_t begin, int64_t end,
                               float* rstd, O* out) {
  for (int64_t r = begin; r < end; ++r) {
    const S* xr = x + r * d;
    Vf acc = splat(0);
    for (int64_t j = 0; j < d; j += L) {
      const Vf v = lanes(xr + j, std::min<int64_t>(L, d - j));
      acc += v * v;
    }
    const float rs = 1.0f / std::sqrt(float(double(hsum(acc)) / double(d) + eps));
    rstd[r] = rs;
    for (int64_t j = 0; j < d; j += L) {
      const int64_t n = std::min<int64_t>(L, d - j);
      put(out + r * d + j, lanes(xr + j, n) * rs * (lanes(w + j, n) + 1.0f), n);
    }
  }
}

template <class S, class O>
UNDO_INLINE void rms_norm_grad_body(const S* x, const float* w, const float* rstd, const O* g, int64_t d, int64_t begin,
                                    int64_t end, S* dx, float* dw_sum) {
  for (int64_t r = begin; r < end; ++r) {
    const S* xr = x + r * d;
    const O* gr = g + r * d;
    const float rs = rstd[r];
    Vf acc = splat(0);
    for (int64_t j = 0; j < d; j += L) {
      const int64_t n = std::min<int64_t>(L, d - j);
      acc += lanes(gr + j, n) * (lanes(w + j, n) + 1.0f) * (lanes(xr + j, n) * rs);
    }
    const float mean = hsum(acc) / float(d);
    for (int64_t j = 0; j < d; j += L) {
      const int64_t n = std::min<int64_t>(L, d - j);
      const Vf xhat = lanes(xr + j, n) * rs, gv = lanes(gr + j, n);
      put(dx + r * d + j, (gv * (lanes(w + j, n) + 1.0f) - xhat * mean) * rs, n);
      put(dw_sum + j, lanes(dw_sum + j, n) + gv * xhat, n);
    }
  }
}

template <class S>
UNDO_INLINE void rotary_body(const S* x, int64_t H, int64_t T, const int64_t* strides, const S* cos, const S* sin,
                             int64_t hd, float sign, int64_t begin, int64_t end, S* out) {
  const int64_t half = hd / 2;
  for (int64_t r = begin; r < end; ++r) {
    const int64_t b = r / (H * T), h = (r / T) % H, t = r % T;
    const S* xr = x + b * strides[0] + h * strides[1] + t * strides[2];
    const S *c = cos + t * half, *s = sin + t * half;
    S* o = out + r * hd;
    for (int64_t j = 0; j < half; j += L) {
      const int64_t n = std::min<int64_t>(L, half - j);
      const Vf x1 = lanes(xr + j, n), x2 = lanes(xr + half + j, n), cv = lanes(c + j, n), sv = lanes(s + j, n);
      put(o + j, x1 * cv - sign * x2 * sv, n);
      put(o + half + j, x2 * cv + sign * x1 * sv, n);
    }
  }
}

// The kernels, each in its three copies: one per operation and element type.
using B = uint16_t;
UNDO_ISA_VARIANTS(ce_f32, (const float* z, int64_t V, const int64_t* t, int64_t b, int64_t e, float* l, float* g),
                  cross_entropy_body(z, V, t, b, e, l, g))
UNDO_ISA_VARIANTS(ce_bf16, (const B* z, int64_t V, const int64_t* t, int64_t b, int64_t e, float* l, B* g),
                  cross_entropy_body(z, V, t, b, e, l, g))
UNDO_ISA_VARIANTS(gated_f32, (Activation a, const float* gu, int64_t F, int64_t b, int64_t e, float* o),
                  gated_body(a, gu, F, b, e, o))
UNDO_ISA_VARIANTS(gated_bf16, (Activation a, const B* gu, int64_t F, int64_t b, int64_t e, B* o),
                  gated_body(a, gu, F, b, e, o))
UNDO_ISA_VARIANTS(gated_grad_f32,
                  (Activation a, const float* gu, const float* d, int64_t F, int64_t b, int64_t e, float* o),
                  gated_grad_body(a, gu, d, F, b, e, o))
UNDO_ISA_VARIANTS(gated_grad_bf16, (Activation a, const B* gu, const B* d, int64_t F, int64_t b, int64_t e, B* o),
                  gated_grad_body(a, gu, d, F, b, e, o))
UNDO_ISA_VARIANTS(softmax_f32, (const float* s, int64_t T, int w, int64_t b, int64_t e, float* o),
                  causal_softmax_body(s, T, w, b, e, o))
UNDO_ISA_VARIANTS(softmax_bf16, (const B* s, int64_t T, int w, int64_t b, int64_t e, B* o),
                  causal_softmax_body(s, T, w, b, e, o))
UNDO_ISA_VARIANTS(softmax_grad_f32, (const float* p, const float* dp, int64_t T, int w, int64_t b, int64_t e, float* o),
                  causal_softmax_grad_body(p, dp, T, w, b, e, o))
UNDO_ISA_VARIANTS(softmax_grad_bf16, (const B* p, const B* dp, int64_t T, int w, int64_t b, int64_t e, B* o),
                  causal_softmax_grad_body(p, dp, T, w, b, e, o))
// RMSNorm's input and output types: the same, or fp32 in and bf16 out (a
// norm whose output feeds a bf16 product).
UNDO_ISA_VARIANTS(norm_f32,
                  (const float* x, const float* w, double eps, int64_t d, int64_t b, int64_t e, float* rs, float* o),
                  rms_norm_body(x, w, eps, d, b, e, rs, o))
UNDO_ISA_VARIANTS(norm_bf16, (const B* x, const float* w, double eps, int64_t d, int64_t b, int64_t e, float* rs, B* o),
                  rms_norm_body(x, w, eps, d, b, e, rs, o))
UNDO_ISA_VARIANTS(norm_f32_bf16,
                  (const float* x, const float* w, double eps, int64_t d, int64_t b, int64_t e, float* rs, B* o),
                  rms_norm_body(x, w, eps, d, b, e, rs, o))
UNDO_ISA_VARIANTS(norm_grad_f32,
                  (const float* x, const float* w, const float* rs, const float* g, int64_t d, int64_t b, int64_t e,
                   float* dx, float* dw),
                  rms_norm_grad_body(x, w, rs, g, d, b, e, dx, dw))
UNDO_ISA_VARIANTS(norm_grad_bf16,
                  (const B* x, const float* w, const float* rs, const B* g, int64_t d, int64_t b, int64_t e, B* dx,
                   float* dw),
                  rms_norm_grad_body(x, w, rs, g, d, b, e, dx, dw))
UNDO_ISA_VARIANTS(norm_grad_f32_bf16,
                  (const float* x, const float* w, const float* rs, const B* g, int64_t d, int64_t b, int64_t e,
                   float* dx, float* dw),
                  rms_norm_grad_body(x, w, rs, g, d, b, e, dx, dw))
UNDO_ISA_VARIANTS(rotary_f32,
                  (const float* x, int64_t H, int64_t T, const int64_t* st, const float* c, const float* s, int64_t hd,
                   float sign, int64_t b, int64_t e, float* o),
                  rotary_body(x, H, T, st, c, s, hd, sign, b, e, o))
UNDO_ISA_VARIANTS(rotary_bf16,
                  (const B* x, int64_t H, int64_t T, const int64_t* st, const B* c, const B* s, int64_t hd, float sign,
                   int64_t b, int64_t e, B* o),
                  rotary_body(x, H, T, st, c, s, hd, sign, b, e, o))

template <class P>
const B* bf(P p) {
  return static_cast<const B*>(p);
}
template <class P>
B* bf_out(P p) {
  return static_cast<B*>(p);
}
const float* f(const void* p) { return static_cast<const float*>(p); }
float* f_out(void* p) { return static_cast<float*>(p); }

}  // namespace

const char* isa_name() {
  switch (loop_isa()) {
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    default:
      return "baseline";
  }
}

void cross_entropy_rows(Dtype dt, const void* z, int64_t V, const int64_t* targets, int64_t begin, int64_t end,
                        float* loss, void* grad) {
  if (dt == Dtype::f32)
    UNDO_DISPATCH(ce_f32, (f(z), V, targets, begin, end, loss, f_out(grad)));
  else
    UNDO_DISPATCH(ce_bf16, (bf(z), V, targets, begin, end, loss, bf_out(grad)));
}

void gated_activation_rows(Dtype dt, Activation act, const void* gu, int64_t F, int64_t begin, int64_t end, void* out) {
  if (dt == Dtype::f32)
    UNDO_DISPATCH(gated_f32, (act, f(gu), F, begin, end, f_out(out)));
  else
    UNDO_DISPATCH(gated_bf16, (act, bf(gu), F, begin, end, bf_out(out)));
}

void gated_activation_grad_rows(Dtype dt, Activation act, const void* gu, const void* dout, int64_t F, int64_t begin,
                                int64_t end, void* dgu) {
  if (dt == Dtype::f32)
    UNDO_DISPATCH(gated_grad_f32, (act, f(gu), f(dout), F, begin, end, f_out(dgu)));
  else
    UNDO_DISPATCH(gated_grad_bf16, (act, bf(gu), bf(dout), F, begin, end, bf_out(dgu)));
}

void causal_softmax_rows(Dtype dt, const void* scores, int64_t T, int window, int64_t begin, int64_t end, void* out) {
  if (dt == Dtype::f32)
    UNDO_DISPATCH(softmax_f32, (f(scores), T, window, begin, end, f_out(out)));
  else
    UNDO_DISPATCH(softmax_bf16, (bf(scores), T, window, begin, end, bf_out(out)));
}

void causal_softmax_grad_rows(Dtype dt, const void* p, const void* dp, int64_t T, int window, int64_t begin,
                              int64_t end, void* ds) {
  if (dt == Dtype::f32)
    UNDO_DISPATCH(softmax_grad_f32, (f(p), f(dp), T, window, begin, end, f_out(ds)));
  else
    UNDO_DISPATCH(softmax_grad_bf16, (bf(p), bf(dp), T, window, begin, end, bf_out(ds)));
}

void rms_norm_rows(Dtype dt, Dtype out_dt, const void* x, const float* w, double eps, int64_t d, int64_t begin,
                   int64_t end, float* rstd, void* out) {
  if (dt == Dtype::f32 && out_dt == Dtype::f32)
    UNDO_DISPATCH(norm_f32, (f(x), w, eps, d, begin, end, rstd, f_out(out)));
  else if (dt == Dtype::bf16 && out_dt == Dtype::bf16)
    UNDO_DISPATCH(norm_bf16, (bf(x), w, eps, d, begin, end, rstd, bf_out(out)));
  else if (dt == Dtype::f32)
    UNDO_DISPATCH(norm_f32_bf16, (f(x), w, eps, d, begin, end, rstd, bf_out(out)));
  else
    throw std::invalid_argument("rms_norm_rows: a bf16 input with an fp32 output");
}

void rms_norm_grad_rows(Dtype dt, Dtype out_dt, const void* x, const float* w, const float* rstd, const void* g,
                        int64_t d, int64_t begin, int64_t end, void* dx, float* dw_sum) {
  if (dt == Dtype::f32 && out_dt == Dtype::f32)
    UNDO_DISPATCH(norm_grad_f32, (f(x), w, rstd, f(g), d, begin, end, f_out(dx), dw_sum));
  else if (dt == Dtype::bf16 && out_dt == Dtype::bf16)
    UNDO_DISPATCH(norm_grad_bf16, (bf(x), w, rstd, bf(g), d, begin, end, bf_out(dx), dw_sum));
  else if (dt == Dtype::f32)
    UNDO_DISPATCH(norm_grad_f32_bf16, (f(x), w, rstd, bf(g), d, begin, end, f_out(dx), dw_sum));
  else
    throw std::invalid_argument("rms_norm_grad_rows: a bf16 input with an fp32 output");
}

void rotary_rows(Dtype dt, const void* x, int64_t H, int64_t T, const int64_t* strides, const void* cos,
                 const void* sin, int64_t hd, float sign, int64_t begin, int64_t end, void* out) {
  if (dt == Dtype::f32)
    UNDO_DISPATCH(rotary_f32, (f(x), H, T, strides, f(cos), f(sin), hd, sign, begin, end, f_out(out)));
  else
    UNDO_DISPATCH(rotary_bf16, (bf(x), H, T, strides, bf(cos), bf(sin), hd, sign, begin, end, bf_out(out)));
}

}  // namespace undo::loops
