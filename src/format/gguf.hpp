// Reader for GGUF v2/v3 files (llama.cpp's format): magic "GGUF", version, tensor
// and metadata counts, typed key/value metadata, tensor infos, then an aligned data
// section. Every length and count is checked against the bytes before it is used,
// so a corrupt file gives an Error naming the file and field, never a crash or a
// huge allocation. Tensor data stays where it is (zero copy).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/mapped_file.hpp"
#include "format/tensor.hpp"

namespace headinfer {

// Metadata value types as numbered by the GGUF spec.
enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7,
  String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* gguf_type_name(GgufType t);

// One metadata value. Scalars fill the member matching their kind; arrays fill the
// vector matching their element kind (nested arrays go to `arrays`).
struct GgufValue {
  GgufType type = GgufType::U8;
  GgufType elem_type = GgufType::U8;  // arrays only
  uint64_t count = 0;                 // arrays only
  int64_t i = 0;                      // signed integers and bool
  uint64_t u = 0;                     // unsigned integers
  double f = 0;                       // F32/F64
  std::string s;
  std::vector<int64_t> ints;          // arrays of any integer type or bool (U64 values above 2^63 wrap)
  std::vector<double> floats;         // arrays of F32/F64
  std::vector<std::string> strings;   // arrays of strings
  std::vector<GgufValue> arrays;      // arrays of arrays

  bool is_integer() const;
  bool is_float() const { return type == GgufType::F32 || type == GgufType::F64; }
};

struct GgufTensorInfo {
  std::string name;
  uint32_t ggml_type = 0;
  std::vector<uint64_t> dims;  // as stored: innermost first
  uint64_t offset = 0;         // from the start of the data section
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr;
};

// Name of a ggml tensor type id ("Q4_K"), or "type<N>" for unknown ids.
std::string ggml_type_name(uint32_t type);

class GgufFile {
 public:
  static GgufFile open(const std::string& path);
  // Parses bytes owned by the caller (they must outlive the result).
  static GgufFile parse(std::span<const uint8_t> bytes, const std::string& source);

  const std::string& source() const { return source_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::shared_ptr<MappedFile>& mapping() const { return mapping_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }
  // Typed getters: Error "<file>: <key>: missing" / "expected X, got Y" on mismatch.
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;  // accepts integers too
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  std::optional<int64_t> opt_int(const std::string& key) const;
  std::optional<double> opt_float(const std::string& key) const;
  std::optional<bool> opt_bool(const std::string& key) const;
  std::optional<std::string> opt_string(const std::string& key) const;
  // An array whose elements are of kind `elem` (any integer kind matches U32 etc.
  // loosely: ints, floats or strings are checked by family).
  const GgufValue& get_array(const std::string& key, GgufType elem) const;

  const std::vector<GgufTensorInfo>& tensor_infos() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  // A row-major (outermost-first) view of a tensor stored as F32, F16, BF16 or Q8_0;
  // Error naming the tensor and its type for other ggml types or a missing tensor.
  Tensor tensor(const std::string& name) const;

 private:
  std::string source_;
  std::shared_ptr<MappedFile> mapping_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::unordered_map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace headinfer
