// `undo export`: a checkpoint's weights for other programs. --format
// safetensors writes them under undo's own names (for numpy and the
// safetensors library); --format hf writes a Hugging Face model directory
// (config.json, model.safetensors, generation_config.json, and the tokenizer
// the model's data was prepared with) that transformers' AutoModelForCausalLM
// and AutoTokenizer load.
#include <iostream>

#include "cli/stages.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json_value.h"
#include "model/hf_checkpoint.h"
#include "model/safetensors.h"
#include "train/checkpoint.h"

namespace undo {
namespace {

void write_undo_safetensors(Transformer& model, const CheckpointMeta& meta, const std::string& out) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (auto& p : model->named_parameters()) tensors.emplace_back(p.key(), p.value());
  std::map<std::string, std::string> info = {{"format", "undo"}, {"stage", meta.stage},
                                             {"step", std::to_string(meta.step)}};
  // Every model key, as a checkpoint's meta holds them.
  Config cfg;
  cfg.model = meta.model;
  for (auto& k : describe(cfg))
    if (k.name.rfind("model.", 0) == 0) info[k.name.substr(6)] = k.value();
  write_safetensors(out, tensors, info);
}

// The tokenizer files of the data directory the model was trained with
// (data.dir), copied beside an HF export: a model's own tokenizer.json (with
// its tokenizer_config.json), or a sentencepiece tokenizer.model. Returns the
// end-of-text id from the data's manifest, or -1.
int copy_tokenizer(const std::string& data_dir, const std::string& out) {
  const std::string manifest = join_path(data_dir, "manifest.json");
  if (!file_exists(manifest)) {
    std::cerr << "export: no prepared data at data.dir = '" << data_dir << "': the export has no tokenizer\n";
    return -1;
  }
  JsonValue m = read_json_file(manifest);
  const std::string name = m.at("tokenizer").string();
  UNDO_INPUT_CHECK(name.find('/') == std::string::npos, m.at("tokenizer").where(), ": not a file name");
  write_file_atomic(join_path(out, name), read_file(join_path(data_dir, name)));
  for (const char* extra : {"tokenizer_config.json", "special_tokens_map.json"})
    if (file_exists(join_path(data_dir, extra)))
      write_file_atomic(join_path(out, extra), read_file(join_path(data_dir, extra)));
  // undo's own sentencepiece tokenizer has no config of its own: transformers
  // reads it as a LlamaTokenizer (sentencepiece's default <unk>, <s>, </s>),
  // which adds no tokens undo-data did not (tested against its ids).
  if (name == "tokenizer.model" && !file_exists(join_path(data_dir, "tokenizer_config.json")))
    write_file_atomic(join_path(out, "tokenizer_config.json"),
                      "{\"tokenizer_class\": \"LlamaTokenizer\", \"add_bos_token\": false, \"add_eos_token\": false, "
                      "\"legacy\": false}\n");
  return int(m.at("eos_id").integer(0, 1 << 30));
}

}  // namespace

int stage_export(int argc, const char* const* argv) {
  Config cfg;
  std::string model_path, format = "safetensors", out, dtype = "float32";
  if (!parse_config(argc, argv, "export", cfg,
                    {{"model", "checkpoint to export", &model_path, true, true},
                     {"format", "safetensors (undo's names) | hf (a Hugging Face model directory)", &format, false},
                     {"dtype", "hf: float32 | bfloat16", &dtype, false},
                     {"out", "output file (safetensors) or directory (hf); default: next to the checkpoint", &out,
                      false}}))
    return 0;
  UNDO_INPUT_CHECK(format == "safetensors" || format == "hf", "--format '", format, "' is not supported (safetensors, hf)");
  CheckpointMeta meta;
  Transformer model = load_model(model_path, &meta);
  const std::string stem = model_path.substr(0, model_path.rfind('.'));
  if (format == "safetensors") {
    if (out.empty()) out = stem + ".safetensors";
    write_undo_safetensors(model, meta, out);
  } else {
    if (out.empty()) out = stem + "-hf";
    hf_family_for(model->cfg);  // refused before anything is written
    make_dirs(out);
    const int eos = copy_tokenizer(cfg.data.dir, out);
    write_hf_model(model, out, dtype, -1, eos, -1);
  }
  std::cout << out << "\n";
  return 0;
}

}  // namespace undo
