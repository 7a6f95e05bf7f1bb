// The merge loop shared by SentencePiece-style and byte-level BPE. Symbols form a
// doubly linked list over one string; a heap holds candidate pairs, best first, so a
// word of n characters costs O(n log n) instead of rescanning all pairs per merge.
#pragma once

#include <cstdint>
#include <queue>
#include <string_view>
#include <vector>

namespace headinfer {

struct BpeSymbol {
  uint32_t start = 0;  // byte range in the merged-over text
  uint32_t len = 0;    // 0 once merged into its left neighbour
  int32_t id = -1;     // token id, -1 if the span is not a mergeable token
  int32_t prev = -1, next = -1;
};

// What a pair would merge into. Higher priority merges first; equal priorities
// merge leftmost first (both SentencePiece and HF BPE break ties that way).
struct BpeCandidate {
  float priority = 0;
  int32_t id = -1;
};

// Splits `text` into one symbol per character, with ids from char_id(string_view)
// (-1 when the character is no token).
template <class CharId>
std::vector<BpeSymbol> bpe_initial_symbols(std::string_view text, CharId&& char_id, size_t (*char_len)(std::string_view, size_t)) {
  std::vector<BpeSymbol> syms;
  syms.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    size_t n = char_len(text, i);
    BpeSymbol s;
    s.start = static_cast<uint32_t>(i);
    s.len = static_cast<uint32_t>(n);
    s.id = char_id(text.substr(i, n));
    s.prev = static_cast<int32_t>(syms.size()) - 1;
    s.next = i + n < text.size() ? static_cast<int32_t>(syms.size()) + 1 : -1;
    syms.push_back(s);
    i += n;
  }
  return syms;
}

// Merges symbols in place. pair(left, right, joined_text, &candidate) says whether
// two neighbours may merge. Afterwards the live symbols are those with len > 0,
// reachable from index 0 through `next`.
template <class PairLookup>
void bpe_merge(std::vector<BpeSymbol>& syms, std::string_view text, PairLookup&& pair) {
  struct Entry {
    float priority;
    int32_t left, right;
    uint32_t joined_len;
    int32_t id;
  };
  struct Worse {
    bool operator()(const Entry& a, const Entry& b) const {
      if (a.priority != b.priority) return a.priority < b.priority;
      return a.left > b.left;
    }
  };
  std::priority_queue<Entry, std::vector<Entry>, Worse> heap;
  auto consider = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const BpeSymbol& a = syms[l];
    const BpeSymbol& b = syms[r];
    BpeCandidate c;
    if (!pair(a, b, text.substr(a.start, a.len + b.len), &c)) return;
    heap.push({c.priority, l, r, a.len + b.len, c.id});
  };
  for (size_t i = 0; i + 1 < syms.size(); ++i) consider(static_cast<int32_t>(i), static_cast<int32_t>(i + 1));

  while (!heap.empty()) {
    Entry e = heap.top();
    heap.pop();
    BpeSymbol& a = syms[e.left];
    BpeSymbol& b = syms[e.right];
    // Stale entry: one side was merged away or grew since the pair was queued.
    if (a.len == 0 || b.len == 0 || a.next != e.right || a.len + b.len != e.joined_len) continue;
    a.len += b.len;
    a.id = e.id;
    a.next = b.next;
    if (b.next >= 0) syms[b.next].prev = e.left;
    b.len = 0;
    consider(a.prev, e.left);
    consider(e.left, a.next);
  }
}

}  // namespace headinfer
