// Text <-> token ids. One interface over SentencePiece-style BPE and byte-level BPE,
// whatever file the vocabulary came from.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab_spec.hpp"

namespace headinfer {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Special tokens written literally in the text (e.g. "<|eot_id|>") are matched as
  // such when parse_special is true (user-defined added tokens always are). SPM: each
  // text run at the start or right after a special token gets its own dummy-prefix
  // space, as llama.cpp does. add_eos in the spec is not applied here.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special = true) const = 0;
  // Raw bytes of one token as it appears in output text (byte tokens give one byte,
  // which may be part of a UTF-8 character). Control tokens give "".
  virtual std::string token_bytes(int32_t id) const = 0;
  // Piece as stored in the vocabulary (for display).
  virtual const std::string& piece(int32_t id) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;
  virtual bool is_eog(int32_t id) const = 0;  // EOS or end-of-turn
  virtual bool is_control(int32_t id) const = 0;
  // Id of a special token by its text, or -1.
  virtual int32_t special_id(std::string_view text) const = 0;
  // Id of any token by its stored piece, or -1.
  virtual int32_t token_id(std::string_view piece) const = 0;
  virtual int32_t eos_id() const = 0;
  // Whether a prompt should start with BOS (the vocabulary's add_bos rule).
  virtual bool add_bos_by_default() const = 0;
  // The vocabulary this tokenizer was built from (special tokens, chat template).
  virtual const VocabSpec& spec() const = 0;
  // SPM with a dummy prefix: the space the encoder added before the first word is
  // dropped again when text starts.
  virtual bool strips_leading_space() const { return false; }

  // Whole-sequence decode (leading-space rules of SPM applied as a stream would).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = true) const;
};

// Turns a stream of ids into text pieces that never split a UTF-8 character.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = true) : tok_(tok), skip_special_(skip_special) {}
  // Returns the text that became complete with this token (possibly "").
  std::string push(int32_t id);
  // Whatever bytes remain (an incomplete character at the end of the stream).
  std::string flush();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  bool at_start_ = true;   // no byte emitted yet: the leading-space rule still applies
  std::string pending_;    // bytes of a character not yet complete
};

// Factories. Each throws Error naming the file and field on bad input.
std::unique_ptr<Tokenizer> make_tokenizer(const VocabSpec& spec);
// The vocabulary of one tokenizer file (same kinds as load_tokenizer_file), before
// any tokenizer_config.json adjustments.
VocabSpec load_vocab_file(const std::string& path);
// A file: tokenizer.model (SentencePiece protobuf or Llama-3 tiktoken), tokenizer.json,
// or vocab.json (with merges.txt beside it).
std::unique_ptr<Tokenizer> load_tokenizer_file(const std::string& path);
// A model directory: tokenizer.json, else tokenizer.model, else vocab.json+merges.txt;
// tokenizer_config.json / config.json supply BOS/EOS where present.
std::unique_ptr<Tokenizer> load_tokenizer_dir(const std::string& dir);

}  // namespace headinfer
