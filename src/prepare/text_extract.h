// Turning the fetched packages' files into plain text documents.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace undo {

// HTML (libxml2's forgiving parser) or Mallard/XML: script, style and head
// are dropped, block elements become line breaks, entities are decoded.
std::string html_to_text(const std::string& html);
std::string xml_to_text(const std::string& xml);

// Unicode code-point ranges naming a script (data.forget_script).
struct CodePointRange {
  uint32_t first = 0, last = 0;
};
// "AC00-D7A3,3130-318F" -> ranges; an InputError naming `key` on bad text.
std::vector<CodePointRange> parse_code_point_ranges(const std::string& key, const std::string& text);

// Share of a UTF-8 line's letters that lie in `script`.
double script_share(const std::string& line, const std::vector<CodePointRange>& script);

// Collapses runs of blank lines and trims trailing spaces.
std::string tidy_text(const std::string& text);

}  // namespace undo
