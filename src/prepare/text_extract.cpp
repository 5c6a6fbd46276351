#include "prepare/text_extract.h"

#include "core/error.h"

#include <libxml/HTMLparser.h>
#include <libxml/parser.h>

#include <cstring>
#include <set>
#include <sstream>

namespace undo {
namespace {

const std::set<std::string> kSkip = {"script", "style", "head", "noscript", "info", "credit", "license"};
const std::set<std::string> kBlock = {"p",  "div", "br", "h1", "h2",    "h3",    "h4",   "h5",  "h6",
                                      "li", "tr",  "td", "th", "title", "item",  "pre",  "code", "table",
                                      "ul", "ol",  "dt", "dd", "section", "note", "screen", "tbody", "blockquote"};

void walk(xmlNode* node, std::string& out) {
  for (xmlNode* n = node; n; n = n->next) {
    if (n->type == XML_ELEMENT_NODE) {
      std::string name = reinterpret_cast<const char*>(n->name);
      if (kSkip.count(name)) continue;
      bool block = kBlock.count(name) > 0;
      if (block) out += '\n';
      walk(n->children, out);
      if (block) out += '\n';
    } else if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
      if (n->content) out += reinterpret_cast<const char*>(n->content);
    }
  }
}

}  // namespace

std::string html_to_text(const std::string& html) {
  htmlDocPtr doc = htmlReadMemory(html.data(), int(html.size()), nullptr, "UTF-8",
                                  HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_NONET);
  if (!doc) return "";
  std::string out;
  walk(xmlDocGetRootElement(doc), out);
  xmlFreeDoc(doc);
  return tidy_text(out);
}

std::string xml_to_text(const std::string& xml) {
  xmlDocPtr doc = xmlReadMemory(xml.data(), int(xml.size()), nullptr, "UTF-8",
                                XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NONET | XML_PARSE_RECOVER);
  if (!doc) return "";
  std::string out;
  walk(xmlDocGetRootElement(doc), out);
  xmlFreeDoc(doc);
  return tidy_text(out);
}

std::vector<CodePointRange> parse_code_point_ranges(const std::string& key, const std::string& text) {
  std::vector<CodePointRange> out;
  std::string item;
  std::istringstream in(text);
  while (std::getline(in, item, ',')) {
    auto dash = item.find('-');
    auto hex = [&](const std::string& h) {
      size_t used = 0;
      unsigned long v = 0;
      try {
        v = std::stoul(h, &used, 16);
      } catch (const std::exception&) {
        used = 0;
      }
      UNDO_INPUT_CHECK(!h.empty() && used == h.size() && v <= 0x10FFFF, key, " = '", text, "': '", h,
                       "' is not a hexadecimal code point");
      return uint32_t(v);
    };
    CodePointRange r;
    r.first = hex(item.substr(0, dash));
    r.last = dash == std::string::npos ? r.first : hex(item.substr(dash + 1));
    UNDO_INPUT_CHECK(r.first <= r.last, key, " = '", text, "': range ", item, " is empty");
    out.push_back(r);
  }
  UNDO_INPUT_CHECK(!out.empty(), key, " = '", text, "': no ranges");
  return out;
}

double script_share(const std::string& line, const std::vector<CodePointRange>& script) {
  int letters = 0, in_script = 0;
  for (size_t i = 0; i < line.size();) {
    unsigned char c = static_cast<unsigned char>(line[i]);
    uint32_t cp;
    int len;
    if (c < 0x80) cp = c, len = 1;
    else if ((c >> 5) == 6) cp = c & 0x1f, len = 2;
    else if ((c >> 4) == 14) cp = c & 0x0f, len = 3;
    else if ((c >> 3) == 30) cp = c & 0x07, len = 4;
    else { ++i; continue; }
    for (int k = 1; k < len && i + size_t(k) < line.size(); ++k)
      cp = (cp << 6) | (static_cast<unsigned char>(line[i + size_t(k)]) & 0x3f);
    i += size_t(len);
    bool ascii_letter = cp < 0x80 && std::isalpha(int(cp));
    bool ours = false;
    for (auto& r : script) ours = ours || (cp >= r.first && cp <= r.last);
    // Latin-1/extended letters, CJK and other scripts count as letters too
    // (not punctuation, symbols or CJK punctuation).
    bool other_letter = cp >= 0xC0 && !(cp >= 0x2000 && cp <= 0x2BFF) && !(cp >= 0x3000 && cp <= 0x303F);
    if (ascii_letter || ours || other_letter) ++letters;
    if (ours) ++in_script;
  }
  return letters ? double(in_script) / letters : 0.0;
}

std::string tidy_text(const std::string& text) {
  std::istringstream in(text);
  std::string line, out;
  bool blank = true;
  while (std::getline(in, line)) {
    for (auto& ch : line)
      if (ch == '\t' || ch == '\r') ch = ' ';
    size_t b = line.find_first_not_of(' '), e = line.find_last_not_of(' ');
    if (b == std::string::npos) {
      if (!blank) out += '\n';
      blank = true;
      continue;
    }
    std::string t = line.substr(b, e - b + 1);
    // Collapse inner runs of spaces left by markup.
    std::string c;
    for (char ch : t)
      if (!(ch == ' ' && !c.empty() && c.back() == ' ')) c += ch;
    out += c + '\n';
    blank = false;
  }
  return out;
}

}  // namespace undo
