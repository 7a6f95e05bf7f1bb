// Internal: the attention kernels written once over an ISA traits class I, included
// by kernels_attention_avx2.cpp and kernels_attention_avx512.cpp (after their target
// pragma). Everything here has internal linkage so that the two compilations, made
// for different ISAs, can never be merged by the linker.
//
// I provides a 16-lane f32 vector V and a 16-lane mask M: zero, set1, load, store,
// load_tail(p, n) (lanes >= n read as zero, nothing past p + n touched), add, mul,
// fma(a, b, c) (a * b + c rounded once), max, min (the x86 instructions: the second
// operand where either is NaN), round (to nearest even), pow2i (2^n of an integral
// n in [-126, 127]), lt, le (ordered compares), select(M, a, b) (a where set), hsum
// (a fixed tree that starts with lanes i + i+8), hmax, lane0, load_bf16 / load_f16
// (16 values from u16 pointers) and their _tail forms, plus the register tiles
// kWideKeys, kWideDims, kNarrowKeys, kNarrowVecs.
//
// Both files are built with -ffp-contract=off, so every value is computed by exactly
// the operations written here: the AVX2 and AVX-512 paths agree bit for bit.
//
// Determinism: a query row's result is a fixed sequence of operations on its own
// data, whatever rows share its tile or lanes, and so whatever thread runs it:
//  - a score is a serial FMA chain over d = 0 .. head_dim - 1 (wide kernel) or 16
//    lane chains summed by hsum (narrow kernel; the caller picks one kernel per call
//    shape), then times scale;
//  - keys are visited in key tiles of kAttnKeyTile counted from the range start; a
//    tile where a row sees no key leaves that row's state untouched (wide: blended
//    back; narrow: skipped), so it makes no difference whether the tile ran for
//    other rows;
//  - per visited tile: m' = max(m, tile max); c = exp(m - m'); p_j = exp(s_j - m')
//    (masked keys: s = -inf, p = 0); l' = l * c + sum of p_j; o' = o * c + sum of
//    p_j * v_j by FMA, in key order.
#pragma once

// No includes on purpose: the including file has included everything before its
// target pragma (see kernels_matmul_avx512.cpp).

namespace {

using headinfer::AttnArgs;
using headinfer::DType;
using headinfer::KvPiece;
using headinfer::cpu_kern::AttnTask;
using headinfer::cpu_kern::kAttnKeyTile;
using headinfer::cpu_kern::kAttnNarrowRows;
using headinfer::cpu_kern::kAttnWideRows;

constexpr float kNegInf = -__builtin_inff();

// exp(x) = 2^n e^r with n = round(x / ln 2) and r = x - n ln 2 (ln 2 in two parts,
// so r is nearly exact), |r| <= 0.347; e^r by its Taylor series to degree 7
// (truncation < 1e-8 relative). Within 2 ulp of the exact value for x in
// [-87.3, 88]. Below -87.3 the result would leave the normal range: it is 0. The
// kernels only take exp of a score minus a max at least as large (x <= 0), where
// such a term is < 1e-37 of the largest, exp(0) = 1. NaN stays NaN.
template <class I>
inline typename I::V vexp(typename I::V x) {
  using V = typename I::V;
  const V xc = I::min(I::set1(88.f), x);
  const V n = I::round(I::mul(xc, I::set1(1.44269504088896341f)));
  V r = I::fma(n, I::set1(-0.693359375f), xc);  // few bits: n * this is exact
  r = I::fma(n, I::set1(2.12194440e-4f), r);     // ln 2 - 0.693359375, negated
  V p = I::set1(1.f / 5040.f);
  p = I::fma(p, r, I::set1(1.f / 720.f));
  p = I::fma(p, r, I::set1(1.f / 120.f));
  p = I::fma(p, r, I::set1(1.f / 24.f));
  p = I::fma(p, r, I::set1(1.f / 6.f));
  p = I::fma(p, r, I::set1(0.5f));
  p = I::fma(p, r, I::set1(1.f));
  p = I::fma(p, r, I::set1(1.f));
  return I::select(I::lt(xc, I::set1(-87.3f)), I::zero(), I::mul(p, I::pow2i(n)));
}

template <class I>
void exp_n(const float* x, float* y, int n) {
  int i = 0;
  for (; i + 16 <= n; i += 16) I::store(y + i, vexp<I>(I::load(x + i)));
  if (i < n) {
    float buf[16];
    I::store(buf, vexp<I>(I::load_tail(x + i, n - i)));
    for (int k = 0; k < n - i; ++k) y[i + k] = buf[k];
  }
}

// ---------------------------------------------------------------------------
// Key tiles: keys [j0, j0 + n) of the concatenated pieces, as runs within pieces.

struct Seg {
  const KvPiece* piece;
  int64_t local;  // first key within the piece
  int off, n;     // position in the tile, length
};

struct KeyTile {
  int n = 0, n_seg = 0;
  Seg seg[kAttnKeyTile];
  int64_t kmin = 0, kmax = 0;  // least and greatest key position
};

// Walks the pieces forwards: tiles must be located in increasing key order.
class PieceCursor {
 public:
  PieceCursor(const AttnTask& t, int64_t k) : pieces_(t.pieces), n_(t.n_pieces) { skip_to(k); }

  void locate(int64_t j0, int n, KeyTile& t) {
    skip_to(j0);
    t.n = n;
    t.n_seg = 0;
    int p = p_;
    int64_t start = start_;
    int off = 0;
    while (off < n) {
      const KvPiece& pc = pieces_[p];
      const int64_t local = j0 + off - start;
      if (local < pc.n_tokens) {
        const int len = static_cast<int>(pc.n_tokens - local < n - off ? pc.n_tokens - local : n - off);
        t.seg[t.n_seg++] = Seg{&pc, local, off, len};
        const int64_t lo = pc.pos0 + local, hi = pc.pos0 + local + len - 1;
        if (off == 0 || lo < t.kmin) t.kmin = lo;
        if (off == 0 || hi > t.kmax) t.kmax = hi;
        off += len;
      }
      start += pc.n_tokens;
      ++p;
    }
  }

 private:
  void skip_to(int64_t k) {
    while (p_ < n_ && k >= start_ + pieces_[p_].n_tokens) start_ += pieces_[p_++].n_tokens;
  }
  const KvPiece* pieces_;
  int n_;
  int p_ = 0;
  int64_t start_ = 0;  // first key of piece p_
};

// n contiguous KV values to f32; dst has room for a whole last vector.
template <class I>
void to_f32_run(DType dt, const void* src, float* dst, int64_t n) {
  if (dt == DType::F32) {
    __builtin_memcpy(dst, src, static_cast<size_t>(n) * 4);
    return;
  }
  const auto* s = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  if (dt == DType::BF16) {
    for (; i + 16 <= n; i += 16) I::store(dst + i, I::load_bf16(s + i));
    if (i < n) I::store(dst + i, I::load_bf16_tail(s + i, static_cast<int>(n - i)));
  } else {
    for (; i + 16 <= n; i += 16) I::store(dst + i, I::load_f16(s + i));
    if (i < n) I::store(dst + i, I::load_f16_tail(s + i, static_cast<int>(n - i)));
  }
}

// The tile's K and V rows (stride head_dim) as f32: in place for an F32 tile within
// one piece, else converted into kbuf / vbuf (kAttnKeyTile * head_dim + 16 floats).
template <class I>
void gather(const AttnArgs& a, const KeyTile& t, float* kbuf, float* vbuf, const float*& k, const float*& v) {
  const int hd = a.head_dim;
  if (a.kv_dtype == DType::F32 && t.n_seg == 1) {
    k = static_cast<const float*>(t.seg[0].piece->k) + t.seg[0].local * hd;
    v = static_cast<const float*>(t.seg[0].piece->v) + t.seg[0].local * hd;
    return;
  }
  const size_t esz = a.kv_dtype == DType::F32 ? 4 : 2;
  for (int s = 0; s < t.n_seg; ++s) {
    const Seg& g = t.seg[s];
    const size_t byte0 = static_cast<size_t>(g.local) * hd * esz;
    to_f32_run<I>(a.kv_dtype, static_cast<const uint8_t*>(g.piece->k) + byte0, kbuf + g.off * hd, int64_t{g.n} * hd);
    to_f32_run<I>(a.kv_dtype, static_cast<const uint8_t*>(g.piece->v) + byte0, vbuf + g.off * hd, int64_t{g.n} * hd);
  }
  k = kbuf;
  v = vbuf;
}

// Calls f(j, position of key j) for the tile's keys in order.
template <class F>
inline void for_each_pos(const KeyTile& t, F&& f) {
  for (int s = 0; s < t.n_seg; ++s)
    for (int i = 0; i < t.seg[s].n; ++i) f(t.seg[s].off + i, t.seg[s].piece->pos0 + t.seg[s].local + i);
}

// Calls f.template operator()<R>() for the runtime r in [1, R].
template <int R, class F>
inline void with_count(int r, F&& f) {
  if constexpr (R > 1) {
    if (r < R) return with_count<R - 1>(r, f);
  }
  f.template operator()<R>();
}

// ---------------------------------------------------------------------------
// Wide kernel: 32 query rows in the lanes of two vectors. K and V rows are read
// as broadcast scalars, so neither needs transposing; the queries are transposed
// once per row tile into qt[d][lane], the output accumulates in ot[d][lane].

constexpr int kL = kAttnWideRows;
constexpr int kRV = kL / 16;

// s[kk][lane] = scale * (q_lane . k_kk) for kk < RK, each dot a serial FMA chain.
template <class I, int RK>
inline void wide_qk(const float* qt, const float* k, int hd, float scale, float* s) {
  using V = typename I::V;
  V acc[RK][kRV];
#pragma GCC unroll 16
  for (int kk = 0; kk < RK; ++kk)
#pragma GCC unroll 4
    for (int rv = 0; rv < kRV; ++rv) acc[kk][rv] = I::zero();
  for (int d = 0; d < hd; ++d) {
    V qv[kRV];
#pragma GCC unroll 4
    for (int rv = 0; rv < kRV; ++rv) qv[rv] = I::load(qt + d * kL + rv * 16);
#pragma GCC unroll 16
    for (int kk = 0; kk < RK; ++kk) {
      const V kb = I::set1(k[kk * hd + d]);
#pragma GCC unroll 4
      for (int rv = 0; rv < kRV; ++rv) acc[kk][rv] = I::fma(kb, qv[rv], acc[kk][rv]);
    }
  }
  const V sc = I::set1(scale);
#pragma GCC unroll 16
  for (int kk = 0; kk < RK; ++kk)
#pragma GCC unroll 4
    for (int rv = 0; rv < kRV; ++rv) I::store(s + kk * kL + rv * 16, I::mul(acc[kk][rv], sc));
}

// ot[dd][lane] = ot * corr + sum over j < n of v[j][dd] * p[j][lane], dd < DD;
// lanes not in `active` keep their old value.
template <class I, int DD>
inline void wide_pv(float* ot, const float* v, int hd, const float* p, int n, const typename I::V* corr,
                    const typename I::M* active) {
  using V = typename I::V;
  V acc[DD][kRV];
#pragma GCC unroll 16
  for (int dd = 0; dd < DD; ++dd)
#pragma GCC unroll 4
    for (int rv = 0; rv < kRV; ++rv) acc[dd][rv] = I::mul(I::load(ot + dd * kL + rv * 16), corr[rv]);
  for (int j = 0; j < n; ++j) {
    V pv[kRV];
#pragma GCC unroll 4
    for (int rv = 0; rv < kRV; ++rv) pv[rv] = I::load(p + j * kL + rv * 16);
#pragma GCC unroll 16
    for (int dd = 0; dd < DD; ++dd) {
      const V vb = I::set1(v[j * hd + dd]);
#pragma GCC unroll 4
      for (int rv = 0; rv < kRV; ++rv) acc[dd][rv] = I::fma(vb, pv[rv], acc[dd][rv]);
    }
  }
#pragma GCC unroll 16
  for (int dd = 0; dd < DD; ++dd)
#pragma GCC unroll 4
    for (int rv = 0; rv < kRV; ++rv) {
      float* o = ot + dd * kL + rv * 16;
      I::store(o, I::select(active[rv], acc[dd][rv], I::load(o)));
    }
}

// Rows [i0, i0 + nr) of the task, nr <= kL.
template <class I>
void wide_tile(const AttnArgs& a, const AttnTask& task, int64_t i0, int nr, float* scratch) {
  using V = typename I::V;
  using M = typename I::M;
  constexpr int Tk = kAttnKeyTile;
  const int hd = a.head_dim, nqh = a.n_qh;
  float* qt = scratch;
  float* ot = qt + hd * kL;
  float* s = ot + hd * kL;
  float* kbuf = s + Tk * kL;
  float* vbuf = kbuf + Tk * hd + 16;

  // Causal visibility in lane terms: key visible iff krel <= qrel, both relative to
  // the tile's first query position. Padding lanes see no key.
  constexpr float kFar = 33554432.f;  // 2^25: beyond any clamped key offset
  const int64_t tmin = i0 / nqh, tmax = (i0 + nr - 1) / nqh;
  const int64_t qmin = a.q_pos0 + tmin, qmax = a.q_pos0 + tmax;
  alignas(64) float qrel[kL];
  alignas(64) float krel[Tk];
  for (int i = 0; i < kL; ++i) {
    if (i < nr) {
      const int64_t row = i0 + i, t = row / nqh, h = row % nqh;
      const float* q = a.q + t * a.q_stride + h * hd;
      for (int d = 0; d < hd; ++d) qt[d * kL + i] = q[d];
      qrel[i] = static_cast<float>(t - tmin);
    } else {
      for (int d = 0; d < hd; ++d) qt[d * kL + i] = 0.f;
      qrel[i] = -kFar;
    }
  }
  for (int i = 0; i < hd * kL; ++i) ot[i] = 0.f;
  V m[kRV], l[kRV], qr[kRV];
  for (int rv = 0; rv < kRV; ++rv) {
    m[rv] = I::set1(kNegInf);
    l[rv] = I::zero();
    qr[rv] = I::load(qrel + rv * 16);
  }

  constexpr int RK = I::kWideKeys, DD = I::kWideDims;
  PieceCursor cur(task, task.k0);
  KeyTile kt;
  for (int64_t j0 = task.k0; j0 < task.k1; j0 += Tk) {
    const int n = static_cast<int>(task.k1 - j0 < Tk ? task.k1 - j0 : Tk);
    cur.locate(j0, n, kt);
    if (a.causal && kt.kmin > qmax) continue;  // no row sees any of it
    const bool diag = a.causal && kt.kmax > qmin;
    const float *k, *v;
    gather<I>(a, kt, kbuf, vbuf, k, v);

    int j = 0;
    for (; j + RK <= n; j += RK) wide_qk<I, RK>(qt, k + j * hd, hd, a.scale, s + j * kL);
    if (j < n)
      with_count<RK>(n - j, [&]<int R>() { wide_qk<I, R>(qt, k + j * hd, hd, a.scale, s + j * kL); });

    V bmax[kRV];
    for (int rv = 0; rv < kRV; ++rv) bmax[rv] = I::set1(kNegInf);
    if (diag) {
      for_each_pos(kt, [&](int jj, int64_t pos) {
        int64_t r = pos - qmin;
        r = r < -(1 << 24) ? -(1 << 24) : r > (1 << 24) ? (1 << 24) : r;  // exact as float
        krel[jj] = static_cast<float>(r);
      });
      for (int jj = 0; jj < n; ++jj) {
        const V kr = I::set1(krel[jj]);
        for (int rv = 0; rv < kRV; ++rv) {
          float* sp = s + jj * kL + rv * 16;
          const V x = I::select(I::le(kr, qr[rv]), I::load(sp), I::set1(kNegInf));
          I::store(sp, x);
          bmax[rv] = I::max(bmax[rv], x);
        }
      }
    } else {
      for (int jj = 0; jj < n; ++jj)
        for (int rv = 0; rv < kRV; ++rv) bmax[rv] = I::max(bmax[rv], I::load(s + jj * kL + rv * 16));
    }

    // Lanes that see no key here (bmax = -inf) get garbage below and are blended back.
    M active[kRV];
    V mnew[kRV], msub[kRV], corr[kRV], lnew[kRV];
    for (int rv = 0; rv < kRV; ++rv) {
      active[rv] = I::lt(I::set1(kNegInf), bmax[rv]);
      mnew[rv] = I::max(m[rv], bmax[rv]);
      msub[rv] = I::select(active[rv], mnew[rv], I::zero());  // no -inf - -inf
      corr[rv] = vexp<I>(I::sub(m[rv], msub[rv]));
      lnew[rv] = I::mul(l[rv], corr[rv]);
    }
    for (int jj = 0; jj < n; ++jj)
      for (int rv = 0; rv < kRV; ++rv) {
        float* sp = s + jj * kL + rv * 16;
        const V p = vexp<I>(I::sub(I::load(sp), msub[rv]));
        I::store(sp, p);
        lnew[rv] = I::add(lnew[rv], p);
      }
    int d0 = 0;
    for (; d0 + DD <= hd; d0 += DD) wide_pv<I, DD>(ot + d0 * kL, v + d0, hd, s, n, corr, active);
    if (d0 < hd) with_count<DD>(hd - d0, [&]<int R>() { wide_pv<I, R>(ot + d0 * kL, v + d0, hd, s, n, corr, active); });
    for (int rv = 0; rv < kRV; ++rv) {
      m[rv] = I::select(active[rv], mnew[rv], m[rv]);
      l[rv] = I::select(active[rv], lnew[rv], l[rv]);
    }
  }

  alignas(64) float mf[kL], lf[kL];
  for (int rv = 0; rv < kRV; ++rv) {
    I::store(mf + rv * 16, m[rv]);
    I::store(lf + rv * 16, l[rv]);
  }
  for (int i = 0; i < nr; ++i) {
    const int64_t row = i0 + i, t = row / nqh, h = row % nqh;
    float* o = task.out + t * task.out_stride + h * hd;
    const bool any = lf[i] > 0.f;
    const float inv = any ? 1.f / lf[i] : 0.f;
    for (int d = 0; d < hd; ++d) o[d] = ot[d * kL + i] * inv;
    if (task.lse) task.lse[row] = any ? mf[i] + __builtin_logf(lf[i]) : kNegInf;
  }
}

template <class I>
void attend_wide(const AttnArgs& a, const AttnTask& t, float* scratch) {
  for (int64_t i0 = t.r0; i0 < t.r1; i0 += kL)
    wide_tile<I>(a, t, i0, static_cast<int>(t.r1 - i0 < kL ? t.r1 - i0 : kL), scratch);
}

// ---------------------------------------------------------------------------
// Narrow kernel: one row at a time with head_dim in the lanes, for calls with few
// rows (decode), where the wide kernel would leave most lanes idle. A converted key
// tile serves up to kAttnNarrowRows rows.

// s[kk] = scale * (q . k_kk) for kk < RK: 16 lane chains over d, then hsum.
template <class I, int RK>
inline void narrow_qk(const float* q, const float* k, int hd, float scale, float* s) {
  using V = typename I::V;
  V acc[RK];
#pragma GCC unroll 16
  for (int kk = 0; kk < RK; ++kk) acc[kk] = I::zero();
  int d = 0;
  for (; d + 16 <= hd; d += 16) {
    const V qv = I::load(q + d);
#pragma GCC unroll 16
    for (int kk = 0; kk < RK; ++kk) acc[kk] = I::fma(qv, I::load(k + kk * hd + d), acc[kk]);
  }
  if (d < hd) {
    const int r = hd - d;
    const V qv = I::load_tail(q + d, r);
#pragma GCC unroll 16
    for (int kk = 0; kk < RK; ++kk) acc[kk] = I::fma(qv, I::load_tail(k + kk * hd + d, r), acc[kk]);
  }
#pragma GCC unroll 16
  for (int kk = 0; kk < RK; ++kk) s[kk] = I::hsum(acc[kk]) * scale;
}

// o[d0 + 16u + lane] = o * corr + sum over j < n of p[j] * v[j][...], u < DV; the
// vectors may run past head_dim only when TAIL (the last one: o is padded, v is not).
template <class I, int DV, bool TAIL>
inline void narrow_pv(float* o, const float* v, int hd, int d0, const float* p, int n, float corr) {
  using V = typename I::V;
  V acc[DV];
  const V c = I::set1(corr);
#pragma GCC unroll 16
  for (int u = 0; u < DV; ++u) acc[u] = I::mul(I::load(o + d0 + 16 * u), c);
  const int rem = hd - (d0 + 16 * (DV - 1));
  for (int j = 0; j < n; ++j) {
    const V pj = I::set1(p[j]);
    const float* vr = v + j * hd + d0;
#pragma GCC unroll 16
    for (int u = 0; u < DV; ++u) {
      const V x = TAIL && u == DV - 1 ? I::load_tail(vr + 16 * u, rem) : I::load(vr + 16 * u);
      acc[u] = I::fma(pj, x, acc[u]);
    }
  }
#pragma GCC unroll 16
  for (int u = 0; u < DV; ++u) I::store(o + d0 + 16 * u, acc[u]);
}

template <class I>
void narrow_group(const AttnArgs& a, const AttnTask& task, int64_t g0, int nr, float* scratch) {
  using V = typename I::V;
  constexpr int Tk = kAttnKeyTile;
  const int hd = a.head_dim, nqh = a.n_qh;
  const int hdp = (hd + 15) / 16 * 16;
  float* obuf = scratch;                // nr rows of hdp
  float* s = obuf + kAttnNarrowRows * hdp;  // Tk, padded to whole vectors
  float* kbuf = s + Tk + 16;
  float* vbuf = kbuf + Tk * hd + 16;
  float m[kAttnNarrowRows], l[kAttnNarrowRows];
  int64_t qpos[kAttnNarrowRows];
  for (int i = 0; i < nr; ++i) {
    m[i] = kNegInf;
    l[i] = 0.f;
    qpos[i] = a.q_pos0 + (g0 + i) / nqh;
  }
  for (int i = 0; i < nr * hdp; ++i) obuf[i] = 0.f;
  const int64_t qmin = qpos[0], qmax = qpos[nr - 1];

  constexpr int RK = I::kNarrowKeys, DV = I::kNarrowVecs;
  int64_t kpos[Tk];
  PieceCursor cur(task, task.k0);
  KeyTile kt;
  for (int64_t j0 = task.k0; j0 < task.k1; j0 += Tk) {
    const int n = static_cast<int>(task.k1 - j0 < Tk ? task.k1 - j0 : Tk);
    const int nv = (n + 15) / 16;  // vectors of s; the padding holds -inf
    cur.locate(j0, n, kt);
    if (a.causal && kt.kmin > qmax) continue;
    const float *k, *v;
    gather<I>(a, kt, kbuf, vbuf, k, v);
    if (a.causal && kt.kmax > qmin) for_each_pos(kt, [&](int jj, int64_t pos) { kpos[jj] = pos; });
    for (int i = 0; i < nr; ++i) {
      if (a.causal && kt.kmin > qpos[i]) continue;
      const int64_t row = g0 + i, t = row / nqh, h = row % nqh;
      const float* q = a.q + t * a.q_stride + h * hd;
      int j = 0;
      for (; j + RK <= n; j += RK) narrow_qk<I, RK>(q, k + j * hd, hd, a.scale, s + j);
      if (j < n) with_count<RK>(n - j, [&]<int R>() { narrow_qk<I, R>(q, k + j * hd, hd, a.scale, s + j); });
      for (int jj = n; jj < nv * 16; ++jj) s[jj] = kNegInf;
      if (a.causal && kt.kmax > qpos[i])
        for (int jj = 0; jj < n; ++jj)
          if (kpos[jj] > qpos[i]) s[jj] = kNegInf;
      V bm = I::set1(kNegInf);
      for (int u = 0; u < nv; ++u) bm = I::max(bm, I::load(s + 16 * u));
      const float bmax = I::hmax(bm);
      if (!(bmax > kNegInf)) continue;  // the row sees no key here: state untouched
      const float mnew = m[i] > bmax ? m[i] : bmax;
      const float corr = I::lane0(vexp<I>(I::set1(m[i] - mnew)));
      V ps = I::zero();
      for (int u = 0; u < nv; ++u) {
        const V p = vexp<I>(I::sub(I::load(s + 16 * u), I::set1(mnew)));
        I::store(s + 16 * u, p);
        ps = I::add(ps, p);
      }
      l[i] = l[i] * corr + I::hsum(ps);
      m[i] = mnew;
      float* o = obuf + i * hdp;
      const int full = hd / 16, tail = hd % 16 != 0;
      int u = 0;
      for (; u + DV <= full; u += DV) narrow_pv<I, DV, false>(o, v, hd, 16 * u, s, n, corr);
      if (u < full)
        with_count<DV>(full - u, [&]<int R>() { narrow_pv<I, R, false>(o, v, hd, 16 * u, s, n, corr); });
      if (tail) narrow_pv<I, 1, true>(o, v, hd, 16 * full, s, n, corr);
    }
  }

  for (int i = 0; i < nr; ++i) {
    const int64_t row = g0 + i, t = row / nqh, h = row % nqh;
    float* out = task.out + t * task.out_stride + h * hd;
    const bool any = l[i] > 0.f;
    const float inv = any ? 1.f / l[i] : 0.f;
    for (int d = 0; d < hd; ++d) out[d] = obuf[i * hdp + d] * inv;
    if (task.lse) task.lse[row] = any ? m[i] + __builtin_logf(l[i]) : kNegInf;
  }
}

template <class I>
void attend_narrow(const AttnArgs& a, const AttnTask& t, float* scratch) {
  for (int64_t g0 = t.r0; g0 < t.r1; g0 += kAttnNarrowRows)
    narrow_group<I>(a, t, g0, static_cast<int>(t.r1 - g0 < kAttnNarrowRows ? t.r1 - g0 : kAttnNarrowRows), scratch);
}

}  // namespace
