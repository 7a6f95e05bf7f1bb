// TEMPORARY stubs so the tree links while the tokenizers are written; replaced.
#include "headinfer/error.hpp"
#include "tokenizer/tokenizer.hpp"

namespace headinfer {
std::unique_ptr<Tokenizer> make_tokenizer(const VocabSpec&) { HI_FAIL("tokenizer: not implemented yet"); }
std::unique_ptr<Tokenizer> load_tokenizer_file(const std::string& p) { HI_FAIL(p << ": tokenizer not implemented yet"); }
std::unique_ptr<Tokenizer> load_tokenizer_dir(const std::string& p) { HI_FAIL(p << ": tokenizer not implemented yet"); }
}  // namespace headinfer
