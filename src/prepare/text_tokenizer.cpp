#include "prepare/text_tokenizer.h"

#include <limits>

#include "core/error.h"
#include "core/fs.h"
#include "core/json_value.h"
#include "prepare/bpe_tokenizer.h"
#include "prepare/spm_tokenizer.h"

namespace undo {
namespace {

// The end-of-text token of the model directory `dir`: tokenizer_config.json's
// eos_token (text), else config.json's or generation_config.json's eos_token_id
// (the first, where it is a list).
void find_eos(const std::string& dir, std::string* text, int* id) {
  const std::string tc = join_path(dir, "tokenizer_config.json");
  if (file_exists(tc)) {
    JsonValue c = read_json_file(tc);
    if (auto* eos = c.find("eos_token"); eos && !eos->is_null()) {
      *text = eos->is_string() ? eos->string() : eos->at("content").string();
      return;
    }
  }
  for (const char* name : {"config.json", "generation_config.json"}) {
    const std::string path = join_path(dir, name);
    if (!file_exists(path)) continue;
    JsonValue c = read_json_file(path);
    auto* eos = c.find("eos_token_id");
    if (!eos || eos->is_null()) continue;
    const JsonValue& first = eos->is_array() && !eos->array().empty() ? eos->array()[0] : *eos;
    *id = int(first.integer(0, std::numeric_limits<int>::max() - 1));
    return;
  }
}

}  // namespace

std::string find_tokenizer_file(const std::string& spec) {
  if (!is_directory(spec)) {
    UNDO_INPUT_CHECK(file_exists(spec), "data.tokenizer = '", spec, "' does not exist");
    return spec;
  }
  for (const char* name : {"tokenizer.model", "tokenizer.json"})
    if (file_exists(join_path(spec, name))) return join_path(spec, name);
  UNDO_INPUT_FAIL("data.tokenizer = '", spec, "': the directory holds neither tokenizer.model nor tokenizer.json");
}

std::unique_ptr<TextTokenizer> open_text_tokenizer(const std::string& file) {
  if (!(file.size() >= 5 && file.compare(file.size() - 5, 5, ".json") == 0))
    return std::make_unique<SpmTokenizer>(file);
  auto slash = file.rfind('/');
  std::string eos_text;
  int eos_id = -1;
  find_eos(slash == std::string::npos ? "." : file.substr(0, slash), &eos_text, &eos_id);
  return std::make_unique<BpeTokenizer>(file, eos_text, eos_id);
}

}  // namespace undo
