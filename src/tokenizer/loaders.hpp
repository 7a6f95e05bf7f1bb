// Readers that turn tokenizer files of various origins into a VocabSpec. Each throws
// Error "<file>: <field>: <problem>" on malformed input.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "tokenizer/vocab_spec.hpp"

namespace headinfer {

// SentencePiece ModelProto (tokenizer.model of Llama 2, Mistral). BPE models only.
VocabSpec parse_sentencepiece_model(std::string_view bytes, const std::string& path);
bool looks_like_sentencepiece_model(std::string_view bytes);

// Llama 3 tiktoken file: "<base64 bytes> <rank>" per line; Llama 3 specials added.
VocabSpec parse_tiktoken_model(std::string_view text, const std::string& path);
bool looks_like_tiktoken(std::string_view bytes);
// Appends <|begin_of_text|> .. <|reserved_special_token_247|> (ids 128000..128255)
// and sets BOS/EOS/EOT the way Llama 3.x does.
void add_llama3_special_tokens(VocabSpec& spec);

// GPT-2 style vocab.json + merges.txt (also encoder.json + vocab.bpe).
VocabSpec load_vocab_json_and_merges(const std::string& vocab_path, const std::string& merges_path);

// Hugging Face tokenizers' tokenizer.json with a BPE model (byte-level or
// SentencePiece-style with byte fallback).
VocabSpec load_hf_tokenizer_json(const std::string& path);

// Whole file as a string (throws naming the path).
std::string read_file_bytes(const std::string& path);

}  // namespace headinfer
