// `undo export`: a checkpoint's weights for other programs. --format
// safetensors writes them under undo's own names (for numpy and the
// safetensors library); --format hf writes a Hugging Face model directory
// (config.json, model.safetensors, generation_config.json, and the model's
// tokenizer: from data.dir, or where the checkpoint says its data or its
// import's tokenizer is) that transformers' AutoModelForCausalLM and
// AutoTokenizer load.
#include <filesystem>
#include <iostream>

#include "cli/stages.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/json_value.h"
#include "core/owned_output.h"
#include "core/sha256.h"
#include "data/prepared_check.h"
#include "data/tokenizer_files.h"
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

// The tokenizer an export ships: its directory, its file's name there, and
// its end-of-text id (-1 where unknown).
struct TokenizerSource {
  std::string dir, name;
  int eos = -1;
};

TokenizerSource prepared_source(const std::string& data_dir, const CheckpointMeta& meta, const std::string& model_path) {
  check_prepared_data(data_dir);
  check_model_fits_data(meta, model_path, data_dir);
  const std::string file = prepared_tokenizer(data_dir);
  return {data_dir, file.substr(file.rfind('/') + 1), Vocabulary(join_path(data_dir, "vocab.bin")).eos_id()};
}

// Where the tokenizer comes from, first found: data.dir when it holds a
// preparation; else the prepared directory the checkpoint's stage read (its
// meta's data_dir); else the tokenizer files an import kept (tokenizer_dir).
// Each must be the model's own (it used to ship whatever data.dir held); an
// export with none is refused (it used to write no tokenizer and exit 0).
TokenizerSource tokenizer_source(const std::string& data_dir, const CheckpointMeta& meta, const std::string& model_path) {
  if (file_exists(join_path(data_dir, "manifest.json"))) return prepared_source(data_dir, meta, model_path);
  auto recorded = [&](const char* key) {
    auto it = meta.extra.find(key);
    return it == meta.extra.end() ? std::string() : it->second;
  };
  if (auto dir = recorded("data_dir"); !dir.empty() && file_exists(join_path(dir, "manifest.json")))
    return prepared_source(dir, meta, model_path);
  if (auto dir = recorded("tokenizer_dir"); !dir.empty())
    if (auto name = tokenizer_file_in(dir); !name.empty()) {
      UNDO_INPUT_CHECK(sha256_file(join_path(dir, name)) == recorded("tokenizer_sha256"), "'", model_path,
                       "' was imported with the tokenizer of sha256 ", recorded("tokenizer_sha256"), ", but ",
                       join_path(dir, name), " is another: give --data.dir with the model's data");
      return {dir, name, -1};
    }
  UNDO_INPUT_FAIL("--format hf: no tokenizer for '", model_path, "': data.dir = '", data_dir,
                  "' holds no prepared data and the checkpoint records none; give --data.dir (the data the model "
                  "was trained with)");
}

// The tokenizer files copied beside an HF export: a model's own
// tokenizer.json (with its tokenizer_config.json), or a sentencepiece tokenizer.model.
void copy_tokenizer(const std::string& data_dir, const std::string& name, const std::string& out) {
  write_file_atomic(join_path(out, name), read_file(join_path(data_dir, name)));
  for (const char* extra : kTokenizerCompanions)
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

// The config files the model was imported with, where it was (carried by
// every stage since: carry_origin).
HfOrigin origin_of(const CheckpointMeta& meta) {
  HfOrigin origin;
  if (auto it = meta.extra.find(HfOrigin::kConfigKey); it != meta.extra.end()) origin.config = it->second;
  if (auto it = meta.extra.find(HfOrigin::kGenerationKey); it != meta.extra.end()) origin.generation = it->second;
  return origin;
}

// An imported model's own dtype where undo writes it (float32, bfloat16), else float32.
std::string default_dtype(const HfOrigin& origin) {
  if (origin.config.empty()) return "float32";
  const std::string own = hf_config_dtype(parse_json(origin.config, "the imported config.json"));
  return own == "bfloat16" ? own : "float32";
}

}  // namespace

int stage_export(int argc, const char* const* argv) {
  Config cfg;
  std::string model_path, format = "safetensors", out, dtype;
  if (!parse_config(argc, argv, "export", cfg,
                    {{"model", "checkpoint to export", &model_path, true, true},
                     {"format", "safetensors (undo's names) | hf (a Hugging Face model directory)", &format, false},
                     {"dtype", "hf: float32 | bfloat16; default: an imported model's own, else float32", &dtype, false},
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
    const TokenizerSource tokenizer = tokenizer_source(cfg.data.dir, meta, model_path);
    check_output_is_not_an_input("--out", out, {model_path, join_path(tokenizer.dir, tokenizer.name)});
    OutputDirectory output("--out", out);
    const HfOrigin origin = origin_of(meta);
    if (dtype.empty()) dtype = default_dtype(origin);
    // Refuses what no family computes before writing.
    const bool kept = write_hf_model(model, output.staging(), dtype, -1, tokenizer.eos, -1, origin);
    if (!origin.config.empty() && !kept)
      std::cerr << "export: " << model_path << " is not the shape of the model it was trained from (a student of "
                << "its own shape): undo writes its config.json\n";
    copy_tokenizer(tokenizer.dir, tokenizer.name, output.staging());
    JsonObject provenance;
    provenance.add("checkpoint", model_path).add("stage", meta.stage).add("step", meta.step);
    provenance.add("tokenizer_from", tokenizer.dir).add("config_from", kept ? "import" : "undo");
    write_file_atomic(join_path(output.staging(), "undo-export.json"), provenance.str() + "\n");
    output.commit();
  }
  std::cout << out << "\n";
  return 0;
}

}  // namespace undo
