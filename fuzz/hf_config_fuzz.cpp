// Hugging Face files read by `undo import` and by the tokenizer's set-up: any
// JSON document (parse_json, which also reads tokenizer.json and the shard
// index), then as a config.json (read_hf_config), whose accepted models must
// be ones undo can build.
#include <exception>

#include "core/error.h"
#include "core/json_value.h"
#include "formats/hf_config.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes = undo::fuzz::text(data, size);
  try {
    undo::JsonValue doc = undo::parse_json(bytes, "config.json");
    undo::HfModelConfig hf = undo::read_hf_config(doc, 64);
    UNDO_CHECK(undo::model_config_problem(hf.model).empty(), "an accepted config describes an impossible model");
    undo::hf_config_json(hf.model, hf.family, "float32", -1, -1, -1);
  } catch (const undo::InputError&) {
  }
  return 0;
}
