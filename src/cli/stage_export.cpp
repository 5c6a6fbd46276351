// `undo export`: a checkpoint's weights for other programs. --format
// safetensors writes them under undo's own names (for numpy and the
// safetensors library); --format hf writes a Hugging Face model directory
// (config.json, model.safetensors, generation_config.json, and the tokenizer
// the model's data was prepared with) that transformers' AutoModelForCausalLM
// and AutoTokenizer load.
#include <filesystem>
#include <iostream>

#include "cli/stages.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/owned_output.h"
#include "data/prepared_check.h"
#include "data/vocabulary.h"
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

// The tokenizer of the data directory the model was trained with (data.dir):
// the file its manifest names and its end-of-text id; "" and -1 without one.
// It must be the model's own (it used to ship whatever data.dir held).
std::pair<std::string, int> prepared_tokenizer_of(const std::string& data_dir, const CheckpointMeta& meta,
                                                  const std::string& model_path) {
  if (!file_exists(join_path(data_dir, "manifest.json"))) {
    std::cerr << "export: no prepared data at data.dir = '" << data_dir << "': the export has no tokenizer\n";
    return {"", -1};
  }
  check_prepared_data(data_dir);
  check_model_fits_data(meta, model_path, data_dir);
  const std::string file = prepared_tokenizer(data_dir);
  return {file.substr(file.rfind('/') + 1), Vocabulary(join_path(data_dir, "vocab.bin")).eos_id()};
}

// The tokenizer files copied beside an HF export: a model's own
// tokenizer.json (with its tokenizer_config.json), or a sentencepiece tokenizer.model.
void copy_tokenizer(const std::string& data_dir, const std::string& name, const std::string& out) {
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
  // Only an earlier export of undo is replaced, and never an input
  // (core/owned_output.h): it used to overwrite anything at --out, the
  // checkpoint included.
  if (format == "safetensors") {
    if (out.empty()) out = stem + ".safetensors";
    check_output_is_not_an_input("--out", out, {model_path});
    write_output_file(out, [&](const std::string& path) { write_undo_safetensors(model, meta, path); });
  } else {
    if (out.empty()) out = stem + "-hf";
    auto [tokenizer, eos] = prepared_tokenizer_of(cfg.data.dir, meta, model_path);
    check_output_is_not_an_input("--out", out, {model_path, tokenizer.empty() ? "" : join_path(cfg.data.dir, tokenizer)});
    OutputDirectory output("--out", out);
    write_hf_model(model, output.staging(), dtype, -1, eos, -1);  // refuses what no family computes before writing
    if (!tokenizer.empty()) copy_tokenizer(cfg.data.dir, tokenizer, output.staging());
    JsonObject provenance;
    provenance.add("checkpoint", model_path).add("stage", meta.stage).add("step", meta.step);
    provenance.add("data_dir", tokenizer.empty() ? std::string() : cfg.data.dir);
    write_file_atomic(join_path(output.staging(), "undo-export.json"), provenance.str() + "\n");
    output.commit();
  }
  std::cout << out << "\n";
  return 0;
}

}  // namespace undo
