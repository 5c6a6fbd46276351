#include "data/prepared_check.h"

#include <filesystem>

#include "core/error.h"
#include "core/fs.h"
#include "core/sha256.h"
#include "data/shard.h"
#include "data/vocabulary.h"

namespace undo {

namespace {

// The string value of a top-level `"key": "value"` of the manifest ("" when absent).
std::string string_field(const std::string& json, const std::string& key) {
  const std::string open = "\"" + key + "\": \"";
  auto at = json.find(open);
  if (at == std::string::npos) return "";
  at += open.size();
  auto end = json.find('"', at);
  return end == std::string::npos ? "" : json.substr(at, end - at);
}

// The tokenizer the data was prepared with: undo's own or a model's
// sentencepiece tokenizer.model, or a model's tokenizer.json ("" for anything else).
std::string tokenizer_name(const std::string& manifest) {
  const std::string t = string_field(manifest, "tokenizer");
  return t == "tokenizer.model" || t == "tokenizer.json" ? t : "";
}

}  // namespace

std::string prepared_tokenizer(const std::string& dir) {
  const std::string manifest_path = join_path(dir, "manifest.json");
  UNDO_INPUT_CHECK(file_exists(manifest_path), "'", manifest_path, "' is missing: run `undo data prepare` first");
  const std::string name = tokenizer_name(read_file(manifest_path));
  UNDO_INPUT_CHECK(!name.empty(), "'", manifest_path, "' names no tokenizer undo reads");
  return join_path(dir, name);
}

std::string prepared_data_problem(const std::string& dir, bool shards) {
  const std::string manifest_path = join_path(dir, "manifest.json");
  if (!file_exists(manifest_path)) return "'" + manifest_path + "' is missing: run `undo data prepare` first";
  std::string manifest;
  try {
    manifest = read_file(manifest_path);
  } catch (const std::exception& e) {
    return e.what();
  }
  const std::string tokenizer = tokenizer_name(manifest);
  if (tokenizer.empty())
    return "'" + manifest_path + "' is not an undo preparation manifest (its tokenizer, \"" +
           string_field(manifest, "tokenizer") + "\", is neither tokenizer.model nor tokenizer.json)";
  for (auto [file, key] : {std::pair{tokenizer.c_str(), "tokenizer_sha256"}, {"vocab.bin", "vocab_sha256"}}) {
    std::string recorded = string_field(manifest, key);
    if (recorded.size() != 64)
      return "'" + manifest_path + "' is not an undo preparation manifest (no " + key + ")";
    const std::string path = join_path(dir, file);
    if (!file_exists(path)) return "'" + path + "' is missing";
    std::string actual = sha256_file(path);
    if (actual != recorded)
      return "'" + path + "' is not the file this data was prepared with: sha256 " + actual.substr(0, 16) +
             "..., the manifest records " + recorded.substr(0, 16) + "...";
  }
  if (shards) {
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator(dir, ec)) {
      auto name = e.path().filename().string();
      if (name.size() < 4 || name.compare(name.size() - 4, 4, ".bin") != 0 || name == "vocab.bin") continue;
      try {
        Shard check(e.path().string());
      } catch (const std::exception& err) {
        return err.what();
      }
    }
  }
  return "";
}

void check_prepared_data(const std::string& dir) {
  const std::string problem = prepared_data_problem(dir, /*shards=*/false);
  UNDO_INPUT_CHECK(problem.empty(), "data.dir = '", dir, "': ", problem);
}

std::string prepared_tokenizer_sha256(const std::string& dir) {
  const std::string manifest = join_path(dir, "manifest.json");
  return file_exists(manifest) ? string_field(read_file(manifest), "tokenizer_sha256") : "";
}

std::string recorded_tokenizer_sha256(const CheckpointMeta& meta) {
  for (const char* key : {"tokenizer_sha256", "id.data.tokenizer_sha256"}) {
    auto it = meta.extra.find(key);
    if (it != meta.extra.end() && it->second.size() == 64) return it->second;
  }
  return "";
}

void check_model_fits_data(const CheckpointMeta& meta, const std::string& model_file, const std::string& data_dir) {
  const std::string manifest = read_file(join_path(data_dir, "manifest.json"));
  const std::string theirs = string_field(manifest, "tokenizer_sha256"), ours = recorded_tokenizer_sha256(meta);
  UNDO_INPUT_CHECK(ours.empty() || ours == theirs, "'", model_file, "' was trained with the tokenizer of sha256 ",
                   ours.substr(0, 16), "..., but data.dir = '", data_dir, "' was prepared with ",
                   tokenizer_name(manifest), " of sha256 ", theirs.substr(0, 16),
                   "...: its token ids would mean other text to this model (use the data directory the model was "
                   "trained with)");
  const int tokens = Vocabulary(join_path(data_dir, "vocab.bin")).size();
  UNDO_INPUT_CHECK(meta.model.vocab_size >= tokens, "'", model_file, "' has a vocabulary of ", meta.model.vocab_size,
                   ", smaller than the ", tokens, " of data.dir = '", data_dir, "': its ids would be past the "
                   "model's embedding");
}

}  // namespace undo
