#include "prepare/pre_tokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <algorithm>
#include <cctype>
#include <map>

#include "core/config.h"
#include "core/error.h"
#include "core/utf8.h"

namespace undo {

ByteAlphabet::ByteAlphabet() {
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    to_cp[b] = printable ? uint32_t(b) : next++;
    to_byte[to_cp[b]] = uint8_t(b);
  }
}

const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet a;
  return a;
}

namespace {

std::string nfc(const std::string& s, const std::string& file) {
  UErrorCode err = U_ZERO_ERROR;
  const UNormalizer2* norm = unorm2_getNFCInstance(&err);
  UNDO_CHECK(U_SUCCESS(err), "ICU's NFC normalizer is unavailable (", file, ")");
  std::vector<UChar> in(s.size() + 1), out;
  int32_t n = 0;
  u_strFromUTF8(in.data(), int32_t(in.size()), &n, s.data(), int32_t(s.size()), &err);
  UNDO_CHECK(U_SUCCESS(err), "NFC: text is not UTF-8");
  out.resize(size_t(n) * 3 + 16);
  int32_t m = unorm2_normalize(norm, in.data(), n, out.data(), int32_t(out.size()), &err);
  UNDO_CHECK(U_SUCCESS(err), "NFC normalization failed");
  std::string utf8(size_t(m) * 4 + 4, '\0');
  int32_t bytes = 0;
  u_strToUTF8(utf8.data(), int32_t(utf8.size()), &bytes, out.data(), m, &err);
  UNDO_CHECK(U_SUCCESS(err), "NFC: cannot write UTF-8");
  utf8.resize(size_t(bytes));
  return utf8;
}

struct Segment {
  std::string text;
  bool match;
};

// A compiled regex, whose matches split a piece.
class Splitter {
 public:
  Splitter(const std::string& pattern, const std::string& where) {
    int err = 0;
    PCRE2_SIZE at = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(), PCRE2_UTF | PCRE2_UCP, &err,
                          &at, nullptr);
    if (!code_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      throw InputError(where + ": the regex does not compile at offset " + std::to_string(at) + ": " +
                       reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // a speed-up where available; the same matches
    data_ = pcre2_match_data_create_from_pattern(code_, nullptr);
  }
  ~Splitter() {
    pcre2_match_data_free(data_);
    pcre2_code_free(code_);
  }
  Splitter(const Splitter&) = delete;
  Splitter& operator=(const Splitter&) = delete;

  // `s` as segments: each match, and the text between matches (an empty
  // match splits nothing).
  void segments(const std::string& s, std::vector<Segment>& out) const {
    size_t start = 0, last = 0;
    while (start <= s.size()) {
      int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), start, PCRE2_NO_UTF_CHECK, data_,
                           nullptr);
      if (rc < 0) break;
      PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data_);
      size_t b = ov[0], e = ov[1];
      if (e == b) {  // step over one character
        start = e + 1;
        while (start < s.size() && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) ++start;
        continue;
      }
      if (b > last) out.push_back({s.substr(last, b - last), false});
      out.push_back({s.substr(b, e - b), true});
      last = start = e;
    }
    if (last < s.size()) out.push_back({s.substr(last), false});
  }

 private:
  pcre2_code* code_ = nullptr;
  pcre2_match_data* data_ = nullptr;
};

// GPT-2's pre-tokenizer regex, which ByteLevel applies when use_regex is true.
const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class Behaviour { isolated, merged_with_previous, merged_with_next };

// Segments as pieces, as tokenizers' SplitDelimiterBehavior joins them: each
// on its own, or a match joined to the text before (after) it unless that is
// a match too.
void join_segments(std::vector<Segment>& segs, Behaviour how, std::vector<std::string>& out) {
  if (how == Behaviour::isolated) {
    for (auto& s : segs) out.push_back(std::move(s.text));
    return;
  }
  const bool forward = how == Behaviour::merged_with_previous;
  std::vector<std::string> joined;
  bool previous_match = false;
  for (size_t k = 0; k < segs.size(); ++k) {
    Segment& s = segs[forward ? k : segs.size() - 1 - k];
    if (s.match && !previous_match && !joined.empty()) joined.back() = forward ? joined.back() + s.text : s.text + joined.back();
    else joined.push_back(std::move(s.text));
    previous_match = s.match;
  }
  if (!forward) std::reverse(joined.begin(), joined.end());
  for (auto& j : joined) out.push_back(std::move(j));
}

std::string regex_of_literal(const std::string& literal) {
  std::string regex;
  for (char c : literal) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && static_cast<unsigned char>(c) < 0x80) regex += '\\';
    regex += c;
  }
  return regex;
}

// A pattern member ({"String": ...} or {"Regex": ...}) as a regex.
std::string pattern_regex(const JsonValue& pattern) {
  if (auto* r = pattern.find("Regex")) return r->string();
  return regex_of_literal(pattern.at("String").string());
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  for (size_t at = 0; (at = s.find(from, at)) != std::string::npos; at += to.size()) s.replace(at, from.size(), to);
}

}  // namespace

struct PreTokenizer::Normalization {
  enum Kind { nfc, replace, prepend } kind;
  std::string from, to;  // replace: from -> to; prepend: to
};

struct PreTokenizer::Step {
  enum Kind { split, byte_level, metaspace } kind;
  std::unique_ptr<Splitter> splitter;  // null: no splitting
  Behaviour behaviour = Behaviour::isolated;
  bool prefix_space = false;           // ByteLevel's add_prefix_space
  std::string replacement;             // Metaspace's
  std::string prepend = "always";      // Metaspace's prepend_scheme: always, first, never
};

PreTokenizer::PreTokenizer(const JsonValue* normalizer, const JsonValue* pre_tokenizer, const std::string& file)
    : file_(file) {
  if (normalizer && !normalizer->is_null()) read_normalizer(*normalizer);
  if (pre_tokenizer && !pre_tokenizer->is_null()) read_step(*pre_tokenizer);
}

PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::read_normalizer(const JsonValue& n) {
  const std::string& type = n.at("type").string();
  if (type == "Sequence") {
    for (auto& m : n.at("normalizers").array()) read_normalizer(m);
  } else if (type == "NFC") {
    normalizations_.push_back({Normalization::nfc, "", ""});
  } else if (type == "Prepend") {
    normalizations_.push_back({Normalization::prepend, "", n.at("prepend").string()});
  } else if (type == "Replace") {
    const JsonValue& pattern = n.at("pattern");
    UNDO_INPUT_CHECK(pattern.find("String"), pattern.where(), ": undo replaces only a literal String");
    normalizations_.push_back({Normalization::replace, pattern.at("String").string(), n.at("content").string()});
  } else {
    throw InputError(n.at("type").where() + " = \"" + printable(type) +
                     "\": undo's BPE tokenizer does the NFC, Replace and Prepend normalizers and Sequences of them");
  }
}

void PreTokenizer::read_step(const JsonValue& p) {
  const std::string& type = p.at("type").string();
  auto step = std::make_unique<Step>();
  if (type == "Sequence") {
    for (auto& q : p.at("pretokenizers").array()) read_step(q);
    return;
  } else if (type == "ByteLevel") {
    step->kind = Step::byte_level;
    byte_level_ = true;
    if (auto* prefix = p.find("add_prefix_space")) step->prefix_space = prefix->boolean();
    auto* use_regex = p.find("use_regex");
    if (!use_regex || use_regex->boolean()) step->splitter = std::make_unique<Splitter>(kGpt2Pattern, p.where());
  } else if (type == "Split") {
    step->kind = Step::split;
    const std::string& behaviour = p.at("behavior").string();
    static const std::map<std::string, Behaviour> behaviours = {{"Isolated", Behaviour::isolated},
                                                                {"MergedWithPrevious", Behaviour::merged_with_previous},
                                                                {"MergedWithNext", Behaviour::merged_with_next}};
    UNDO_INPUT_CHECK(behaviours.count(behaviour), p.at("behavior").where(), " = \"", printable(behaviour),
                     "\": undo splits Isolated, MergedWithPrevious or MergedWithNext");
    step->behaviour = behaviours.at(behaviour);
    UNDO_INPUT_CHECK(!p.find("invert") || !p.at("invert").boolean(), p.at("invert").where(), " = true: not supported");
    step->splitter = std::make_unique<Splitter>(pattern_regex(p.at("pattern")), p.at("pattern").where());
  } else if (type == "Digits") {
    step->kind = Step::split;
    bool single = p.find("individual_digits") && p.at("individual_digits").boolean();
    step->splitter = std::make_unique<Splitter>(single ? "\\p{N}" : "\\p{N}+", p.where());
  } else if (type == "Metaspace") {
    step->kind = Step::metaspace;
    step->replacement = p.at("replacement").string();
    UNDO_INPUT_CHECK(!step->replacement.empty(), p.at("replacement").where(), ": empty");
    if (auto* scheme = p.find("prepend_scheme")) step->prepend = scheme->string();
    else if (auto* prefix = p.find("add_prefix_space")) step->prepend = prefix->boolean() ? "always" : "never";
    UNDO_INPUT_CHECK(step->prepend == "always" || step->prepend == "first" || step->prepend == "never",
                     p.at("prepend_scheme").where(), " = \"", printable(step->prepend), "\": not always, first or never");
    if (!p.find("split") || p.at("split").boolean()) {
      step->splitter = std::make_unique<Splitter>(regex_of_literal(step->replacement), p.where());
      step->behaviour = Behaviour::merged_with_next;
    }
  } else {
    throw InputError(p.at("type").where() + " = \"" + printable(type) +
                     "\": undo's BPE tokenizer does ByteLevel, Split, Digits, Metaspace and Sequence pre-tokenizers");
  }
  steps_.push_back(std::move(step));
}

std::string PreTokenizer::normalized(std::string s) const {
  for (auto& n : normalizations_) {
    if (n.kind == Normalization::nfc) s = nfc(s, file_);
    else if (n.kind == Normalization::replace) replace_all(s, n.from, n.to);
    else if (!s.empty()) s = n.to + s;
  }
  return s;
}

std::vector<std::string> PreTokenizer::words(const std::string& text, bool at_start) const {
  std::vector<std::string> pieces = {normalized(text)};
  for (auto& step : steps_) {
    std::vector<std::string> next;
    for (size_t i = 0; i < pieces.size(); ++i) {
      std::string q = std::move(pieces[i]);
      if (q.empty()) continue;
      if (step->kind == Step::byte_level && step->prefix_space && (q.empty() || q[0] != ' ')) q = " " + q;
      if (step->kind == Step::metaspace) {
        replace_all(q, " ", step->replacement);
        // "first": only the piece at the very start of the text.
        const bool prepend = step->prepend == "always" || (step->prepend == "first" && at_start && i == 0);
        if (prepend && q.compare(0, step->replacement.size(), step->replacement) != 0) q = step->replacement + q;
      }
      if (!step->splitter) {
        next.push_back(std::move(q));
        continue;
      }
      std::vector<Segment> segs;
      step->splitter->segments(q, segs);
      join_segments(segs, step->behaviour, next);
    }
    pieces.swap(next);
  }
  if (!byte_level_) return pieces;
  const auto& a = byte_alphabet();
  for (auto& p : pieces) {
    std::string mapped;
    for (unsigned char c : p) append_utf8(mapped, a.to_cp[c]);
    p.swap(mapped);
  }
  return pieces;
}

}  // namespace undo
