// The tokenizer vocabulary embedded in a GGUF file (tokenizer.ggml.* metadata).
#pragma once

#include <string>

#include "format/gguf.hpp"
#include "tokenizer/vocab_spec.hpp"

namespace headinfer {

// Error naming `path` when the file carries no tokenizer or a malformed one.
VocabSpec gguf_vocab(const GgufFile& f, const std::string& path);

}  // namespace headinfer
