#include "format/synthetic.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>

#include "format/weight_utils.hpp"
#include "headinfer/error.hpp"

namespace headinfer {
namespace {

constexpr const char* kPrefix = "synthetic:";
// Every preset claims a 4M-token context so long-context runs need no override.
constexpr int64_t kContext = 4194304;
// Token ids of the built-in byte vocabulary.
constexpr int kUnkId = 0, kBosId = 1, kEosId = 2, kFirstByteId = 3;
constexpr int kByteVocabSize = kFirstByteId + 256;

struct Preset {
  const char* name;
  const char* source;  // where the shapes come from
  int layers, hidden, heads, kv_heads, head_dim, ffn, vocab;
  double theta;
  float eps;
  bool tied, qkv_bias;
  RopeScaling scaling;
  const char* arch;
};

RopeScaling llama3_scaling(double factor) {
  RopeScaling r;
  r.type = RopeScaling::Type::Llama3;
  r.factor = factor;
  r.low_freq_factor = 1.0;
  r.high_freq_factor = 4.0;
  r.original_max_position = 8192;
  return r;
}

const std::vector<Preset>& preset_table() {
  static const std::vector<Preset> table = {
      // Meta-Llama-3-8B-Instruct config.json (shared/configs/Meta-Llama-3-8B-Instruct.resaved.json)
      {"llama-3-8b", "Meta-Llama-3-8B", 32, 4096, 32, 8, 128, 14336, 128256, 500000.0, 1e-5f, false, false, {}, "llama"},
      // shared/configs/Llama-3.1-8B.json (rope_scaling llama3, factor 8)
      {"llama-3.1-8b", "Llama-3.1-8B", 32, 4096, 32, 8, 128, 14336, 128256, 500000.0, 1e-5f, false, false,
       llama3_scaling(8.0), "llama"},
      // shared/configs/Llama-3.2-1B.json (explicit head_dim 64, tied, llama3 factor 32)
      {"llama-3.2-1b", "Llama-3.2-1B", 16, 2048, 32, 8, 64, 8192, 128256, 500000.0, 1e-5f, true, false,
       llama3_scaling(32.0), "llama"},
      // shared/configs/Llama-2-7b-hf.*.json (MHA)
      {"llama-2-7b", "Llama-2-7b-hf", 32, 4096, 32, 32, 128, 11008, 32000, 10000.0, 1e-5f, false, false, {}, "llama"},
      // shared/configs/Mistral-7B-Instruct-v0.3.full-dump.json
      {"mistral-7b", "Mistral-7B-v0.3", 32, 4096, 32, 8, 128, 14336, 32768, 1000000.0, 1e-5f, false, false, {},
       "mistral"},
      // shared/configs/Qwen2.5-7B.json (q/k/v biases)
      {"qwen2.5-7b", "Qwen2.5-7B", 28, 3584, 28, 4, 128, 18944, 152064, 1000000.0, 1e-6f, false, true, {}, "qwen2"},
      // Tiny shapes for fast tests: one per attention layout.
      {"tiny-mha", "tiny", 2, 64, 4, 4, 16, 192, 320, 10000.0, 1e-5f, false, false, {}, "llama"},
      {"tiny-gqa", "tiny", 3, 128, 4, 2, 32, 384, 320, 10000.0, 1e-5f, false, false, {}, "llama"},
      {"tiny-mqa", "tiny", 2, 128, 8, 1, 16, 256, 288, 10000.0, 1e-5f, true, false, {}, "llama"},
      // Tiny shapes of the other families' features, for export and HF parity tests:
      // Qwen2's q/k/v biases; Llama 3.x rope scaling with a head_dim that is not
      // hidden / heads.
      {"tiny-qwen2", "tiny", 2, 128, 4, 2, 32, 320, 300, 1000000.0, 1e-6f, false, true, {}, "qwen2"},
      {"tiny-llama3", "tiny", 2, 128, 4, 2, 16, 256, 300, 500000.0, 1e-5f, true, false, llama3_scaling(8.0),
       "llama"},
  };
  return table;
}

// splitmix64's finaliser: derives independent per-tensor and per-chunk seeds.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A 32-bit integer hash (Wellons' lowbias32): counter-based, so every element is
// generated independently, and 32-bit only, so the fill loop vectorises with AVX2
// (which has no 64-bit multiply). That is what makes an 8B model take seconds.
inline uint32_t hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

// Roughly N(0, 1): the sum of the four bytes of a hash (Irwin-Hall, n=4; mean 510,
// sd sqrt(4 * (256^2 - 1) / 12) = 147.8), centred in integers and scaled once.
inline float normalish(uint32_t h) {
  int32_t s = static_cast<int32_t>((h & 0xff) + ((h >> 8) & 0xff) + ((h >> 16) & 0xff) + (h >> 24));
  return static_cast<float>(s - 510) * (1.0f / 147.8017f);
}

// Round to nearest even; the generated values are always finite, so no NaN case.
inline uint16_t finite_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// One tensor to fill: value(i) = offset + scale * normalish(hash of i).
struct FillJob {
  void* data;
  int64_t n;
  uint64_t key;
  float offset, scale;
};

constexpr int64_t kChunk = int64_t{1} << 20;

// Fills elements [begin, begin + len) of a job; begin is a chunk start, and each
// chunk has its own seed so tensors of more than 2^32 values never repeat.
void fill_chunk(const FillJob& job, DType dtype, int64_t begin, int64_t len) {
  const uint64_t chunk_seed = mix64(job.key + static_cast<uint64_t>(begin / kChunk));
  const uint32_t seed = static_cast<uint32_t>(chunk_seed), n = static_cast<uint32_t>(len);
  const float scale = job.scale;
  if (job.offset != 0.0f) {
    // Norm weights (small): computed in double, where the product of two floats is
    // exact, so FMA contraction cannot change the bits between compilers.
    for (uint32_t j = 0; j < n; ++j) {
      float n01 = normalish(hash32((j * 0x9E3779B9u) ^ seed));
      float v = static_cast<float>(static_cast<double>(job.offset) + static_cast<double>(scale) * n01);
      if (dtype == DType::F32) static_cast<float*>(job.data)[begin + j] = v;
      else static_cast<uint16_t*>(job.data)[begin + j] = finite_to_bf16(v);
    }
    return;
  }
  // scale * n: a single rounding, identical with or without FMA contraction.
  if (dtype == DType::F32) {
    float* out = static_cast<float*>(job.data) + begin;
    for (uint32_t j = 0; j < n; ++j) out[j] = scale * normalish(hash32((j * 0x9E3779B9u) ^ seed));
  } else {
    uint16_t* out = static_cast<uint16_t*>(job.data) + begin;
    for (uint32_t j = 0; j < n; ++j) out[j] = finite_to_bf16(scale * normalish(hash32((j * 0x9E3779B9u) ^ seed)));
  }
}

// Fills all jobs on every core; work is split into fixed chunks so the result does
// not depend on the thread count.
void fill_all(const std::vector<FillJob>& jobs, DType dtype) {
  std::vector<std::pair<size_t, int64_t>> chunks;  // (job, begin)
  for (size_t j = 0; j < jobs.size(); ++j)
    for (int64_t b = 0; b < jobs[j].n; b += kChunk) chunks.emplace_back(j, b);
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t c = next++; c < chunks.size(); c = next++) {
      const FillJob& job = jobs[chunks[c].first];
      fill_chunk(job, dtype, chunks[c].second, std::min(kChunk, job.n - chunks[c].second));
    }
  };
  unsigned n_threads = std::max(1u, std::min<unsigned>(std::thread::hardware_concurrency(), 64));
  n_threads = static_cast<unsigned>(std::min<size_t>(n_threads, chunks.size()));
  std::vector<std::thread> threads;
  for (unsigned t = 1; t < n_threads; ++t) threads.emplace_back(worker);
  worker();
  for (std::thread& t : threads) t.join();
}

class SyntheticBuilder {
 public:
  SyntheticBuilder(const SyntheticSpec& spec, ModelWeights& w, bool with_data)
      : spec_(spec), w_(w), with_data_(with_data) {}

  // Allocates a tensor (uninitialised) and queues it for filling. Tensor ids count
  // up in creation order, which is fixed, so the same spec gives the same bits.
  Tensor make(const std::string& name, std::vector<int64_t> shape, float offset, float scale) {
    Tensor t;
    t.name = name;
    t.dtype = spec_.dtype;
    t.shape = std::move(shape);
    if (!with_data_) return t;
    std::shared_ptr<uint8_t[]> buf(new uint8_t[t.nbytes()]);
    t.data = buf.get();
    w_.keep_alive.push_back(std::shared_ptr<const void>(buf, buf.get()));
    uint64_t key = mix64(spec_.seed ^ mix64(0x5EEDull + next_id_++));
    jobs_.push_back({buf.get(), t.numel(), key, offset, scale});
    return t;
  }
  Tensor matrix(const std::string& name, int64_t rows, int64_t cols) {
    return make(name, {rows, cols}, 0.0f, 1.0f / std::sqrt(static_cast<float>(cols)));
  }
  Tensor norm(const std::string& name, int64_t n) { return make(name, {n}, 1.0f, 0.05f); }
  Tensor bias(const std::string& name, int64_t n) { return make(name, {n}, 0.0f, 0.02f); }

  void fill() { fill_all(jobs_, spec_.dtype); }

 private:
  const SyntheticSpec& spec_;
  ModelWeights& w_;
  bool with_data_;
  std::vector<FillJob> jobs_;
  uint64_t next_id_ = 0;
};

int64_t parse_number(const std::string& value, const std::string& spec, const std::string& key) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  HI_CHECK(ec == std::errc() && end == value.data() + value.size() && v >= 0,
           spec << ": " << key << ": expected a non-negative integer, got '" << value << "'");
  return v;
}

std::string preset_list() {
  std::string s;
  for (const std::string& p : synthetic_presets()) s += (s.empty() ? "" : ", ") + p;
  return s + ", needle";  // built by format/needle.cpp, not from this table
}

}  // namespace

bool is_synthetic_spec(const std::string& spec) { return spec.rfind(kPrefix, 0) == 0; }

const std::vector<std::string>& synthetic_presets() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const Preset& p : preset_table()) v.push_back(p.name);
    return v;
  }();
  return names;
}

SyntheticSpec parse_synthetic_spec(const std::string& spec) {
  HI_CHECK(is_synthetic_spec(spec), spec << ": expected synthetic:<preset>[,layers=N][,seed=S][,dtype=bf16|f32]");
  SyntheticSpec s;
  std::string rest = spec.substr(std::string(kPrefix).size());
  size_t pos = 0;
  bool first = true;
  while (pos <= rest.size()) {
    size_t comma = rest.find(',', pos);
    std::string item = rest.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? rest.size() + 1 : comma + 1;
    if (first) {
      s.preset = item;
      first = false;
      continue;
    }
    size_t eq = item.find('=');
    HI_CHECK(eq != std::string::npos, spec << ": option '" << item << "': expected key=value");
    std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "layers") {
      int64_t n = parse_number(value, spec, key);
      HI_CHECK(n >= 1 && n <= 1024, spec << ": layers: expected 1..1024, got " << n);
      s.layers = static_cast<int>(n);
    } else if (key == "seed") {
      s.seed = static_cast<uint64_t>(parse_number(value, spec, key));
    } else if (key == "dtype") {
      if (value == "bf16") s.dtype = DType::BF16;
      else if (value == "f32") s.dtype = DType::F32;
      else HI_FAIL(spec << ": dtype: expected bf16 or f32, got '" << value << "'");
    } else {
      HI_FAIL(spec << ": option '" << key << "': unknown, expected layers, seed or dtype");
    }
  }
  synthetic_config(s);  // rejects unknown presets early
  return s;
}

ModelConfig synthetic_config(const SyntheticSpec& spec) {
  for (const Preset& p : preset_table()) {
    if (spec.preset != p.name) continue;
    ModelConfig c;
    c.arch = p.arch;
    c.n_layers = spec.layers > 0 ? spec.layers : p.layers;
    c.hidden = p.hidden;
    c.n_heads = p.heads;
    c.n_kv_heads = p.kv_heads;
    c.head_dim = p.head_dim;
    c.ffn_hidden = p.ffn;
    c.vocab_size = p.vocab;
    c.max_position = kContext;
    c.rope_theta = p.theta;
    c.rope_scaling = p.scaling;
    c.rms_eps = p.eps;
    c.tie_embeddings = p.tied;
    c.qkv_bias = p.qkv_bias;
    // The ids of the built-in byte vocabulary, not the real model's.
    c.bos_id = kBosId;
    c.eos_ids = {kEosId};
    return c;
  }
  HI_FAIL("synthetic:" << spec.preset << ": preset: unknown, expected one of " << preset_list());
}

LoadedModel load_synthetic_model(const std::string& spec_text, bool with_weights) {
  SyntheticSpec spec = parse_synthetic_spec(spec_text);
  LoadedModel m;
  m.spec = spec_text;
  m.format = "synthetic";
  m.config = synthetic_config(spec);
  m.config.validate(spec_text);
  m.weight_dtype = spec.dtype;
  const ModelConfig& c = m.config;
  ModelWeights& w = m.weights;
  SyntheticBuilder b(spec, w, with_weights);
  const int64_t q_dim = int64_t{c.n_heads} * c.head_dim, kv_dim = int64_t{c.n_kv_heads} * c.head_dim;
  // Embeddings scaled like a matrix with fan-in `hidden`, so tied logits stay O(1).
  w.tok_embd = b.matrix("tok_embd", c.vocab_size, c.hidden);
  w.out_norm = b.norm("out_norm", c.hidden);
  w.lm_head = c.tie_embeddings ? w.tok_embd : b.matrix("lm_head", c.vocab_size, c.hidden);
  w.layers.resize(static_cast<size_t>(c.n_layers));
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    LayerWeights& l = w.layers[static_cast<size_t>(i)];
    l.attn_norm = b.norm(p + "attn_norm", c.hidden);
    l.wq = b.matrix(p + "wq", q_dim, c.hidden);
    l.wk = b.matrix(p + "wk", kv_dim, c.hidden);
    l.wv = b.matrix(p + "wv", kv_dim, c.hidden);
    l.wo = b.matrix(p + "wo", c.hidden, q_dim);
    if (c.qkv_bias) {
      l.bq = b.bias(p + "bq", q_dim);
      l.bk = b.bias(p + "bk", kv_dim);
      l.bv = b.bias(p + "bv", kv_dim);
    }
    l.ffn_norm = b.norm(p + "ffn_norm", c.hidden);
    l.w_gate = b.matrix(p + "w_gate", c.ffn_hidden, c.hidden);
    l.w_up = b.matrix(p + "w_up", c.ffn_hidden, c.hidden);
    l.w_down = b.matrix(p + "w_down", c.hidden, c.ffn_hidden);
  }
  b.fill();
  const int vocab = c.vocab_size;
  m.load_tokenizer = [vocab] { return make_tokenizer(synthetic_byte_vocab(vocab)); };
  return m;
}

VocabSpec synthetic_byte_vocab(int vocab_size) {
  HI_CHECK(vocab_size >= kByteVocabSize,
           "synthetic vocabulary: vocab_size: expected at least " << kByteVocabSize << ", got " << vocab_size);
  VocabSpec v;
  v.model = VocabSpec::Model::Spm;
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.types = {VocabSpec::Unknown, VocabSpec::Control, VocabSpec::Control};
  char buf[16];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    v.tokens.emplace_back(buf);
    v.types.push_back(VocabSpec::Byte);
  }
  for (int id = kByteVocabSize; id < vocab_size; ++id) {
    v.tokens.push_back("<unused" + std::to_string(id - kByteVocabSize) + ">");
    v.types.push_back(VocabSpec::Unused);
  }
  v.scores.assign(v.tokens.size(), 0.0f);
  v.unk_id = kUnkId;
  v.bos_id = kBosId;
  v.eos_id = kEosId;
  v.add_bos = true;
  v.add_eos = false;
  // Bytes map one to one, so text round-trips without SentencePiece's space prefix.
  v.add_space_prefix = false;
  return v;
}

}  // namespace headinfer
