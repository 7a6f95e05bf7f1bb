// The needle model's built-in word-level vocabulary: <unk>, <s>, </s>, the digits
// "0".."9", the marker word "passkey" and 50 filler words, ids as in needle.hpp.
//
// Why a tokenizer of its own rather than a VocabSpec for the SPM or BPE tokenizers:
// both build a word by merging smaller pieces, so "▁there" needs "▁t", "▁th", ... in
// the vocabulary too, and the model has exactly 64 ids. This one looks words up
// whole instead; the VocabSpec it carries (SPM-style pieces with U+2581) is for
// display and for code that reads the special ids.
#pragma once

#include <memory>

#include "tokenizer/tokenizer.hpp"

namespace headinfer::needle {

// Pieces "<unk>", "<s>", "</s>", "▁0".."▁9", "▁passkey", then "▁the", "▁of", ...
VocabSpec needle_vocab_spec();

// Encodes whitespace-separated words: a known word is one id, each digit of a number
// is one id, anything else is <unk> (one per run of unknown characters). Decodes
// each word with a leading space, dropped at the start of the text.
std::unique_ptr<Tokenizer> make_needle_tokenizer();

}  // namespace headinfer::needle
