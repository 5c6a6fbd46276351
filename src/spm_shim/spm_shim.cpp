// A C interface over sentencepiece, built as a module that undo loads with
// dlopen(RTLD_LOCAL | RTLD_DEEPBIND). libsentencepiece exports its own bundled
// copy of protobuf; linked normally, those symbols interpose on the libprotobuf
// that LibTorch loads and the process crashes during static initialisation.
// Kept local, each library resolves to its own protobuf.
//
// One consequence: with RTLD_DEEPBIND sentencepiece binds to libstdc++'s own
// std::cerr, not the executable's copy-relocated (initialised) one, so any
// log line would crash. Logging is therefore switched off here; errors still
// come back through sentencepiece's Status values.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

// Exported by libsentencepiece but not declared in its installed headers.
namespace sentencepiece {
void SetRandomGeneratorSeed(unsigned int seed);
namespace logging {
void SetMinLogLevel(int level);
}
}  // namespace sentencepiece

namespace {
// Runs when the module is loaded, before any sentencepiece call.
const bool kQuiet = (sentencepiece::logging::SetMinLogLevel(100), true);

void set_error(const std::string& msg, char* err, int errlen) {
  if (err && errlen > 0) {
    std::strncpy(err, msg.c_str(), size_t(errlen - 1));
    err[errlen - 1] = '\0';
  }
}
}  // namespace

extern "C" {

__attribute__((visibility("default"))) void* undo_spm_load(const char* path, char* err, int errlen) {
  auto* sp = new sentencepiece::SentencePieceProcessor();
  auto st = sp->Load(path);
  if (!st.ok()) {
    set_error(st.ToString(), err, errlen);
    delete sp;
    return nullptr;
  }
  return sp;
}

__attribute__((visibility("default"))) void undo_spm_free(void* h) {
  delete static_cast<sentencepiece::SentencePieceProcessor*>(h);
}

__attribute__((visibility("default"))) int undo_spm_encode(void* h, const char* text, size_t len, int** ids,
                                                           size_t* n) {
  std::vector<int> out;
  auto st = static_cast<sentencepiece::SentencePieceProcessor*>(h)->Encode(std::string(text, len), &out);
  if (!st.ok()) return 1;
  *n = out.size();
  *ids = static_cast<int*>(std::malloc(sizeof(int) * (out.size() + 1)));
  std::memcpy(*ids, out.data(), sizeof(int) * out.size());
  return 0;
}

__attribute__((visibility("default"))) int undo_spm_decode(void* h, const int* ids, size_t n, char** text,
                                                           size_t* len) {
  std::string out;
  auto st = static_cast<sentencepiece::SentencePieceProcessor*>(h)->Decode(std::vector<int>(ids, ids + n), &out);
  if (!st.ok()) return 1;
  *len = out.size();
  *text = static_cast<char*>(std::malloc(out.size() + 1));
  std::memcpy(*text, out.data(), out.size());
  return 0;
}

__attribute__((visibility("default"))) void undo_spm_free_buffer(void* p) { std::free(p); }

__attribute__((visibility("default"))) int undo_spm_vocab_size(void* h) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(h)->GetPieceSize();
}

__attribute__((visibility("default"))) int undo_spm_eos_id(void* h) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(h)->eos_id();
}

__attribute__((visibility("default"))) int undo_spm_train(const char* args, unsigned seed, char* err, int errlen) {
  sentencepiece::SetRandomGeneratorSeed(seed);  // sentence sampling and shuffling
  auto st = sentencepiece::SentencePieceTrainer::Train(args);
  if (!st.ok()) {
    set_error(st.ToString(), err, errlen);
    return 1;
  }
  return 0;
}

}  // extern "C"
