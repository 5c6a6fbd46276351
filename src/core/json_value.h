// The one JSON reader: whole documents written by other programs (Hugging
// Face's config.json, model.safetensors.index.json, tokenizer.json: nested,
// with \u escapes), and under core/json.h's flat reader undo's own files.
// nlohmann-json (Debian's nlohmann-json3-dev) parses: the grammar, escapes,
// surrogate pairs and UTF-8 checks are the library's. This file keeps the
// tree it builds from the library's SAX events, for two things the library's
// own tree does not do: a number keeps its spelling (an exported config.json
// writes back 1e-05 and 5.0 as they came, field for field), and every value
// knows its file and path, so that an error names them ("config.json:
// rope_scaling.factor is a string, expected a number"). Fuzzed
// (fuzz/json_fuzz.cpp).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace undo {

class JsonValue {
 public:
  enum class Kind { null, boolean, number, string, array, object };

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::null; }
  bool is_number() const { return kind_ == Kind::number; }
  bool is_string() const { return kind_ == Kind::string; }
  bool is_array() const { return kind_ == Kind::array; }
  bool is_object() const { return kind_ == Kind::object; }

  // The value as that kind; InputError naming the file and this value's path otherwise.
  bool boolean() const;
  double number() const;
  // A number as the document spells it.
  const std::string& number_text() const;
  // A whole number in [lo, hi].
  int64_t integer(int64_t lo, int64_t hi) const;
  const std::string& string() const;
  const std::vector<JsonValue>& array() const;
  const std::vector<std::pair<std::string, JsonValue>>& object() const;

  // An object's member, or nullptr when absent (or when this is not an object).
  const JsonValue* find(const std::string& key) const;
  // An object's member; InputError naming the file and the key when absent.
  const JsonValue& at(const std::string& key) const;

  // Where this value is: "FILE: a.b[3]" (for messages).
  std::string where() const;
  const std::string& path() const { return path_; }

 private:
  friend class JsonTreeBuilder;
  [[noreturn]] void wrong_kind(const char* expected) const;
  Kind kind_ = Kind::null;
  bool boolean_ = false;
  double number_ = 0;
  std::string string_;  // a string's value, or a number's text (for whole-number checks)
  std::vector<JsonValue> items_;
  std::vector<std::pair<std::string, JsonValue>> fields_;
  std::shared_ptr<const std::string> file_;
  std::string path_;
};

// Parses `text` as one JSON document; `file` names it in errors (InputError,
// with the byte offset of a syntax error). Nesting deeper than 512 is refused.
JsonValue parse_json(const std::string& text, const std::string& file);
// Reads and parses the file at `path`.
JsonValue read_json_file(const std::string& path);

// `v` written back as one line of JSON: members in their order, numbers as
// their file spelt them (5, 5.0 and 5e0 stay apart), strings re-escaped. What
// an export writes back of an imported config.json.
std::string json_text(const JsonValue& v);

}  // namespace undo
