#include "format/gguf.hpp"

#include <algorithm>
#include <limits>

#include "format/byte_reader.hpp"
#include "format/ggml_types.hpp"
#include "headinfer/error.hpp"

namespace headinfer {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr int kMaxArrayDepth = 8;        // nested arrays deeper than this are corrupt, not data
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS

bool is_int_type(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16:
    case GgufType::U32: case GgufType::I32: case GgufType::U64: case GgufType::I64: case GgufType::Bool:
      return true;
    default:
      return false;
  }
}

bool is_unsigned_type(GgufType t) {
  return t == GgufType::U8 || t == GgufType::U16 || t == GgufType::U32 || t == GgufType::U64;
}

// Bytes an element takes at least: used to reject counts the file cannot hold before
// reserving memory for them.
size_t min_value_bytes(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::Bool: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: case GgufType::String: return 8;
    case GgufType::Array: return 12;
  }
  return 1;
}

GgufType read_type(ByteReader& r, const std::string& what) {
  uint32_t t = r.read<uint32_t>(what);
  HI_CHECK(t <= static_cast<uint32_t>(GgufType::F64),
           r.source() << ": " << what << ": unknown value type " << t << ", expected 0..12");
  return static_cast<GgufType>(t);
}

std::string read_string(ByteReader& r, const std::string& what) {
  uint64_t len = r.read<uint64_t>(what + " length");
  HI_CHECK(len <= r.remaining(), r.source() << ": " << what << ": string length " << len
                                            << " is past the end of the file (" << r.remaining() << " bytes left)");
  return std::string(r.read_bytes(static_cast<size_t>(len), what));
}

// Reads one scalar of type t into v (integers to i/u, floats to f, bool to i).
void read_scalar(ByteReader& r, GgufType t, GgufValue& v, const std::string& what) {
  switch (t) {
    case GgufType::U8: v.u = r.read<uint8_t>(what); break;
    case GgufType::I8: v.i = r.read<int8_t>(what); break;
    case GgufType::U16: v.u = r.read<uint16_t>(what); break;
    case GgufType::I16: v.i = r.read<int16_t>(what); break;
    case GgufType::U32: v.u = r.read<uint32_t>(what); break;
    case GgufType::I32: v.i = r.read<int32_t>(what); break;
    case GgufType::U64: v.u = r.read<uint64_t>(what); break;
    case GgufType::I64: v.i = r.read<int64_t>(what); break;
    case GgufType::F32: v.f = r.read<float>(what); break;
    case GgufType::F64: v.f = r.read<double>(what); break;
    case GgufType::Bool: {
      uint8_t b = r.read<uint8_t>(what);
      HI_CHECK(b <= 1, r.source() << ": " << what << ": bool value " << int{b} << ", expected 0 or 1");
      v.i = b;
      break;
    }
    case GgufType::String: v.s = read_string(r, what); break;
    case GgufType::Array: break;  // handled by read_value
  }
  if (is_unsigned_type(t)) v.i = static_cast<int64_t>(v.u);
  else if (is_int_type(t)) v.u = static_cast<uint64_t>(v.i);
}

GgufValue read_value(ByteReader& r, GgufType t, const std::string& what, int depth) {
  GgufValue v;
  v.type = t;
  if (t != GgufType::Array) {
    read_scalar(r, t, v, what);
    return v;
  }
  HI_CHECK(depth < kMaxArrayDepth, r.source() << ": " << what << ": arrays nested deeper than " << kMaxArrayDepth);
  v.elem_type = read_type(r, what + " element type");
  v.count = r.read<uint64_t>(what + " element count");
  size_t min_bytes = min_value_bytes(v.elem_type);
  HI_CHECK(v.count <= r.remaining() / min_bytes,
           r.source() << ": " << what << ": array of " << v.count << " " << gguf_type_name(v.elem_type)
                      << " values cannot fit in the " << r.remaining() << " bytes left");
  size_t n = static_cast<size_t>(v.count);
  if (v.elem_type == GgufType::String) {
    v.strings.reserve(n);
    for (size_t k = 0; k < n; ++k) v.strings.push_back(read_string(r, what));
  } else if (v.elem_type == GgufType::Array) {
    v.arrays.reserve(n);
    // Each element is itself an array: element type, count, values (no extra tag).
    for (size_t k = 0; k < n; ++k) v.arrays.push_back(read_value(r, GgufType::Array, what, depth + 1));
  } else if (v.elem_type == GgufType::F32 || v.elem_type == GgufType::F64) {
    v.floats.resize(n);
    GgufValue tmp;
    for (size_t k = 0; k < n; ++k) {
      read_scalar(r, v.elem_type, tmp, what);
      v.floats[k] = tmp.f;
    }
  } else {
    v.ints.resize(n);
    GgufValue tmp;
    for (size_t k = 0; k < n; ++k) {
      read_scalar(r, v.elem_type, tmp, what);
      v.ints[k] = tmp.i;
    }
  }
  return v;
}

// Which of ints / floats / strings / arrays an element type lands in.
int value_family(GgufType t) {
  if (is_int_type(t)) return 0;
  if (t == GgufType::F32 || t == GgufType::F64) return 1;
  if (t == GgufType::String) return 2;
  return 3;
}

GgufTensorInfo read_tensor_info(ByteReader& r, size_t index) {
  GgufTensorInfo info;
  info.name = read_string(r, "tensor " + std::to_string(index) + " name");
  const std::string what = "tensor '" + info.name + "'";
  uint32_t n_dims = r.read<uint32_t>(what + " n_dims");
  HI_CHECK(n_dims >= 1 && n_dims <= kMaxDims,
           r.source() << ": " << what << ": n_dims: expected 1.." << kMaxDims << ", got " << n_dims);
  uint64_t numel = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    uint64_t n = r.read<uint64_t>(what + " dims");
    HI_CHECK(n == 0 || numel <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / 8 / n,
             r.source() << ": " << what << ": dims: element count overflows");
    numel *= n;
    info.dims.push_back(n);
  }
  info.ggml_type = r.read<uint32_t>(what + " type");
  auto traits = ggml_type_traits(info.ggml_type);
  HI_CHECK(traits.has_value(), r.source() << ": " << what << ": type: unknown ggml type " << info.ggml_type);
  HI_CHECK(info.dims[0] % traits->block_elems == 0,
           r.source() << ": " << what << ": dims: innermost dimension " << info.dims[0] << " is not a multiple of the "
                      << traits->name << " block size " << traits->block_elems);
  info.nbytes = numel / traits->block_elems * traits->block_bytes;
  info.offset = r.read<uint64_t>(what + " offset");
  return info;
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::U8: return "u8";
    case GgufType::I8: return "i8";
    case GgufType::U16: return "u16";
    case GgufType::I16: return "i16";
    case GgufType::U32: return "u32";
    case GgufType::I32: return "i32";
    case GgufType::F32: return "f32";
    case GgufType::Bool: return "bool";
    case GgufType::String: return "string";
    case GgufType::Array: return "array";
    case GgufType::U64: return "u64";
    case GgufType::I64: return "i64";
    case GgufType::F64: return "f64";
  }
  return "?";
}

bool GgufValue::is_integer() const { return is_int_type(type); }

std::string ggml_type_name(uint32_t type) {
  auto traits = ggml_type_traits(type);
  return traits ? traits->name : "type" + std::to_string(type);
}

GgufFile GgufFile::open(const std::string& path) {
  auto mapping = MappedFile::open(path);
  GgufFile f = parse(std::span<const uint8_t>(mapping->data(), mapping->size()), path);
  f.mapping_ = std::move(mapping);
  return f;
}

GgufFile GgufFile::parse(std::span<const uint8_t> bytes, const std::string& source) {
  GgufFile f;
  f.source_ = source;
  ByteReader r(bytes, source);
  uint32_t magic = r.read<uint32_t>("magic");
  HI_CHECK(magic == kMagic, source << ": magic: not a GGUF file (expected \"GGUF\")");
  f.version_ = r.read<uint32_t>("version");
  HI_CHECK(f.version_ == 2 || f.version_ == 3,
           source << ": version: expected 2 or 3, got " << f.version_
                  << (f.version_ == 1 ? " (GGUF v1 is obsolete; re-convert the model)"
                                      : (f.version_ > 0xffff ? " (big-endian file?)" : "")));
  uint64_t n_tensors = r.read<uint64_t>("tensor count");
  uint64_t n_kv = r.read<uint64_t>("metadata count");
  // A key/value pair takes at least 13 bytes, a tensor info at least 24.
  HI_CHECK(n_kv <= r.remaining() / 13, source << ": metadata count: " << n_kv << " entries cannot fit in "
                                              << r.remaining() << " bytes");
  HI_CHECK(n_tensors <= r.remaining() / 24, source << ": tensor count: " << n_tensors
                                                   << " tensors cannot fit in " << r.remaining() << " bytes");

  f.kv_.reserve(static_cast<size_t>(n_kv));
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = read_string(r, "metadata key " + std::to_string(k));
    GgufType t = read_type(r, key + " type");
    GgufValue v = read_value(r, t, key, 0);
    HI_CHECK(f.kv_index_.emplace(key, f.kv_.size()).second, source << ": " << key << ": duplicate metadata key");
    f.kv_.emplace_back(std::move(key), std::move(v));
  }
  if (const GgufValue* a = f.find("general.alignment")) {
    HI_CHECK(a->is_integer() && a->type != GgufType::Bool && a->u > 0 && a->u <= (uint64_t{1} << 30) &&
                 (a->u & (a->u - 1)) == 0,
             source << ": general.alignment: expected a power of two, got " << a->u);
    f.alignment_ = a->u;
  }

  f.tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo info = read_tensor_info(r, static_cast<size_t>(k));
    HI_CHECK(info.offset % f.alignment_ == 0, source << ": tensor '" << info.name << "': offset: " << info.offset
                                                     << " is not a multiple of the alignment " << f.alignment_);
    HI_CHECK(f.tensor_index_.emplace(info.name, f.tensors_.size()).second,
             source << ": tensor '" << info.name << "': duplicate tensor name");
    f.tensors_.push_back(std::move(info));
  }
  if (f.tensors_.empty()) return f;  // vocab-only files may end right after the infos

  uint64_t data_start = (r.pos() + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  HI_CHECK(data_start <= bytes.size(), source << ": data section: starts at " << data_start
                                              << ", past the end of the file (" << bytes.size() << " bytes)");
  uint64_t data_bytes = bytes.size() - data_start;
  std::vector<std::pair<uint64_t, size_t>> order;
  for (size_t k = 0; k < f.tensors_.size(); ++k) {
    GgufTensorInfo& t = f.tensors_[k];
    HI_CHECK(t.offset <= data_bytes && t.nbytes <= data_bytes - t.offset,
             source << ": tensor '" << t.name << "': offset: " << t.offset << " + " << t.nbytes
                    << " bytes is past the end of the data section (" << data_bytes << " bytes)");
    t.data = bytes.data() + data_start + t.offset;
    order.emplace_back(t.offset, k);
  }
  std::sort(order.begin(), order.end());
  for (size_t k = 1; k < order.size(); ++k) {
    const GgufTensorInfo& prev = f.tensors_[order[k - 1].second];
    HI_CHECK(prev.offset + prev.nbytes <= order[k].first, source << ": tensor '" << f.tensors_[order[k].second].name
                                                                 << "': offset: overlaps tensor '" << prev.name << "'");
  }
  return f;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

int64_t GgufFile::get_int(const std::string& key) const {
  auto v = opt_int(key);
  HI_CHECK(v.has_value(), source_ << ": " << key << ": missing");
  return *v;
}

std::optional<int64_t> GgufFile::opt_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  HI_CHECK(v->is_integer() && v->type != GgufType::Bool,
           source_ << ": " << key << ": expected an integer, got " << gguf_type_name(v->type));
  HI_CHECK(v->type != GgufType::U64 || v->u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
           source_ << ": " << key << ": value " << v->u << " is out of range");
  return v->i;
}

double GgufFile::get_float(const std::string& key) const {
  auto v = opt_float(key);
  HI_CHECK(v.has_value(), source_ << ": " << key << ": missing");
  return *v;
}

std::optional<double> GgufFile::opt_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_float()) return v->f;
  HI_CHECK(v->is_integer() && v->type != GgufType::Bool,
           source_ << ": " << key << ": expected a number, got " << gguf_type_name(v->type));
  return is_unsigned_type(v->type) ? static_cast<double>(v->u) : static_cast<double>(v->i);
}

bool GgufFile::get_bool(const std::string& key) const {
  auto v = opt_bool(key);
  HI_CHECK(v.has_value(), source_ << ": " << key << ": missing");
  return *v;
}

std::optional<bool> GgufFile::opt_bool(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  HI_CHECK(v->type == GgufType::Bool, source_ << ": " << key << ": expected bool, got " << gguf_type_name(v->type));
  return v->i != 0;
}

const std::string& GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  HI_CHECK(v != nullptr, source_ << ": " << key << ": missing");
  HI_CHECK(v->type == GgufType::String, source_ << ": " << key << ": expected string, got " << gguf_type_name(v->type));
  return v->s;
}

std::optional<std::string> GgufFile::opt_string(const std::string& key) const {
  if (find(key) == nullptr) return std::nullopt;
  return get_string(key);
}

const GgufValue& GgufFile::get_array(const std::string& key, GgufType elem) const {
  const GgufValue* v = find(key);
  HI_CHECK(v != nullptr, source_ << ": " << key << ": missing");
  HI_CHECK(v->type == GgufType::Array && value_family(v->elem_type) == value_family(elem),
           source_ << ": " << key << ": expected an array of " << gguf_type_name(elem) << ", got "
                   << (v->type == GgufType::Array ? "an array of " : "") << gguf_type_name(
                          v->type == GgufType::Array ? v->elem_type : v->type));
  return *v;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Tensor GgufFile::tensor(const std::string& name) const {
  const GgufTensorInfo* info = find_tensor(name);
  HI_CHECK(info != nullptr, source_ << ": tensor '" << name << "': missing");
  auto dtype = ggml_type_dtype(info->ggml_type);
  HI_CHECK(dtype.has_value(), source_ << ": tensor '" << name << "': type " << ggml_type_name(info->ggml_type)
                                      << " is not supported, expected F32, F16, BF16 or Q8_0");
  Tensor t;
  t.name = name;
  t.dtype = *dtype;
  for (auto it = info->dims.rbegin(); it != info->dims.rend(); ++it) t.shape.push_back(static_cast<int64_t>(*it));
  t.data = info->data;
  return t;
}

}  // namespace headinfer
