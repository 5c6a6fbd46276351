#include "prepare/prepare.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <unordered_set>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress_line.h"
#include "core/json.h"
#include "core/owned_output.h"
#include "core/sha256.h"
#include "data/arithmetic.h"
#include "data/eval_prompts.h"
#include "data/prepared_check.h"
#include "data/shard.h"
#include "data/stream.h"
#include "data/tokenizer_files.h"
#include "data/vocabulary.h"
#include "prepare/corpus_files.h"
#include "prepare/mcq_tokenize.h"
#include "prepare/text_extract.h"
#include "prepare/spm_tokenizer.h"
#include "prepare/text_tokenizer.h"

namespace fs = std::filesystem;

namespace undo {
namespace {

constexpr int kManifestVersion = 6;  // part of the preparation key: bump when the output changes

// Regular files under `dir` with one of `exts` ("" = no extension; none given = every file).
std::vector<std::string> files_under(const std::string& dir, const std::vector<std::string>& exts) {
  std::vector<std::string> out;
  if (!fs::is_directory(dir)) return out;
  for (auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    auto ext = e.path().extension().string();
    if (exts.empty() || std::find(exts.begin(), exts.end(), ext) != exts.end()) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());  // directory order is not deterministic
  return out;
}

// Keeps lines mostly in the forget language's script that are not also English
// text (translated help pages fall back to English line by line).
std::string forget_lines(const std::string& text, const std::vector<CodePointRange>& script, double share,
                         const std::set<std::string>& english_lines) {
  std::istringstream in(text);
  std::string line, out;
  while (std::getline(in, line))
    if (script_share(line, script) >= share && !english_lines.count(line)) out += line + "\n";
  return out;
}

std::set<std::string> lines_of(const std::string& text) {
  std::set<std::string> s;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) s.insert(line);
  return s;
}

// Drops lines seen before in the same corpus (help-page boilerplate), then empty docs.
void dedupe(std::vector<Document>& docs) {
  std::unordered_set<std::string> seen_docs, seen_lines;
  std::vector<Document> kept;
  for (auto& d : docs) {
    if (!seen_docs.insert(d.text).second) continue;
    std::istringstream in(d.text);
    std::string line, out;
    while (std::getline(in, line))
      if (line.size() < 20 || seen_lines.insert(line).second) out += line + "\n";
    if (out.find_first_not_of(" \n") != std::string::npos) kept.push_back({d.source, out});
  }
  docs.swap(kept);
}

void cap_bytes(std::vector<Document>& docs, int64_t cap) {
  if (cap <= 0) return;
  int64_t total = 0;
  size_t n = 0;
  while (n < docs.size() && total < cap) total += int64_t(docs[n++].text.size());
  docs.resize(n);
}

// The inputs recorded by data/fetch: one "package<TAB>version<TAB>sha256<TAB>registry" line each.
std::string fetched_inputs_json(const std::string& sources) {
  std::string path = join_path(fs::path(sources).parent_path().string(), "fetched.tsv");
  std::string items;
  if (!file_exists(path)) return "[]";
  std::istringstream in(read_file(path));
  std::string line;
  while (std::getline(in, line)) {
    auto f = split_list(line, '\t');
    if (f.size() < 4) continue;
    JsonObject o;
    o.add("package", f[0]).add("version", f[1]).add("sha256", f[2]).add("registry", f[3]);
    items += (items.empty() ? "" : ", ") + o.str();
  }
  return "[" + items + "]";
}

// Every path a preparation reads: none of them may be inside its output.
std::vector<std::string> input_paths(const DataConfig& d) {
  std::vector<std::string> paths = {d.sources, d.tokenizer, d.forget_mcq, d.retain_mcq};
  for (auto& list : {d.english_dirs, d.forget_dirs})
    for (auto& entry : split_list(list)) paths.push_back(corpus_path(entry));
  return paths;
}

// The scored arithmetic sets, tokenized. The answer's tokens are those the
// whole text adds to the prompt's: what a model that was trained on such texts
// must produce after the prompt.
std::map<ProblemSet, std::vector<EvalPrompt>> tokenized_eval_sets(const TextTokenizer& tok) {
  std::map<ProblemSet, std::vector<EvalPrompt>> sets;
  for (ProblemSet set : kScoredSets)
    for (Op op : {Op::Add, Op::Sub, Op::Mul, Op::Div})
      for (auto& p : eval_problems(op, set, kEvalPromptsPerFormat, kEvalProblemSeed)) {
        auto prompt = tok.encode(p.prompt), whole = tok.encode(p.text());
        UNDO_CHECK(whole.size() > prompt.size() && std::equal(prompt.begin(), prompt.end(), whole.begin()),
                   "the tokenizer splits '", p.text(), "' across the prompt's end: no answer tokens to score");
        sets[set].push_back({p, prompt, std::vector<int>(whole.begin() + long(prompt.size()), whole.end())});
      }
  return sets;
}

}  // namespace

std::vector<Document> collect_english(const DataConfig& cfg) {
  std::vector<Document> docs;
  // Quotations and sayings: one document per fortune file, "%" lines separate entries.
  for (auto& f : files_under(join_path(cfg.sources, "fortunes/usr/share/games/fortunes"), {""})) {
    std::string text = read_file(f), out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out += (line == "%" ? std::string() : line) + "\n";
    docs.push_back({"fortunes", tidy_text(out)});
  }
  std::vector<Document> prose;
  for (auto& f : files_under(join_path(cfg.sources, "debian-reference-en/usr/share/doc/debian-reference-en"), {".html"}))
    prose.push_back({"debian-reference-en", html_to_text(read_file(f))});
  // The Python documentation's prose (tutorial, HOWTOs, FAQ, what's new), not its API reference.
  for (auto part : {"tutorial", "howto", "faq", "whatsnew"})
    for (auto& f : files_under(join_path(cfg.sources, std::string("python3.11-doc/usr/share/doc/python3.11/html/") + part),
                               {".html"}))
      prose.push_back({"python3.11-doc", html_to_text(read_file(f))});
  for (auto& f : files_under(join_path(cfg.sources, "libreoffice-help-en-us/usr/share/libreoffice/help/en-US"),
                             {".html"}))
    prose.push_back({"libreoffice-help-en-us", html_to_text(read_file(f))});
  dedupe(prose);  // navigation and help-page boilerplate
  docs.insert(docs.end(), prose.begin(), prose.end());
  add_corpora(cfg.english_dirs, cfg.jsonl_field, docs);
  return docs;
}

std::vector<Document> collect_forget_language(const DataConfig& cfg, const std::vector<Document>& english) {
  auto script = parse_code_point_ranges("data.forget_script", cfg.forget_script);
  std::set<std::string> english_lines;
  for (auto& d : english)
    for (auto& line : lines_of(d.text)) english_lines.insert(line);
  std::vector<Document> docs;
  for (auto& source : split_list(cfg.forget_sources)) {
    // PACKAGE/PATH: a package that data/fetch unpacked, and where its text is.
    std::string package = source.substr(0, source.find('/'));
    std::string dir = join_path(cfg.sources, source);
    for (auto& f : files_under(dir, {})) {
      // HTML and XML by their extension; any other file is plain text unless it
      // is binary (fortune files are named like "2001.03", their indexes ".dat").
      auto ext = fs::path(f).extension().string();
      std::string raw = read_file(f);
      if (raw.find('\0') != std::string::npos) continue;
      std::string text = ext == ".page" || ext == ".xml"                    ? xml_to_text(raw)
                         : ext == ".html" || ext == ".htm" || ext == ".xhtml" ? html_to_text(raw)
                                                                            : raw;
      docs.push_back({package, forget_lines(text, script, cfg.forget_script_share, english_lines)});
    }
  }
  dedupe(docs);
  add_corpora(cfg.forget_dirs, cfg.jsonl_field, docs);
  cap_bytes(docs, cfg.max_text_bytes);
  return docs;
}

bool prepare_data(const Config& cfg) {
  const DataConfig& d = cfg.data;
  // Everything that determines the output, hashed: a re-run with the same key is skipped.
  std::ostringstream key;
  key << kManifestVersion << '|' << d.setting << '|' << d.sources << '|' << d.english_dirs << '|' << d.forget_language
      << '|' << d.forget_script << '|' << format_double(d.forget_script_share) << '|' << d.forget_sources << '|'
      << d.forget_dirs << '|'
      << d.tokenizer_vocab << '|' << format_double(d.val_fraction) << '|' << d.arith_problems << '|'
      << d.max_text_bytes << '|' << cfg.run.seed << '|' << fetched_inputs_json(d.sources);
  // A model's tokenizer (data.tokenizer) by its file's sha256, so that another
  // tokenizer at the same path prepares again (undo's own leaves earlier keys as they were).
  if (!d.tokenizer.empty()) key << '|' << sha256_file(find_tokenizer_file(d.tokenizer));
  // The user's corpora by their files' content (corpus_files.h), and the JSONL
  // text field where one is read: an edited corpus at the same path prepares
  // again. (A preparation without them keeps the key it had.)
  if (!d.english_dirs.empty() || !d.forget_dirs.empty())
    key << "|corpora|" << d.jsonl_field << '|' << corpora_fingerprint(d.english_dirs) << '|'
        << corpora_fingerprint(d.forget_dirs);
  for (auto* questions : {&d.forget_mcq, &d.retain_mcq})
    if (!questions->empty()) key << "|mcq|" << *questions << '|' << sha256_file(*questions);
  std::string prep_key = sha256_hex(key.str().data(), key.str().size());
  std::string manifest_path = join_path(d.dir, "manifest.json");
  if (file_exists(manifest_path) && read_file(manifest_path).find(prep_key) != std::string::npos) {
    // The same inputs, but is the output still what the manifest says? A
    // damaged preparation (a bad shard, a swapped tokenizer) is made again.
    auto problem = prepared_data_problem(d.dir, /*shards=*/true);
    if (problem.empty()) {
      std::cerr << "data: " << d.dir << " is already prepared with these inputs (key " << prep_key.substr(0, 12)
                << "), skipping\n";
      return false;
    }
    std::cerr << "data: " << d.dir << " is damaged (" << problem << "); preparing it again\n";
  }
  if (d.setting == "lang") {  // bad settings stop here, before anything is written
    bool plain = !d.forget_language.empty() &&
                 std::all_of(d.forget_language.begin(), d.forget_language.end(),
                             [](char c) { return std::islower(static_cast<unsigned char>(c)) || c == '_'; });
    UNDO_INPUT_CHECK(plain && d.forget_language != "english", "data.forget_language = '", d.forget_language,
                     "': a stream name of lowercase letters, other than english");
    parse_code_point_ranges("data.forget_script", d.forget_script);
  }
  check_mcq_metrics(d);
  // The preparation is made whole in a private directory and swapped in at the
  // end (core/owned_output.h): a cut run or a concurrent one never leaves half
  // of one, only an earlier preparation is replaced, and a user's files placed
  // in it stay. Its inputs are never inside it.
  check_output_is_not_an_input("data.dir", d.dir, input_paths(d));
  OutputDirectory output("data.dir", d.dir);
  const std::string out = output.staging();

  // 1. Documents per stream.
  std::map<std::string, std::vector<Document>> streams;
  auto english = collect_english(d);
  if (d.setting == "lang") {
    streams[d.forget_language] = collect_forget_language(d, english);
    UNDO_INPUT_CHECK(!streams[d.forget_language].empty(), "no ", d.forget_language,
                     " text in data.forget_sources = '", d.forget_sources, "' under data.sources = '", d.sources,
                     "' (run data/fetch with those packages) and none in data.forget_dirs");
    UNDO_INPUT_CHECK(!english.empty(), "no English text under data.sources = '", d.sources, "'");
  } else {
    for (auto [name, ops] : {std::pair<const char*, std::vector<Op>>{"addsub", {Op::Add, Op::Sub}},
                             {"muldiv", {Op::Mul, Op::Div}}}) {
      auto& docs = streams[name];
      std::vector<std::vector<Problem>> per_op;
      for (Op op : ops) per_op.push_back(training_problems(op, d.arith_problems, uint64_t(cfg.run.seed)));
      for (int i = 0; i < d.arith_problems; ++i)
        for (auto& problems : per_op) docs.push_back({"arithmetic", problems[size_t(i)].text()});
    }
  }
  cap_bytes(english, d.max_text_bytes);
  if (!english.empty())
    streams["english"] = std::move(english);
  else
    std::cerr << "data: warning: no English text found (data.sources/data.english_dirs); the arith "
                 "setting will have only the arithmetic streams\n";

  // 2. Train/val/test split by document, deterministic in the seed: a share
  // val_fraction of the documents for validation (selection), as many again for
  // test (the reported figures).
  std::map<std::string, std::vector<std::string>> split_text;  // "<stream>.<split>" -> docs
  for (auto& [name, docs] : streams) {
    for (size_t i = 0; i < docs.size(); ++i) {
      uint64_t h = splitmix64(uint64_t(cfg.run.seed) ^ splitmix64(i + 1));
      const double u = double(h >> 11) * 0x1.0p-53;
      split_text[name + (u < d.val_fraction ? ".val" : u < 2 * d.val_fraction ? ".test" : ".train")].push_back(docs[i].text);
    }
    // Every stream needs every split: move a training document over where one came out empty.
    for (auto split : {".val", ".test"}) {
      auto& mine = split_text[name + split];
      auto& train = split_text[name + ".train"];
      if (mine.empty() && train.size() > 1) mine.push_back(train.back()), train.pop_back();
    }
  }
  // Arithmetic validation and test streams: their problem sets' operands and
  // held-out templates only (data/arithmetic.h).
  if (d.setting == "arith") {
    int n_val = std::max(200, int(d.arith_problems * d.val_fraction));
    for (auto [name, ops] : {std::pair<const char*, std::vector<Op>>{"addsub", {Op::Add, Op::Sub}},
                             {"muldiv", {Op::Mul, Op::Div}}})
      for (auto [split, set] : {std::pair{".val", ProblemSet::Validation}, {".test", ProblemSet::Test}}) {
        auto& docs = split_text[std::string(name) + split];
        docs.clear();
        // One document per problem, as in training.
        for (Op op : ops)
          for (auto& p : drawn_problems(op, set, n_val, ~uint64_t(cfg.run.seed))) docs.push_back(p.text());
      }
  }

  // 3. Tokenizer, trained on (a sample of) the training documents of every stream.
  std::string corpus_path = join_path(out, "tokenizer_corpus.txt");
  {
    std::ofstream corpus(corpus_path, std::ios::binary);
    const size_t per_stream_cap = 16u << 20;
    for (auto& [name, docs] : split_text) {
      if (name.find(".train") == std::string::npos) continue;
      size_t written = 0;
      for (auto& t : docs) {
        if (written > per_stream_cap) break;
        corpus << t << '\n';
        written += t.size();
      }
    }
  }
  // Or a model's own tokenizer (data.tokenizer), copied in with the files
  // an export hands on beside it.
  std::unique_ptr<TextTokenizer> model_tok;
  if (d.tokenizer.empty()) {
    std::string prefix = join_path(out, "tokenizer");
    SpmTokenizer::train(corpus_path, prefix, d.tokenizer_vocab, uint64_t(cfg.run.seed));
    fs::remove(prefix + ".vocab");
    model_tok = std::make_unique<SpmTokenizer>(prefix + ".model");
  } else {
    const std::string file = find_tokenizer_file(d.tokenizer);
    model_tok = open_text_tokenizer(file);
    fs::copy_file(file, join_path(out, model_tok->file_name()));
    for (const char* extra : kTokenizerCompanions) {
      auto beside = fs::path(file).parent_path() / extra;
      if (fs::exists(beside)) fs::copy_file(beside, join_path(out, extra));
    }
  }
  fs::remove(corpus_path);
  const TextTokenizer& tok = *model_tok;
  const std::string tokenizer_name = tok.file_name();
  // What the LibTorch processes need in place of the tokenizer: the decoding
  // table, and the evaluation prompts already tokenized.
  Vocabulary(tok.pieces(), tok.eos_id(), tok.strips_leading_space()).write(join_path(out, "vocab.bin"));
  if (d.setting == "arith") write_eval_prompts(join_path(out, "eval_prompts.jsonl"), tokenized_eval_sets(tok));
  write_mcq_metrics(d, uint64_t(cfg.run.seed), tok, out);

  // 4. Token shards, with one progress line over every stream's documents.
  JsonObject stream_json;
  int64_t all_docs = 0, docs_done = 0;
  for (auto& [name, docs] : split_text) all_docs += int64_t(docs.size());
  ProgressLine progress("data: tokenizing", all_docs, "documents");
  for (auto& [name, docs] : split_text) {
    std::vector<uint32_t> tokens;
    size_t bytes = 0;
    for (auto& t : docs) {
      progress.update(docs_done++);
      // Each document as transformers encodes it with its special tokens (a
      // <bos> first, for Gemma and Llama 2), then the separator.
      if (tok.bos_id() >= 0) tokens.push_back(uint32_t(tok.bos_id()));
      for (int id : tok.encode(t)) tokens.push_back(uint32_t(id));
      tokens.push_back(uint32_t(tok.eos_id()));
      bytes += t.size();
    }
    progress.update(docs_done);
    write_shard(join_path(out, name + ".bin"), tokens, uint32_t(tok.vocab_size()));
    JsonObject s;
    s.add("documents", uint64_t(docs.size())).add("bytes", uint64_t(bytes)).add("tokens", uint64_t(tokens.size()));
    stream_json.add(name, s);
    std::cerr << "data: " << name << ": " << docs.size() << " documents, " << bytes << " bytes, "
              << tokens.size() << " tokens\n";
  }

  // 5. Manifest, last: its presence marks a complete preparation.
  JsonObject m;
  m.add("format_version", kManifestVersion)
      .add("prepare_key", prep_key)
      .add("setting", d.setting)
      .add("seed", int64_t(cfg.run.seed))
      .add("tokenizer", tokenizer_name)
      .add("tokenizer_sha256", sha256_file(join_path(out, tokenizer_name)))
      .add("vocab", "vocab.bin")
      .add("vocab_sha256", sha256_file(join_path(out, "vocab.bin")))
      .add("vocab_size", tok.vocab_size())
      .add("eos_id", tok.eos_id())
      .add("bos_id", tok.bos_id())
      .add_raw("inputs", fetched_inputs_json(d.sources))
      .add("english_dirs", d.english_dirs)
      .add("streams", stream_json);
  write_file_atomic(join_path(out, "manifest.json"), m.str() + "\n");
  output.commit();
  return true;
}

}  // namespace undo
