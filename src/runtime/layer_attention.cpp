#include "runtime/layer_attention.hpp"

#include <algorithm>
#include <cmath>

#include "headinfer/error.hpp"
#include "kv/footprint.hpp"

namespace headinfer {

LayerAttention::LayerAttention(Backend& backend, KvStore& kv, const ModelConfig& cfg, int max_chunk)
    : be_(backend), kv_(kv), cfg_(cfg), max_chunk_(max_chunk), B_(kv.block_tokens()), row_(kv.row_bytes()) {
  try {
    const KvSchedule& s = kv_.schedule();
    const std::vector<int64_t> scratch = attention_scratch_floats(cfg_, max_chunk_);
    scratch_ = static_cast<float*>(be_.alloc(static_cast<size_t>(scratch[0]) * sizeof(float)));
    lse_acc_ = static_cast<float*>(be_.alloc(static_cast<size_t>(scratch[1]) * sizeof(float)));
    store_k_.assign(static_cast<size_t>(cfg_.n_kv_heads), nullptr);
    store_v_.assign(static_cast<size_t>(cfg_.n_kv_heads), nullptr);
    split_ = decode_split_tokens(kv_.capacity(), B_);
    alloc_partials((kv_.capacity() + split_ - 1) / split_);
    if (kv_.max_host_heads() > 0) {
      for (int i = 0; i < s.n_buffers; ++i) {
        buffers_.push_back(be_.alloc(static_cast<size_t>(s.buffer_bytes)));
        filled_.push_back(be_.create_event());
        consumed_.push_back(be_.create_event());
      }
      const size_t stg = static_cast<size_t>(staging_bytes(cfg_, kv_.kv_dtype(), kv_.max_host_heads(), max_chunk_));
      for (int i = 0; i < 2; ++i) {
        staging_[i] = be_.alloc(stg);
        staged_[i] = be_.create_event();
        appended_[i] = be_.create_event();
      }
      forward_done_ = be_.create_event();
    }
  } catch (...) {
    release();
    throw;
  }
}

LayerAttention::~LayerAttention() { release(); }

void LayerAttention::release() {
  // Copies into the buffers, or out of the staging areas, may still be running.
  be_.synchronize();
  for (void* p : buffers_) be_.free(p);
  buffers_.clear();
  for (void*& p : staging_) {
    if (p) be_.free(p);
    p = nullptr;
  }
  for (float** p : {&scratch_, &lse_acc_}) {
    if (*p) be_.free(*p);
    *p = nullptr;
  }
  free_partials();
  for (Event e : filled_) be_.destroy_event(e);
  for (Event e : consumed_) be_.destroy_event(e);
  filled_.clear();
  consumed_.clear();
  for (Event* e : {&staged_[0], &staged_[1], &appended_[0], &appended_[1], &forward_done_}) {
    if (*e) be_.destroy_event(*e);
    *e = Event{};
  }
}

void LayerAttention::alloc_partials(int64_t slots) {
  // The same sizes as decode_partials_floats at the construction capacity.
  const int64_t heads = cfg_.n_heads;
  part_o_ = static_cast<float*>(be_.alloc(static_cast<size_t>(slots * heads * cfg_.head_dim) * sizeof(float)));
  part_lse_ = static_cast<float*>(be_.alloc(static_cast<size_t>(slots * heads) * sizeof(float)));
  part_slots_ = slots;
}

void LayerAttention::free_partials() {
  for (float** p : {&part_o_, &part_lse_}) {
    if (*p) be_.free(*p);
    *p = nullptr;
  }
  part_slots_ = 0;
}

void LayerAttention::begin(int64_t pos0, int n) {
  pos0_ = pos0;
  n_ = n;
  if (n == 1 && pos0 / split_ >= part_slots_) {
    // The context grew past the construction capacity (KvStore::reserve): more
    // slots of the same split size. The last combine may still read the old ones.
    be_.synchronize();
    free_partials();
    alloc_partials((kv_.capacity() + split_ - 1) / split_);
  }
  blocks_before_ = (pos0 + B_ - 1) / B_;
  fills_.clear();
  layer_fills_.clear();
  issued_ = 0;
  const KvSchedule& s = kv_.schedule();
  for (int l = 0; l < cfg_.n_layers; ++l) {
    layer_fills_.push_back(fills_.size());
    const int H = kv_.host_heads(l);
    if (H == 0 || blocks_before_ == 0) continue;
    const int G = std::min(s.group_heads[static_cast<size_t>(l)], H);
    for (int j0 = 0; j0 < H; j0 += G) {
      const int heads = std::min(G, H - j0);
      const int64_t per_fill =
          std::max<int64_t>(1, s.buffer_bytes / (static_cast<int64_t>(heads) * static_cast<int64_t>(kv_.host_head_bytes())));
      for (int64_t b0 = 0; b0 < blocks_before_; b0 += per_fill)
        fills_.push_back(Fill{l, j0, heads, b0, std::min(per_fill, blocks_before_ - b0)});
    }
  }
  layer_fills_.push_back(fills_.size());
  if (fills_.empty()) return;
  // Host rows appended by the previous forward must land before any are read back.
  be_.wait(Stream::H2D, forward_done_);
  issue_through(buffers_.size() - 1);
}

void LayerAttention::issue_through(size_t fill) {
  const size_t nbuf = buffers_.size();
  const size_t hhb = kv_.host_head_bytes();
  for (; issued_ <= fill && issued_ < fills_.size(); ++issued_) {
    const Fill& f = fills_[issued_];
    const size_t buf = issued_ % nbuf;
    be_.wait(Stream::H2D, consumed_[buf]);
    for (int64_t i = 0; i < f.blocks; ++i) {
      const int64_t b = f.b0 + i;
      const int64_t toks = block_tokens_before(b);
      const uint8_t* src = kv_.host_block(f.layer, b) + static_cast<size_t>(f.j0) * hhb;
      uint8_t* dst = static_cast<uint8_t*>(buffers_[buf]) + static_cast<size_t>(i * f.heads) * hhb;
      const size_t pitch = row_ * static_cast<size_t>(B_);
      const size_t width = row_ * static_cast<size_t>(toks);
      // A full block of adjacent heads is one contiguous range; a partial one is
      // 2 * heads rows of its filled tokens.
      be_.copy_h2d_2d_async(dst, pitch, src, pitch, width, 2 * static_cast<size_t>(f.heads));
      stats_.h2d_bytes += static_cast<int64_t>(width) * 2 * f.heads;
      stats_.h2d_copies += toks == B_ ? 1 : 2 * f.heads;
    }
    be_.record(filled_[buf], Stream::H2D);
  }
}

void LayerAttention::store_new_kv(int layer, const LayerQkv& io) {
  const int hd = cfg_.head_dim;
  const int H = kv_.host_heads(layer);
  const int s = layer % 2;
  uint8_t* stg = static_cast<uint8_t*>(staging_[s]);
  const size_t side = row_ * static_cast<size_t>(n_);  // one head's K (or V) rows of the chunk
  if (H > 0) be_.wait(Stream::Compute, appended_[s]);
  // Every head's rows in one op: resident heads into their slab, offloaded ones into
  // the staging area.
  for (int h = 0; h < cfg_.n_kv_heads; ++h) {
    const Slab& sl = kv_.slab(layer, h);
    const size_t i = static_cast<size_t>(h);
    store_k_[i] = sl.home == Home::Device ? kv_.k_at(layer, h, pos0_) : stg + 2 * sl.host_index * side;
    store_v_[i] = sl.home == Home::Device ? kv_.v_at(layer, h, pos0_) : stg + (2 * sl.host_index + 1) * side;
  }
  if (io.proj) {
    HI_CHECK(io.rope, "layer attention: a QKV projection to run needs its RoPE arguments");
    be_.matmul_rope_store_kv(io.proj->x, io.proj->x_dtype, n_, *io.proj->w, io.proj->bias, *io.rope, cfg_.n_kv_heads,
                             kv_.kv_dtype(), store_k_.data(), store_v_.data());
  } else if (io.rope)
    be_.rope_store_kv_heads(*io.rope, io.k, io.v, io.stride, n_, cfg_.n_kv_heads, hd, kv_.kv_dtype(), store_k_.data(),
                            store_v_.data());
  else
    be_.store_kv_heads(io.k, io.v, io.stride, n_, cfg_.n_kv_heads, hd, kv_.kv_dtype(), store_k_.data(),
                       store_v_.data());
  if (H == 0) return;
  be_.record(staged_[s], Stream::Compute);
  be_.wait(Stream::D2H, staged_[s]);
  // Append only the new rows, one 2-D copy per block they touch: rows are (head, K|V).
  for (int64_t t = pos0_; t < pos0_ + n_;) {
    const int64_t b = t / B_;
    const int64_t t1 = std::min(pos0_ + n_, (b + 1) * B_);
    uint8_t* dst = kv_.host_block(layer, b) + static_cast<size_t>(t - b * B_) * row_;
    const size_t width = static_cast<size_t>(t1 - t) * row_;
    be_.copy_d2h_2d_async(dst, row_ * static_cast<size_t>(B_), stg + static_cast<size_t>(t - pos0_) * row_, side, width,
                          2 * static_cast<size_t>(H));
    stats_.d2h_bytes += static_cast<int64_t>(width) * 2 * H;
    stats_.d2h_copies += 1;
    t = t1;
  }
  be_.record(appended_[s], Stream::D2H);
}

void LayerAttention::head_runs(const std::vector<int>& heads, std::vector<HeadRun>& runs) {
  runs.clear();
  for (int h : heads) {
    if (!runs.empty() && runs.back().head + runs.back().heads == h)
      ++runs.back().heads;
    else
      runs.push_back(HeadRun{h, 1});
  }
}

KvPiece LayerAttention::chunk_piece(int layer, HeadRun r) const {
  const Slab& sl = kv_.slab(layer, r.head);
  if (sl.home == Home::Device)
    return KvPiece{kv_.k_at(layer, r.head, pos0_), kv_.v_at(layer, r.head, pos0_), n_, pos0_,
                   kv_.device_head_stride()};
  // Staging: [host head][K|V][chunk rows]; a run's host indices are adjacent too.
  const size_t side = row_ * static_cast<size_t>(n_);
  const uint8_t* stg = static_cast<const uint8_t*>(staging_[layer % 2]);
  return KvPiece{stg + 2 * sl.host_index * side, stg + (2 * sl.host_index + 1) * side, n_, pos0_,
                 2 * int64_t{n_} * cfg_.head_dim};
}

void LayerAttention::attend(HeadRun r, AttnArgs& a, bool first, const LayerQkv& io, bool again, bool to_rows) {
  const int hd = cfg_.head_dim, qpk = cfg_.q_per_kv();
  const int skip = io.queries > 0 ? n_ - io.queries : 0;  // rows whose attention is not wanted
  a.q = io.q + skip * io.stride + static_cast<int64_t>(r.head) * qpk * hd;
  a.q_stride = io.stride;
  a.n_q = n_ - skip;
  a.n_qh = qpk;
  a.head_dim = hd;
  a.q_pos0 = pos0_ + skip;
  a.causal = true;
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  a.kv_dtype = kv_.kv_dtype();
  a.n_kv_heads = r.heads;
  a.out_stride = int64_t{cfg_.n_heads} * hd;
  a.out = io.out + skip * a.out_stride + static_cast<int64_t>(r.head) * qpk * hd;
  a.out_rows =
      to_rows ? static_cast<uint8_t*>(io.out_rows) + dtype_bytes(kv_.kv_dtype(), skip * a.out_stride) : nullptr;
  a.lse = lse_acc_ + static_cast<int64_t>(r.head) * max_chunk_ * qpk;
  a.lse_head_stride = int64_t{max_chunk_} * qpk;
  // Later blocks merge into what the earlier ones left, in block order.
  a.accumulate = !first;
  a.scratch = scratch_;
  a.q_unchanged = again;
  be_.attention(a);
}

void LayerAttention::attend_block(int layer, HeadRun r, int64_t b, const void* k, const void* v, int64_t stride,
                                  const LayerQkv& io, bool again) {
  AttnArgs a;
  a.pieces.push_back(KvPiece{k, v, block_tokens_before(b), b * B_, stride});
  // The partly filled block holding pos0 is attended together with the chunk.
  if (b == blocks_before_ - 1 && pos0_ % B_ != 0) a.pieces.push_back(chunk_piece(layer, r));
  attend(r, a, b == 0, io, again);
}

void LayerAttention::attend_chunk_only(int layer, HeadRun r, const LayerQkv& io) {
  AttnArgs a;
  a.pieces.push_back(chunk_piece(layer, r));
  attend(r, a, pos0_ == 0, io);
}

AttnArgs& LayerAttention::decode_args(HeadRun r, const LayerQkv& io) {
  const int hd = cfg_.head_dim, qpk = cfg_.q_per_kv();
  const int64_t q_w = int64_t{cfg_.n_heads} * hd;
  AttnArgs& a = decode_args_;
  a.pieces.clear();
  a.q = io.q + static_cast<int64_t>(r.head) * qpk * hd;
  a.q_stride = io.stride;
  a.n_q = 1;
  a.n_qh = qpk;
  a.head_dim = hd;
  a.q_pos0 = pos0_;
  a.causal = true;
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  a.kv_dtype = kv_.kv_dtype();
  a.n_kv_heads = r.heads;
  a.out = nullptr;
  a.out_stride = q_w;
  a.lse = nullptr;
  a.split_keys = split_;
  a.part_o = part_o_ + static_cast<int64_t>(r.head) * qpk * hd;
  a.part_o_slot_stride = q_w;
  a.part_lse = part_lse_ + static_cast<int64_t>(r.head) * qpk;
  a.part_lse_slot_stride = cfg_.n_heads;
  a.settled_pos = 0;
  return a;
}

// Runs of the layer's resident (device) or offloaded (host) heads.
static void home_heads(const KvStore& kv, int layer, int n_kv_heads, Home home, std::vector<int>& out) {
  out.clear();
  for (int h = 0; h < n_kv_heads; ++h)
    if (kv.slab(layer, h).home == home) out.push_back(h);
}

template <typename F>
void LayerAttention::for_each_fill_run(int layer, F fn) {
  const size_t nbuf = buffers_.size();
  const size_t hhb = kv_.host_head_bytes();
  const int64_t stride = 2 * B_ * cfg_.head_dim;  // elements from one head's block to the next's
  for (size_t f = layer_fills_[static_cast<size_t>(layer)]; f < layer_fills_[static_cast<size_t>(layer) + 1]; ++f) {
    issue_through(f + nbuf - 1);
    const Fill& fl = fills_[f];
    const size_t buf = f % nbuf;
    be_.wait(Stream::Compute, filled_[buf]);
    const uint8_t* base = static_cast<const uint8_t*>(buffers_[buf]);
    heads_tmp_.clear();
    for (int jj = 0; jj < fl.heads; ++jj) heads_tmp_.push_back(kv_.host_head(layer, fl.j0 + jj));
    head_runs(heads_tmp_, runs_tmp_);
    int jj0 = 0;
    for (const HeadRun& r : runs_tmp_) {
      fn(fl, r, base + static_cast<size_t>(jj0) * hhb, stride);
      jj0 += r.heads;
    }
    be_.record(consumed_[buf], Stream::Compute);
  }
}

void LayerAttention::run_decode(int layer, const LayerQkv& io) {
  // Resident heads: one call per run of adjacent heads over every key. Whole blocks
  // are one piece (block starts are split starts, so no split sees the difference);
  // the partly filled last block and the new token stay pieces of their own, as
  // they are offloaded.
  const int64_t whole = pos0_ / B_ * B_;
  const int64_t dstride = kv_.device_head_stride();
  home_heads(kv_, layer, cfg_.n_kv_heads, Home::Device, heads_tmp_);
  head_runs(heads_tmp_, runs_tmp_);
  for (const HeadRun& r : runs_tmp_) {
    AttnArgs& a = decode_args(r, io);
    const int h = r.head;
    if (whole > 0) a.pieces.push_back(KvPiece{kv_.k_at(layer, h, 0), kv_.v_at(layer, h, 0), whole, 0, dstride});
    if (pos0_ > whole)
      a.pieces.push_back(
          KvPiece{kv_.k_at(layer, h, whole), kv_.v_at(layer, h, whole), pos0_ - whole, whole, dstride});
    a.pieces.push_back(chunk_piece(layer, r));
    // Slab keys before this token were stored by earlier steps; only its own row is
    // the output of the op just before (the RoPE + KV store).
    a.settled_pos = pos0_;
    be_.attention(a);
  }
  // Offloaded heads: one call per fill (and run of adjacent heads in it) over its
  // blocks; the fill that holds the last block also takes the staged new token.
  for_each_fill_run(layer, [&](const Fill& fl, HeadRun r, const uint8_t* k0, int64_t stride) {
    AttnArgs& a = decode_args(r, io);
    for (int64_t i = 0; i < fl.blocks; ++i) {
      const uint8_t* k = k0 + static_cast<size_t>(i * fl.heads) * kv_.host_head_bytes();
      const int64_t b = fl.b0 + i;
      a.pieces.push_back(KvPiece{k, k + row_ * static_cast<size_t>(B_), block_tokens_before(b), b * B_, stride});
    }
    if (fl.b0 + fl.blocks == blocks_before_) a.pieces.push_back(chunk_piece(layer, r));
    be_.attention(a);
  });
  if (blocks_before_ == 0) {  // the first token: no fills, the new token alone
    home_heads(kv_, layer, cfg_.n_kv_heads, Home::Host, heads_tmp_);
    head_runs(heads_tmp_, runs_tmp_);
    for (const HeadRun& r : runs_tmp_) {
      AttnArgs& a = decode_args(r, io);
      a.pieces.push_back(chunk_piece(layer, r));
      be_.attention(a);
    }
  }
  be_.combine_attention(part_o_, part_lse_, static_cast<int>(pos0_ / split_ + 1), 1, cfg_.n_heads, cfg_.head_dim,
                        io.out, int64_t{cfg_.n_heads} * cfg_.head_dim, nullptr);
}

bool LayerAttention::run(int layer, const LayerQkv& io) {
  HI_CHECK(io.queries >= 0 && io.queries <= n_,
           "layer attention: " << io.queries << " query rows wanted of a forward of " << n_);
  store_new_kv(layer, io);
  if (n_ == 1) {
    run_decode(layer, io);
    return false;
  }
  home_heads(kv_, layer, cfg_.n_kv_heads, Home::Device, heads_tmp_);
  if (io.out_rows && pos0_ == 0 && static_cast<int>(heads_tmp_.size()) == cfg_.n_kv_heads) {
    // No earlier keys and every head resident: the chunk alone, one call over every
    // head (what the loops below would make of it), its result as rows.
    const HeadRun all{0, cfg_.n_kv_heads};
    AttnArgs a;
    a.pieces.push_back(chunk_piece(layer, all));
    attend(all, a, true, io, false, true);
    return true;
  }
  // Resident heads first (each run of adjacent ones in one call per block): their
  // work covers the first fills' transfers.
  head_runs(heads_tmp_, runs_tmp_);
  for (const HeadRun& r : runs_tmp_)
    for (int64_t b = 0; b < blocks_before_; ++b)
      attend_block(layer, r, b, kv_.k_at(layer, r.head, b * B_), kv_.v_at(layer, r.head, b * B_),
                   kv_.device_head_stride(), io, b > 0);
  for_each_fill_run(layer, [&](const Fill& fl, HeadRun r, const uint8_t* k0, int64_t stride) {
    for (int64_t i = 0; i < fl.blocks; ++i) {
      const uint8_t* k = k0 + static_cast<size_t>(i * fl.heads) * kv_.host_head_bytes();
      attend_block(layer, r, fl.b0 + i, k, k + row_ * static_cast<size_t>(B_), stride, io, i > 0);
    }
  });
  if (pos0_ % B_ == 0) {
    for (Home home : {Home::Device, Home::Host}) {
      home_heads(kv_, layer, cfg_.n_kv_heads, home, heads_tmp_);
      head_runs(heads_tmp_, runs_tmp_);
      for (const HeadRun& r : runs_tmp_) attend_chunk_only(layer, r, io);
    }
  }
  return false;
}

void LayerAttention::end() {
  if (forward_done_) be_.record(forward_done_, Stream::D2H);
}

}  // namespace headinfer
