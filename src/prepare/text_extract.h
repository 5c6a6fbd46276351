// Turning the fetched packages' files into plain text documents.
#pragma once
#include <string>

namespace undo {

// HTML (libxml2's forgiving parser) or Mallard/XML: script, style and head
// are dropped, block elements become line breaks, entities are decoded.
std::string html_to_text(const std::string& html);
std::string xml_to_text(const std::string& xml);

// Share of Hangul syllables (U+AC00..U+D7A3) among the letters of a UTF-8 line.
double hangul_share(const std::string& line);

// Collapses runs of blank lines and trims trailing spaces.
std::string tidy_text(const std::string& text);

}  // namespace undo
