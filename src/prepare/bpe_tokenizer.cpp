#include "prepare/bpe_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <algorithm>
#include <limits>
#include <unordered_map>

#include "core/config.h"
#include "core/error.h"
#include "core/json_value.h"
#include "core/utf8.h"

namespace undo {
namespace {

// GPT-2's byte-level alphabet: every byte as one printable code point.
// Printable Latin-1 bytes stand for themselves; the others (controls, space,
// ...) take code points from 256 on, in byte order.
struct ByteAlphabet {
  uint32_t to_cp[256];
  std::unordered_map<uint32_t, uint8_t> to_byte;
  ByteAlphabet() {
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_cp[b] = printable ? uint32_t(b) : next++;
      to_byte[to_cp[b]] = uint8_t(b);
    }
  }
};
const ByteAlphabet& alphabet() {
  static const ByteAlphabet a;
  return a;
}

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

// A compiled regex whose matches split a piece (tokenizers' "Isolated"
// behaviour: matches and the text between them are all pieces, in order).
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

  void split(const std::string& s, std::vector<std::string>& out) const {
    size_t start = 0, last = 0;
    while (start <= s.size()) {
      int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), start, PCRE2_NO_UTF_CHECK, data_,
                           nullptr);
      if (rc < 0) break;
      PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data_);
      size_t b = ov[0], e = ov[1];
      if (e == b) {  // an empty match splits nothing: step over one character
        start = e + 1;
        while (start < s.size() && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) ++start;
        continue;
      }
      if (b > last) out.push_back(s.substr(last, b - last));
      out.push_back(s.substr(b, e - b));
      last = start = e;
    }
    if (last < s.size()) out.push_back(s.substr(last));
  }

 private:
  pcre2_code* code_ = nullptr;
  pcre2_match_data* data_ = nullptr;
};

// GPT-2's pre-tokenizer regex, which ByteLevel applies when use_regex is true.
const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct Step {
  std::unique_ptr<Splitter> split;  // null: no splitting in this step
  bool prefix_space = false;        // ByteLevel's add_prefix_space
};

struct AddedToken {
  std::string content;
  int id;
  bool special;
};

}  // namespace

struct BpeTokenizer::Impl {
  std::string file;
  std::unordered_map<std::string, int> vocab;  // byte-level text -> id
  std::unordered_map<std::string, int> ranks;  // "left\0right" -> merge rank
  std::vector<AddedToken> added;               // longest first
  bool starts_added[256] = {};                 // bytes an added token starts with
  std::vector<Step> steps;
  bool nfc = false, ignore_merges = false;
  int unk = -1, eos = -1, size = 0;
  mutable std::unordered_map<std::string, std::vector<int>> cache;

  void read_normalizer(const JsonValue* n) {
    if (!n || n->is_null()) return;
    const std::string& type = n->at("type").string();
    if (type == "NFC") {
      nfc = true;
    } else if (type == "Sequence" && n->at("normalizers").array().empty()) {
    } else {
      throw InputError(n->at("type").where() + " = \"" + printable(type) +
                       "\": undo's BPE tokenizer does only NFC or no normalizer");
    }
  }

  void read_pre_tokenizer(const JsonValue& p) {
    const std::string& type = p.at("type").string();
    if (type == "Sequence") {
      for (auto& q : p.at("pretokenizers").array()) read_pre_tokenizer(q);
    } else if (type == "ByteLevel") {
      Step s;
      if (auto* prefix = p.find("add_prefix_space")) s.prefix_space = prefix->boolean();
      auto* use_regex = p.find("use_regex");
      if (!use_regex || use_regex->boolean()) s.split = std::make_unique<Splitter>(kGpt2Pattern, p.where());
      steps.push_back(std::move(s));
    } else if (type == "Split") {
      const JsonValue& pattern = p.at("pattern");
      std::string regex;
      if (auto* r = pattern.find("Regex")) {
        regex = r->string();
      } else {
        // A literal string: each character escaped.
        for (char c : pattern.at("String").string()) {
          if (!std::isalnum(static_cast<unsigned char>(c)) && static_cast<unsigned char>(c) < 0x80) regex += '\\';
          regex += c;
        }
      }
      UNDO_INPUT_CHECK(p.at("behavior").string() == "Isolated", p.at("behavior").where(), " = \"",
                       printable(p.at("behavior").string()), "\": undo splits only with the Isolated behaviour");
      UNDO_INPUT_CHECK(!p.find("invert") || !p.at("invert").boolean(), p.at("invert").where(),
                       " = true: not supported");
      steps.push_back({std::make_unique<Splitter>(regex, pattern.where()), false});
    } else if (type == "Digits") {
      bool single = p.find("individual_digits") && p.at("individual_digits").boolean();
      steps.push_back({std::make_unique<Splitter>(single ? "\\p{N}" : "\\p{N}+", p.where()), false});
    } else {
      throw InputError(p.at("type").where() + " = \"" + printable(type) +
                       "\": undo's BPE tokenizer does ByteLevel, Split, Digits and Sequence pre-tokenizers");
    }
  }

  void read_model(const JsonValue& m) {
    UNDO_INPUT_CHECK(m.at("type").string() == "BPE", m.at("type").where(), " = \"", printable(m.at("type").string()),
                     "\": only BPE models are read from a tokenizer.json (give a sentencepiece tokenizer.model "
                     "for the others)");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix", "dropout"}) {
      auto* v = m.find(key);
      UNDO_INPUT_CHECK(!v || v->is_null() || (v->is_string() && v->string().empty()), v ? v->where() : m.where(),
                       ": not supported by undo's BPE tokenizer");
    }
    auto* fallback = m.find("byte_fallback");
    UNDO_INPUT_CHECK(!fallback || !fallback->boolean(), fallback ? fallback->where() : m.where(),
                     " = true: byte fallback belongs to sentencepiece-style BPE (give its tokenizer.model)");
    if (auto* im = m.find("ignore_merges")) ignore_merges = im->boolean();
    for (auto& [text, id] : m.at("vocab").object()) {
      int i = int(id.integer(0, std::numeric_limits<int>::max() - 1));
      vocab[text] = i;
      size = std::max(size, i + 1);
    }
    int rank = 0;
    for (auto& merge : m.at("merges").array()) {
      std::string left, right;
      if (merge.is_string()) {
        const std::string& s = merge.string();
        auto space = s.find(' ', 1);
        UNDO_INPUT_CHECK(space != std::string::npos, merge.where(), " = \"", printable(s), "\": not \"left right\"");
        left = s.substr(0, space), right = s.substr(space + 1);
      } else {
        UNDO_INPUT_CHECK(merge.array().size() == 2, merge.where(), ": a merge is a pair");
        left = merge.array()[0].string(), right = merge.array()[1].string();
      }
      ranks.emplace(left + '\0' + right, rank++);
    }
    if (auto* u = m.find("unk_token"); u && !u->is_null()) {
      auto it = vocab.find(u->string());
      UNDO_INPUT_CHECK(it != vocab.end(), u->where(), " is not in the vocabulary");
      unk = it->second;
    }
  }

  // What the tokenizers library would refuse, or what would make nonsense of
  // training, refused by key: ids that leave gaps or collide (an added token
  // at id 1000000 made a vocabulary of a million), a byte of the byte-level
  // alphabet with no token (a vocabulary of 1 encoded everything as it: loss
  // 0, exit 0), a merge of or into a token that is not in the vocabulary.
  void check_consistency() const {
    const size_t defined = vocab.size() + added.size();
    UNDO_INPUT_CHECK(size_t(size) <= defined, file, ": the ids run to ", size - 1, " but only ", defined,
                     " tokens are defined (model.vocab and added_tokens): the ids must be 0..n-1");
    std::vector<const std::string*> by_id(size_t(size), nullptr);
    for (auto& [text, id] : vocab) {
      UNDO_INPUT_CHECK(!by_id[size_t(id)], file, ": model.vocab gives the id ", id, " to both '",
                       printable(*by_id[size_t(id)]), "' and '", printable(text), "'");
      by_id[size_t(id)] = &text;
    }
    for (auto& a : added) {
      UNDO_INPUT_CHECK(!by_id[size_t(a.id)] || *by_id[size_t(a.id)] == a.content, file, ": added_tokens gives the id ",
                       a.id, " of '", printable(*by_id[size_t(a.id)]), "' to '", printable(a.content), "'");
      by_id[size_t(a.id)] = &a.content;
    }
    for (size_t id = 0; id < by_id.size(); ++id)
      UNDO_INPUT_CHECK(by_id[id], file, ": no token has the id ", id, " (the ids must be 0..", size - 1, ")");
    for (int b = 0; b < 256; ++b) {
      std::string symbol;
      append_utf8(symbol, alphabet().to_cp[b]);
      UNDO_INPUT_CHECK(vocab.count(symbol), file, ": model.vocab has no token for the byte 0x", std::hex, b,
                       " ('", printable(symbol), "'): a byte-level BPE needs all 256");
    }
    for (auto& [pair, rank] : ranks) {
      const std::string left = pair.substr(0, pair.find('\0')), right = pair.substr(pair.find('\0') + 1);
      UNDO_INPUT_CHECK(vocab.count(left) && vocab.count(right) && vocab.count(left + right), file, ": model.merges[",
                       rank, "] = \"", printable(left), " ", printable(right), "\" merges tokens that are not all in "
                       "model.vocab");
    }
  }

  // BPE on one pre-token, already in the byte-level alphabet.
  std::vector<int> merge(const std::string& word) const {
    if (auto hit = cache.find(word); hit != cache.end()) return hit->second;
    std::vector<int> ids;
    auto whole = vocab.find(word);
    if (ignore_merges && whole != vocab.end()) {
      ids.push_back(whole->second);
    } else {
      std::vector<std::string> parts;
      for (uint32_t cp : code_points(word)) {
        parts.emplace_back();
        append_utf8(parts.back(), cp);
      }
      for (;;) {
        int best = std::numeric_limits<int>::max();
        size_t at = 0;
        for (size_t i = 0; i + 1 < parts.size(); ++i) {
          auto r = ranks.find(parts[i] + '\0' + parts[i + 1]);
          if (r != ranks.end() && r->second < best) best = r->second, at = i;
        }
        if (best == std::numeric_limits<int>::max()) break;
        // Every occurrence of the best pair, left to right.
        const std::string left = parts[at], right = parts[at + 1];
        std::vector<std::string> next;
        for (size_t i = 0; i < parts.size(); ++i) {
          if (i + 1 < parts.size() && parts[i] == left && parts[i + 1] == right) {
            next.push_back(left + right);
            ++i;
          } else {
            next.push_back(parts[i]);
          }
        }
        parts.swap(next);
      }
      for (auto& p : parts) {
        auto it = vocab.find(p);
        UNDO_CHECK(it != vocab.end() || unk >= 0, file, ": the piece '", p, "' has no id and the model no unk_token");
        ids.push_back(it != vocab.end() ? it->second : unk);
      }
    }
    if (cache.size() < (1u << 20)) cache.emplace(word, ids);
    return ids;
  }

  void encode_plain(const std::string& raw, std::vector<int>& out) const {
    std::vector<std::string> pieces = {nfc ? undo::nfc(raw, file) : raw};
    for (auto& step : steps) {
      std::vector<std::string> next;
      for (auto& p : pieces) {
        std::string q = step.prefix_space && (p.empty() || p[0] != ' ') ? " " + p : p;
        if (step.split) step.split->split(q, next);
        else next.push_back(std::move(q));
      }
      pieces.swap(next);
    }
    const auto& a = alphabet();
    for (auto& p : pieces) {
      std::string mapped;
      for (unsigned char c : p) append_utf8(mapped, a.to_cp[c]);
      auto ids = merge(mapped);
      out.insert(out.end(), ids.begin(), ids.end());
    }
  }
};

BpeTokenizer::BpeTokenizer(const std::string& path, const std::string& eos_token, int eos_id)
    : impl_(std::make_unique<Impl>()) {
  Impl& t = *impl_;
  t.file = path;
  JsonValue doc = read_json_file(path);
  t.read_model(doc.at("model"));
  t.read_normalizer(doc.find("normalizer"));
  if (auto* pre = doc.find("pre_tokenizer"); pre && !pre->is_null()) t.read_pre_tokenizer(*pre);
  if (auto* added = doc.find("added_tokens"))
    for (auto& a : added->array()) {
      AddedToken tok{a.at("content").string(), int(a.at("id").integer(0, std::numeric_limits<int>::max() - 1)),
                     a.find("special") && a.at("special").boolean()};
      if (tok.content.empty()) continue;
      t.size = std::max(t.size, tok.id + 1);
      t.added.push_back(tok);
      t.starts_added[static_cast<unsigned char>(tok.content[0])] = true;
    }
  std::stable_sort(t.added.begin(), t.added.end(),
                   [](const AddedToken& x, const AddedToken& y) { return x.content.size() > y.content.size(); });
  UNDO_INPUT_CHECK(!eos_token.empty() || eos_id >= 0, path, ": no end-of-text token is named (tokenizer_config.json's "
                   "eos_token or config.json's eos_token_id): undo separates packed documents with it");
  if (eos_token.empty()) {
    UNDO_INPUT_CHECK(eos_id < t.size, path, ": the end-of-text id ", eos_id, " is outside the vocabulary of ", t.size);
    t.eos = eos_id;
  } else {
    for (auto& a : t.added)
      if (a.content == eos_token) t.eos = a.id;
    if (t.eos < 0 && t.vocab.count(eos_token)) t.eos = t.vocab.at(eos_token);
    UNDO_INPUT_CHECK(t.eos >= 0, path, ": the end-of-text token '", printable(eos_token), "' is not in the vocabulary");
  }
  t.check_consistency();
}

BpeTokenizer::~BpeTokenizer() = default;

std::vector<int> BpeTokenizer::encode(const std::string& text_in) const {
  const Impl& t = *impl_;
  const std::string text = valid_utf8(text_in);
  std::vector<int> out;
  // Added tokens are cut out of the raw text first, longest match at the leftmost place.
  size_t plain = 0;
  for (size_t i = 0; i < text.size();) {
    const AddedToken* hit = nullptr;
    if (t.starts_added[static_cast<unsigned char>(text[i])])
      for (auto& a : t.added)
      if (text.compare(i, a.content.size(), a.content) == 0) {
        hit = &a;
        break;
      }
    if (!hit) {
      ++i;
      continue;
    }
    if (i > plain) t.encode_plain(text.substr(plain, i - plain), out);
    out.push_back(hit->id);
    i += hit->content.size();
    plain = i;
  }
  if (plain < text.size()) t.encode_plain(text.substr(plain), out);
  return out;
}

int BpeTokenizer::vocab_size() const { return impl_->size; }
int BpeTokenizer::eos_id() const { return impl_->eos; }

std::vector<VocabPiece> BpeTokenizer::pieces() const {
  const Impl& t = *impl_;
  std::vector<VocabPiece> out(size_t(t.size), VocabPiece{PieceKind::Unknown, ""});
  const auto& a = alphabet();
  for (auto& [text, id] : t.vocab) {
    std::string bytes;
    for (uint32_t cp : code_points(text)) {
      auto b = a.to_byte.find(cp);
      if (b != a.to_byte.end()) bytes += char(b->second);
      else append_utf8(bytes, cp);  // not of the byte alphabet: kept as written
    }
    out[size_t(id)] = {PieceKind::Text, bytes};
  }
  for (auto& added : t.added)
    out[size_t(added.id)] = added.special ? VocabPiece{PieceKind::Control, ""} : VocabPiece{PieceKind::Text, added.content};
  return out;
}

}  // namespace undo
