#include "formats/hf_config.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "core/error.h"
#include "core/json.h"

namespace undo {
namespace {

constexpr int64_t kMaxInt = std::numeric_limits<int>::max();

struct Reader {
  const JsonValue& c;
  const JsonValue* get(const char* key) const {
    auto* v = c.find(key);
    return v && !v->is_null() ? v : nullptr;
  }
  int integer(const char* key, int64_t lo = 1, int64_t hi = kMaxInt) const {
    return int(c.at(key).integer(lo, hi));
  }
  int integer_or(const char* key, int fallback, int64_t lo = 1, int64_t hi = kMaxInt) const {
    auto* v = get(key);
    return v ? int(v->integer(lo, hi)) : fallback;
  }
  double real_or(const char* key, double fallback) const {
    auto* v = get(key);
    return v ? v->number() : fallback;
  }
  bool flag_or(const char* key, bool fallback) const {
    auto* v = get(key);
    return v ? v->boolean() : fallback;
  }
  // A key that must be absent, null, or hold `allowed` (what undo computes).
  void refuse_unless(const char* key, bool allowed_value_present, const std::string& why) const {
    auto* v = get(key);
    UNDO_INPUT_CHECK(!v || allowed_value_present, v ? v->where() : c.where(), ": not supported by undo (", why, ")");
  }
};

HfFamily family_of(const JsonValue& type) {
  const std::string& t = type.string();
  if (t == "llama") return HfFamily::llama;
  if (t == "qwen2") return HfFamily::qwen2;
  if (t == "gemma") return HfFamily::gemma;
  if (t == "gemma2") return HfFamily::gemma2;
  throw InputError(type.where() + " = \"" + printable(t) +
                   "\": not a model family undo computes (llama, qwen2, gemma, gemma2)");
}

std::string activation_of(const JsonValue& act) {
  const std::string& a = act.string();
  if (a == "silu" || a == "swish") return "silu";
  if (a == "gelu") return "gelu";
  if (a == "gelu_pytorch_tanh" || a == "gelu_new" || a == "gelu_fast") return "gelu_tanh";
  throw InputError(act.where() + " = \"" + printable(a) + "\": not an activation undo computes (silu, gelu, " +
                   "gelu_pytorch_tanh)");
}

// Rotary parameters: transformers 5's rope_parameters, or the older
// rope_theta + rope_scaling.
void read_rope(const Reader& r, ModelConfig& m) {
  const JsonValue* params = r.get("rope_parameters");
  if (!params) params = r.get("rope_scaling");
  m.rope_theta = r.real_or("rope_theta", 10000);
  m.rope_scaling = "none";
  r.refuse_unless("partial_rotary_factor", r.real_or("partial_rotary_factor", 1) == 1, "rotary on part of a head");
  if (!params) return;
  Reader p{*params};
  params->object();
  if (p.get("rope_theta")) m.rope_theta = p.real_or("rope_theta", m.rope_theta);
  p.refuse_unless("partial_rotary_factor", p.real_or("partial_rotary_factor", 1) == 1, "rotary on part of a head");
  const JsonValue* type = p.get("rope_type");
  if (!type) type = p.get("type");
  const std::string t = type ? type->string() : "default";
  if (t == "default") return;
  const double factor = p.c.at("factor").number();
  UNDO_INPUT_CHECK(factor > 0, p.c.at("factor").where(), " = ", factor, ": must be > 0");
  if (t == "linear") {
    m.rope_scaling = "linear:" + format_double(factor);
  } else if (t == "llama3") {
    const int original = p.integer_or("original_max_position_embeddings", r.integer_or("max_position_embeddings", 0));
    UNDO_INPUT_CHECK(original > 0, params->where(), " lacks original_max_position_embeddings");
    m.rope_scaling = "llama3:" + format_double(factor) + ":" + format_double(p.c.at("low_freq_factor").number()) +
                     ":" + format_double(p.c.at("high_freq_factor").number()) + ":" + std::to_string(original);
  } else {
    throw InputError(type->where() + " = \"" + printable(t) +
                     "\": not a rotary scaling undo computes (default, linear, llama3)");
  }
}

// Gemma-2's layer_types as undo's window pattern: every k-th layer attends
// fully, the others through the window.
void read_layer_types(const Reader& r, ModelConfig& m) {
  const JsonValue* types = r.get("layer_types");
  const int n = m.n_layers;
  std::vector<bool> full(size_t(n), m.sliding_window == 0);
  if (types) {
    UNDO_INPUT_CHECK(int(types->array().size()) == n, types->where(), " has ", types->array().size(),
                     " entries for ", n, " layers");
    for (int i = 0; i < n; ++i) {
      const std::string& t = types->array()[size_t(i)].string();
      UNDO_INPUT_CHECK(t == "full_attention" || t == "sliding_attention", types->array()[size_t(i)].where(), " = \"",
                       printable(t), "\": not an attention undo computes (full_attention, sliding_attention)");
      full[size_t(i)] = t == "full_attention";
    }
  } else if (m.sliding_window > 0) {  // Gemma-2's default: odd layers (1, 3, ...) attend fully
    for (int i = 0; i < n; ++i) full[size_t(i)] = (i + 1) % 2 == 0;
  }
  if (m.sliding_window == 0) {
    for (int i = 0; i < n; ++i)
      UNDO_INPUT_CHECK(full[size_t(i)], types->where(), ": layer ", i, " slides but no sliding_window is set");
    return;
  }
  // Find k with full[i] == ((i + 1) % k == 0); k = 0: every layer slides.
  for (int k = 0; k <= n + 1; ++k) {
    bool fits = true;
    for (int i = 0; i < n && fits; ++i) fits = full[size_t(i)] == (k > 0 && (i + 1) % k == 0);
    if (fits) {
      // k > n means no layer attends fully: the same as 0.
      m.full_attention_every = k > n ? 0 : k;
      return;
    }
  }
  if (std::all_of(full.begin(), full.end(), [](bool f) { return f; })) {
    m.sliding_window = 0;
    return;
  }
  throw InputError((types ? types->where() : r.c.where()) +
                   ": a pattern of sliding and full layers that is not every k-th layer full");
}

// A real number as transformers' typed configs want it: always with a point
// or an exponent (its strict dataclasses refuse 5 where a float belongs).
std::string json_float(double v) {
  std::string t = format_double(v);
  return t.find_first_of(".e") == std::string::npos ? t + ".0" : t;
}

}  // namespace

const char* hf_model_type(HfFamily f) {
  switch (f) {
    case HfFamily::llama: return "llama";
    case HfFamily::qwen2: return "qwen2";
    case HfFamily::gemma: return "gemma";
    case HfFamily::gemma2: return "gemma2";
  }
  return "?";
}

bool hf_stores_norm_scale(HfFamily f) { return f == HfFamily::llama || f == HfFamily::qwen2; }

HfModelConfig read_hf_config(const JsonValue& c, int seq_len) {
  Reader r{c};
  c.object();
  HfModelConfig out;
  out.family = family_of(c.at("model_type"));
  const bool gemma = out.family == HfFamily::gemma || out.family == HfFamily::gemma2;
  r.refuse_unless("quantization_config", false, "quantized weights");
  ModelConfig& m = out.model;
  m.vocab_size = r.integer("vocab_size", 1, 1 << 24);
  m.d_model = r.integer("hidden_size", 1, 1 << 16);
  m.d_ff = r.integer("intermediate_size", 1, 1 << 20);
  m.n_layers = r.integer("num_hidden_layers", 1, 4096);
  m.n_heads = r.integer("num_attention_heads", 1, 4096);
  m.n_kv_heads = r.integer_or("num_key_value_heads", m.n_heads, 1, 4096);
  m.head_dim = r.integer_or("head_dim", 0, 1, 1 << 16);
  if (m.head_dim * m.n_heads == m.d_model) m.head_dim = 0;  // the default, spelled out
  m.norm_eps = r.real_or("rms_norm_eps", 1e-6);
  out.max_positions = r.integer_or("max_position_embeddings", gemma ? 8192 : 2048, 2, kMaxInt);
  m.seq_len = std::min(seq_len, out.max_positions);
  read_rope(r, m);
  // Families' defaults where the file is silent, as transformers' classes have them.
  m.tied_embeddings = r.flag_or("tie_word_embeddings", gemma);
  m.embed_scale = gemma;
  m.qkv_bias = out.family == HfFamily::qwen2;
  m.post_norms = out.family == HfFamily::gemma2;
  // The key each family's transformers class reads (Gemma-2's own spelling).
  const char* act_key = out.family == HfFamily::gemma2 ? "hidden_activation" : "hidden_act";
  if (auto* act = r.get(act_key)) m.activation = activation_of(*act);
  else m.activation = gemma ? "gelu_tanh" : "silu";
  r.refuse_unless("attention_bias", !r.flag_or("attention_bias", false), "biases on all four attention projections");
  r.refuse_unless("mlp_bias", !r.flag_or("mlp_bias", false), "biases in the MLP");
  r.refuse_unless("use_bidirectional_attention", !r.flag_or("use_bidirectional_attention", false),
                  "bidirectional attention");
  m.softcap = 0;
  m.attn_softcap = 0;
  m.sliding_window = 0;
  if (out.family == HfFamily::qwen2) {
    r.refuse_unless("use_sliding_window", !r.flag_or("use_sliding_window", false), "Qwen2's sliding window");
  }
  if (out.family == HfFamily::gemma2) {
    m.softcap = r.real_or("final_logit_softcapping", 0);
    m.attn_softcap = r.real_or("attn_logit_softcapping", 0);
    UNDO_INPUT_CHECK(m.softcap >= 0 && m.attn_softcap >= 0, c.where(), ": soft-caps must be >= 0");
    m.query_scale = r.real_or("query_pre_attn_scalar", 256);
    UNDO_INPUT_CHECK(m.query_scale > 0, c.at("query_pre_attn_scalar").where(), ": must be > 0");
    m.sliding_window = r.integer_or("sliding_window", 4096, 1, kMaxInt);
    read_layer_types(r, m);
  } else if (auto* types = r.get("layer_types")) {
    for (auto& t : types->array())
      UNDO_INPUT_CHECK(t.string() == "full_attention", t.where(), " = \"", printable(t.string()),
                       "\": only full attention is computed for ", hf_model_type(out.family));
  }
  // A window at least as long as the training window never cuts anything.
  if (m.sliding_window >= m.seq_len) m.sliding_window = 0, m.full_attention_every = 0;
  auto problem = model_config_problem(m);
  UNDO_INPUT_CHECK(problem.empty(), c.where(), ": describes a model undo cannot build: ", problem);
  return out;
}

HfFamily hf_family_for(const ModelConfig& m) {
  auto refuse = [](const char* key, const std::string& why) {
    throw InputError(std::string("--format hf: ") + key + " " + why);
  };
  if (m.post_norms) {
    if (!m.embed_scale) refuse("model.embed_scale", "= false: Gemma-2 scales its embeddings");
    if (!m.tied_embeddings) refuse("model.tied_embeddings", "= false: Gemma-2 ties its embeddings");
    if (m.qkv_bias) refuse("model.qkv_bias", "= true: Gemma-2 has no attention biases");
    return HfFamily::gemma2;
  }
  if (m.softcap > 0 || m.attn_softcap > 0)
    refuse(m.softcap > 0 ? "model.softcap" : "model.attn_softcap",
           "> 0: only Gemma-2 soft-caps, and it needs model.post_norms = true");
  if (m.sliding_window > 0) refuse("model.sliding_window", "> 0: only Gemma-2's window is exported");
  if (m.query_scale > 0 && m.query_scale != m.head_size())
    refuse("model.query_scale", "differs from the head size: only Gemma-2 has query_pre_attn_scalar");
  if (m.embed_scale) {
    if (!m.tied_embeddings) refuse("model.tied_embeddings", "= false: Gemma ties its embeddings");
    if (m.qkv_bias) refuse("model.qkv_bias", "= true: Gemma has no attention biases");
    return HfFamily::gemma;
  }
  if (m.activation != "silu") refuse("model.activation", "= " + m.activation + ": Llama and Qwen2 use silu");
  return m.qkv_bias ? HfFamily::qwen2 : HfFamily::llama;
}

std::string hf_config_json(const ModelConfig& m, HfFamily f, const std::string& dtype, int bos_id, int eos_id,
                           int pad_id) {
  static const char* arch[] = {"LlamaForCausalLM", "Qwen2ForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM"};
  JsonObject c;
  c.add_raw("architectures", "[\"" + std::string(arch[int(f)]) + "\"]");
  c.add("model_type", hf_model_type(f));
  c.add("vocab_size", m.vocab_size).add("hidden_size", m.d_model).add("intermediate_size", m.d_ff);
  c.add("num_hidden_layers", m.n_layers).add("num_attention_heads", m.n_heads);
  c.add("num_key_value_heads", m.kv_heads()).add("head_dim", m.head_size());
  c.add_raw("rms_norm_eps", json_float(m.norm_eps)).add("max_position_embeddings", m.seq_len);
  c.add("tie_word_embeddings", m.tied_embeddings);
  static const std::map<std::string, std::string> act = {
      {"silu", "silu"}, {"gelu", "gelu"}, {"gelu_tanh", "gelu_pytorch_tanh"}};
  c.add(f == HfFamily::gemma2 ? "hidden_activation" : "hidden_act", act.at(m.activation));
  if (f != HfFamily::qwen2) c.add("attention_bias", false);
  if (f == HfFamily::llama) c.add("mlp_bias", false);
  if (f == HfFamily::qwen2) c.add("use_sliding_window", false);
  if (f == HfFamily::gemma2) {
    c.add_raw("final_logit_softcapping", m.softcap > 0 ? json_float(m.softcap) : "null");
    c.add_raw("attn_logit_softcapping", m.attn_softcap > 0 ? json_float(m.attn_softcap) : "null");
    // An integer in transformers' Gemma-2 config.
    const double scalar = m.query_scale > 0 ? m.query_scale : double(m.head_size());
    UNDO_INPUT_CHECK(scalar == std::floor(scalar), "--format hf: model.query_scale = ", scalar,
                     " is not a whole number, as Gemma-2's query_pre_attn_scalar must be");
    c.add("query_pre_attn_scalar", int64_t(scalar));
    // transformers wants a window even where no layer slides; one as long as the model's is the same.
    c.add("sliding_window", m.sliding_window > 0 ? m.sliding_window : m.seq_len);
    std::string types = "[";
    for (int i = 0; i < m.n_layers; ++i)
      types += std::string(i ? ", " : "") + (m.layer_slides(i) ? "\"sliding_attention\"" : "\"full_attention\"");
    c.add_raw("layer_types", types + "]");
  }
  const RopeScaling rope = parse_rope_scaling(m.rope_scaling);
  JsonObject params;
  params.add_raw("rope_theta", json_float(m.rope_theta));
  if (rope.type == "none") {
    params.add("rope_type", "default");
  } else {
    params.add("rope_type", rope.type).add_raw("factor", json_float(rope.factor));
    if (rope.type == "llama3")
      params.add_raw("low_freq_factor", json_float(rope.low_freq_factor))
          .add_raw("high_freq_factor", json_float(rope.high_freq_factor))
          .add("original_max_position_embeddings", rope.original_positions);
  }
  c.add("rope_parameters", params);
  c.add_raw("rope_theta", json_float(m.rope_theta));  // for transformers 4, which reads no rope_parameters
  if (bos_id >= 0) c.add("bos_token_id", bos_id);
  if (eos_id >= 0) c.add("eos_token_id", eos_id);
  if (pad_id >= 0) c.add("pad_token_id", pad_id);
  c.add("dtype", dtype).add("torch_dtype", dtype);
  return c.str() + "\n";
}

namespace {

// Every model key, as the config key table spells it: two models are the same
// model when these agree.
std::string model_keys_text(const ModelConfig& m) {
  Config c;
  c.model = m;
  std::string text;
  for (auto& k : describe(c))
    if (k.name.rfind("model.", 0) == 0) text += k.name + "=" + k.value() + "\n";
  return text;
}

}  // namespace

std::string hf_config_dtype(const JsonValue& config) {
  for (const char* key : {"dtype", "torch_dtype"})
    if (auto* d = config.find(key); d && d->is_string()) return d->string();
  return "";
}

std::string json_object_lines(const JsonValue& object, const std::map<std::string, std::string>& replaced) {
  std::string out = "{";
  auto member = [&](const std::string& key, const std::string& text) {
    out += std::string(out.size() > 1 ? "," : "") + "\n  " + json_escape(key) + ": " + text;
  };
  for (auto& [key, value] : object.object()) {
    auto r = replaced.find(key);
    member(key, r == replaced.end() ? json_text(value) : r->second);
  }
  for (auto& [key, text] : replaced)
    if (!object.find(key)) member(key, text);
  return out + "\n}\n";
}

std::string hf_config_json_kept(const JsonValue& original, const ModelConfig& m, const std::string& dtype) {
  const HfModelConfig imported = read_hf_config(original, m.seq_len);
  if (imported.family != hf_family_for(m) || model_keys_text(imported.model) != model_keys_text(m)) return "";
  std::map<std::string, std::string> replaced = {{"dtype", json_escape(dtype)}};
  if (original.find("torch_dtype")) replaced["torch_dtype"] = json_escape(dtype);
  return json_object_lines(original, replaced);
}

}  // namespace undo
