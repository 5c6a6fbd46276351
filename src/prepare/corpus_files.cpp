#include "prepare/corpus_files.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json_value.h"
#include "core/sha256.h"
#include "data/mcq.h"

namespace fs = std::filesystem;

namespace undo {
namespace {

constexpr const char* kMcqPrefix = "mcq:";

bool is_mcq(const std::string& entry) { return entry.rfind(kMcqPrefix, 0) == 0; }
bool is_jsonl(const std::string& path) { return fs::path(path).extension() == ".jsonl"; }

// The .txt files under `dir`, sorted (directory order is not deterministic).
std::vector<std::string> text_files(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".txt") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

// What an entry reads, after checking that it exists and is of its kind.
std::vector<std::string> files_of(const std::string& entry) {
  const std::string path = corpus_path(entry);
  if (is_mcq(entry) || is_jsonl(path)) {
    UNDO_INPUT_CHECK(file_exists(path) && !is_directory(path), "corpus '", entry, "': no file '", path, "'");
    return {path};
  }
  UNDO_INPUT_CHECK(is_directory(path), "corpus '", entry, "' is neither a directory of .txt files, a .jsonl file ",
                   "nor mcq:FILE.jsonl");
  return text_files(path);
}

void add_jsonl(const std::string& path, const std::string& field, std::vector<Document>& docs) {
  std::istringstream in(read_file(path));
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(number);
    JsonValue v = parse_json(line, where);
    UNDO_INPUT_CHECK(v.is_object(), where, ": not a JSON object (one document a line)");
    const JsonValue* text = v.find(field);
    UNDO_INPUT_CHECK(text, where, ": no \"", field, "\" field (data.jsonl_field names the text's field)");
    docs.push_back({path, text->string()});
  }
}

}  // namespace

std::string corpus_path(const std::string& entry) {
  return is_mcq(entry) ? entry.substr(std::string(kMcqPrefix).size()) : entry;
}

void add_corpora(const std::string& list, const std::string& text_field, std::vector<Document>& docs) {
  for (auto& entry : split_list(list)) {
    const size_t before = docs.size();
    const std::string path = corpus_path(entry);
    const auto files = files_of(entry);
    if (is_mcq(entry)) {
      for (auto& q : read_mcq_file(path)) docs.push_back({path, mcq_rendered(q)});
    } else if (is_jsonl(path)) {
      add_jsonl(path, text_field, docs);
    } else {
      for (auto& f : files) docs.push_back({entry, read_file(f)});
    }
    auto blank = [](const Document& d) { return d.text.find_first_not_of(" \t\r\n") == std::string::npos; };
    docs.erase(std::remove_if(docs.begin() + long(before), docs.end(), blank), docs.end());
    UNDO_INPUT_CHECK(docs.size() > before, "corpus '", entry, "' holds no text");
  }
}

std::string corpora_fingerprint(const std::string& list) {
  std::string out;
  for (auto& entry : split_list(list))
    for (auto& f : files_of(entry)) out += entry + "|" + f + "|" + sha256_file(f) + ";";
  return out;
}

}  // namespace undo
