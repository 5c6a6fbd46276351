#include "prepare/bpe_tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <queue>
#include <tuple>
#include <unordered_map>

#include "core/config.h"
#include "core/error.h"
#include "core/json_value.h"
#include "core/utf8.h"
#include "prepare/pre_tokenize.h"

namespace undo {
namespace {

struct AddedToken {
  std::string content;
  int id;
  bool special;
};

}  // namespace

struct BpeTokenizer::Impl {
  std::string file;
  std::unique_ptr<PreTokenizer> pre;
  std::unordered_map<std::string, int> vocab;  // text in the model's alphabet -> id
  std::unordered_map<std::string, int> ranks;  // "left\0right" -> merge rank
  std::vector<AddedToken> added;               // longest first
  bool starts_added[256] = {};                 // bytes an added token starts with
  bool ignore_merges = false, byte_fallback = false, fuse_unk = false;
  int byte_ids[256] = {};                      // byte_fallback: the ids of <0x00> ... <0xFF>
  int unk = -1, eos = -1, bos = -1, size = 0;
  // Decoding (the decoder): what stands for a space in sentencepiece-style
  // pieces ("" where none does), and whether the first one is dropped.
  std::string space_symbol;
  bool strip_leading_space = false;
  mutable std::unordered_map<std::string, std::vector<int>> cache;

  void read_model(const JsonValue& m) {
    UNDO_INPUT_CHECK(m.at("type").string() == "BPE", m.at("type").where(), " = \"", printable(m.at("type").string()),
                     "\": only BPE models are read from a tokenizer.json (give a sentencepiece tokenizer.model "
                     "for the others)");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix", "dropout"}) {
      auto* v = m.find(key);
      UNDO_INPUT_CHECK(!v || v->is_null() || (v->is_string() && v->string().empty()), v ? v->where() : m.where(),
                       ": not supported by undo's BPE tokenizer");
    }
    auto flag = [&](const char* key) { return m.find(key) && m.at(key).boolean(); };
    ignore_merges = flag("ignore_merges");
    byte_fallback = flag("byte_fallback");
    fuse_unk = flag("fuse_unk");
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
    if (byte_fallback)
      for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        auto it = vocab.find(name);
        UNDO_INPUT_CHECK(it != vocab.end(), m.at("byte_fallback").where(), " = true, but model.vocab has no ", name);
        byte_ids[b] = it->second;
      }
  }

  // The decoders undo's decoding table reproduces: byte-level, or
  // sentencepiece-style (Replace "▁" by " ", ByteFallback, Fuse, Strip; or
  // Metaspace). Another would decode differently: refused by key.
  void read_decoder(const JsonValue& d) {
    const std::string& type = d.at("type").string();
    if (type == "Sequence") {
      for (auto& e : d.at("decoders").array()) read_decoder(e);
    } else if (type == "Replace") {
      UNDO_INPUT_CHECK(d.at("pattern").find("String") && d.at("content").string() == " ", d.where(),
                       ": undo decodes only a Replace of a literal String by \" \"");
      space_symbol = d.at("pattern").at("String").string();
    } else if (type == "Strip") {
      UNDO_INPUT_CHECK(d.at("content").string() == " " && d.at("start").integer(0, 1) == 1 &&
                           d.at("stop").integer(0, 0) == 0,
                       d.where(), ": undo decodes only a Strip of one leading space");
      strip_leading_space = true;
    } else if (type == "Metaspace") {
      space_symbol = d.at("replacement").string();
      auto* scheme = d.find("prepend_scheme");
      auto* prefix = d.find("add_prefix_space");
      strip_leading_space = scheme ? scheme->string() != "never" : !prefix || prefix->boolean();
    } else {
      UNDO_INPUT_CHECK(type == "ByteLevel" || type == "ByteFallback" || type == "Fuse", d.at("type").where(), " = \"",
                       printable(type), "\": undo's decoding table does ByteLevel, Replace, ByteFallback, Fuse, "
                       "Strip, Metaspace and Sequence decoders");
    }
  }

  // The token transformers puts before a text when it adds special tokens:
  // the special token that a TemplateProcessing's single template starts with.
  void read_post_processor(const JsonValue& p) {
    const std::string& type = p.at("type").string();
    if (type == "Sequence") {
      for (auto& q : p.at("processors").array()) read_post_processor(q);
    } else if (type == "TemplateProcessing") {
      const auto& single = p.at("single").array();
      if (single.empty() || !single[0].find("SpecialToken")) return;
      const JsonValue& name = single[0].at("SpecialToken").at("id");
      const auto& ids = p.at("special_tokens").at(name.string()).at("ids").array();
      UNDO_INPUT_CHECK(ids.size() == 1, name.where(), ": a leading special token of one id is expected");
      bos = int(ids[0].integer(0, std::numeric_limits<int>::max() - 1));
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
    if (pre->byte_level())
      for (int b = 0; b < 256; ++b) {
        std::string symbol;
        append_utf8(symbol, byte_alphabet().to_cp[b]);
        UNDO_INPUT_CHECK(vocab.count(symbol), file, ": model.vocab has no token for the byte 0x", std::hex, b,
                         " ('", printable(symbol), "'): a byte-level BPE needs all 256");
      }
    else
      UNDO_INPUT_CHECK(byte_fallback || unk >= 0, file, ": neither model.byte_fallback nor model.unk_token: a "
                       "character outside the vocabulary would have no id");
    for (auto& [pair, rank] : ranks) {
      const std::string left = pair.substr(0, pair.find('\0')), right = pair.substr(pair.find('\0') + 1);
      UNDO_INPUT_CHECK(vocab.count(left) && vocab.count(right) && vocab.count(left + right), file, ": model.merges[",
                       rank, "] = \"", printable(left), " ", printable(right), "\" merges tokens that are not all in "
                       "model.vocab");
    }
  }

  // One symbol of a word: text that merges, or a fixed id (a byte of the
  // fallback, the unknown token) that never does.
  struct Symbol {
    std::string text;
    int id = -1;
    int prev = -1, next = -1;
    bool alive = true;
  };

  // A word's characters as symbols: each in the vocabulary as itself, else as
  // its bytes' <0xXX> tokens (byte_fallback), else as the unknown token (one
  // for a run of them with fuse_unk), as the tokenizers library makes them.
  std::vector<Symbol> symbols_of(const std::string& word) const {
    std::vector<Symbol> syms;
    for (uint32_t cp : code_points(word)) {
      std::string ch;
      append_utf8(ch, cp);
      if (vocab.count(ch)) {
        syms.push_back({ch});
      } else if (byte_fallback) {
        for (unsigned char b : ch) syms.push_back({"", byte_ids[b]});
      } else {
        UNDO_CHECK(unk >= 0, file, ": the character '", printable(ch), "' has no id and the model no unk_token");
        if (!(fuse_unk && !syms.empty() && syms.back().id == unk)) syms.push_back({"", unk});
      }
    }
    for (size_t i = 0; i < syms.size(); ++i) {
      syms[i].prev = int(i) - 1;
      syms[i].next = i + 1 < syms.size() ? int(i) + 1 : -1;
    }
    return syms;
  }

  // The merge rank of the pair starting at symbol `l`, or -1.
  int rank_at(const std::vector<Symbol>& syms, int l) const {
    if (l < 0 || syms[size_t(l)].next < 0) return -1;
    const Symbol &a = syms[size_t(l)], &b = syms[size_t(a.next)];
    if (a.id >= 0 || b.id >= 0) return -1;
    auto r = ranks.find(a.text + '\0' + b.text);
    return r == ranks.end() ? -1 : r->second;
  }

  // BPE on one word: the pair of lowest rank merges first, the leftmost
  // among equals, until no pair has a rank (a heap of pairs, so that a
  // sentencepiece-style word, a whole line, takes n log n).
  std::vector<int> merge(const std::string& word) const {
    if (auto hit = cache.find(word); hit != cache.end()) return hit->second;
    std::vector<int> ids;
    if (auto whole = vocab.find(word); ignore_merges && whole != vocab.end()) {
      ids.push_back(whole->second);
    } else {
      std::vector<Symbol> syms = symbols_of(word);
      using Pair = std::tuple<int, int, int>;  // rank, left symbol, right symbol
      std::priority_queue<Pair, std::vector<Pair>, std::greater<Pair>> heap;
      auto push = [&](int l) {
        if (int r = rank_at(syms, l); r >= 0) heap.emplace(r, l, syms[size_t(l)].next);
      };
      for (size_t i = 0; i < syms.size(); ++i) push(int(i));
      while (!heap.empty()) {
        auto [rank, l, r] = heap.top();
        heap.pop();
        // Stale: a side merged away since, or the pair's text changed.
        if (!syms[size_t(l)].alive || syms[size_t(l)].next != r || rank_at(syms, l) != rank) continue;
        Symbol &a = syms[size_t(l)], &b = syms[size_t(r)];
        a.text += b.text;
        a.next = b.next;
        if (b.next >= 0) syms[size_t(b.next)].prev = l;
        b.alive = false;
        push(a.prev);
        push(l);
      }
      for (auto& s : syms)
        if (s.alive) ids.push_back(s.id >= 0 ? s.id : vocab.at(s.text));
    }
    if (cache.size() < (1u << 20) && word.size() <= 256) cache.emplace(word, ids);
    return ids;
  }

  void encode_plain(const std::string& raw, bool at_start, std::vector<int>& out) const {
    for (auto& word : pre->words(raw, at_start)) {
      auto ids = merge(word);
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
  t.pre = std::make_unique<PreTokenizer>(doc.find("normalizer"), doc.find("pre_tokenizer"), path);
  if (auto* d = doc.find("decoder"); d && !d->is_null()) t.read_decoder(*d);
  if (auto* p = doc.find("post_processor"); p && !p->is_null()) t.read_post_processor(*p);
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
    if (i > plain) t.encode_plain(text.substr(plain, i - plain), plain == 0, out);
    out.push_back(hit->id);
    i += hit->content.size();
    plain = i;
  }
  if (plain < text.size()) t.encode_plain(text.substr(plain), plain == 0, out);
  return out;
}

int BpeTokenizer::vocab_size() const { return impl_->size; }
int BpeTokenizer::eos_id() const { return impl_->eos; }

int BpeTokenizer::bos_id() const { return impl_->bos; }
bool BpeTokenizer::strips_leading_space() const { return impl_->strip_leading_space; }

// The decoding table: a byte-level piece's symbols as their bytes; a
// sentencepiece-style piece with its space symbol as a space, and a byte of
// the fallback as that byte; special added tokens as nothing (transformers
// decodes with skip_special_tokens).
std::vector<VocabPiece> BpeTokenizer::pieces() const {
  const Impl& t = *impl_;
  std::vector<VocabPiece> out(size_t(t.size), VocabPiece{PieceKind::Unknown, ""});
  const auto& a = byte_alphabet();
  for (auto& [text, id] : t.vocab) {
    std::string bytes;
    if (t.pre->byte_level()) {
      for (uint32_t cp : code_points(text)) {
        auto b = a.to_byte.find(cp);
        if (b != a.to_byte.end()) bytes += char(b->second);
        else append_utf8(bytes, cp);  // not of the byte alphabet: kept as written
      }
    } else {
      bytes = text;
      if (!t.space_symbol.empty())
        for (size_t at = 0; (at = bytes.find(t.space_symbol, at)) != std::string::npos; ++at)
          bytes.replace(at, t.space_symbol.size(), " ");
    }
    out[size_t(id)] = {PieceKind::Text, bytes};
  }
  if (t.byte_fallback)
    for (int b = 0; b < 256; ++b) out[size_t(t.byte_ids[b])] = {PieceKind::Byte, std::string(1, char(b))};
  for (auto& added : t.added)
    out[size_t(added.id)] = added.special ? VocabPiece{PieceKind::Control, ""} : VocabPiece{PieceKind::Text, added.content};
  return out;
}

}  // namespace undo
