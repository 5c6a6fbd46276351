#include "prepare/spm_tokenizer.h"

#include <algorithm>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include "core/error.h"

// Exported by libsentencepiece but not declared in its installed headers.
namespace sentencepiece {
void SetRandomGeneratorSeed(unsigned int seed);
namespace logging {
void SetMinLogLevel(int level);
}
}  // namespace sentencepiece

namespace undo {

struct SpmTokenizer::Impl {
  sentencepiece::SentencePieceProcessor sp;
  int bos = -1;
};

SpmTokenizer::SpmTokenizer(const std::string& model_path, bool add_bos) : impl_(std::make_unique<Impl>()) {
  auto st = impl_->sp.Load(model_path);
  UNDO_INPUT_CHECK(st.ok(), "cannot load tokenizer '", model_path, "': ", st.ToString());
  if (add_bos) {
    impl_->bos = impl_->sp.bos_id();
    UNDO_INPUT_CHECK(impl_->bos >= 0, model_path, ": tokenizer_config.json asks for add_bos_token, but the model "
                     "has no <s>");
  }
}
SpmTokenizer::~SpmTokenizer() = default;

std::vector<int> SpmTokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  auto st = impl_->sp.Encode(text, &ids);
  UNDO_CHECK(st.ok(), "tokenizer encode failed: ", st.ToString());
  return ids;
}

std::string SpmTokenizer::decode(const std::vector<int>& ids) const {
  std::string text;
  auto st = impl_->sp.Decode(ids, &text);
  UNDO_CHECK(st.ok(), "tokenizer decode failed: ", st.ToString());
  return text;
}

int SpmTokenizer::vocab_size() const { return impl_->sp.GetPieceSize(); }
int SpmTokenizer::eos_id() const { return impl_->sp.eos_id(); }
int SpmTokenizer::bos_id() const { return impl_->bos; }

std::vector<VocabPiece> SpmTokenizer::pieces() const {
  static const std::string kSpace = "\xE2\x96\x81";  // U+2581, sentencepiece's visible space
  std::vector<VocabPiece> out(static_cast<size_t>(vocab_size()));
  for (int id = 0; id < vocab_size(); ++id) {
    auto& p = out[size_t(id)];
    const std::string& piece = impl_->sp.IdToPiece(id);
    if (impl_->sp.IsControl(id)) {
      p.kind = PieceKind::Control;
    } else if (impl_->sp.IsUnknown(id)) {
      p.kind = PieceKind::Unknown;
      p.bytes = " \xE2\x81\x87 ";  // sentencepiece's default surface for <unk>
    } else if (impl_->sp.IsByte(id)) {
      p.kind = PieceKind::Byte;  // "<0xAB>"
      UNDO_CHECK(piece.size() == 6 && piece.rfind("<0x", 0) == 0, "unexpected byte piece '", piece, "'");
      p.bytes = std::string(1, char(std::stoi(piece.substr(3, 2), nullptr, 16)));
    } else {
      for (size_t i = 0; i < piece.size();) {
        if (piece.compare(i, kSpace.size(), kSpace) == 0) {
          p.bytes += ' ';
          i += kSpace.size();
        } else {
          p.bytes += piece[i++];
        }
      }
    }
  }
  return out;
}

void SpmTokenizer::train(const std::string& corpus_path, const std::string& model_prefix, int vocab_size,
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
  sentencepiece::logging::SetMinLogLevel(1);  // warnings and errors only: the trainer's progress is pages long
  sentencepiece::SetRandomGeneratorSeed(unsigned(seed % 2147483647));  // sentence sampling and shuffling
  auto st = sentencepiece::SentencePieceTrainer::Train(args);
  // A vocabulary too small for the corpus's characters is the user's setting, not a fault.
  const std::string why = st.ok() ? "" : st.ToString();
  UNDO_INPUT_CHECK(why.find("smaller than required_chars") == std::string::npos, "data.tokenizer_vocab = ",
                   vocab_size, " is too small for the corpus's characters (sentencepiece: ",
                   why.substr(std::min(why.size(), why.find("Vocabulary size"))), "): raise it");
  UNDO_CHECK(st.ok(), "tokenizer training failed: ", st.ToString());
}

}  // namespace undo
