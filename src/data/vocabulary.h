// The decoding table of a prepared data directory (DATA/vocab.bin): token id ->
// the bytes it stands for, written by `undo data prepare` from the tokenizer.
// Every process with LibTorch decodes through this, never through sentencepiece
// (see prepare/spm_tokenizer.h for why), and it decodes exactly as
// sentencepiece does for the text that a model can emit: pieces concatenate,
// U+2581 is a space, byte-fallback pieces are raw bytes, control pieces are
// empty, and the leading space of the first piece is dropped (sentencepiece's
// dummy prefix).
//
// File layout (little-endian), checksummed like every binary undo writes:
//   char[8] "UNDOVOCB", u32 version, u32 n_pieces, u32 eos_id, u32 flags,
//   u8[32] sha256(body), body: n_pieces x { u8 kind, u32 n_bytes, bytes }
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace undo {

enum class PieceKind : uint8_t { Text = 0, Control = 1, Byte = 2, Unknown = 3 };

struct VocabPiece {
  PieceKind kind = PieceKind::Text;
  std::string bytes;  // what the piece decodes to (spaces already in place)
};

class Vocabulary {
 public:
  // Reads and verifies PATH; a bad file is an InputError naming it.
  explicit Vocabulary(const std::string& path);
  Vocabulary(std::vector<VocabPiece> pieces, int eos_id, bool strip_leading_space);

  void write(const std::string& path) const;  // atomically
  std::string decode(const std::vector<int>& ids) const;
  int size() const { return int(pieces_.size()); }
  int eos_id() const { return eos_id_; }
  const std::vector<VocabPiece>& pieces() const { return pieces_; }

 private:
  std::vector<VocabPiece> pieces_;
  int eos_id_ = 0;
  bool strip_leading_space_ = true;
};

}  // namespace undo
