// Chat formats: Mistral against mistral-common's golden token files, the others
// against their published layouts, plus template recognition.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "headinfer/error.hpp"
#include "test_assets.hpp"
#include "test_tokenizer_cases.hpp"
#include "tokenizer/chat_template.hpp"

namespace headinfer {
namespace {

using test::asset;

std::vector<ChatMessage> sample_conversation() {
  auto j = nlohmann::json::parse(test::slurp(asset("tokenizers/mistral-spm/golden_no_tools/sample.json")));
  std::vector<ChatMessage> out;
  for (const auto& m : j["messages"]) out.push_back({m["role"], m["content"]});
  return out;
}

std::vector<int32_t> golden_tokens(const std::string& file) {
  auto j = nlohmann::json::parse(test::slurp(asset("tokenizers/mistral-spm/golden_no_tools/" + file)));
  return j["tokens"].get<std::vector<int32_t>>();
}

TEST(ChatMistral, V1MatchesMistralCommonGolden) {
  HI_REQUIRE_ASSET("tokenizers/mistral-spm/golden_no_tools/sample.json");
  auto tok = load_tokenizer_file(asset("tokenizers/mistral-spm/tokenizer.model.v1"));
  auto ids = encode_chat(*tok, ChatFormat::MistralV1, sample_conversation(), true);
  EXPECT_EQ(ids, golden_tokens("tokens_v1.json"));
}

TEST(ChatMistral, V3MatchesMistralCommonGolden) {
  HI_REQUIRE_ASSET("tokenizers/mistral-spm/golden_no_tools/sample.json");
  auto tok = load_tokenizer_file(asset("tokenizers/mistral-spm/mistral_instruct_tokenizer_240323.model.v3"));
  auto ids = encode_chat(*tok, ChatFormat::MistralV3, sample_conversation(), true);
  EXPECT_EQ(ids, golden_tokens("tokens_v3.json"));
  EXPECT_EQ(detect_chat_format(*tok), ChatFormat::MistralV3);
}

TEST(ChatMistral, SystemPromptJoinsLastUserMessage) {
  std::vector<ChatMessage> msgs = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}, {"user", "Bye"}};
  EXPECT_EQ(format_chat(ChatFormat::MistralV3, msgs, true), "<s>[INST]Hi[/INST]Hello.</s>[INST]Be brief.\n\nBye[/INST]");
  EXPECT_EQ(format_chat(ChatFormat::MistralV1, msgs, true),
            "<s>[INST] Hi [/INST] Hello.</s>[INST] Be brief.\n\nBye [/INST]");
}

TEST(ChatLlama3, LayoutAndTokens) {
  std::vector<ChatMessage> msgs = {{"system", "You are terse."}, {"user", "Hi"}};
  std::string text = format_chat(ChatFormat::Llama3, msgs, true);
  EXPECT_EQ(text,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  HI_REQUIRE_ASSET("tokenizers/llama3-tiktoken/tokenizer.model");
  auto tok = load_tokenizer_file(asset("tokenizers/llama3-tiktoken/tokenizer.model"));
  auto ids = encode_chat(*tok, ChatFormat::Llama3, {{"user", "Hi"}}, true);
  // <|begin_of_text|> <|start_header_id|> user <|end_header_id|> \n\n Hi <|eot_id|> ... assistant ... \n\n
  std::vector<int32_t> want = {128000, 128006, 882, 128007, 271, 13347, 128009, 128006, 78191, 128007, 271};
  EXPECT_EQ(ids, want);
  EXPECT_EQ(detect_chat_format(*tok), ChatFormat::Llama3);
  EXPECT_TRUE(tok->is_eog(128009));
}

TEST(ChatLlama2, MetaReferenceLayout) {
  std::vector<ChatMessage> msgs = {
      {"system", "Be kind."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "How are you?"}};
  EXPECT_EQ(format_chat(ChatFormat::Llama2, msgs, true),
            "<s>[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] How are you? [/INST]");
  HI_REQUIRE_ASSET("tokenizers/llama2-spm/tokenizer.model");
  auto tok = load_tokenizer_file(asset("tokenizers/llama2-spm/tokenizer.model"));
  auto ids = encode_chat(*tok, ChatFormat::Llama2, {{"user", "Hi"}}, true);
  // Meta: [1] + sp.encode("[INST] Hi [/INST]")
  auto want = tok->encode("[INST] Hi [/INST]", true);
  EXPECT_EQ(ids, want);
}

TEST(ChatChatML, Layout) {
  std::vector<ChatMessage> msgs = {{"system", "S"}, {"user", "U"}};
  EXPECT_EQ(format_chat(ChatFormat::ChatML, msgs, true),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(format_chat(ChatFormat::ChatML, msgs, false), "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n");
}

TEST(ChatDetect, FromJinjaAndNames) {
  EXPECT_EQ(detect_chat_format("{{ '<|start_header_id|>' + message['role'] }}"), ChatFormat::Llama3);
  EXPECT_EQ(detect_chat_format("{% for m in messages %}<|im_start|>{{ m.role }}"), ChatFormat::ChatML);
  EXPECT_EQ(detect_chat_format("{{ bos_token + '[INST] <<SYS>>\\n' }}"), ChatFormat::Llama2);
  EXPECT_EQ(detect_chat_format("{{ '[INST] ' + message['content'] + ' [/INST]' }}"), ChatFormat::MistralV1);
  EXPECT_EQ(detect_chat_format("{{ '[INST]' + message['content'] + '[/INST]' }}"), ChatFormat::MistralV3);
  EXPECT_EQ(detect_chat_format("plain"), std::nullopt);
  EXPECT_EQ(chat_format_from_name("chatml"), ChatFormat::ChatML);
  EXPECT_EQ(chat_format_from_name("mistral-v1"), ChatFormat::MistralV1);
  EXPECT_THROW(chat_format_from_name("vicuna"), Error);
}

}  // namespace
}  // namespace headinfer
