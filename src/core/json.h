// undo's own JSON: an ordered object builder for metrics.jsonl, summaries and
// manifests, and their flat reader (through the one parser, core/json_value.h).
// Strings are escaped by nlohmann-json; a number is written as the config
// writes it (format_double: the shortest text that reads back the same value),
// so that a summary and the run's config spell one value alike.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace undo {

std::string json_escape(const std::string& s);

// Parses one flat JSON object ({"k": 1.5, "s": "x", ...}; nested values are
// kept as JSON text) into key -> value text, strings unquoted and unescaped,
// numbers as spelt. The one JSON parser underneath (core/json_value.h). Throws
// on bad syntax.
std::map<std::string, std::string> parse_flat_json(const std::string& text);
// Each line of a JSON-lines file, parsed (empty lines skipped); {} when the file is missing.
// A line that does not parse throws naming file and line, or, with
// `skip_unreadable` (a file another process is appending to), is left out.
std::vector<std::map<std::string, std::string>> read_json_lines(const std::string& path, bool skip_unreadable = false);
// A number field's value as JsonObject wrote it: "null" (a non-finite value,
// e.g. a diverged run's loss) reads back as NaN, never as 0. Anything that is
// not a whole number text throws InputError naming `key`.
double json_number(const std::string& key, const std::string& text);
// Whether `text` is a number as JSON spells one ("0.5", "-3", "1e-05"; not
// "nan", "+1", "0x10" or ".5"): such values go into summaries as numbers.
bool is_json_number(const std::string& text);

class JsonObject {
 public:
  JsonObject& add(const std::string& key, const std::string& value);
  JsonObject& add(const std::string& key, const char* value) { return add(key, std::string(value)); }
  JsonObject& add(const std::string& key, double value);
  JsonObject& add(const std::string& key, int64_t value);
  JsonObject& add(const std::string& key, int value) { return add(key, int64_t(value)); }
  JsonObject& add(const std::string& key, uint64_t value) { return add(key, int64_t(value)); }
  JsonObject& add(const std::string& key, bool value);
  JsonObject& add_raw(const std::string& key, const std::string& json);
  // A value held as text: a JSON number where it is one (is_json_number), else a string.
  JsonObject& add_text_or_number(const std::string& key, const std::string& value);
  JsonObject& add(const std::string& key, const JsonObject& value) { return add_raw(key, value.str()); }
  JsonObject& merge(const JsonObject& other);  // appends other's fields
  std::string str() const;
  bool empty() const { return fields_.empty(); }
  // Each field's key and its value as JSON text (strings quoted).
  const std::vector<std::pair<std::string, std::string>>& fields() const { return fields_; }

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

}  // namespace undo
