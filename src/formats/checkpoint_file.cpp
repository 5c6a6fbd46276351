#include "formats/checkpoint_file.h"

#include <array>
#include <cstring>
#include <limits>
#include <sstream>

#include "core/error.h"
#include "core/sha256.h"

namespace undo {
namespace {

constexpr char kMagic[8] = {'U', 'N', 'D', 'O', 'C', 'K', 'P', 'T'};
constexpr size_t kHeader = 8 + 4 + 4 + 8 + 32;

}  // namespace

void carry_origin(const CheckpointMeta& from, CheckpointMeta& to) {
  for (auto& [key, value] : from.extra)
    if (key.rfind("hf.", 0) == 0) to.extra[key] = value;
}

std::string checkpoint_meta_text(const CheckpointMeta& m, const std::string& libtorch) {
  std::ostringstream os;
  const auto& c = m.model;
  os << "stage=" << m.stage << "\nstep=" << m.step << "\nvocab_size=" << c.vocab_size << "\nd_model=" << c.d_model
     << "\nn_layers=" << c.n_layers << "\nn_heads=" << c.n_heads << "\nd_ff=" << c.d_ff << "\nseq_len=" << c.seq_len
     << "\nsoftcap=" << format_double(c.softcap) << "\nrope_theta=" << format_double(c.rope_theta)
     << "\nnorm_eps=" << format_double(c.norm_eps) << "\nactivation=" << c.activation
     << "\nn_kv_heads=" << c.n_kv_heads << "\nhead_dim=" << c.head_dim
     << "\nattn_softcap=" << format_double(c.attn_softcap) << "\nquery_scale=" << format_double(c.query_scale)
     << "\nrope_scaling=" << c.rope_scaling << "\ntied_embeddings=" << c.tied_embeddings
     << "\nembed_scale=" << c.embed_scale << "\nqkv_bias=" << c.qkv_bias << "\npost_norms=" << c.post_norms
     << "\nsliding_window=" << c.sliding_window << "\nfull_attention_every=" << c.full_attention_every
     << "\nlibtorch=" << (m.libtorch.empty() ? libtorch : m.libtorch) << "\n";
  for (auto& [k, v] : m.extra) os << "x." << k << "=" << v << "\n";
  return os.str();
}

CheckpointMeta parse_checkpoint_meta(const std::string& text, const std::string& path) {
  std::map<std::string, std::string> kv;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  auto get = [&](const char* k) {
    auto it = kv.find(k);
    UNDO_CHECK(it != kv.end(), "checkpoint '", path, "' lacks meta key ", k);
    return it->second;
  };
  // Every number is parsed whole and range-checked before anything is sized
  // by it: a crafted file with a valid checksum must not divide by zero.
  // Errors of the shared number parsers, with the file named.
  auto in_file = [&](auto parse) {
    try {
      return parse();
    } catch (const InputError& e) {
      throw InputError("checkpoint '" + path + "': " + e.what());
    }
  };
  auto integer = [&](const char* k, int64_t lo, int64_t hi) {
    return in_file([&] { return parse_integer("meta key " + std::string(k), get(k), lo, hi); });
  };
  auto real = [&](const char* k) {
    return in_file([&] { return parse_real("meta key " + std::string(k), get(k), std::numeric_limits<double>::lowest()); });
  };
  CheckpointMeta m;
  m.stage = get("stage");
  m.step = integer("step", 0, std::numeric_limits<int64_t>::max());
  const int64_t kMax = std::numeric_limits<int>::max();
  m.model.vocab_size = int(integer("vocab_size", 0, kMax));
  m.model.d_model = int(integer("d_model", 0, kMax));
  m.model.n_layers = int(integer("n_layers", 0, kMax));
  m.model.n_heads = int(integer("n_heads", 0, kMax));
  m.model.d_ff = int(integer("d_ff", 0, kMax));
  m.model.seq_len = int(integer("seq_len", 0, kMax));
  m.model.softcap = real("softcap");
  m.model.rope_theta = real("rope_theta");
  m.model.norm_eps = real("norm_eps");
  // Keys of the model family came later: a checkpoint without them holds
  // undo's own Gemma-style model, whose activation was stored as gelu=erf|tanh.
  auto has = [&](const char* k) { return kv.count(k) > 0; };
  if (has("activation")) m.model.activation = get("activation");
  else m.model.activation = get("gelu") == "tanh" ? "gelu_tanh" : get("gelu") == "erf" ? "gelu" : get("gelu");
  if (has("n_kv_heads")) {
    m.model.n_kv_heads = int(integer("n_kv_heads", 0, kMax));
    m.model.head_dim = int(integer("head_dim", 0, kMax));
    m.model.attn_softcap = real("attn_softcap");
    m.model.query_scale = real("query_scale");
    m.model.rope_scaling = get("rope_scaling");
    auto flag = [&](const char* k) { return integer(k, 0, 1) == 1; };
    m.model.tied_embeddings = flag("tied_embeddings");
    m.model.embed_scale = flag("embed_scale");
    m.model.qkv_bias = flag("qkv_bias");
    m.model.post_norms = flag("post_norms");
    m.model.sliding_window = int(integer("sliding_window", 0, kMax));
    m.model.full_attention_every = int(integer("full_attention_every", 0, kMax));
  }
  auto problem = model_config_problem(m.model);
  UNDO_INPUT_CHECK(problem.empty(), "checkpoint '", path, "' describes an impossible model: ", problem);
  if (kv.count("libtorch")) m.libtorch = kv["libtorch"];
  for (auto& [k, v] : kv)
    if (k.rfind("x.", 0) == 0) m.extra[k.substr(2)] = v;
  return m;
}

namespace {

constexpr uint64_t kIndexHead = 16;  // u64 block_bytes, u64 block_count

uint64_t align64(uint64_t n) { return (n + 63) / 64 * 64; }

std::string header_of(uint32_t version, uint64_t meta_bytes, uint64_t payload_bytes, const std::array<uint8_t, 32>& digest) {
  std::string header(kHeader, '\0');
  std::memcpy(&header[0], kMagic, 8);
  const uint32_t meta32 = uint32_t(meta_bytes);
  std::memcpy(&header[8], &version, 4);
  std::memcpy(&header[12], &meta32, 4);
  std::memcpy(&header[16], &payload_bytes, 8);
  std::memcpy(&header[24], digest.data(), 32);
  return header;
}

std::array<uint8_t, 32> head_digest(std::string_view meta, std::string_view index) {
  Sha256 h;
  h.update(meta);
  h.update(index);
  return h.digest();
}

// Version 3's index, after the meta: its sizes checked against the file's
// (none may wrap around), the payload placed after it.
void check_block_index(CheckpointFrame& f, const uint8_t* index, uint64_t rest, const std::string& path) {
  UNDO_CHECK(rest >= kIndexHead, "checkpoint '", path, "' is truncated: no room for its block index");
  std::memcpy(&f.block_bytes, index, 8);
  std::memcpy(&f.block_count, index + 8, 8);
  UNDO_CHECK(f.block_bytes > 0 && f.block_count <= (rest - kIndexHead) / 32, "checkpoint '", path,
             "' is truncated or corrupted: its index claims ", f.block_count, " blocks of ", f.block_bytes, " bytes");
  const uint64_t index_bytes = align64(kIndexHead + 32 * f.block_count);
  UNDO_CHECK(index_bytes <= rest && f.payload_bytes == rest - index_bytes, "checkpoint '", path,
             "' is truncated: header and index say ", f.payload_bytes, " payload bytes after ", index_bytes,
             " of index, the file has ", rest, " after the meta");
  const uint64_t blocks = f.payload_bytes / f.block_bytes + (f.payload_bytes % f.block_bytes != 0);
  UNDO_CHECK(blocks == f.block_count, "checkpoint '", path, "': its index has ", f.block_count, " blocks of ",
             f.block_bytes, " bytes for a payload of ", f.payload_bytes);
  f.block_digests = index + kIndexHead;
  f.payload = index + index_bytes;
}

}  // namespace

uint64_t checkpoint_block_bytes(uint64_t payload_bytes) {
  uint64_t block = 4096;
  while (block < (uint64_t(64) << 20) && block * 65536 < payload_bytes) block *= 2;
  return block;
}

BlockHasher::BlockHasher(uint64_t block_bytes, uint64_t payload_bytes)
    : block_bytes_(block_bytes), payload_bytes_(payload_bytes) {
  block_.emplace();
}

void BlockHasher::update(const void* data, size_t n) {
  auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const size_t take = size_t(std::min<uint64_t>(n, block_bytes_ - in_block_));
    block_->update(p, take);
    p += take, n -= take, in_block_ += take, seen_ += take;
    if (in_block_ == block_bytes_ || seen_ == payload_bytes_) {
      auto d = block_->digest();
      digests_.append(reinterpret_cast<const char*>(d.data()), d.size());
      block_.emplace();
      in_block_ = 0;
    }
  }
}

uint64_t BlockHasher::index_bytes() const {
  const uint64_t blocks = payload_bytes_ / block_bytes_ + (payload_bytes_ % block_bytes_ != 0);
  return align64(kIndexHead + 32 * blocks);
}

std::string BlockHasher::index() {
  UNDO_CHECK(seen_ == payload_bytes_, "block index of ", seen_, " of ", payload_bytes_, " payload bytes");
  const uint64_t count = digests_.size() / 32;
  std::string out(kIndexHead, '\0');
  std::memcpy(&out[0], &block_bytes_, 8);
  std::memcpy(&out[8], &count, 8);
  out += digests_;
  out.resize(size_t(index_bytes()), '\0');
  return out;
}

std::string frame_checkpoint(const std::string& meta_text, const std::string& payload, uint32_t version) {
  if (version != kCheckpointBlockChecked) {
    Sha256 h;
    h.update(meta_text);
    h.update(payload);
    return header_of(version, meta_text.size(), payload.size(), h.digest()) + meta_text + payload;
  }
  BlockHasher blocks(checkpoint_block_bytes(payload.size()), payload.size());
  blocks.update(payload.data(), payload.size());
  const std::string index = blocks.index();
  return header_of(version, meta_text.size(), payload.size(), head_digest(meta_text, index)) + meta_text + index +
         payload;
}

CheckpointFrame check_checkpoint_frame(const uint8_t* file, size_t size, const std::string& path) {
  UNDO_CHECK(size >= kHeader, "checkpoint '", path, "' is truncated (", size, " bytes)");
  UNDO_CHECK(std::memcmp(file, kMagic, 8) == 0, "'", path, "' is not an undo checkpoint (bad magic)");
  CheckpointFrame f;
  f.file_bytes = size;
  uint32_t meta_bytes;
  std::memcpy(&f.version, file + 8, 4);
  std::memcpy(&meta_bytes, file + 12, 4);
  std::memcpy(&f.payload_bytes, file + 16, 8);
  UNDO_CHECK(f.version >= kCheckpointTorchArchive && f.version <= kCheckpointBlockChecked, "checkpoint '", path,
             "' has format version ", f.version, ", expected ", kCheckpointTorchArchive, " to ",
             kCheckpointBlockChecked);
  // Compared without adding first: a crafted payload size must not wrap the sum around.
  const uint64_t body = size - kHeader;
  UNDO_CHECK(meta_bytes <= body, "checkpoint '", path, "' is truncated: ", size, " bytes, header says ", meta_bytes,
             " of meta after the header");
  f.meta = std::string_view(reinterpret_cast<const char*>(file) + kHeader, meta_bytes);
  const uint8_t* after_meta = file + kHeader + meta_bytes;
  std::string digest;
  if (f.version == kCheckpointBlockChecked) {
    check_block_index(f, after_meta, body - meta_bytes, path);
    digest = sha256_hex(file + kHeader, uint64_t(f.payload - file) - kHeader);  // meta and index
  } else {
    UNDO_CHECK(f.payload_bytes == body - meta_bytes, "checkpoint '", path, "' is truncated: ", size,
               " bytes, header says ", meta_bytes, " + ", f.payload_bytes, " after the header");
    f.payload = after_meta;
    digest = sha256_hex(file + kHeader, body);
  }
  UNDO_CHECK(digest == to_hex(file + 24, 32), "checkpoint '", path, "' fails its checksum: the file is corrupted");
  return f;
}

std::pair<std::string, std::string> unframe_checkpoint(const std::string& file, const std::string& path) {
  auto f = check_checkpoint_frame(reinterpret_cast<const uint8_t*>(file.data()), file.size(), path);
  PayloadBlocks(f, path).verify(0, f.payload_bytes);
  return {std::string(f.meta), std::string(reinterpret_cast<const char*>(f.payload), size_t(f.payload_bytes))};
}

PayloadBlocks::PayloadBlocks(const CheckpointFrame& frame, std::string path)
    : frame_(frame), path_(std::move(path)), done_(size_t(frame.block_count), false) {
  // What check_checkpoint_frame verified: all of a version 1 or 2 file; the head of a version 3 one.
  verified_ = frame.version == kCheckpointBlockChecked ? frame.file_bytes - frame.payload_bytes : frame.file_bytes;
}

void PayloadBlocks::verify(uint64_t at, uint64_t n) {
  if (frame_.version != kCheckpointBlockChecked || n == 0) return;
  UNDO_CHECK(at <= frame_.payload_bytes && n <= frame_.payload_bytes - at, "checkpoint '", path_, "': bytes [", at,
             ", ", at + n, ") of a ", frame_.payload_bytes, "-byte payload");
  std::lock_guard<std::mutex> lock(mutex_);
  for (uint64_t b = at / frame_.block_bytes; b <= (at + n - 1) / frame_.block_bytes; ++b) {
    if (done_[size_t(b)]) continue;
    const uint64_t first = b * frame_.block_bytes, len = std::min(frame_.block_bytes, frame_.payload_bytes - first);
    if (sha256_hex(frame_.payload + first, len) != to_hex(frame_.block_digests + 32 * b, 32))
      throw CorruptBlock("checkpoint '" + path_ + "' is corrupted: payload bytes [" + std::to_string(first) + ", " +
                             std::to_string(first + len) + ") fail their checksum",
                         first, first + len);
    done_[size_t(b)] = true;
    verified_ += len;
  }
}

uint64_t PayloadBlocks::bytes_verified() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return verified_;
}
CheckpointFileWriter::CheckpointFileWriter(const std::string& path, const std::string& meta_text,
                                           uint64_t payload_bytes)
    : path_(path), out_(path), meta_(meta_text), blocks_(checkpoint_block_bytes(payload_bytes), payload_bytes),
      payload_bytes_(payload_bytes) {
  // The meta padded with blank lines (which its parser skips) so that the
  // index, and after it (a multiple of 64 bytes long) the payload and every
  // tensor of a table, start 64-byte aligned.
  meta_.resize(size_t(align64(kHeader + meta_.size()) - kHeader), '\n');
  UNDO_CHECK(meta_.size() <= std::numeric_limits<uint32_t>::max(), "checkpoint meta of ", meta_.size(), " bytes");
  // The header's digest and the index are written last, over these zeros.
  out_.write(header_of(kCheckpointBlockChecked, meta_.size(), payload_bytes_, {}).data(), kHeader);
  out_.write(meta_.data(), meta_.size());
  const std::string zeros(size_t(blocks_.index_bytes()), '\0');
  out_.write(zeros.data(), zeros.size());
}

void CheckpointFileWriter::write(const void* data, size_t n) {
  UNDO_CHECK(n <= payload_bytes_ - written_, "checkpoint '", path_, "': ", written_ + n,
             " payload bytes written, ", payload_bytes_, " announced");
  out_.write(data, n);
  blocks_.update(data, n);
  written_ += n;
}

void CheckpointFileWriter::commit() {
  UNDO_CHECK(written_ == payload_bytes_, "checkpoint '", path_, "': ", written_, " payload bytes written, ",
             payload_bytes_, " announced");
  const std::string index = blocks_.index();
  out_.write_at(kHeader + meta_.size(), index.data(), index.size());
  auto header = header_of(kCheckpointBlockChecked, meta_.size(), payload_bytes_, head_digest(meta_, index));
  out_.write_at(0, header.data(), header.size());
  out_.commit();
}

}  // namespace undo
