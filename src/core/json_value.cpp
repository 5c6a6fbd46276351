#include "core/json_value.h"

#include <cmath>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"

namespace undo {

// Builds the tree from nlohmann-json's SAX events: the library does the
// grammar, the escapes (surrogate pairs) and UTF-8 validation; this keeps, per
// value, its file and path (for messages) and a number's text as spelt (the
// library hands a float's text over; an integer's spelling is its value's).
class JsonTreeBuilder final : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit JsonTreeBuilder(std::shared_ptr<const std::string> file) : file_(std::move(file)) {}

  JsonValue document() { return std::move(root_); }

  bool null() override { return add(make(JsonValue::Kind::null)); }
  bool boolean(bool val) override {
    JsonValue v = make(JsonValue::Kind::boolean);
    v.boolean_ = val;
    return add(std::move(v));
  }
  bool number_integer(number_integer_t val) override { return number(double(val), std::to_string(val)); }
  bool number_unsigned(number_unsigned_t val) override { return number(double(val), std::to_string(val)); }
  bool number_float(number_float_t value, const string_t& text) override {
    // The library's own value (it refuses a number past double's range as a syntax error).
    return number(value, text);
  }
  bool string(string_t& val) override {
    JsonValue v = make(JsonValue::Kind::string);
    v.string_ = std::move(val);
    return add(std::move(v));
  }
  bool binary(binary_t&) override { return false; }  // not in JSON text
  bool start_object(std::size_t) override { return open(JsonValue::Kind::object); }
  bool key(string_t& val) override {
    key_.back() = std::move(val);
    return true;
  }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(JsonValue::Kind::array); }
  bool end_array() override { return close(); }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) override {
    // The library's message without its "[json.exception.parse_error.101] "
    // tag, the bytes it quotes made printable. A syntax error's says "parse
    // error at line L, column C: ..."; others (a number past double's range)
    // say no place, so the byte offset is given.
    std::string what = e.what();
    if (auto tag_end = what.find("] "); what.rfind("[json.exception.", 0) == 0 && tag_end != std::string::npos)
      what = what.substr(tag_end + 2);
    what = what.rfind("parse error ", 0) == 0 ? what.substr(12) : "at byte " + std::to_string(position) + ": " + what;
    throw InputError(*file_ + ": not valid JSON " + printable(what));
  }

 private:
  static constexpr size_t kMaxDepth = 512;  // a tree this deep is no file undo reads; its destructor recurses

  JsonValue make(JsonValue::Kind kind) const {
    JsonValue v;
    v.kind_ = kind;
    v.file_ = file_;
    if (!open_.empty()) {
      const JsonValue& parent = open_.back();
      if (parent.kind_ == JsonValue::Kind::object)
        v.path_ = parent.path_.empty() ? key_.back() : parent.path_ + "." + key_.back();
      else
        v.path_ = parent.path_ + "[" + std::to_string(parent.items_.size()) + "]";
    }
    return v;
  }
  bool number(double value, std::string text) {
    JsonValue v = make(JsonValue::Kind::number);
    v.number_ = value;
    v.string_ = std::move(text);
    return add(std::move(v));
  }
  bool add(JsonValue v) {
    if (open_.empty()) {
      root_ = std::move(v);
    } else if (open_.back().kind_ == JsonValue::Kind::object) {
      open_.back().fields_.emplace_back(key_.back(), std::move(v));
    } else {
      open_.back().items_.push_back(std::move(v));
    }
    return true;
  }
  bool open(JsonValue::Kind kind) {
    if (open_.size() >= kMaxDepth)
      throw InputError(*file_ + ": not valid JSON: nested deeper than " + std::to_string(kMaxDepth));
    JsonValue v = make(kind);
    open_.push_back(std::move(v));
    key_.emplace_back();
    return true;
  }
  bool close() {
    JsonValue v = std::move(open_.back());
    open_.pop_back();
    key_.pop_back();
    return add(std::move(v));
  }

  std::shared_ptr<const std::string> file_;
  std::vector<JsonValue> open_;  // the arrays and objects being read, outermost first
  std::vector<std::string> key_;  // for each, the key of the member being read (objects)
  JsonValue root_;
};

std::string JsonValue::where() const {
  return (file_ ? *file_ : std::string("JSON")) + ": " + (path_.empty() ? "the document" : path_);
}

void JsonValue::wrong_kind(const char* expected) const {
  static const char* names[] = {"null", "a boolean", "a number", "a string", "an array", "an object"};
  throw InputError(where() + " is " + names[int(kind_)] + ", expected " + expected);
}

bool JsonValue::boolean() const {
  if (kind_ != Kind::boolean) wrong_kind("true or false");
  return boolean_;
}

double JsonValue::number() const {
  if (kind_ != Kind::number) wrong_kind("a number");
  if (!std::isfinite(number_)) throw InputError(where() + " = " + string_ + " is out of range");
  return number_;
}

int64_t JsonValue::integer(int64_t lo, int64_t hi) const {
  double x = number();
  if (x != std::floor(x) || x < double(lo) || x > double(hi))
    throw InputError(where() + " = " + string_ + ": expected a whole number in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]");
  return int64_t(x);
}

const std::string& JsonValue::number_text() const {
  if (kind_ != Kind::number) wrong_kind("a number");
  return string_;
}

const std::string& JsonValue::string() const {
  if (kind_ != Kind::string) wrong_kind("a string");
  return string_;
}

const std::vector<JsonValue>& JsonValue::array() const {
  if (kind_ != Kind::array) wrong_kind("an array");
  return items_;
}

const std::vector<std::pair<std::string, JsonValue>>& JsonValue::object() const {
  if (kind_ != Kind::object) wrong_kind("an object");
  return fields_;
}

const JsonValue* JsonValue::find(const std::string& key) const {
  for (auto& [k, v] : fields_)
    if (k == key) return &v;
  return nullptr;
}

const JsonValue& JsonValue::at(const std::string& key) const {
  object();  // refuses a non-object by name
  if (auto* v = find(key)) return *v;
  throw InputError(where() + " lacks the key \"" + printable(key) + "\"");
}

JsonValue parse_json(const std::string& text, const std::string& file) {
  JsonTreeBuilder builder(std::make_shared<const std::string>(file));
  nlohmann::json::sax_parse(text, &builder);  // a syntax error throws from parse_error
  return builder.document();
}

JsonValue read_json_file(const std::string& path) {
  UNDO_INPUT_CHECK(file_exists(path), "'", path, "' does not exist");
  return parse_json(read_file(path), path);
}

}  // namespace undo

namespace undo {

std::string json_text(const JsonValue& v) {
  switch (v.kind()) {
    case JsonValue::Kind::null: return "null";
    case JsonValue::Kind::boolean: return v.boolean() ? "true" : "false";
    case JsonValue::Kind::number: return v.number_text();
    case JsonValue::Kind::string: return json_escape(v.string());
    case JsonValue::Kind::array: {
      std::string out = "[";
      for (auto& item : v.array()) out += (out.size() > 1 ? ", " : "") + json_text(item);
      return out + "]";
    }
    case JsonValue::Kind::object: {
      std::string out = "{";
      for (auto& [key, item] : v.object()) out += (out.size() > 1 ? ", " : "") + json_escape(key) + ": " + json_text(item);
      return out + "}";
    }
  }
  return "null";
}

}  // namespace undo
