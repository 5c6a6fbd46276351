// `undo import --from-hf DIR`: a Hugging Face model directory (config.json and
// safetensors) as an undo checkpoint, run.dir/model.ckpt, usable wherever a
// base is: unlearn it, distil from it, attack it, export it again. The
// model's tokenizer files are kept beside it, in run.dir/tokenizer/, and the
// checkpoint records the tokenizer's sha256 (every later stage checks its data
// against it) and where the files are (an export without data ships them),
// and the model's config.json and generation_config.json themselves (an export
// writes them back).
#include <filesystem>
#include <iostream>

#include "cli/stages.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/json_value.h"
#include "core/owned_output.h"
#include "core/sha256.h"
#include "data/tokenizer_files.h"
#include "model/hf_checkpoint.h"
#include "train/checkpoint.h"

namespace undo {
namespace {

// The tokenizer files of a Hugging Face directory, the one undo uses first
// (data/tokenizer_files.h); then the others there and the files that go with them.
std::vector<std::string> tokenizer_files(const std::string& from) {
  const std::string used = tokenizer_file_in(from);
  if (used.empty()) return {};
  std::vector<std::string> files = {used};
  for (auto names : {kTokenizerFiles, kTokenizerCompanions})
    for (const char* name : names)
      if (name != used && file_exists(join_path(from, name))) files.push_back(name);
  return files;
}

// Copies them into run.dir/tokenizer/ and records them in the checkpoint's meta.
void keep_tokenizer(const std::string& from, const std::string& run_dir, CheckpointMeta& meta) {
  const auto files = tokenizer_files(from);
  if (files.empty()) {
    std::cerr << "import: " << from << " has no tokenizer.model or tokenizer.json: none is kept\n";
    return;
  }
  const std::string kept = join_path(run_dir, "tokenizer");
  make_dirs(kept);
  for (auto& name : files) write_output_file(join_path(kept, name), read_file(join_path(from, name)));
  // The model's config.json goes beside its tokenizer too, so that data
  // prepared from the kept copy is checked against the model's special
  // tokens as data prepared from the model directory is (prepare/text_tokenizer.h).
  write_output_file(join_path(kept, "config.json"), read_file(join_path(from, "config.json")));
  meta.extra["tokenizer_sha256"] = sha256_file(join_path(kept, files[0]));
  meta.extra["tokenizer_dir"] = std::filesystem::absolute(kept).lexically_normal().string();
}

}  // namespace

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
  require_run_dir(cfg);
  const std::string out = join_path(cfg.run.dir, "model.ckpt");
  check_output_is_not_an_input("run.dir", cfg.run.dir, {from});
  CheckpointMeta meta;
  meta.model = model->cfg;
  meta.stage = "import";
  meta.extra["hf.model_type"] = hf_model_type(hf.family);
  meta.extra["hf.max_position_embeddings"] = std::to_string(hf.max_positions);
  // The model's own config files, which an export writes back (HfOrigin).
  meta.extra[HfOrigin::kConfigKey] = json_text(read_json_file(join_path(from, "config.json")));
  if (const std::string gen = join_path(from, "generation_config.json"); file_exists(gen))
    meta.extra[HfOrigin::kGenerationKey] = json_text(read_json_file(gen));
  keep_tokenizer(from, cfg.run.dir, meta);
  write_output_file(join_path(cfg.run.dir, "version.json"), version_record());
  write_output_file(out, [&](const std::string& path) { save_checkpoint(path, meta, model, nullptr); });
  JsonObject summary;
  summary.add("stage", "import").add("from_hf", from).add("model_type", hf_model_type(hf.family));
  summary.add("params", model->num_params()).add("seq_len", model->cfg.seq_len).add("checkpoint", out);
  write_output_file(join_path(cfg.run.dir, "summary.json"), summary.str() + "\n");
  std::cout << summary.str() << "\n";
  return 0;
}

}  // namespace undo
