// Conversation -> prompt text for the chat formats of the Llama family. We do not run
// Jinja: the handful of formats are written out here, and a model's Jinja template
// (or its special tokens) only serves to recognise which one it uses.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.hpp"

namespace headinfer {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

enum class ChatFormat {
  Llama3,     // <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
  Llama2,     // <s>[INST] <<SYS>>\n..\n<</SYS>>\n\nuser [/INST] answer </s>
  MistralV1,  // <s>[INST] user [/INST] answer</s>  ([INST] spelled in plain text)
  MistralV3,  // <s>[INST]user[/INST]answer</s>     ([INST] a control token)
  ChatML,     // <|im_start|>role\ncontent<|im_end|>\n
};

// "llama3", "llama2", "mistral-v1", "mistral-v3", "chatml" (also "llama-3",
// "llama-2", "mistral" = v3, "qwen"/"smollm" = chatml). Throws for other names.
ChatFormat chat_format_from_name(std::string_view name);
const char* chat_format_name(ChatFormat f);

// Recognises a Hugging Face / GGUF Jinja chat template by its markers. Mistral
// templates do not say which version; `vocab` (when given) decides by whether
// [INST] is a control token.
std::optional<ChatFormat> detect_chat_format(std::string_view jinja, const Tokenizer* vocab = nullptr);
// From the tokenizer's own template if it carries one, else from its special tokens.
std::optional<ChatFormat> detect_chat_format(const Tokenizer& tok);

// The prompt as text with special tokens written literally (BOS included where the
// format starts with one). Encode it with encode(text, add_bos=false,
// parse_special=true), or use encode_chat. A trailing user turn plus
// add_generation_prompt leaves the text where the assistant's answer begins.
std::string format_chat(ChatFormat f, const std::vector<ChatMessage>& messages, bool add_generation_prompt);
std::vector<int32_t> encode_chat(const Tokenizer& tok, ChatFormat f, const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt);

}  // namespace headinfer
