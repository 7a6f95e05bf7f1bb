// Pieces of the attention kernels shared by the tensor-core and CUDA-core paths:
// walking the key tiles of a split across the pieces, and the epilogue layout.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/kernels.hpp"

namespace headinfer::cuda {

struct KeyTile {
  int piece;
  int64_t local;  // first key of the tile, index within the piece
  int64_t pos;    // absolute position of that key
  int count;      // keys in the tile (<= tile size)
};

// Walks the keys [kbeg, kend) of the global key index in tiles of at most kTile keys
// that never straddle a piece. With causal masking, the rest of a piece is skipped
// once its keys lie after every query row of the block (positions grow within a piece).
// The current piece's bounds, position and pointers stay in registers: the piece table
// is a kernel parameter indexed by a register, and each such load is a constant-cache
// round trip the decode kernels stalled on (Nsight Compute: ~15% of a 32K decode
// kernel's samples) when it was re-read for every tile.
template <int kTile>
struct TileWalker {
  const AttnParams* p;
  int64_t kend, qmax;
  int piece = -1;
  int64_t next;
  int64_t start = 0, end;  // the current piece's keys [start, end), end clamped to kend
  int64_t pos0 = 0;
  // The current piece's K and V and its stride between KV heads: valid for the tile
  // advance() returned last.
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t head_stride = 0;

  __device__ TileWalker(const AttnParams& params, int64_t b, int64_t e, int64_t q_max)
      : p(&params), kend(e), qmax(q_max), next(b), end(b) {}

  __device__ bool advance(KeyTile& t) {
    const PieceTable& pt = p->pieces;
    for (;;) {
      if (next < end) {
        const int64_t local = next - start;
        const int64_t pos = pos0 + local;
        if (!(p->causal && pos > qmax)) {
          t.piece = piece;
          t.local = local;
          t.pos = pos;
          t.count = static_cast<int>(min(static_cast<int64_t>(kTile), end - next));
          next += t.count;
          return true;
        }
        end = next;  // the rest of this piece is after every query row
      }
      if (piece + 1 >= pt.n) return false;
      ++piece;
      start = pt.start[piece];
      end = min(pt.start[piece + 1], kend);
      if (next < start) next = start;
      pos0 = pt.pos0[piece];
      k = pt.k[piece];
      v = pt.v[piece];
      head_stride = pt.head_stride[piece];
    }
  }
};

// Where row r of the block's output slot goes.
__device__ __forceinline__ float* attn_out_row(const AttnParams& p, int slot, int r) {
  const int t = r / p.n_qh, h = r % p.n_qh;
  return p.o + slot * p.o_slot_stride + t * p.o_tok_stride + static_cast<int64_t>(h) * p.head_dim;
}

__device__ __forceinline__ float* attn_lse_at(const AttnParams& p, int slot, int r) {
  return p.lse ? p.lse + slot * p.lse_slot_stride + r : nullptr;
}

__device__ __forceinline__ int64_t attn_row_pos(const AttnParams& p, int r) { return p.q_pos0 + r / p.n_qh; }

}  // namespace headinfer::cuda
