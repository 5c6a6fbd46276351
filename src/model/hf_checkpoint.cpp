#include "model/hf_checkpoint.h"

#include <filesystem>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/progress_line.h"
#include "model/safetensors.h"

namespace undo {
namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Tensors a saved model may hold that carry nothing undo computes from.
bool ignorable(const std::string& hf_name, const ModelConfig& m) {
  if (ends_with(hf_name, "rotary_emb.inv_freq")) return true;
  return m.tied_embeddings && hf_name == "lm_head.weight";  // a tied head's copy
}

// An RMSNorm's scale, whose convention differs between families (hf_stores_norm_scale).
bool is_norm_scale(const std::string& undo_name) { return ends_with(undo_name, "norm.weight"); }

// Every tensor of the directory's safetensors files, by name.
std::map<std::string, torch::Tensor> read_weights(const std::string& dir) {
  const std::string single = join_path(dir, "model.safetensors");
  const std::string index = join_path(dir, "model.safetensors.index.json");
  std::vector<std::string> files;
  if (file_exists(index)) {
    JsonValue idx = read_json_file(index);
    std::set<std::string> unique;
    for (auto& [name, file] : idx.at("weight_map").object()) {
      const std::string& f = file.string();
      UNDO_INPUT_CHECK(!f.empty() && f.find('/') == std::string::npos && f != "." && f != "..", file.where(),
                       " = \"", printable(f), "\": a shard must be a file in the same directory");
      if (unique.insert(f).second) files.push_back(f);
    }
  } else {
    UNDO_INPUT_CHECK(file_exists(single), "'", dir, "' holds neither model.safetensors nor model.safetensors.index.json");
    files.push_back("model.safetensors");
  }
  std::map<std::string, torch::Tensor> out;
  // Sizes for the progress line only: a FIFO or device has none (0), and
  // read_safetensors refuses it by name.
  auto megabytes = [](const std::string& path) {
    std::error_code ec;
    const auto bytes = std::filesystem::is_regular_file(path, ec) ? std::filesystem::file_size(path, ec) : 0;
    return ec ? int64_t(0) : int64_t(bytes >> 20);
  };
  std::vector<int64_t> sizes_mb;
  int64_t total_mb = 0, done_mb = 0;
  for (auto& f : files) {
    const std::string path = join_path(dir, f);
    UNDO_INPUT_CHECK(file_exists(path), "'", path, "' is listed in model.safetensors.index.json but does not exist");
    total_mb += sizes_mb.emplace_back(megabytes(path));
  }
  ProgressLine progress("import: reading weights", total_mb, "MB");
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string path = join_path(dir, files[i]);
    for (auto& [name, t] : read_safetensors(path)) {
      UNDO_INPUT_CHECK(!out.count(name), "'", path, "': tensor ", name, " is in more than one shard");
      out[name] = t;
    }
    progress.update(done_mb += sizes_mb[i]);
  }
  return out;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> hf_tensor_names(const ModelConfig& m, HfFamily family) {
  std::vector<std::pair<std::string, std::string>> n = {{"model.embed_tokens.weight", "embed.weight"}};
  const bool gemma2 = family == HfFamily::gemma2;
  for (int i = 0; i < m.n_layers; ++i) {
    const std::string hf = "model.layers." + std::to_string(i) + ".", us = "layers." + std::to_string(i) + ".";
    n.emplace_back(hf + "input_layernorm.weight", us + "attn_norm.weight");
    for (const char* p : {"q", "k", "v", "o"}) {
      n.emplace_back(hf + "self_attn." + p + "_proj.weight", us + "attn.w" + p + ".weight");
      if (m.qkv_bias && std::string(p) != "o") n.emplace_back(hf + "self_attn." + p + "_proj.bias", us + "attn.w" + p + ".bias");
    }
    // Llama and Gemma call the norm before the MLP post_attention_layernorm;
    // Gemma-2 has that name for the norm after attention, and a pre_ and
    // post_feedforward_layernorm around the MLP.
    if (gemma2) {
      n.emplace_back(hf + "post_attention_layernorm.weight", us + "post_attn_norm.weight");
      n.emplace_back(hf + "pre_feedforward_layernorm.weight", us + "mlp_norm.weight");
    } else {
      n.emplace_back(hf + "post_attention_layernorm.weight", us + "mlp_norm.weight");
    }
    n.emplace_back(hf + "mlp.gate_proj.weight", us + "mlp.gate.weight");
    n.emplace_back(hf + "mlp.up_proj.weight", us + "mlp.up.weight");
    n.emplace_back(hf + "mlp.down_proj.weight", us + "mlp.down.weight");
    if (gemma2) n.emplace_back(hf + "post_feedforward_layernorm.weight", us + "post_mlp_norm.weight");
  }
  n.emplace_back("model.norm.weight", "final_norm.weight");
  if (!m.tied_embeddings) n.emplace_back("lm_head.weight", "lm_head.weight");
  return n;
}

Transformer read_hf_model(const std::string& dir, int seq_len, HfModelConfig* config_out) {
  UNDO_INPUT_CHECK(is_directory(dir), "--from-hf '", dir, "' is not a directory");
  HfModelConfig hf = read_hf_config(read_json_file(join_path(dir, "config.json")), seq_len);
  auto weights = read_weights(dir);
  Transformer model(hf.model);
  auto params = model->named_parameters();
  std::set<std::string> used;
  torch::NoGradGuard no_grad;
  for (auto& [hf_name, name] : hf_tensor_names(hf.model, hf.family)) {
    auto it = weights.find(hf_name);
    UNDO_INPUT_CHECK(it != weights.end(), "'", dir, "': the weights lack ", hf_name, ", which config.json implies");
    torch::Tensor& p = params[name];
    UNDO_INPUT_CHECK(it->second.sizes() == p.sizes(), "'", dir, "': ", hf_name, " has shape ", it->second.sizes(),
                     ", config.json implies ", p.sizes());
    auto t = it->second.to(torch::kFloat);
    // A NaN or infinite weight would train to NaN, or evaluate to nonsense,
    // many stages later: refused here, naming the tensor.
    UNDO_INPUT_CHECK(torch::isfinite(t).all().item<bool>(), "'", dir, "': ", hf_name, " holds ",
                     torch::isnan(t).sum().item<int64_t>(), " NaN and ", torch::isinf(t).sum().item<int64_t>(),
                     " infinite values");
    // undo's norms hold scale - 1 (see hf_stores_norm_scale).
    if (is_norm_scale(name) && hf_stores_norm_scale(hf.family)) t = t - 1;
    p.copy_(t);
    used.insert(hf_name);
  }
  for (auto& [name, t] : weights)
    UNDO_INPUT_CHECK(used.count(name) || ignorable(name, hf.model), "'", dir, "': tensor ", name,
                     " is not part of a ", hf_model_type(hf.family), " model as config.json describes it");
  if (config_out) *config_out = hf;
  return model;
}

bool write_hf_model(Transformer& model, const std::string& dir, const std::string& dtype, int bos_id, int eos_id,
                    int pad_id, const HfOrigin& origin) {
  UNDO_INPUT_CHECK(dtype == "float32" || dtype == "bfloat16", "--dtype '", dtype, "' is not float32 or bfloat16");
  const ModelConfig& m = model->cfg;
  const HfFamily family = hf_family_for(m);
  auto params = model->named_parameters();
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  const auto names = hf_tensor_names(m, family);
  ProgressLine progress("export: converting tensors", int64_t(names.size()), "tensors");
  for (auto& [hf_name, name] : names) {
    progress.update(int64_t(tensors.size()));
    auto t = params[name].detach().to(torch::kCPU, torch::kFloat);
    if (is_norm_scale(name) && hf_stores_norm_scale(family)) t = t + 1;
    tensors.emplace_back(hf_name, t.to(dtype == "bfloat16" ? torch::kBFloat16 : torch::kFloat));
  }
  progress.update(int64_t(tensors.size()));
  // Both files decided before anything is written (either may refuse).
  std::string config =
      origin.config.empty() ? "" : hf_config_json_kept(parse_json(origin.config, "the imported config.json"), m, dtype);
  const bool kept = !config.empty();
  if (!kept) config = hf_config_json(m, family, dtype, bos_id, eos_id, pad_id);
  std::string generation;
  if (kept && !origin.generation.empty()) {
    generation = json_object_lines(parse_json(origin.generation, "the imported generation_config.json"));
  } else {
    JsonObject gen;
    if (bos_id >= 0) gen.add("bos_token_id", bos_id);
    if (eos_id >= 0) gen.add("eos_token_id", eos_id);
    if (pad_id >= 0) gen.add("pad_token_id", pad_id);
    gen.add("do_sample", false).add("max_new_tokens", 64);
    generation = gen.str() + "\n";
  }
  make_dirs(dir);
  write_safetensors(join_path(dir, "model.safetensors"), tensors, {{"format", "pt"}});
  write_file_atomic(join_path(dir, "config.json"), config);
  write_file_atomic(join_path(dir, "generation_config.json"), generation);
  return kept;
}

}  // namespace undo
