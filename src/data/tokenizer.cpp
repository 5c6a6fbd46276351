#include "data/tokenizer.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>

#include "core/error.h"

namespace undo {
namespace {

// The sentencepiece shim (src/spm_shim), loaded once with its symbols kept
// local: see the comment there for why it cannot be linked directly.
struct SpmApi {
  void* (*load)(const char*, char*, int);
  void (*free_model)(void*);
  int (*encode)(void*, const char*, size_t, int**, size_t*);
  int (*decode)(void*, const int*, size_t, char**, size_t*);
  void (*free_buffer)(void*);
  int (*vocab_size)(void*);
  int (*eos_id)(void*);
  int (*train)(const char*, unsigned, char*, int);
};

std::string shim_path() {
  if (const char* env = std::getenv("UNDO_SPM_SHIM")) return env;
  // Next to the running executable (build/ or an install prefix), else the build tree.
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  for (auto dir : {exe.parent_path(), exe.parent_path().parent_path()}) {
    auto p = dir / "libundo_spm.so";
    if (!ec && std::filesystem::exists(p)) return p.string();
  }
  return UNDO_SPM_SHIM_PATH;
}

const SpmApi& api() {
  static const SpmApi a = [] {
    std::string path = shim_path();
    void* lib = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    UNDO_CHECK(lib, "cannot load the sentencepiece shim '", path, "': ", ::dlerror());
    auto sym = [&](const char* name) {
      void* s = ::dlsym(lib, name);
      UNDO_CHECK(s, "sentencepiece shim lacks ", name);
      return s;
    };
    SpmApi r;
    r.load = reinterpret_cast<decltype(r.load)>(sym("undo_spm_load"));
    r.free_model = reinterpret_cast<decltype(r.free_model)>(sym("undo_spm_free"));
    r.encode = reinterpret_cast<decltype(r.encode)>(sym("undo_spm_encode"));
    r.decode = reinterpret_cast<decltype(r.decode)>(sym("undo_spm_decode"));
    r.free_buffer = reinterpret_cast<decltype(r.free_buffer)>(sym("undo_spm_free_buffer"));
    r.vocab_size = reinterpret_cast<decltype(r.vocab_size)>(sym("undo_spm_vocab_size"));
    r.eos_id = reinterpret_cast<decltype(r.eos_id)>(sym("undo_spm_eos_id"));
    r.train = reinterpret_cast<decltype(r.train)>(sym("undo_spm_train"));
    return r;
  }();
  return a;
}

}  // namespace

struct Tokenizer::Impl {
  void* model = nullptr;
  int vocab = 0, eos = 0;
  ~Impl() {
    if (model) api().free_model(model);
  }
};

Tokenizer::Tokenizer(const std::string& model_path) : impl_(std::make_unique<Impl>()) {
  char err[512] = "";
  impl_->model = api().load(model_path.c_str(), err, sizeof err);
  UNDO_INPUT_CHECK(impl_->model, "cannot load tokenizer '", model_path, "': ", err);
  impl_->vocab = api().vocab_size(impl_->model);
  impl_->eos = api().eos_id(impl_->model);
}
Tokenizer::~Tokenizer() = default;

std::vector<int> Tokenizer::encode(const std::string& text) const {
  int* ids = nullptr;
  size_t n = 0;
  UNDO_CHECK(api().encode(impl_->model, text.data(), text.size(), &ids, &n) == 0, "tokenizer encode failed");
  std::vector<int> out(ids, ids + n);
  api().free_buffer(ids);
  return out;
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  char* text = nullptr;
  size_t n = 0;
  UNDO_CHECK(api().decode(impl_->model, ids.data(), ids.size(), &text, &n) == 0, "tokenizer decode failed");
  std::string out(text, n);
  api().free_buffer(text);
  return out;
}

int Tokenizer::vocab_size() const { return impl_->vocab; }
int Tokenizer::eos_id() const { return impl_->eos; }

void Tokenizer::train(const std::string& corpus_path, const std::string& model_prefix, int vocab_size,
                      uint64_t seed) {
  std::string args = "--input=" + corpus_path + " --model_prefix=" + model_prefix +
                     " --vocab_size=" + std::to_string(vocab_size) +
                     " --model_type=bpe --split_digits=true --byte_fallback=true"
                     " --character_coverage=0.9995 --hard_vocab_limit=false"
                     " --input_sentence_size=2000000 --shuffle_input_sentence=true"
                     " --max_sentence_length=8192 --num_threads=1"
                     // Keep text exactly: the default NFKC rule turns newlines into spaces
                     // and collapses whitespace, which loses the documents' line structure.
                     " --normalization_rule_name=identity --remove_extra_whitespaces=false"
                     " --allow_whitespace_only_pieces=true --split_by_whitespace=true";
  char err[1024] = "";
  int rc = api().train(args.c_str(), unsigned(seed % 2147483647), err, sizeof err);
  UNDO_CHECK(rc == 0, "tokenizer training failed: ", err);
}

}  // namespace undo
