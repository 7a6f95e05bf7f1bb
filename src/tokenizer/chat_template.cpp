#include "tokenizer/chat_template.hpp"

#include "headinfer/error.hpp"

namespace headinfer {
namespace {

std::string_view trim(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// Llama 2 and Mistral have no system turn: the system text joins a user message.
struct FoldedSystem {
  std::string system;
  std::vector<ChatMessage> turns;  // without system messages
};

FoldedSystem fold_system(const std::vector<ChatMessage>& messages) {
  FoldedSystem f;
  for (const auto& m : messages) {
    if (m.role == "system") {
      if (!f.system.empty()) f.system += "\n\n";
      f.system += m.content;
    } else {
      f.turns.push_back(m);
    }
  }
  return f;
}

std::string format_llama3(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out = "<|begin_of_text|>";
  for (const auto& m : messages) {
    out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n";
    out += trim(m.content);
    out += "<|eot_id|>";
  }
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// Meta's reference (llama/generation.py): each user/answer pair is one BOS..EOS
// block; the system prompt wraps into the first user message.
std::string format_llama2(const std::vector<ChatMessage>& messages) {
  FoldedSystem f = fold_system(messages);
  std::string out;
  bool first_user = true;
  for (const auto& m : f.turns) {
    if (m.role == "user") {
      out += "<s>[INST] ";
      if (first_user && !f.system.empty()) {
        out += "<<SYS>>\n";
        out += trim(f.system);
        out += "\n<</SYS>>\n\n";
      }
      first_user = false;
      out += trim(m.content);
      out += " [/INST]";
    } else {
      out += ' ';
      out += trim(m.content);
      out += " </s>";
    }
  }
  return out;
}

// mistral-common: the system prompt joins the LAST user message; v1 spells
// [INST] as text around spaced content, v3 uses control tokens and lets each text
// run get its own SentencePiece dummy prefix.
std::string format_mistral(const std::vector<ChatMessage>& messages, bool v3) {
  FoldedSystem f = fold_system(messages);
  size_t last_user = f.turns.size();
  for (size_t i = 0; i < f.turns.size(); ++i)
    if (f.turns[i].role == "user") last_user = i;
  std::string out = "<s>";
  for (size_t i = 0; i < f.turns.size(); ++i) {
    const auto& m = f.turns[i];
    if (m.role == "user") {
      std::string content = m.content;
      if (i == last_user && !f.system.empty()) content = f.system + "\n\n" + content;
      out += v3 ? "[INST]" + content + "[/INST]" : "[INST] " + content + " [/INST]";
    } else {
      out += (v3 ? "" : " ") + m.content + "</s>";
    }
  }
  return out;
}

std::string format_chatml(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out;
  for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

bool has_control_inst(const Tokenizer& tok) {
  int32_t id = tok.special_id("[INST]");
  return id >= 0 && tok.is_control(id);
}

}  // namespace

ChatFormat chat_format_from_name(std::string_view name) {
  if (name == "llama3" || name == "llama-3" || name == "llama3.1" || name == "llama3.2") return ChatFormat::Llama3;
  if (name == "llama2" || name == "llama-2") return ChatFormat::Llama2;
  if (name == "mistral-v1" || name == "mistral-v2-text") return ChatFormat::MistralV1;
  if (name == "mistral-v3" || name == "mistral") return ChatFormat::MistralV3;
  if (name == "chatml" || name == "qwen" || name == "qwen2" || name == "smollm") return ChatFormat::ChatML;
  HI_FAIL("chat template: name: '" << name << "' is not one of llama3, llama2, mistral-v1, mistral-v3, chatml");
}

const char* chat_format_name(ChatFormat f) {
  switch (f) {
    case ChatFormat::Llama3: return "llama3";
    case ChatFormat::Llama2: return "llama2";
    case ChatFormat::MistralV1: return "mistral-v1";
    case ChatFormat::MistralV3: return "mistral-v3";
    case ChatFormat::ChatML: return "chatml";
  }
  return "?";
}

std::optional<ChatFormat> detect_chat_format(std::string_view jinja, const Tokenizer* vocab) {
  auto has = [&](std::string_view s) { return jinja.find(s) != std::string_view::npos; };
  if (has("<|start_header_id|>")) return ChatFormat::Llama3;
  if (has("<|im_start|>")) return ChatFormat::ChatML;
  if (has("[INST]")) {
    if (has("<<SYS>>")) return ChatFormat::Llama2;
    if (vocab) return has_control_inst(*vocab) ? ChatFormat::MistralV3 : ChatFormat::MistralV1;
    // Templates written for v3 close the turn as "[/INST]" right after the content.
    return has(" [/INST]") ? ChatFormat::MistralV1 : ChatFormat::MistralV3;
  }
  return std::nullopt;
}

std::optional<ChatFormat> detect_chat_format(const Tokenizer& tok) {
  if (!tok.spec().chat_template.empty()) {
    if (auto f = detect_chat_format(tok.spec().chat_template, &tok)) return f;
  }
  if (tok.special_id("<|start_header_id|>") >= 0 && tok.special_id("<|eot_id|>") >= 0) return ChatFormat::Llama3;
  if (tok.special_id("<|im_start|>") >= 0 && tok.special_id("<|im_end|>") >= 0) return ChatFormat::ChatML;
  if (has_control_inst(tok)) return ChatFormat::MistralV3;
  return std::nullopt;  // Llama 2 and Mistral v1 share one vocabulary layout: ask by name
}

std::string format_chat(ChatFormat f, const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  // Formats whose prompt always ends right after the user turn need no extra text
  // for add_generation_prompt: the answer follows [/INST] directly.
  switch (f) {
    case ChatFormat::Llama3: return format_llama3(messages, add_generation_prompt);
    case ChatFormat::Llama2: return format_llama2(messages);
    case ChatFormat::MistralV1: return format_mistral(messages, false);
    case ChatFormat::MistralV3: return format_mistral(messages, true);
    case ChatFormat::ChatML: return format_chatml(messages, add_generation_prompt);
  }
  return "";
}

std::vector<int32_t> encode_chat(const Tokenizer& tok, ChatFormat f, const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt) {
  return tok.encode(format_chat(f, messages, add_generation_prompt), /*add_bos=*/false, /*parse_special=*/true);
}

}  // namespace headinfer
