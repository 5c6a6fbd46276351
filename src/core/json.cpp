#include "core/json.h"

#include <cctype>
#include <fstream>
#include <stdexcept>

#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/error.h"
#include "core/json_value.h"

namespace undo {

std::string json_escape(const std::string& s) {
  // nlohmann-json's escaping. A byte that is not UTF-8 is written as U+FFFD,
  // so that every line undo writes is JSON its reader (the library's) takes back.
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

JsonObject& JsonObject::add(const std::string& key, const std::string& value) {
  fields_.emplace_back(key, json_escape(value));
  return *this;
}
JsonObject& JsonObject::add(const std::string& key, double value) {
  // JSON has no NaN/Inf: write null so that readers do not choke.
  fields_.emplace_back(key, std::isfinite(value) ? format_double(value) : "null");
  return *this;
}
JsonObject& JsonObject::add(const std::string& key, int64_t value) {
  fields_.emplace_back(key, std::to_string(value));
  return *this;
}
JsonObject& JsonObject::add(const std::string& key, bool value) {
  fields_.emplace_back(key, value ? "true" : "false");
  return *this;
}
JsonObject& JsonObject::add_raw(const std::string& key, const std::string& json) {
  fields_.emplace_back(key, json);
  return *this;
}

JsonObject& JsonObject::merge(const JsonObject& other) {
  fields_.insert(fields_.end(), other.fields_.begin(), other.fields_.end());
  return *this;
}

std::string JsonObject::str() const {
  std::string s = "{";
  for (size_t i = 0; i < fields_.size(); ++i)
    s += (i ? ", " : "") + json_escape(fields_[i].first) + ": " + fields_[i].second;
  return s + "}";
}

std::map<std::string, std::string> parse_flat_json(const std::string& t) {
  // The one JSON parser (core/json_value.h): escapes decoded (a \u escape
  // used to become '?'), and a syntax error said with its offset.
  const JsonValue v = parse_json(t, "JSON");
  if (!v.is_object()) throw std::runtime_error("JSON: expected an object");
  std::map<std::string, std::string> out;
  for (auto& [key, value] : v.object()) {
    switch (value.kind()) {
      case JsonValue::Kind::string: out[key] = value.string(); break;
      case JsonValue::Kind::number: out[key] = value.number_text(); break;
      case JsonValue::Kind::boolean: out[key] = value.boolean() ? "true" : "false"; break;
      case JsonValue::Kind::null: out[key] = "null"; break;
      default: out[key] = json_text(value);  // nested: kept as JSON text
    }
  }
  return out;
}

std::vector<std::map<std::string, std::string>> read_json_lines(const std::string& path, bool skip_unreadable) {
  std::vector<std::map<std::string, std::string>> out;
  std::ifstream in(path);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      out.push_back(parse_flat_json(line));
    } catch (const std::exception& e) {
      if (skip_unreadable) continue;
      throw std::runtime_error(path + ":" + std::to_string(n) + ": " + e.what());
    }
  }
  return out;
}

bool is_json_number(const std::string& text) {
  // The library's grammar, on the text alone: it would skip white space around a number, which is not one here.
  if (text.empty() || !(text[0] == '-' || std::isdigit(static_cast<unsigned char>(text[0]))) ||
      !std::isdigit(static_cast<unsigned char>(text.back())))
    return false;
  return nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false).is_number();
}

JsonObject& JsonObject::add_text_or_number(const std::string& key, const std::string& value) {
  return is_json_number(value) ? add_raw(key, value) : add(key, value);
}

double json_number(const std::string& key, const std::string& text) {
  if (text == "null") return NAN;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || std::isspace(static_cast<unsigned char>(text[0])))
    throw InputError("'" + key + "' = '" + printable(text) + "' is not a number");
  return v;
}

}  // namespace undo
