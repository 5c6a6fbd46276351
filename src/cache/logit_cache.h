// The teacher-logit cache: what a teacher's distribution was at every position
// of a fixed sequence of windows of the distillation stream, kept small enough
// to reuse across a sweep's students: optionally its top-k ids and their
// log-probabilities with the log of the leftover mass, and `samples` ids drawn
// from the teacher's distribution (from the leftover mass when k > 0) by
// stratified inverse-CDF sampling, with their log-probabilities. From these a
// student is trained on an estimate of the full-vocabulary KL whose gradient is
// exact in expectation (docs/LOGIT_CACHE.md derives it and compares formats).
//
// On disk a cache is one small HDF5 index file whose datasets are virtual
// (HDF5 VDS), each mapping the rows of one part file per rank of the build:
// every rank writes its own share and nobody copies the others' data.
//   PATH                 index: root attributes (key, rows, content_sha256) and the virtual datasets
//   PATH.part<r>-of-<w>  rank r's rows, as ordinary datasets, plus their row digests
// Datasets, rows = windows (docs/LOGIT_CACHE.md has the h5py recipe):
//   /tokens     [rows, window]     u16|u32     the input tokens (checks the stream)
//   /topk_ids   [rows, window, k]  u16|u32     ids, most probable first         (k > 0)
//   /topk_logp  [rows, window, k]  dtype       log p_teacher(id)                (k > 0)
//   /rest_logp  [rows, window]     f32         log(1 - top-k mass); -inf if none (k > 0)
//   /draw_ids   [rows, window, s]  u16|u32     the draws, ascending; a repeat is a count (s > 0)
//   /draw_logp  [rows, window, s]  dtype       log p_teacher of each draw       (s > 0)
//   /row_sha256 [rows, 32]         u8          sha256 of the row's bytes in every dataset above, in order
// dtype is f32, f16 (IEEE half) or q8 (u8 code c: log p = -c / 16, so 0 .. -15.94).
// content_sha256 is the sha256 of the row digests in order: computed as the
// rows stream out, never by reading the data back.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace undo {

// 3: per-rank parts joined by virtual datasets, row digests, pure sampling
// (k = 0), stratified draws, q8. Other versions are refused by number;
// `distill.cache = auto` rebuilds them.
constexpr int kLogitCacheVersion = 3;

// Everything that determines the cache's content except its length.
struct LogitCacheKey {
  std::string teacher_sha256;    // of the teacher checkpoint file
  std::string tokenizer_sha256;  // of data.dir/tokenizer.model
  std::string stream;            // mix spec, split and window: "english:0.75,...|train|64"
  uint64_t seed = 0;             // the distillation stream's seed (distill.data_seed)
  uint64_t offset = 0;           // its first sequence
  int k = 0;                     // top ids kept per position (0: none, pure sampling)
  int samples = 12;              // draws per position (from the leftover mass when k > 0)
  std::string dtype = "q8";      // of the log-probs: f32 | f16 | q8
  int vocab = 0;
  int window = 0;

  std::string canonical() const;  // "field=value" lines, format version included
  std::string digest() const;     // sha256 of canonical()
  // Which fields differ from `other` ("" when none), for error messages.
  std::string mismatch(const LogitCacheKey& other) const;
  // "s12 q8", "top32+s32 f16": the format in a few characters, for people.
  std::string format_name() const;
};

// The types values are stored as (little-endian).
enum class CacheValue { u8, u16, u32, f16, f32 };
size_t value_bytes(CacheValue v);

// One data column of a cache: its dataset name, its shape after the row
// ([window] or [window, inner]) and its value type.
struct CacheColumn {
  std::string name;
  size_t inner = 0;     // 0: [rows, window]; else [rows, window, inner]
  size_t per_row = 0;   // values per row
  CacheValue type = CacheValue::f32;
  size_t row_bytes() const { return per_row * value_bytes(type); }
};

// The data columns of a key, in checksum order (the row digest is not one of them).
std::vector<CacheColumn> cache_columns(const LogitCacheKey& key);
// Indices into cache_columns(key), -1 where the key has no such column.
struct ColumnIndex {
  int tokens = -1, topk_ids = -1, topk_logp = -1, rest_logp = -1, draw_ids = -1, draw_logp = -1;
};
ColumnIndex column_index(const LogitCacheKey& key);
// Bytes per position of a cache of this key (row digest included), uncompressed.
double logit_cache_bytes_per_position(const LogitCacheKey& key);
// The bytes `rows` rows of a cache of this key take on disk, uncompressed.
uint64_t logit_cache_bytes(const LogitCacheKey& key, uint64_t rows);

// Rows of the cache in memory: one buffer per data column of cache_columns(key),
// holding the values exactly as stored (little-endian, the file's types).
struct LogitRows {
  uint64_t first = 0, count = 0;
  std::vector<std::vector<uint8_t>> columns;
};

// Writes one rank's part: rows [0, rows) of its share, in order, each batch's
// row digests computed as it goes. The file must not exist (O_EXCL, so neither
// an old file nor a planted symlink is written through). Not thread-safe.
struct PartWriteTimes {
  double hash_s = 0, write_s = 0;  // the row digests; HDF5's writes
};
class LogitCachePartWriter {
 public:
  LogitCachePartWriter(const std::string& path, const LogitCacheKey& key, uint64_t rows, int deflate_level);
  ~LogitCachePartWriter();
  // Rows [rows.first, + count) of the part, with their digests; `times` adds up the phases.
  void write(const LogitRows& rows, PartWriteTimes* times = nullptr);
  // Stamps the count of finished rows and closes, throwing when the data did
  // not reach the disk. A finished part is one whose count is all its rows; a
  // stopped build's part keeps its first rows and is continued by the next.
  void close(uint64_t rows_done);
  // Reopens a part of this key and row count to continue it. Returns null (the
  // part is then useless: delete it) when the file is no part of `key` and
  // `rows`, or its finished rows fail their digests (the one read-back: a file
  // left by a killed build is checked before it is trusted). The stamp is
  // removed before any row is written: a build killed from here on leaves an
  // unstamped part, which is never continued.
  static std::unique_ptr<LogitCachePartWriter> continue_part(const std::string& path, const LogitCacheKey& key,
                                                             uint64_t rows, uint64_t* rows_done);

 private:
  LogitCachePartWriter() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One finished part and the rows of the cache it holds.
struct CachePart {
  std::string path;  // as the index names it: relative to the index file's directory
  uint64_t first = 0, count = 0;
};
// Writes the index file at `path` (which must not exist) mapping `parts` (in
// row order, covering [0, rows)), and stamps rows, teacher tokens and the
// content checksum, read from the parts' row digests (32 bytes a row).
void join_cache_parts(const std::string& path, const LogitCacheKey& key, const std::vector<CachePart>& parts,
                      int64_t teacher_tokens);

// Opens a finished cache. The constructor checks the format, the key, every
// part being present and the shapes; verify() re-hashes the content. Errors
// name the file and what is wrong. Readable by a run at any world size.
class LogitCacheReader {
 public:
  explicit LogitCacheReader(const std::string& path);
  ~LogitCacheReader();
  const std::string& path() const;
  const LogitCacheKey& key() const;
  uint64_t rows() const;
  int64_t teacher_tokens() const;
  const std::string& recorded_sha256() const;  // content_sha256 as stamped at the join
  std::vector<std::string> part_files() const;  // absolute paths of the parts
  // Recomputes every row's digest from the data and the content checksum from
  // them; throws naming the first bad row, or when the data cannot be read.
  void verify(uint64_t block = 256) const;
  LogitRows read(uint64_t first, uint64_t count) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// PATH.json next to the cache: the key and size, for people and scripts.
std::string logit_cache_manifest(const LogitCacheReader& cache);

}  // namespace undo
