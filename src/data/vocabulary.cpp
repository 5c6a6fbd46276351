#include "data/vocabulary.h"

#include <cstring>

#include "core/error.h"
#include "core/fs.h"
#include "core/sha256.h"

namespace undo {
namespace {

constexpr char kMagic[8] = {'U', 'N', 'D', 'O', 'V', 'O', 'C', 'B'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeader = 8 + 4 * 4 + 32;
constexpr uint32_t kStripLeadingSpace = 1;
constexpr uint32_t kMaxPieces = 1u << 24;  // far above any vocabulary; bounds what a bad file can ask for

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
template <typename T>
T get(const std::string& in, size_t& at, const std::string& path) {
  UNDO_INPUT_CHECK(at + sizeof(T) <= in.size(), "vocabulary '", path, "' is truncated at byte ", at);
  T v;
  std::memcpy(&v, in.data() + at, sizeof v);
  at += sizeof v;
  return v;
}

}  // namespace

Vocabulary::Vocabulary(std::vector<VocabPiece> pieces, int eos_id, bool strip_leading_space)
    : pieces_(std::move(pieces)), eos_id_(eos_id), strip_leading_space_(strip_leading_space) {
  UNDO_CHECK(eos_id_ >= 0 && eos_id_ < size(), "eos id ", eos_id_, " outside a vocabulary of ", size());
}

Vocabulary::Vocabulary(const std::string& path) {
  UNDO_INPUT_CHECK(file_exists(path), "vocabulary '", path, "' is missing (prepare the data again: `undo data prepare`)");
  std::string file = read_file(path);
  UNDO_INPUT_CHECK(file.size() >= kHeader && std::memcmp(file.data(), kMagic, 8) == 0, "'", path,
                   "' is not an undo vocabulary (bad magic or truncated header)");
  size_t at = 8;
  uint32_t version = get<uint32_t>(file, at, path), n = get<uint32_t>(file, at, path);
  uint32_t eos = get<uint32_t>(file, at, path), flags = get<uint32_t>(file, at, path);
  UNDO_INPUT_CHECK(version == kVersion, "vocabulary '", path, "' has format version ", version, ", expected ", kVersion);
  UNDO_INPUT_CHECK(n > 0 && n <= kMaxPieces && eos < n, "vocabulary '", path, "': ", n, " pieces with eos id ", eos,
                   " is not a vocabulary");
  UNDO_INPUT_CHECK(sha256_hex(file.data() + kHeader, file.size() - kHeader) ==
                       to_hex(reinterpret_cast<const uint8_t*>(file.data()) + at, 32),
                   "vocabulary '", path, "' fails its checksum: the file is corrupted");
  at = kHeader;
  pieces_.resize(n);
  for (auto& p : pieces_) {
    auto kind = get<uint8_t>(file, at, path);
    UNDO_INPUT_CHECK(kind <= uint8_t(PieceKind::Unknown), "vocabulary '", path, "': piece kind ", int(kind));
    auto len = get<uint32_t>(file, at, path);
    UNDO_INPUT_CHECK(len <= file.size() - at, "vocabulary '", path, "' is truncated at byte ", at);
    p.kind = PieceKind(kind);
    p.bytes = file.substr(at, len);
    at += len;
  }
  UNDO_INPUT_CHECK(at == file.size(), "vocabulary '", path, "' has ", file.size() - at, " bytes after its last piece");
  eos_id_ = int(eos);
  strip_leading_space_ = flags & kStripLeadingSpace;
}

void Vocabulary::write(const std::string& path) const {
  std::string body;
  for (auto& p : pieces_) {
    put(body, uint8_t(p.kind));
    put(body, uint32_t(p.bytes.size()));
    body += p.bytes;
  }
  std::string out(kMagic, 8);
  put(out, kVersion);
  put(out, uint32_t(pieces_.size()));
  put(out, uint32_t(eos_id_));
  put(out, strip_leading_space_ ? kStripLeadingSpace : 0u);
  Sha256 h;
  h.update(body);
  auto d = h.digest();
  out.append(reinterpret_cast<const char*>(d.data()), d.size());
  write_file_atomic(path, out + body);
}

std::string Vocabulary::decode(const std::vector<int>& ids) const {
  std::string out;
  bool first = true;  // sentencepiece drops the dummy-prefix space of the first visible piece only
  for (int id : ids) {
    UNDO_CHECK(id >= 0 && id < size(), "token id ", id, " outside the vocabulary of ", size());
    const auto& p = pieces_[size_t(id)];
    if (p.kind == PieceKind::Control) continue;
    std::string_view s = p.bytes;
    if (first && strip_leading_space_ && p.kind == PieceKind::Text && !s.empty() && s[0] == ' ') s.remove_prefix(1);
    first = false;
    out += s;
  }
  return out;
}

}  // namespace undo
