#include "format/needle.hpp"

#include <algorithm>
#include <cmath>
#include <memory>

#include "common/half.hpp"
#include "format/needle_vocab.hpp"
#include "headinfer/error.hpp"

namespace headinfer::needle {
namespace {

constexpr const char* kSpecPrefix = "synthetic:needle";

// Owns one tensor's bytes; the construction is written in f32 and rounded once
// to the requested dtype at the end, so BF16 differs from F32 only by that rounding.
class Builder {
 public:
  Builder(ModelWeights& w, DType dtype, bool with_data) : w_(w), dtype_(dtype), with_data_(with_data) {}

  struct Pending {
    Tensor* tensor;
    std::vector<float> values;
  };

  // A zero tensor; set() writes its nonzero entries before finish() stores it.
  Tensor& add(Tensor& t, const std::string& name, std::vector<int64_t> shape) {
    t.name = name;
    t.dtype = dtype_;
    t.shape = std::move(shape);
    if (with_data_) pending_.push_back({&t, std::vector<float>(static_cast<size_t>(t.numel()), 0.0f)});
    return t;
  }
  void set(const Tensor& t, int64_t row, int64_t col, double v) {
    if (!with_data_) return;
    for (Pending& p : pending_) {
      if (p.tensor != &t) continue;
      HI_CHECK(row >= 0 && row < t.rows() && col >= 0 && col < t.cols(),
               "synthetic:needle: " << t.name << ": entry (" << row << ", " << col << ") outside " << t.shape_str());
      p.values[static_cast<size_t>(row * t.cols() + col)] = static_cast<float>(v);
      return;
    }
    HI_FAIL("synthetic:needle: " << t.name << ": not created by this builder");
  }
  void fill(const Tensor& t, double v) {
    for (int64_t c = 0; c < t.cols(); ++c) set(t, 0, c, v);
  }
  void finish() {
    for (Pending& p : pending_) {
      const size_t n = p.values.size();
      std::shared_ptr<uint8_t[]> buf(new uint8_t[dtype_bytes(dtype_, static_cast<int64_t>(n))]);
      if (dtype_ == DType::F32) {
        std::copy(p.values.begin(), p.values.end(), reinterpret_cast<float*>(buf.get()));
      } else {
        uint16_t* out = reinterpret_cast<uint16_t*>(buf.get());
        for (size_t i = 0; i < n; ++i) out[i] = f32_to_bf16(p.values[i]);
      }
      p.tensor->data = buf.get();
      w_.keep_alive.push_back(std::shared_ptr<const void>(buf, buf.get()));
    }
    pending_.clear();
  }

 private:
  ModelWeights& w_;
  DType dtype_;
  bool with_data_;
  std::vector<Pending> pending_;
};

DType parse_needle_dtype(const std::string& spec) {
  DType dtype = DType::F32;
  size_t pos = std::string(kSpecPrefix).size();
  while (pos < spec.size()) {
    HI_CHECK(spec[pos] == ',', spec << ": expected synthetic:needle[,dtype=f32|bf16]");
    size_t next = spec.find(',', pos + 1);
    std::string item = spec.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1);
    pos = next == std::string::npos ? spec.size() : next;
    if (item == "dtype=f32") dtype = DType::F32;
    else if (item == "dtype=bf16") dtype = DType::BF16;
    else if (item.rfind("dtype=", 0) == 0) HI_FAIL(spec << ": dtype: expected f32 or bf16, got '" << item.substr(6) << "'");
    else HI_FAIL(spec << ": option '" << item << "': unknown, the needle model takes only dtype=f32|bf16");
  }
  return dtype;
}

// Layer 1, head 0: the previous-token head. q and k read only the constant
// coordinate; k = amp in the first component of each fast pair and q = amp e^{-i theta},
// so after RoPE q.k = amp^2 cos((t - 1 - s) theta), largest at s = t - 1. The
// value copies the one-hot token E into P.
void build_previous_token_head(Builder& b, const LayerWeights& l, const std::vector<double>& inv_freq, double n1) {
  const double amp = std::sqrt(kPrevScore * std::sqrt(double{kHeadDim}));
  const int half = kHeadDim / 2;
  for (int i = 0; i < kPrevPairs; ++i) {
    b.set(l.wk, i, kBias, amp / n1);
    b.set(l.wq, i, kBias, amp * std::cos(inv_freq[i]) / n1);
    b.set(l.wq, i + half, kBias, -amp * std::sin(inv_freq[i]) / n1);
  }
  for (int t = 0; t < kVocab; ++t) {
    b.set(l.wv, t, kE0 + t, 1.0 / n1);
    b.set(l.wo, kP0 + t, t, 1.0);
  }
}

// Layer 2, head 0: the induction head. Token t owns one component of a slow pair;
// q puts the current token there and k the previous token, so a key whose previous
// token equals the query scores kContentScore and every other key 0, at any
// distance (slow pairs turn < 0.03 rad over 4M positions). The value copies the
// matched position's own token into R.
void build_induction_head(Builder& b, const LayerWeights& l, double n2) {
  const double c = std::sqrt(kContentScore * std::sqrt(double{kHeadDim}));
  const int half = kHeadDim / 2;
  std::vector<int> slots;
  for (int i = kContentPair0; i < half; ++i) {
    slots.push_back(i);
    slots.push_back(i + half);
  }
  static_assert(2 * (kHeadDim / 2 - kContentPair0) >= kVocab, "not enough slow slots for the vocabulary");
  for (int t = 0; t < kVocab; ++t) {
    b.set(l.wq, slots[t], kE0 + t, c / n2);
    b.set(l.wk, slots[t], kP0 + t, c / n2);
    b.set(l.wv, t, kE0 + t, 1.0 / n2);
    b.set(l.wo, kR0 + t, t, 1.0);
  }
}

// splitmix64: a fixed, portable generator, so prompts are the same everywhere
// (std:: distributions are implementation-defined).
struct SplitMix {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  int below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }
};

}  // namespace

bool is_needle_spec(const std::string& spec) {
  const std::string p = kSpecPrefix;
  return spec.rfind(p, 0) == 0 && (spec.size() == p.size() || spec[p.size()] == ',');
}

ModelConfig needle_config() {
  ModelConfig c;
  c.arch = "llama";
  c.n_layers = kLayers;
  c.hidden = kHidden;
  c.n_heads = kHeads;
  c.n_kv_heads = kHeads;
  c.head_dim = kHeadDim;
  c.ffn_hidden = kFfn;
  c.vocab_size = kVocab;
  c.max_position = kMaxPosition;
  c.rope_theta = kTheta;
  c.rms_eps = 1e-6f;
  c.tie_embeddings = false;
  c.bos_id = kBos;
  c.eos_ids = {kEos};
  return c;
}

LoadedModel load_needle_model(const std::string& spec, bool with_weights) {
  HI_CHECK(is_needle_spec(spec), spec << ": expected synthetic:needle[,dtype=f32|bf16]");
  LoadedModel m;
  m.spec = spec;
  m.format = "synthetic";
  m.config = needle_config();
  m.config.validate(spec);
  m.weight_dtype = parse_needle_dtype(spec);
  ModelWeights& w = m.weights;
  Builder b(w, m.weight_dtype, with_weights);
  const int64_t D = kHidden, qw = int64_t{kHeads} * kHeadDim;

  b.add(w.tok_embd, "tok_embd", {kVocab, D});
  b.add(w.out_norm, "out_norm", {D});
  b.add(w.lm_head, "lm_head", {kVocab, D});
  w.layers.resize(kLayers);
  for (int i = 0; i < kLayers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    LayerWeights& l = w.layers[static_cast<size_t>(i)];
    b.add(l.attn_norm, p + "attn_norm", {D});
    b.add(l.wq, p + "wq", {qw, D});
    b.add(l.wk, p + "wk", {qw, D});
    b.add(l.wv, p + "wv", {qw, D});
    b.add(l.wo, p + "wo", {D, qw});
    b.add(l.ffn_norm, p + "ffn_norm", {D});
    b.add(l.w_gate, p + "w_gate", {kFfn, D});
    b.add(l.w_up, p + "w_up", {kFfn, D});
    b.add(l.w_down, p + "w_down", {D, kFfn});
    b.fill(l.attn_norm, 1.0);
    b.fill(l.ffn_norm, 1.0);
  }
  b.fill(w.out_norm, 1.0);
  for (int t = 0; t < kVocab; ++t) {
    b.set(w.tok_embd, t, kE0 + t, 1.0);
    b.set(w.tok_embd, t, kBias, 1.0);
  }
  // RMSNorm (gain 1) scales a residual holding k unit coordinates by sqrt(D / k):
  // layer 1 sees E and the constant (2), layer 2 also P (3), the output norm also R (4).
  const double n1 = std::sqrt(D / 2.0), n2 = std::sqrt(D / 3.0), nf = std::sqrt(D / 4.0);
  // The q phases must be the rotation the engine applies, so take the engine's own
  // inverse frequencies.
  build_previous_token_head(b, w.layers[0], rope_inv_freq(m.config, 0), n1);
  build_induction_head(b, w.layers[1], n2);
  for (int t = 0; t < kVocab; ++t) b.set(w.lm_head, t, kR0 + t, kOutScale / nf);
  b.finish();

  m.load_tokenizer = [] { return make_needle_tokenizer(); };
  return m;
}

NeedlePrompt make_needle_prompt(int64_t context, double depth, uint64_t seed) {
  const int64_t overhead = 2 + 1 + kKeyDigits;  // BOS, two markers, the key
  HI_CHECK(context >= overhead + 8, "needle prompt: context: expected at least " << overhead + 8 << " tokens, got "
                                                                                 << context);
  HI_CHECK(depth >= 0.0 && depth <= 1.0, "needle prompt: depth: expected 0..1, got " << depth);
  SplitMix rng{seed ^ 0x6E65656C64ull};
  NeedlePrompt p;
  int digits[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  for (int i = 0; i < kKeyDigits; ++i) std::swap(digits[i], digits[i + rng.below(10 - i)]);  // partial shuffle
  for (int i = 0; i < kKeyDigits; ++i) {
    p.key.push_back(kDigit0 + digits[i]);
    p.key_text += static_cast<char>('0' + digits[i]);
  }
  const int64_t n_fill = context - overhead;
  const int64_t before = std::llround(depth * static_cast<double>(n_fill));
  p.ids.reserve(static_cast<size_t>(context));
  p.ids.push_back(kBos);
  for (int64_t i = 0; i < n_fill; ++i) {
    if (i == before) {
      p.ids.push_back(kMarker);
      p.key_position = static_cast<int64_t>(p.ids.size());
      p.ids.insert(p.ids.end(), p.key.begin(), p.key.end());
    }
    p.ids.push_back(kFirstFiller + rng.below(kNumFillers));
  }
  if (before == n_fill) {
    p.ids.push_back(kMarker);
    p.key_position = static_cast<int64_t>(p.ids.size());
    p.ids.insert(p.ids.end(), p.key.begin(), p.key.end());
  }
  p.ids.push_back(kMarker);
  return p;
}

std::string digits_text(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += (id >= kDigit0 && id < kDigit0 + 10) ? static_cast<char>('0' + id - kDigit0) : '?';
  return s;
}

}  // namespace headinfer::needle
