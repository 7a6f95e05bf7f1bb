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
template <int kTile>
struct TileWalker {
  const AttnParams* p;
  int64_t kbeg, kend, qmax;
  int piece;
  int64_t next;

  __device__ TileWalker(const AttnParams& params, int64_t b, int64_t e, int64_t q_max)
      : p(&params), kbeg(b), kend(e), qmax(q_max), piece(0), next(b) {}

  __device__ bool advance(KeyTile& t) {
    const PieceTable& pt = p->pieces;
    while (piece < pt.n) {
      const int64_t a = max(pt.start[piece], kbeg);
      const int64_t b = min(pt.start[piece + 1], kend);
      if (next < a) next = a;
      if (next >= b) {
        ++piece;
        continue;
      }
      const int64_t local = next - pt.start[piece];
      const int64_t pos = pt.pos0[piece] + local;
      if (p->causal && pos > qmax) {
        ++piece;
        continue;
      }
      t.piece = piece;
      t.local = local;
      t.pos = pos;
      t.count = static_cast<int>(min(static_cast<int64_t>(kTile), b - next));
      next += t.count;
      return true;
    }
    return false;
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
