// A Hugging Face model directory in and out: config.json and safetensors
// weights (one file, or shards listed by model.safetensors.index.json) read
// into an undo Transformer, and an undo Transformer written as a directory
// that transformers' AutoModelForCausalLM loads. The names and norm
// conventions of each family are mapped here and nowhere else; the model
// itself knows nothing of Hugging Face.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "formats/hf_config.h"
#include "model/transformer.h"

namespace undo {

// Pairs (transformers' tensor name, undo's parameter name) of a model of
// `family` with `m`'s shape, in the model's order.
std::vector<std::pair<std::string, std::string>> hf_tensor_names(const ModelConfig& m, HfFamily family);

// Reads the model in `dir` (config.json, model.safetensors or the shards of
// model.safetensors.index.json) as fp32. `seq_len` caps the training window.
// Every tensor the config implies must be there with its shape, and nothing
// else (a tied head's copy excepted): InputError naming the file and tensor.
Transformer read_hf_model(const std::string& dir, int seq_len, HfModelConfig* config = nullptr);

// Writes config.json, generation_config.json and model.safetensors (`dtype`:
// float32 or bfloat16) for `model` into `dir` (created; files written
// atomically). Where `origin` holds the config.json the model was imported
// with and it describes this model, both files are written back from the
// originals (only the dtype changed: hf_config_json_kept), and true is
// returned; else undo writes its own, with the token ids >= 0 given.
// InputError when no family computes what the model does.
bool write_hf_model(Transformer& model, const std::string& dir, const std::string& dtype, int bos_id, int eos_id,
                    int pad_id, const HfOrigin& origin = {});

}  // namespace undo
