// The CUDA backend's attention: cuDNN's fused attention for big calls, the own
// kernels (tensor-core, split-KV decode, CUDA-core) with key splits and a combine
// otherwise, and decode's split mode straight into the caller's partials.
#include "backend/cuda/cuda_backend_impl.hpp"

namespace headinfer::cuda_backend_detail {

void CudaBackend::attention(const AttnArgs& a) {
  HI_CHECK(a.n_q >= 0 && a.n_qh > 0 && a.head_dim > 0,
           "cuda attention: bad shape n_q " << a.n_q << ", n_qh " << a.n_qh << ", head_dim " << a.head_dim);
  const int64_t rows64 = static_cast<int64_t>(a.n_q) * a.n_qh;
  HI_CHECK(rows64 < INT_MAX, "cuda attention: " << rows64 << " query rows is too many");
  const int R = static_cast<int>(rows64), D = a.head_dim;
  if (R == 0) return;
  HI_CHECK(D <= cuda::kSimtMaxHeadDim, "cuda attention: head_dim " << D << " exceeds " << cuda::kSimtMaxHeadDim);
  HI_CHECK(a.kv_dtype == DType::F32 || a.kv_dtype == DType::F16 || a.kv_dtype == DType::BF16,
           "cuda attention: KV dtype " << dtype_name(a.kv_dtype) << " is not supported (F32, F16, BF16)");
  HI_CHECK(a.n_kv_heads >= 1, "cuda attention: " << a.n_kv_heads << " KV heads");
  use();
  if (a.split_keys > 0) {
    converted_q_ = {};
    attention_splits(a, R);
    return;
  }
  HI_CHECK(a.q && a.out, "cuda attention: q or out is null");
  if (a.out_rows) {
    HI_CHECK(!a.accumulate && (a.kv_dtype == DType::BF16 || a.kv_dtype == DType::F16) &&
                 a.out_stride == static_cast<int64_t>(a.n_kv_heads) * a.n_qh * D,
             "cuda attention: out_rows needs a call of its own over every head's columns, BF16 or F16 KV");
  }

  std::vector<const KvPiece*> pieces;
  bool aligned = true;
  for (const KvPiece& p : a.pieces) {
    if (p.n_tokens <= 0) continue;
    HI_CHECK(p.k && p.v, "cuda attention: a KV piece of " << p.n_tokens << " tokens has a null K or V");
    aligned = aligned && reinterpret_cast<uintptr_t>(p.k) % 16 == 0 && reinterpret_cast<uintptr_t>(p.v) % 16 == 0;
    pieces.push_back(&p);
  }
  if (attention_cudnn(a, pieces)) return;
  if (a.out_rows) {  // the f32 result (cuDNN's merged pieces or the own kernels'), then the rows
    AttnArgs f = a;
    f.out_rows = nullptr;
    attention(f);
    cuda::launch_convert_f32_rows(a.out, a.n_q, a.out_stride, a.out_stride, a.kv_dtype, a.out_rows, stream_);
    return;
  }
  converted_q_ = {};  // the own kernels may use the scratch the queries were kept in
  if (a.n_kv_heads > 1) {  // own kernels: one KV head at a time
    for (int j = 0; j < a.n_kv_heads; ++j) attention(attention_head(a, j));
    return;
  }
  if (a.accumulate) {  // the result into the caller's scratch, then merged
    HI_CHECK(a.scratch && a.lse, "cuda attention: accumulate needs lse and scratch");
    AttnArgs t = a;
    t.accumulate = false;
    t.out = a.scratch;
    t.out_stride = int64_t{a.n_qh} * D;
    t.lse = a.scratch + static_cast<int64_t>(R) * D;
    attention(t);
    cuda::launch_merge_attention(a.out, a.lse, t.out, t.lse, a.n_q, a.n_qh, D, a.out_stride, t.out_stride, stream_);
    return;
  }
  const AttnKernel kern = attn_kernel(R, a.kv_dtype, D, aligned);
  const bool mma = kern.path == Path::kMma;
  const bool decode = kern.path == Path::kDecode || kern.path == Path::kDecodeMma;
  const int rows_per_block = mma                              ? cuda::attention_mma_rows(kern.mma_warps)
                             : kern.path == Path::kDecodeMma ? cuda::attention_decode_mma_rows(kern.keys_as_m)
                             : kern.path == Path::kDecode    ? cuda::attention_decode_rows(R)
                                                             : cuda::kSimtRows;
  const int tile = mma ? cuda::kMmaKeys : decode ? cuda::kDecodeTileKeys : cuda::kSimtKeys;
  int blocks_per_sm = kBlocksPerSmSimt;
  if (mma) {
    blocks_per_sm = occupancy(3, a.kv_dtype, D, kern.mma_warps,
                              [&] { return cuda::attention_mma_blocks_per_sm(a.kv_dtype, D, kern.mma_warps); });
  } else if (decode) {
    blocks_per_sm = debug_.decode_blocks_per_sm;
    if (blocks_per_sm <= 0 && kern.path == Path::kDecodeMma)
      blocks_per_sm = occupancy(4, a.kv_dtype, D, rows_per_block,
                                [&] { return cuda::attention_decode_mma_blocks_per_sm(a.kv_dtype, D, kern.keys_as_m); });
    else if (blocks_per_sm <= 0)
      blocks_per_sm = occupancy(2, a.kv_dtype, D, rows_per_block,
                                [&] { return cuda::attention_decode_blocks_per_sm(a.kv_dtype, D, R); });
  }
  const int64_t min_keys = mma ? kMinKeysPerSplitMma : decode ? kMinKeysPerSplitDecode : kMinKeysPerSplitSimt;
  const int row_blocks = static_cast<int>(ceil_div(R, rows_per_block));

  // Pieces go to the kernels in batches of kMaxPieces; every (batch, split) is a slot.
  struct Batch {
    PieceTable table;
    int splits;
    int64_t chunk;
  };
  std::vector<Batch> batches;
  int slots = 0;
  for (size_t b0 = 0; b0 < pieces.size() || batches.empty(); b0 += cuda::kMaxPieces) {
    Batch b{};
    int64_t total = 0;
    const size_t nb = std::min<size_t>(cuda::kMaxPieces, pieces.size() - std::min(b0, pieces.size()));
    for (size_t i = 0; i < nb; ++i) {
      const KvPiece& p = *pieces[b0 + i];
      b.table.k[i] = p.k;
      b.table.v[i] = p.v;
      b.table.pos0[i] = p.pos0;
      b.table.start[i] = total;
      total += p.n_tokens;
    }
    b.table.start[nb] = total;
    b.table.n = static_cast<int>(nb);
    // Tensor-core blocks do about equal work when the keys before the chunk dominate
    // (or without causal masking); causal self-attention tiles are scheduled heaviest
    // first instead.
    const bool balance = mma && (!a.causal || total - a.n_q >= 2 * static_cast<int64_t>(a.n_q));
    b.splits = choose_splits(total, row_blocks, tile, blocks_per_sm, min_keys, balance, b.chunk);
    slots += b.splits;
    batches.push_back(b);
  }

  AttnParams prm = attn_params(a, R);
  if (slots == 1) {  // one pass writes the result directly
    prm.pieces = batches[0].table;
    prm.keys_per_split = batches[0].chunk;
    prm.o = a.out;
    prm.o_tok_stride = a.out_stride;
    prm.lse = a.lse;
    launch_attention_kernel(prm, 1, kern, a.kv_dtype);
    return;
  }
  const size_t o_elems = static_cast<size_t>(slots) * R * D;
  auto* part = static_cast<float*>(part_.get(sizeof(float) * (o_elems + static_cast<size_t>(slots) * R), stream_));
  prm.o = part;
  prm.o_tok_stride = static_cast<int64_t>(a.n_qh) * D;
  prm.o_slot_stride = static_cast<int64_t>(R) * D;
  prm.lse = part + o_elems;
  prm.lse_slot_stride = R;
  int base = 0;
  for (const Batch& b : batches) {
    prm.pieces = b.table;
    prm.keys_per_split = b.chunk;
    prm.slot_base = base;
    launch_attention_kernel(prm, b.splits, kern, a.kv_dtype);
    base += b.splits;
  }
  cuda::launch_attention_combine(part, part + o_elems, slots, R, a.n_qh, D, a.out, a.out_stride, a.lse, stream_);
}

// cuDNN's fused attention for big calls whose every KV piece is either entirely
// visible to every query (keys before the chunk) or the chunk itself (causal,
// top-left): one cuDNN call per piece, merged by log-sum-exp in piece order.
// Anything else (partial overlaps, few queries, other dtypes) stays on own kernels.
bool CudaBackend::attention_cudnn(const AttnArgs& a, const std::vector<const KvPiece*>& pieces) {
  constexpr int kMinQueries = 256;  // below this a plan build per shape is not worth it
  if (!cudnn_ || pieces.empty() || a.n_q < kMinQueries) return false;
  // Rows of the KV dtype come straight from cuDNN only for a call of one piece; more
  // pieces merge in f32 first (attention() calls again without the rows).
  if (a.out_rows && pieces.size() != 1) return false;
  if (a.kv_dtype != DType::BF16 && a.kv_dtype != DType::F16) return false;
  if (a.head_dim != 64 && a.head_dim != 128) return false;
  std::vector<cuda::SdpaShape> shapes;
  for (const KvPiece* p : pieces) {
    if (reinterpret_cast<uintptr_t>(p->k) % 16 != 0 || reinterpret_cast<uintptr_t>(p->v) % 16 != 0) return false;
    cuda::SdpaShape sh;
    sh.n_q = a.n_q;
    sh.n_qh = a.n_qh;
    sh.n_kv_heads = a.n_kv_heads;
    sh.kv_head_stride = a.n_kv_heads > 1 ? p->head_stride : 0;
    sh.n_kv = p->n_tokens;
    sh.head_dim = a.head_dim;
    sh.scale = a.scale;
    sh.dtype = a.kv_dtype;
    if (a.causal && p->pos0 + p->n_tokens - 1 > a.q_pos0) {
      if (p->pos0 != a.q_pos0 || p->n_tokens != a.n_q) return false;
      sh.causal = true;
    }
    if (!cudnn_->supports(sh)) return false;
    shapes.push_back(sh);
  }
  const int heads = a.n_kv_heads * a.n_qh;
  const size_t rows = static_cast<size_t>(a.n_q) * heads;
  const size_t io_bytes = rows * a.head_dim * 2;
  // Q and O in the KV dtype, the statistics, and an lse when the caller wants none:
  // in the caller's scratch when it has room (rows * (head_dim + 1) floats), so the
  // memory is in the caller's plan.
  const size_t need = 2 * io_bytes + (a.lse ? 1 : 2) * rows * sizeof(float);
  const bool own_scratch = a.scratch && need <= rows * (a.head_dim + 1) * sizeof(float);
  auto* base = own_scratch ? reinterpret_cast<uint8_t*>(a.scratch) : static_cast<uint8_t*>(part_.get(need, stream_));
  void* q = base;
  void* o = base + io_bytes;
  auto* stats = reinterpret_cast<float*>(base + 2 * io_bytes);
  HI_CHECK(!a.accumulate || a.lse, "cuda attention: accumulate needs lse");
  float* lse = a.lse ? a.lse : stats + rows;
  const int64_t lse_head_stride = a.lse ? a.lse_head_stride : static_cast<int64_t>(a.n_q) * a.n_qh;
  const ConvertedQ conv{a.q, q, a.q_stride, a.n_q, heads * a.head_dim, a.kv_dtype};
  if (!(debug_.q_reuse && a.q_unchanged && converted_q_ == conv))
    cuda::launch_store_kv(a.q, a.q_stride, a.n_q, heads * a.head_dim, a.kv_dtype, q, stream_);
  converted_q_ = conv;
  if (a.out_rows) {
    // cuDNN's output is the rows (its layout is theirs: all heads of a token side by
    // side): no epilogue, and the values the f32 rows would have held, rounded back.
    HI_CHECK(reinterpret_cast<uintptr_t>(a.out_rows) % 16 == 0, "cuda attention: out_rows is not 16-byte aligned");
    cudnn_->run(shapes[0], q, pieces[0]->k, pieces[0]->v, a.out_rows, stats);
    return true;
  }
  for (size_t i = 0; i < pieces.size(); ++i) {
    cudnn_->run(shapes[i], q, pieces[i]->k, pieces[i]->v, o, stats);
    cuda::launch_sdpa_merge(o, a.kv_dtype, stats, a.n_q, a.n_qh, a.n_kv_heads, lse_head_stride, a.head_dim, a.out,
                            a.out_stride, lse, i == 0 && !a.accumulate, stream_);
  }
  return true;
}

// Split mode (decode): splits of a.split_keys keys at absolute positions, slot =
// position / split_keys, written straight into the caller's partials; no combine.
// One kernel per batch of up to kMaxPieces pieces, batches cut only on split starts,
// so every split is walked by one block over the same tiles whatever the batching.
// No heap allocation: the host side of a decode step is a few hundred of these.
// Several KV heads run as one launch (a grid dimension per head) when a decode
// kernel serves the rows: the same blocks and tiles per head as a launch per head,
// so the same bits. Other kernels take them one head at a time.
void CudaBackend::attention_splits(const AttnArgs& a, int R) {
  const int64_t S = a.split_keys;
  HI_CHECK(a.q && a.part_o && a.part_lse, "cuda attention: split mode needs q, part_o and part_lse");
  bool aligned = true;
  int64_t end = -1;
  for (const KvPiece& p : a.pieces) {
    if (p.n_tokens <= 0) continue;
    HI_CHECK(p.k && p.v, "cuda attention: a KV piece of " << p.n_tokens << " tokens has a null K or V");
    HI_CHECK(end < 0 || p.pos0 == end, "cuda attention: split mode needs pieces contiguous in position; a piece at "
                                           << p.pos0 << " follows one ending at " << end);
    HI_CHECK(end >= 0 || p.pos0 % S == 0, "cuda attention: split mode needs the first key on a multiple of "
                                              << S << ", got position " << p.pos0);
    end = p.pos0 + p.n_tokens;
    aligned = aligned && reinterpret_cast<uintptr_t>(p.k) % 16 == 0 && reinterpret_cast<uintptr_t>(p.v) % 16 == 0;
    // Every head's run aligned as head 0's (else the per-head calls below check each).
    if (a.n_kv_heads > 1) aligned = aligned && dtype_bytes(a.kv_dtype, p.head_stride) % 16 == 0;
  }
  if (end < 0) return;
  // The kernel depends only on rows, dtype and head_dim (and alignment, which holds
  // for every head_dim the fast kernels take), so a resident head's one call and an
  // offloaded head's per-fill calls run the same kernel.
  const AttnKernel kern = attn_kernel(R, a.kv_dtype, a.head_dim, aligned);
  const bool multi_head = kern.path == Path::kDecode || kern.path == Path::kDecodeMma;
  if (a.n_kv_heads > 1 && (!debug_.decode_heads || !multi_head || a.n_kv_heads > 65535)) {
    for (int j = 0; j < a.n_kv_heads; ++j) attention_splits(attention_head(a, j), R);
    return;
  }
  AttnParams prm = attn_params(a, R);
  prm.n_heads = a.n_kv_heads;
  prm.q_head_stride = static_cast<int64_t>(a.n_qh) * a.head_dim;  // q, out and part_o alike
  prm.lse_head_stride = a.n_qh;                                   // part_lse
  prm.keys_per_split = S;
  prm.o = a.part_o;
  prm.o_tok_stride = a.out_stride;
  prm.o_slot_stride = a.part_o_slot_stride;
  prm.lse = a.part_lse;
  prm.lse_slot_stride = a.part_lse_slot_stride;
  PieceTable& t = prm.pieces;
  t.n = 0;
  t.start[0] = 0;
  // Launches table entries [0, count) and moves the rest to the front.
  auto launch_first = [&](int count) {
    const int n = t.n;
    t.n = count;
    HI_CHECK(t.pos0[0] / S < INT_MAX, "cuda attention: split slot past the int range");
    prm.slot_base = static_cast<int>(t.pos0[0] / S);
    const int64_t splits = ceil_div(t.start[count], S);
    HI_CHECK(splits <= 65535, "cuda attention: " << splits << " splits of " << S
                                                 << " keys in one launch exceed the grid (at most 65535)");
    launch_attention_kernel(prm, static_cast<int>(splits), kern, a.kv_dtype);
    const int64_t shift = t.start[count];
    for (int j = count; j < n; ++j) {
      t.k[j - count] = t.k[j];
      t.v[j - count] = t.v[j];
      t.pos0[j - count] = t.pos0[j];
      t.head_stride[j - count] = t.head_stride[j];
      t.start[j - count] = t.start[j] - shift;
    }
    t.n = n - count;
    t.start[t.n] = t.start[n] - shift;
  };
  for (const KvPiece& p : a.pieces) {
    if (p.n_tokens <= 0) continue;
    if (t.n == cuda::kMaxPieces) {
      // Cut at the last piece boundary that is a split start (this piece's, if it is one).
      int cut = p.pos0 % S == 0 ? t.n : 0;
      for (int j = t.n - 1; cut == 0 && j > 0; --j)
        if (t.pos0[j] % S == 0) cut = j;
      HI_CHECK(cut > 0, "cuda attention: split mode needs a split start within every " << cuda::kMaxPieces
                                                                                       << " pieces");
      launch_first(cut);
    }
    t.k[t.n] = p.k;
    t.v[t.n] = p.v;
    t.pos0[t.n] = p.pos0;
    t.head_stride[t.n] = p.head_stride;
    t.start[t.n + 1] = t.start[t.n] + p.n_tokens;
    ++t.n;
  }
  launch_first(t.n);
}

}  // namespace headinfer::cuda_backend_detail
