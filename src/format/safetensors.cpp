#include "format/safetensors.hpp"

#include <algorithm>
#include <limits>

#include <nlohmann/json.hpp>

#include "format/byte_reader.hpp"
#include "headinfer/error.hpp"

namespace headinfer {
namespace {

using json = nlohmann::json;

// Header sizes beyond this are corrupt rather than large: real headers of
// thousand-tensor checkpoints are a few hundred KB.
constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;

DType parse_dtype(const std::string& s, const std::string& source, const std::string& tensor) {
  if (s == "F32") return DType::F32;
  if (s == "F16") return DType::F16;
  if (s == "BF16") return DType::BF16;
  HI_FAIL(source << ": tensor '" << tensor << "': dtype: unsupported dtype " << s << ", expected F32, F16 or BF16");
}

// A JSON number that is a non-negative integer, else Error naming the field.
uint64_t as_index(const json& v, const std::string& source, const std::string& tensor, const char* field) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    HI_CHECK(i >= 0, source << ": tensor '" << tensor << "': " << field << ": negative value " << i);
    return static_cast<uint64_t>(i);
  }
  HI_FAIL(source << ": tensor '" << tensor << "': " << field << ": expected a non-negative integer, got "
                 << v.type_name());
}

// Returns the tensor (data still unset) and its begin offset within the data section.
std::pair<Tensor, uint64_t> parse_entry(const std::string& name, const json& entry, uint64_t data_bytes,
                                        const std::string& source) {
  HI_CHECK(entry.is_object(), source << ": tensor '" << name << "': expected an object, got " << entry.type_name());
  auto dt = entry.find("dtype");
  HI_CHECK(dt != entry.end() && dt->is_string(), source << ": tensor '" << name << "': dtype: missing or not a string");
  auto sh = entry.find("shape");
  HI_CHECK(sh != entry.end() && sh->is_array(), source << ": tensor '" << name << "': shape: missing or not an array");
  auto off = entry.find("data_offsets");
  HI_CHECK(off != entry.end() && off->is_array() && off->size() == 2,
           source << ": tensor '" << name << "': data_offsets: expected [begin, end]");

  Tensor t;
  t.name = name;
  t.dtype = parse_dtype(dt->get<std::string>(), source, name);
  // numel of a 0-d tensor is 1 here; Tensor::numel() treats an empty shape as 0 elements,
  // so scalars are stored as shape [1].
  uint64_t numel = 1;
  for (const json& d : *sh) {
    uint64_t n = as_index(d, source, name, "shape");
    HI_CHECK(n == 0 || numel <= std::numeric_limits<uint64_t>::max() / 8 / n,
             source << ": tensor '" << name << "': shape: element count overflows");
    numel *= n;
    t.shape.push_back(static_cast<int64_t>(n));
  }
  if (t.shape.empty()) t.shape.push_back(1);
  uint64_t begin = as_index((*off)[0], source, name, "data_offsets");
  uint64_t end = as_index((*off)[1], source, name, "data_offsets");
  HI_CHECK(begin <= end, source << ": tensor '" << name << "': data_offsets: begin " << begin << " > end " << end);
  HI_CHECK(end <= data_bytes, source << ": tensor '" << name << "': data_offsets: end " << end
                                     << " is past the end of the data section (" << data_bytes << " bytes)");
  uint64_t expected = dtype_bytes(t.dtype, static_cast<int64_t>(numel));
  HI_CHECK(end - begin == expected, source << ": tensor '" << name << "': data_offsets: expected " << expected
                                           << " bytes for " << dtype_name(t.dtype) << " " << t.shape_str()
                                           << ", got " << (end - begin));
  return {std::move(t), begin};
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto mapping = MappedFile::open(path);
  SafetensorsFile f = parse(std::span<const uint8_t>(mapping->data(), mapping->size()), path);
  f.mapping_ = std::move(mapping);
  return f;
}

SafetensorsFile SafetensorsFile::parse(std::span<const uint8_t> bytes, const std::string& source) {
  SafetensorsFile f;
  f.source_ = source;
  ByteReader r(bytes, source);
  uint64_t header_len = r.read<uint64_t>("header length");
  HI_CHECK(header_len <= r.remaining(), source << ": header length: " << header_len
                                               << " bytes is past the end of the file (" << r.remaining()
                                               << " bytes follow)");
  HI_CHECK(header_len <= kMaxHeaderBytes, source << ": header length: " << header_len << " bytes, expected at most "
                                                 << kMaxHeaderBytes);
  std::string_view text = r.read_bytes(header_len, "header");
  json header = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  HI_CHECK(!header.is_discarded(), source << ": header: not valid JSON");
  HI_CHECK(header.is_object(), source << ": header: expected a JSON object, got " << header.type_name());

  const uint8_t* data = bytes.data() + r.pos();
  uint64_t data_bytes = r.remaining();
  std::vector<uint64_t> begins;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      HI_CHECK(it->is_object() || it->is_null(), source << ": __metadata__: expected an object");
      if (it->is_object())
        for (auto m = it->begin(); m != it->end(); ++m)
          f.metadata_[m.key()] = m->is_string() ? m->get<std::string>() : m->dump();
      continue;
    }
    auto [t, begin] = parse_entry(it.key(), *it, data_bytes, source);
    f.tensors_.push_back(std::move(t));
    begins.push_back(begin);
  }

  // Tensors must not share bytes: sort by begin and compare neighbours.
  std::vector<std::pair<uint64_t, size_t>> order;  // (begin, tensor index)
  for (size_t i = 0; i < f.tensors_.size(); ++i)
    order.emplace_back(begins[i], i);
  std::sort(order.begin(), order.end());
  for (size_t k = 1; k < order.size(); ++k) {
    const Tensor& prev = f.tensors_[order[k - 1].second];
    uint64_t prev_end = order[k - 1].first + prev.nbytes();
    HI_CHECK(prev_end <= order[k].first, source << ": tensor '" << f.tensors_[order[k].second].name
                                                << "': data_offsets: overlaps tensor '" << prev.name << "'");
  }
  for (size_t i = 0; i < f.tensors_.size(); ++i) {
    Tensor& t = f.tensors_[i];
    t.data = data + begins[i];
    f.index_.emplace(t.name, i);
  }
  return f;
}

const Tensor* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const Tensor& SafetensorsFile::get(const std::string& name) const {
  const Tensor* t = find(name);
  HI_CHECK(t != nullptr, source_ << ": tensor '" << name << "': missing");
  return *t;
}

}  // namespace headinfer
