// A reader of SentencePiece's ModelProto written against the protobuf wire format
// (varints and length-delimited fields), so no protobuf runtime is needed. Field
// numbers are those of sentencepiece_model.proto.
#include <cstring>

#include "headinfer/error.hpp"
#include "tokenizer/loaders.hpp"

namespace headinfer {
namespace {

enum WireType { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

class WireReader {
 public:
  WireReader(std::string_view bytes, const std::string& path, const char* message)
      : p_(bytes.data()), end_(bytes.data() + bytes.size()), path_(path), message_(message) {}

  bool done() const { return p_ >= end_; }

  // Next field key; false at the end of the message.
  bool next(uint32_t* field, int* wire) {
    if (done()) return false;
    uint64_t key = varint();
    *field = static_cast<uint32_t>(key >> 3);
    *wire = static_cast<int>(key & 7);
    return true;
  }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      need(1);
      uint8_t b = static_cast<uint8_t>(*p_++);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    HI_FAIL(path_ << ": " << message_ << ": varint longer than 10 bytes");
  }

  std::string_view bytes() {
    uint64_t n = varint();
    need(n);
    std::string_view s(p_, n);
    p_ += n;
    return s;
  }

  float fixed32_float() {
    need(4);
    float f;
    std::memcpy(&f, p_, 4);  // protobuf stores little-endian, as do our targets
    p_ += 4;
    return f;
  }

  void skip(int wire, uint32_t field) {
    switch (wire) {
      case kVarint: varint(); break;
      case kFixed64: need(8); p_ += 8; break;
      case kLengthDelimited: bytes(); break;
      case kFixed32: need(4); p_ += 4; break;
      default: HI_FAIL(path_ << ": " << message_ << ": field " << field << ": unsupported wire type " << wire);
    }
  }

  void expect(int wire, int expected, const char* field) {
    HI_CHECK(wire == expected, path_ << ": " << message_ << "." << field << ": wire type " << wire << ", expected " << expected);
  }

 private:
  void need(uint64_t n) {
    HI_CHECK(static_cast<uint64_t>(end_ - p_) >= n, path_ << ": " << message_ << ": truncated");
  }
  const char* p_;
  const char* end_;
  const std::string& path_;
  const char* message_;
};

struct TrainerSpec {
  int model_type = 1;  // proto default UNIGRAM
  bool byte_fallback = false;
  int unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
};

struct NormalizerSpec {
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  std::string name;
};

int32_t as_int32(uint64_t v) { return static_cast<int32_t>(static_cast<uint32_t>(v)); }

void parse_piece(std::string_view msg, const std::string& path, VocabSpec& spec) {
  WireReader r(msg, path, "pieces");
  std::string piece;
  float score = 0;
  int32_t type = VocabSpec::Normal;  // proto default NORMAL
  uint32_t field;
  int wire;
  while (r.next(&field, &wire)) {
    if (field == 1) {
      r.expect(wire, kLengthDelimited, "piece");
      piece = std::string(r.bytes());
    } else if (field == 2) {
      r.expect(wire, kFixed32, "score");
      score = r.fixed32_float();
    } else if (field == 3) {
      r.expect(wire, kVarint, "type");
      type = as_int32(r.varint());
    } else {
      r.skip(wire, field);
    }
  }
  HI_CHECK(type >= VocabSpec::Normal && type <= VocabSpec::Byte,
           path << ": pieces[" << spec.tokens.size() << "].type: unknown type " << type);
  spec.tokens.push_back(std::move(piece));
  spec.scores.push_back(score);
  spec.types.push_back(type);
}

TrainerSpec parse_trainer(std::string_view msg, const std::string& path) {
  WireReader r(msg, path, "trainer_spec");
  TrainerSpec t;
  uint32_t field;
  int wire;
  while (r.next(&field, &wire)) {
    int32_t* target = nullptr;
    switch (field) {
      case 3: target = &t.model_type; break;
      case 40: target = &t.unk_id; break;
      case 41: target = &t.bos_id; break;
      case 42: target = &t.eos_id; break;
      case 43: target = &t.pad_id; break;
      case 35:
        r.expect(wire, kVarint, "byte_fallback");
        t.byte_fallback = r.varint() != 0;
        continue;
      default: r.skip(wire, field); continue;
    }
    r.expect(wire, kVarint, "id");
    *target = as_int32(r.varint());
  }
  return t;
}

NormalizerSpec parse_normalizer(std::string_view msg, const std::string& path) {
  WireReader r(msg, path, "normalizer_spec");
  NormalizerSpec n;
  uint32_t field;
  int wire;
  while (r.next(&field, &wire)) {
    if (field == 1 && wire == kLengthDelimited) {
      n.name = std::string(r.bytes());
    } else if (field == 3 && wire == kVarint) {
      n.add_dummy_prefix = r.varint() != 0;
    } else if (field == 4 && wire == kVarint) {
      n.remove_extra_whitespaces = r.varint() != 0;
    } else {
      r.skip(wire, field);
    }
  }
  return n;
}

}  // namespace

bool looks_like_sentencepiece_model(std::string_view bytes) {
  // Field 1 (pieces), length-delimited: key byte 0x0A. No text tokenizer starts so.
  return !bytes.empty() && bytes[0] == 0x0A;
}

VocabSpec parse_sentencepiece_model(std::string_view bytes, const std::string& path) {
  VocabSpec spec;
  spec.model = VocabSpec::Model::Spm;
  TrainerSpec trainer;
  NormalizerSpec normalizer;
  WireReader r(bytes, path, "ModelProto");
  uint32_t field;
  int wire;
  while (r.next(&field, &wire)) {
    if (field == 1) {
      r.expect(wire, kLengthDelimited, "pieces");
      parse_piece(r.bytes(), path, spec);
    } else if (field == 2) {
      r.expect(wire, kLengthDelimited, "trainer_spec");
      trainer = parse_trainer(r.bytes(), path);
    } else if (field == 3) {
      r.expect(wire, kLengthDelimited, "normalizer_spec");
      normalizer = parse_normalizer(r.bytes(), path);
    } else {
      r.skip(wire, field);
    }
  }
  HI_CHECK(!spec.tokens.empty(), path << ": pieces: none");
  HI_CHECK(trainer.model_type == 2, path << ": trainer_spec.model_type: " << trainer.model_type
                                         << " (only BPE = 2 is supported; 1 is Unigram)");
  // normalizer_spec.name (nmt_nfkc, identity...) is not applied: its rules live in
  // precompiled_charsmap, which llama.cpp ignores too; Llama and Mistral use identity.
  const int n = static_cast<int>(spec.tokens.size());
  auto id_or_none = [&](int id) { return (id >= 0 && id < n) ? id : -1; };
  spec.unk_id = id_or_none(trainer.unk_id);
  spec.bos_id = id_or_none(trainer.bos_id);
  spec.eos_id = id_or_none(trainer.eos_id);
  spec.pad_id = id_or_none(trainer.pad_id);
  spec.add_bos = spec.bos_id >= 0;
  spec.add_eos = false;
  spec.add_space_prefix = normalizer.add_dummy_prefix;
  spec.remove_extra_whitespaces = normalizer.remove_extra_whitespaces;
  // byte_fallback only matters through the <0xNN> pieces, which exist exactly when
  // it is on; the encoder uses them whenever they are present.
  (void)trainer.byte_fallback;
  return spec;
}

}  // namespace headinfer
