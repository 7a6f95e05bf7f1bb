// The generator's greedy steps run one ahead of the host (Executor::issue_greedy) and
// the step queued past the last token is dropped: on the real stories260K checkpoint,
// every way a generation ends (EOS, a stop string, max_tokens, the context) gives the
// tokens, text, stop reason and final position of lock-step decoding, and those are
// the counts the limits ask for.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "backend/backend.hpp"
#include "format/model_loader.hpp"
#include "runtime/executor.hpp"
#include "runtime/generator.hpp"
#include "test_assets.hpp"
#include "tokenizer/tokenizer.hpp"

namespace headinfer {
namespace {

// The real tokenizer, with one id of our choosing as its end of generation.
class EogAt : public Tokenizer {
 public:
  EogAt(const Tokenizer& t, int32_t eog) : t_(t), eog_(eog) {}
  std::vector<int32_t> encode(std::string_view s, bool bos, bool special) const override {
    return t_.encode(s, bos, special);
  }
  std::string token_bytes(int32_t id) const override { return t_.token_bytes(id); }
  const std::string& piece(int32_t id) const override { return t_.piece(id); }
  int32_t vocab_size() const override { return t_.vocab_size(); }
  int32_t bos_id() const override { return t_.bos_id(); }
  bool is_eog(int32_t id) const override { return id == eog_; }
  bool is_control(int32_t id) const override { return t_.is_control(id); }
  int32_t special_id(std::string_view s) const override { return t_.special_id(s); }
  int32_t token_id(std::string_view s) const override { return t_.token_id(s); }
  int32_t eos_id() const override { return eog_; }
  bool add_bos_by_default() const override { return t_.add_bos_by_default(); }
  const VocabSpec& spec() const override { return t_.spec(); }
  bool strips_leading_space() const override { return t_.strips_leading_space(); }

 private:
  const Tokenizer& t_;
  int32_t eog_;
};

struct Outcome {
  GenerateResult res;
  int64_t position = 0;
};

class GeneratorAhead : public ::testing::Test {
 protected:
  void SetUp() override {
    HI_REQUIRE_ASSET("models/stories260K/model.safetensors");
    model_ = load_model(test::asset("models/stories260K"));
    tok_ = model_.load_tokenizer();
    be_ = make_cpu_backend(2);
  }

  Outcome generate(GenerateRequest req, bool ahead, const Tokenizer* tok = nullptr) {
    ExecutorOptions eo;
    eo.capacity = 64;
    eo.max_chunk = 16;
    Executor exec(*be_, model_, eo);
    Generator gen(exec, tok ? *tok : *tok_);
    if (req.prompt.empty()) req.prompt = {tok_->bos_id()};
    req.sampling.temperature = 0;
    req.greedy_ahead = ahead;
    Outcome r;
    r.res = gen.run(req);
    r.position = exec.position();
    EXPECT_EQ(exec.greedy_in_flight(), 0);
    return r;
  }

  // Runs both ways and checks they agree; returns the run ahead.
  Outcome both(const GenerateRequest& req, const std::string& what, const Tokenizer* tok = nullptr) {
    const Outcome a = generate(req, true, tok), l = generate(req, false, tok);
    EXPECT_EQ(a.res.tokens, l.res.tokens) << what;
    EXPECT_EQ(a.res.text, l.res.text) << what;
    EXPECT_EQ(a.res.stop_reason, l.res.stop_reason) << what;
    EXPECT_EQ(a.position, l.position) << what;
    // A token is fed back for every step but the last: the dropped step left nothing.
    EXPECT_EQ(a.position, static_cast<int64_t>(req.prompt.empty() ? 1 : req.prompt.size()) +
                              static_cast<int64_t>(a.res.tokens.size()) - 1)
        << what;
    return a;
  }

  LoadedModel model_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<Backend> be_;
};

// stories260K's greedy stories run past 56 tokens without EOS from any one-token
// prompt, so a token the story does reach stands in for it.
TEST_F(GeneratorAhead, EndsAtEosAsLockStep) {
  GenerateRequest req;
  req.max_tokens = 40;
  req.max_context = 64;
  req.ignore_eos = true;
  const std::vector<int32_t> story = generate(req, false).res.tokens;
  ASSERT_EQ(story.size(), 40u);
  // The first token whose first appearance is at index 6 or later.
  size_t at = 6;
  while (at < story.size() && std::find(story.begin(), story.begin() + static_cast<ptrdiff_t>(at), story[at]) !=
                                  story.begin() + static_cast<ptrdiff_t>(at))
    ++at;
  ASSERT_LT(at, story.size());
  const EogAt eog(*tok_, story[at]);
  req.ignore_eos = false;
  const Outcome r = both(req, "eos", &eog);
  EXPECT_EQ(r.res.stop_reason, "eos");
  EXPECT_EQ(r.res.tokens, std::vector<int32_t>(story.begin(), story.begin() + static_cast<ptrdiff_t>(at) + 1));
}

TEST_F(GeneratorAhead, EndsAtAStopStringAsLockStep) {
  GenerateRequest req;
  req.max_tokens = 40;
  req.max_context = 64;
  req.ignore_eos = true;
  const std::string text = generate(req, false).res.text;
  ASSERT_GT(text.size(), 20u);
  // A word from the middle of the text: the generation ends where it completes.
  const size_t at = text.find(' ', text.size() / 2);
  ASSERT_NE(at, std::string::npos);
  req.stop = {text.substr(at, 4)};
  const Outcome r = both(req, "stop");
  EXPECT_EQ(r.res.stop_reason, "stop");
  EXPECT_EQ(r.res.text, text.substr(0, text.find(req.stop[0])));
}

TEST_F(GeneratorAhead, EndsAtTheLimitsAsLockStep) {
  GenerateRequest req;
  req.ignore_eos = true;
  req.max_context = 64;
  for (int n : {1, 2, 3, 7}) {
    req.max_tokens = n;
    const Outcome r = both(req, "max_tokens " + std::to_string(n));
    EXPECT_EQ(r.res.stop_reason, "length");
    EXPECT_EQ(r.res.tokens.size(), static_cast<size_t>(n));
  }
  req.max_tokens = -1;  // until the context is full
  for (int ctx : {1, 2, 4, 9}) {
    req.max_context = ctx;
    const Outcome r = both(req, "max_context " + std::to_string(ctx));
    EXPECT_EQ(r.res.stop_reason, "context");
    // The prompt's one token, then a step for every position left.
    EXPECT_EQ(r.res.tokens.size(), static_cast<size_t>(ctx));
    EXPECT_EQ(r.position, ctx);
  }
}

}  // namespace
}  // namespace headinfer
