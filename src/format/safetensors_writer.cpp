#include "format/safetensors_writer.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include <nlohmann/json.hpp>

#include "common/half.hpp"
#include "headinfer/error.hpp"

namespace headinfer {
namespace {

const char* file_dtype_name(DType t, const std::string& tensor) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::Q8_0: break;
  }
  HI_FAIL("safetensors writer: tensor '" << tensor << "': dtype: " << dtype_name(t)
                                         << " has no safetensors type, expected F32, F16 or BF16");
}

// Closes the file on every path out.
struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};

void write_bytes(FILE* f, const void* p, size_t n, const std::string& path, const std::string& what) {
  HI_CHECK(std::fwrite(p, 1, n, f) == n, path << ": writing " << what << ": short write (disk full?)");
}

// Streams `t` converted to its file dtype, a batch of elements at a time.
void write_converted(FILE* f, const TensorToWrite& t, const std::string& path) {
  constexpr int64_t kBatch = int64_t{1} << 20;  // elements; Q8_0 batches stay whole blocks
  const Tensor& src = *t.data;
  const int64_t n = src.numel();
  std::vector<float> f32(static_cast<size_t>(std::min(n, kBatch)));
  std::vector<uint16_t> half(t.dtype == DType::F32 ? 0 : f32.size());
  for (int64_t i = 0; i < n; i += kBatch) {
    const int64_t m = std::min(kBatch, n - i);
    to_f32(src.dtype, static_cast<const uint8_t*>(src.data) + dtype_bytes(src.dtype, i), f32.data(), m);
    if (t.dtype == DType::F32) {
      write_bytes(f, f32.data(), static_cast<size_t>(m) * 4, path, "tensor '" + t.name + "'");
      continue;
    }
    for (int64_t j = 0; j < m; ++j)
      half[static_cast<size_t>(j)] = t.dtype == DType::BF16 ? f32_to_bf16(f32[static_cast<size_t>(j)])
                                                            : f32_to_f16(f32[static_cast<size_t>(j)]);
    write_bytes(f, half.data(), static_cast<size_t>(m) * 2, path, "tensor '" + t.name + "'");
  }
}

}  // namespace

int64_t file_bytes(const TensorToWrite& t) { return static_cast<int64_t>(dtype_bytes(t.dtype, t.data->numel())); }

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  int64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    HI_CHECK(t.data != nullptr && !t.data->empty(), path << ": tensor '" << t.name << "': no data to write");
    HI_CHECK(t.dtype == t.data->dtype || t.dtype == DType::F32 || t.data->dtype == DType::F32,
             path << ": tensor '" << t.name << "': cannot write " << dtype_name(t.data->dtype) << " as "
                  << dtype_name(t.dtype) << " (expected the same dtype, F32, or from F32)");
    const int64_t bytes = file_bytes(t);
    header[t.name] = {{"dtype", file_dtype_name(t.dtype, t.name)},
                      {"shape", t.data->shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  std::unique_ptr<FILE, FileCloser> f(std::fopen(path.c_str(), "wb"));
  HI_CHECK(f != nullptr, path << ": cannot create (" << std::strerror(errno) << ")");
  const uint64_t len = text.size();
  uint8_t len_le[8];
  for (int i = 0; i < 8; ++i) len_le[i] = static_cast<uint8_t>(len >> (8 * i));
  write_bytes(f.get(), len_le, 8, path, "header length");
  write_bytes(f.get(), text.data(), text.size(), path, "header");
  for (const TensorToWrite& t : tensors) {
    if (t.dtype == t.data->dtype) write_bytes(f.get(), t.data->data, t.data->nbytes(), path, "tensor '" + t.name + "'");
    else write_converted(f.get(), t, path);
  }
  FILE* raw = f.release();
  HI_CHECK(std::fclose(raw) == 0, path << ": closing: " << std::strerror(errno) << " (disk full?)");
}

}  // namespace headinfer
