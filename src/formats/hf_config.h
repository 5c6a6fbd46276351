// Hugging Face's config.json for the model families undo computes (Llama,
// Qwen2, Gemma, Gemma-2), both ways: read into a ModelConfig on import, and
// written from one on export. Torch-free, so that a config from anywhere is
// checked (and fuzzed) before a tensor is made. A key that would change what
// the model computes in a way undo does not (a bias on the output projection,
// another rotary scaling, a per-layer window pattern it cannot express) is
// refused by name rather than ignored: an import computes exactly what
// transformers computes, or nothing.
#pragma once
#include <map>
#include <string>

#include "core/config.h"
#include "core/json_value.h"

namespace undo {

enum class HfFamily { llama, qwen2, gemma, gemma2 };

// "llama", "qwen2", "gemma", "gemma2": config.json's model_type.
const char* hf_model_type(HfFamily f);

// Llama and Qwen2 store an RMSNorm's scale itself; Gemma stores scale - 1, as
// undo does (its norms start at 0 so that UNDO's noise pulls them towards 1).
bool hf_stores_norm_scale(HfFamily f);

struct HfModelConfig {
  HfFamily family = HfFamily::llama;
  ModelConfig model;
  int max_positions = 0;  // config.json's max_position_embeddings
};

// Reads a parsed config.json. `seq_len` caps the training window (the model's
// own max_position_embeddings when smaller). InputError naming the file and
// key for an unsupported model type or setting.
HfModelConfig read_hf_config(const JsonValue& config, int seq_len);

// The family whose transformers class computes what `m` computes; InputError
// naming the model key that none of them has (e.g. a logit soft-cap without
// Gemma-2's extra norms).
HfFamily hf_family_for(const ModelConfig& m);

// config.json for `m` as `family` (architectures, model_type, sizes, rotary
// parameters in transformers 5's rope_parameters and the older rope_theta).
// `dtype` is the stored tensors' ("float32", "bfloat16"); token ids < 0 are omitted.
std::string hf_config_json(const ModelConfig& m, HfFamily family, const std::string& dtype, int bos_id, int eos_id,
                           int pad_id);

// The Hugging Face files a model was imported with, as one-line JSON
// (json_text), kept in its checkpoints' meta (HfOrigin::kConfigKey, ...) so
// that an export writes them back.
struct HfOrigin {
  static constexpr const char* kConfigKey = "hf.config.json";
  static constexpr const char* kGenerationKey = "hf.generation_config.json";
  std::string config, generation;  // "" where absent
};

// The dtype an imported config.json names (dtype, else torch_dtype), "" when none.
std::string hf_config_dtype(const JsonValue& config);

// config.json written back from the one `m` was imported with: every field as
// it was (bos_token_id, max_position_embeddings, rope settings, the
// transformers version ...), in its order, except dtype and torch_dtype,
// which say what the exported tensors are (`dtype`). "" when `original` does
// not describe `m` (a student distilled into another shape): the caller
// writes undo's own (hf_config_json). Torch-free, as the rest of this file.
std::string hf_config_json_kept(const JsonValue& original, const ModelConfig& m, const std::string& dtype);

// A JSON object with one member per line, as Hugging Face writes its files;
// the members named in `replaced` take its values (JSON text), and those the
// object lacks follow its own.
std::string json_object_lines(const JsonValue& object, const std::map<std::string, std::string>& replaced = {});

}  // namespace undo
