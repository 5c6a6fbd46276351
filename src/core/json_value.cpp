#include "core/json_value.h"

#include <cmath>
#include <cstdlib>
#include <limits>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/utf8.h"

namespace undo {

class JsonParser {
 public:
  JsonParser(const std::string& text, std::shared_ptr<const std::string> file) : t_(text), file_(std::move(file)) {}

  JsonValue document() {
    JsonValue v = value("", 0);
    skip_ws();
    if (i_ != t_.size()) fail("text after the document");
    return v;
  }

 private:
  static constexpr int kMaxDepth = 512;

  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(*file_ + ": not valid JSON at byte " + std::to_string(i_) + ": " + what);
  }

  void skip_ws() {
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\n' || t_[i_] == '\r' || t_[i_] == '\t')) ++i_;
  }

  bool literal(const char* word) {
    size_t n = std::char_traits<char>::length(word);
    if (t_.compare(i_, n, word) != 0) return false;
    i_ += n;
    return true;
  }

  JsonValue value(const std::string& path, int depth) {
    if (depth > kMaxDepth) fail("nested deeper than " + std::to_string(kMaxDepth));
    skip_ws();
    if (i_ >= t_.size()) fail("a value was expected");
    JsonValue v;
    v.file_ = file_;
    v.path_ = path;
    char c = t_[i_];
    if (c == '{') {
      v.kind_ = JsonValue::Kind::object;
      ++i_;
      skip_ws();
      if (i_ < t_.size() && t_[i_] == '}') return ++i_, v;
      for (;;) {
        skip_ws();
        std::string key = string();
        skip_ws();
        if (i_ >= t_.size() || t_[i_] != ':') fail("':' expected after \"" + printable(key) + "\"");
        ++i_;
        v.fields_.emplace_back(key, value(path.empty() ? key : path + "." + key, depth + 1));
        skip_ws();
        if (i_ < t_.size() && t_[i_] == ',') { ++i_; continue; }
        if (i_ < t_.size() && t_[i_] == '}') return ++i_, v;
        fail("',' or '}' expected");
      }
    }
    if (c == '[') {
      v.kind_ = JsonValue::Kind::array;
      ++i_;
      skip_ws();
      if (i_ < t_.size() && t_[i_] == ']') return ++i_, v;
      for (;;) {
        v.items_.push_back(value(path + "[" + std::to_string(v.items_.size()) + "]", depth + 1));
        skip_ws();
        if (i_ < t_.size() && t_[i_] == ',') { ++i_; continue; }
        if (i_ < t_.size() && t_[i_] == ']') return ++i_, v;
        fail("',' or ']' expected");
      }
    }
    if (c == '"') {
      v.kind_ = JsonValue::Kind::string;
      v.string_ = string();
      return v;
    }
    if (literal("true")) return v.kind_ = JsonValue::Kind::boolean, v.boolean_ = true, v;
    if (literal("false")) return v.kind_ = JsonValue::Kind::boolean, v;
    if (literal("null")) return v;
    if (c == '-' || (c >= '0' && c <= '9')) return number(std::move(v));
    fail("a value was expected");
  }

  JsonValue number(JsonValue v) {
    // The grammar's own shape: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    size_t start = i_;
    auto digits = [&] {
      size_t from = i_;
      while (i_ < t_.size() && t_[i_] >= '0' && t_[i_] <= '9') ++i_;
      return i_ > from;
    };
    if (t_[i_] == '-') ++i_;
    if (i_ < t_.size() && t_[i_] == '0') ++i_;
    else if (!digits()) fail("a digit expected");
    if (i_ < t_.size() && t_[i_] == '.') {
      ++i_;
      if (!digits()) fail("a digit expected after '.'");
    }
    if (i_ < t_.size() && (t_[i_] == 'e' || t_[i_] == 'E')) {
      ++i_;
      if (i_ < t_.size() && (t_[i_] == '+' || t_[i_] == '-')) ++i_;
      if (!digits()) fail("a digit expected in the exponent");
    }
    v.kind_ = JsonValue::Kind::number;
    v.string_ = t_.substr(start, i_ - start);
    v.number_ = std::strtod(v.string_.c_str(), nullptr);
    return v;
  }

  unsigned hex4() {
    if (i_ + 4 > t_.size()) fail("a \\u escape is cut short");
    unsigned u = 0;
    for (int k = 0; k < 4; ++k) {
      char h = t_[i_++];
      u <<= 4;
      if (h >= '0' && h <= '9') u |= unsigned(h - '0');
      else if (h >= 'a' && h <= 'f') u |= unsigned(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') u |= unsigned(h - 'A' + 10);
      else fail("a \\u escape holds a non-hex digit");
    }
    return u;
  }

  std::string string() {
    if (i_ >= t_.size() || t_[i_] != '"') fail("a string expected");
    std::string out;
    ++i_;
    for (;;) {
      if (i_ >= t_.size()) fail("unterminated string");
      char c = t_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("a control character inside a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= t_.size()) fail("unterminated string");
      switch (char e = t_[i_++]) {
        case '"': case '\\': case '/': out += e; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {  // a high surrogate: its low half must follow
            if (i_ + 2 > t_.size() || t_[i_] != '\\' || t_[i_ + 1] != 'u') fail("a lone high surrogate");
            i_ += 2;
            uint32_t lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) fail("a high surrogate without its low half");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            fail("a lone low surrogate");
          }
          append_utf8(out, cp);
          break;
        }
        default: fail("an unknown escape");
      }
    }
  }

  const std::string& t_;
  std::shared_ptr<const std::string> file_;
  size_t i_ = 0;
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
  return JsonParser(text, std::make_shared<const std::string>(file)).document();
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
