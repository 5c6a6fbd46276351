// The teacher-logit cache: one HDF5 file holding, for every position of a
// fixed sequence of windows of the distillation stream, the teacher's top-k
// token ids, their log-probabilities, the log of the leftover mass and, when
// samples > 0, tokens drawn from that leftover mass (so that a student can be
// trained on an estimate of the full-vocabulary KL that is exact in
// expectation, not only on its top-k lower bound).
// Layout (docs/LOGIT_CACHE.md has the h5py recipe):
//   /tokens    [rows, window]     uint16|uint32  the input tokens (checks the stream)
//   /topk_ids  [rows, window, k]  uint16|uint32  ids, most probable first
//   /topk_logp [rows, window, k]  float16|float32  log p_teacher(id)
//   /rest_logp [rows, window]     float32        log(1 - sum of the top-k p); -inf when k = vocab
//   /tail_ids  [rows, window, s]  uint16|uint32  s draws from p_teacher outside the top-k (samples > 0 only)
//   /tail_logp [rows, window, s]  float32        log p_teacher of each draw
// Datasets are chunked per sequence, optionally deflated. Root attributes hold
// the key (what produced the file), rows, the teacher's forward tokens, and
// content_sha256 (over every dataset's raw bytes, in the order above).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace undo {

// 2: the tail samples (and `samples` in the key). Version 1 files are refused by
// name; `distill.cache = auto` rebuilds them.
constexpr int kLogitCacheVersion = 2;

// Everything that determines the cache's content except its length.
struct LogitCacheKey {
  std::string teacher_sha256;    // of the teacher checkpoint file
  std::string tokenizer_sha256;  // of data.dir/tokenizer.model
  std::string stream;            // mix spec, split and window: "english:0.75,...|train|64"
  uint64_t seed = 0;             // the distillation stream's seed (distill.data_seed)
  uint64_t offset = 0;           // its first sequence
  int k = 32;
  int samples = 0;               // draws from the leftover mass per position (0 = top-k only)
  std::string dtype = "f16";     // of topk_logp: f16 | f32
  int vocab = 0;
  int window = 0;

  std::string canonical() const;  // "field=value" lines, format version included
  std::string digest() const;     // sha256 of canonical()
  // Which fields differ from `other` ("" when none), for error messages.
  std::string mismatch(const LogitCacheKey& other) const;
};

// Rows of the cache in memory. Ids and tokens are widened to uint32; the
// log-probs are raw float16 bits (f16) or floats (f32), by the file's dtype.
struct LogitRows {
  uint64_t first = 0, count = 0;
  std::vector<uint32_t> tokens;      // count * window
  std::vector<uint32_t> ids;         // count * window * k
  std::vector<uint16_t> logp_f16;    // count * window * k (dtype f16)
  std::vector<float> logp_f32;       // count * window * k (dtype f32)
  std::vector<float> rest_logp;      // count * window
  std::vector<uint32_t> tail_ids;    // count * window * samples
  std::vector<float> tail_logp;      // count * window * samples
};

// Creates the file (which must not exist: O_EXCL, so neither an old file nor
// a planted symlink is written through) and writes row ranges in any order; finish()
// stamps rows, teacher tokens and the content checksum. Not thread-safe.
class LogitCacheWriter {
 public:
  LogitCacheWriter(const std::string& path, const LogitCacheKey& key, uint64_t rows, int deflate_level);
  ~LogitCacheWriter();
  void write(const LogitRows& rows);
  // Stamps rows, teacher tokens and the checksum (a finished cache).
  void finish(int64_t teacher_tokens);
  // Flushes and closes an unfinished file (a part), throwing when the data did
  // not reach the disk: a failed write is never found only by the next reader.
  void close();
  // Closes a part whose build was stopped after its first `rows_done` rows,
  // stamping that count and their checksum, so that a later build continues it.
  void pause(uint64_t rows_done);
  // Reopens a paused part of this key and row count to continue it. Returns
  // null (the part is then useless: delete it) when the file is no paused part
  // of `key` and `rows`, or its finished rows fail their checksum. The stamp is
  // removed before any row is written: a build killed from here on leaves an
  // unpaused part, which is never continued.
  static std::unique_ptr<LogitCacheWriter> continue_part(const std::string& path, const LogitCacheKey& key,
                                                         uint64_t rows, uint64_t* rows_done);

 private:
  LogitCacheWriter() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Opens a finished cache. The constructor checks the format and reads the
// key; verify() re-hashes the content. Errors name the file and what is wrong.
class LogitCacheReader {
 public:
  // `unfinished_ok` lets the writer hash a file it has not stamped yet.
  explicit LogitCacheReader(const std::string& path, bool unfinished_ok = false);
  ~LogitCacheReader();
  const LogitCacheKey& key() const;
  uint64_t rows() const;
  int64_t teacher_tokens() const;
  const std::string& recorded_sha256() const;  // content_sha256 as stamped by the writer
  // Recomputed from the data (of the first `rows` rows when fewer than all).
  std::string content_sha256(uint64_t block = 256, uint64_t rows = UINT64_MAX) const;
  void verify() const;  // throws when the two differ or the data cannot be read
  LogitRows read(uint64_t first, uint64_t count) const;

 private:
  // Rows of one dataset into `buf`, as stored (ids and tokens widened to uint32).
  void read_dataset(size_t dataset, uint64_t first, uint64_t count, void* buf) const;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The bytes `rows` rows of a cache of this key take on disk, uncompressed.
uint64_t logit_cache_bytes(const LogitCacheKey& key, uint64_t rows);

// Copies all rows of `part` into `out` at row `at` (merging per-rank parts).
void copy_rows(const LogitCacheReader& part, LogitCacheWriter& out, uint64_t at, uint64_t block = 256);

// PATH.json next to the cache: the key and size, for people and scripts.
std::string logit_cache_manifest(const LogitCacheReader& cache, const std::string& path);

}  // namespace undo
