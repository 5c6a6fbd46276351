#include <iostream>

#include "cli/stages.h"
#include "core/error.h"
#include "core/fs.h"
#include "train/checkpoint.h"
#include "model/safetensors.h"

namespace undo {

int stage_export(int argc, const char* const* argv) {
  Config cfg;
  std::string model_path, format = "safetensors", out;
  if (!parse_config(argc, argv, "export", cfg,
                    {{"model", "checkpoint to export", &model_path, true, true},
                     {"format", "output format (safetensors)", &format, false},
                     {"out", "output file (default: next to the checkpoint)", &out, false}}))
    return 0;
  UNDO_INPUT_CHECK(format == "safetensors", "--format '", format, "' is not supported (safetensors)");
  CheckpointMeta meta;
  Transformer model = load_model(model_path, &meta);
  if (out.empty()) out = model_path.substr(0, model_path.rfind('.')) + ".safetensors";
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (auto& p : model->named_parameters()) tensors.emplace_back(p.key(), p.value());
  const auto& c = meta.model;
  write_safetensors(out, tensors,
                    {{"format", "undo-gemma"}, {"stage", meta.stage}, {"step", std::to_string(meta.step)},
                     {"vocab_size", std::to_string(c.vocab_size)}, {"d_model", std::to_string(c.d_model)},
                     {"n_layers", std::to_string(c.n_layers)}, {"n_heads", std::to_string(c.n_heads)},
                     {"d_ff", std::to_string(c.d_ff)}, {"seq_len", std::to_string(c.seq_len)},
                     {"softcap", format_double(c.softcap)}, {"rope_theta", format_double(c.rope_theta)},
                     {"norm_eps", format_double(c.norm_eps)}, {"gelu", c.gelu}, {"tied_embeddings", "true"}});
  std::cout << out << "\n";
  return 0;
}

}  // namespace undo
