// `undo import --from-hf DIR`: a Hugging Face model directory (config.json and
// safetensors) as an undo checkpoint, run.dir/model.ckpt, usable wherever a
// base is: unlearn it, distil from it, attack it, export it again.
#include <iostream>

#include "cli/stages.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/owned_output.h"
#include "model/hf_checkpoint.h"
#include "train/checkpoint.h"

namespace undo {

int stage_import(int argc, const char* const* argv) {
  Config cfg;
  std::string from;
  if (!parse_config(argc, argv, "import", cfg,
                    {{"from-hf", "Hugging Face model directory (config.json, *.safetensors)", &from, true}}))
    return 0;
  // The training window: model.seq_len when given, else up to 1024 positions
  // (capped by the model's own max_position_embeddings either way).
  const int seq_len = cfg.origin.count("model.seq_len") ? cfg.model.seq_len : 1024;
  HfModelConfig hf;
  Transformer model = read_hf_model(from, seq_len, &hf);
  // Everything is checked before the run directory is touched, and only an
  // earlier import is ever replaced there (core/owned_output.h).
  const std::string out = join_path(cfg.run.dir, "model.ckpt");
  check_output_is_not_an_input("run.dir", cfg.run.dir, {from});
  CheckpointMeta meta;
  meta.model = model->cfg;
  meta.stage = "import";
  meta.extra["hf.model_type"] = hf_model_type(hf.family);
  meta.extra["hf.max_position_embeddings"] = std::to_string(hf.max_positions);
  write_output_file(out, [&](const std::string& path) { save_checkpoint(path, meta, model, nullptr); });
  JsonObject summary;
  summary.add("stage", "import").add("from_hf", from).add("model_type", hf_model_type(hf.family));
  summary.add("params", model->num_params()).add("seq_len", model->cfg.seq_len).add("checkpoint", out);
  write_output_file(join_path(cfg.run.dir, "summary.json"), summary.str() + "\n");
  std::cout << summary.str() << "\n";
  return 0;
}

}  // namespace undo
