#include "prepare/text_tokenizer.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "core/json_value.h"
#include "data/tokenizer_files.h"
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

// Whether transformers adds a <bos> to a sentencepiece model's texts:
// tokenizer_config.json's add_bos_token beside it (none: undo's own, which adds none).
bool adds_bos(const std::string& dir) {
  const std::string tc = join_path(dir, "tokenizer_config.json");
  if (!file_exists(tc)) return false;
  const JsonValue config = read_json_file(tc);
  auto* flag = config.find("add_bos_token");
  return flag && !flag->is_null() && flag->boolean();
}

// The ids `key` holds in a model's config.json: one integer or a list of them
// (Llama 3 ends a text at any of three); empty where the key is absent or null.
std::vector<int64_t> config_ids(const JsonValue& config, const char* key) {
  std::vector<int64_t> ids;
  const JsonValue* value = config.find(key);
  if (!value || value->is_null()) return ids;
  if (!value->is_array()) return {value->integer(0, std::numeric_limits<int>::max() - 1)};
  for (const JsonValue& id : value->array()) ids.push_back(id.integer(0, std::numeric_limits<int>::max() - 1));
  return ids;
}

// A model directory's config.json names the special tokens the model was
// trained with and the size of its embedding. A tokenizer beside it that
// disagrees (another model's, or an edited one) would prepare data whose
// document separator or <bos> the model never saw, or ids past its embedding,
// and every later number would be silently wrong: refused, naming the key.
void check_model_special_tokens(const std::string& dir, const TextTokenizer& tok) {
  const std::string path = join_path(dir, "config.json");
  if (!file_exists(path)) return;
  const JsonValue config = read_json_file(path);
  const auto eos = config_ids(config, "eos_token_id");
  UNDO_INPUT_CHECK(eos.empty() || std::find(eos.begin(), eos.end(), tok.eos_id()) != eos.end(), path,
                   ": eos_token_id is ", json_text(*config.find("eos_token_id")), " but the tokenizer beside it ends a text with the id ",
                   tok.eos_id(), " (a tokenizer from another model?)");
  const auto bos = config_ids(config, "bos_token_id");
  UNDO_INPUT_CHECK(tok.bos_id() < 0 || bos.empty() || bos[0] == tok.bos_id(), path, ": bos_token_id is ", bos.empty() ? 0 : bos[0],
                   " but the tokenizer beside it starts a text with the id ", tok.bos_id(), " (a tokenizer from another model?)");
  if (const JsonValue* vocab = config.find("vocab_size"); vocab && !vocab->is_null())
    UNDO_INPUT_CHECK(vocab->integer(1, std::numeric_limits<int>::max()) >= tok.vocab_size(), path, ": vocab_size is ",
                     vocab->integer(1, std::numeric_limits<int>::max()), " but the tokenizer beside it has ", tok.vocab_size(),
                     " ids (its larger ids would fall outside the model's embedding)");
}

}  // namespace

std::string find_tokenizer_file(const std::string& spec) {
  if (!is_directory(spec)) {
    UNDO_INPUT_CHECK(file_exists(spec), "data.tokenizer = '", spec, "' does not exist");
    return spec;
  }
  if (auto name = tokenizer_file_in(spec); !name.empty()) return join_path(spec, name);
  UNDO_INPUT_FAIL("data.tokenizer = '", spec, "': the directory holds neither tokenizer.model nor tokenizer.json");
}

std::unique_ptr<TextTokenizer> open_text_tokenizer(const std::string& file) {
  auto slash = file.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : file.substr(0, slash);
  std::unique_ptr<TextTokenizer> tok;
  if (!(file.size() >= 5 && file.compare(file.size() - 5, 5, ".json") == 0)) {
    tok = std::make_unique<SpmTokenizer>(file, adds_bos(dir));
  } else {
    std::string eos_text;
    int eos_id = -1;
    find_eos(dir, &eos_text, &eos_id);
    tok = std::make_unique<BpeTokenizer>(file, eos_text, eos_id);
  }
  check_model_special_tokens(dir, *tok);
  return tok;
}

}  // namespace undo
