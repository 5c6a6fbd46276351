#include "cache/logit_cache.h"

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "cache/h5.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/sha256.h"

namespace undo {

namespace {

constexpr const char* kIndexFormat = "undo-logit-cache";
constexpr const char* kPartFormat = "undo-logit-cache-part";
constexpr size_t kDigestBytes = 32;

// The on-disk type of a value kind. f16 is built (HDF5 1.10 lacks it); the
// caller keeps the returned handle alive while the id is in use.
hid_t h5_type(CacheValue v, const h5::Handle& f16) {
  switch (v) {
    case CacheValue::u8: return H5T_STD_U8LE;
    case CacheValue::u16: return H5T_STD_U16LE;
    case CacheValue::u32: return H5T_STD_U32LE;
    case CacheValue::f16: return f16;
    case CacheValue::f32: return H5T_IEEE_F32LE;
  }
  return -1;
}

// The dims of column `c` (or of the row digests, c = null) for `rows` rows.
std::vector<hsize_t> dims_of(const CacheColumn* c, uint64_t rows, int window) {
  if (!c) return {hsize_t(rows), hsize_t(kDigestBytes)};
  std::vector<hsize_t> d = {hsize_t(rows), hsize_t(window)};
  if (c->inner > 0) d.push_back(hsize_t(c->inner));
  return d;
}

// The datasets of a file of `key`: its columns, then the row digests.
struct Datasets {
  std::vector<CacheColumn> columns;
  h5::Handle f16 = h5::float16_type();
  size_t size() const { return columns.size() + 1; }
  const CacheColumn* column(size_t i) const { return i < columns.size() ? &columns[i] : nullptr; }
  std::string name(size_t i) const { return i < columns.size() ? columns[i].name : "row_sha256"; }
  hid_t type(size_t i) const { return i < columns.size() ? h5_type(columns[i].type, f16) : H5T_STD_U8LE; }
  size_t row_bytes(size_t i) const { return i < columns.size() ? columns[i].row_bytes() : kDigestBytes; }
};

// The one rule for a key's shape, for writers and for readers of a crafted
// file (checked before anything is sized from it).
bool plausible_key(const LogitCacheKey& key) {
  return key.window >= 1 && key.vocab >= 1 && key.k >= 0 && key.k <= key.vocab && key.samples >= 0 &&
         key.samples <= 1 << 16 && key.k + key.samples >= 1 &&
         (key.dtype == "f16" || key.dtype == "f32" || key.dtype == "q8");
}

std::string shape_of(const LogitCacheKey& key) {
  return "window=" + std::to_string(key.window) + " vocab=" + std::to_string(key.vocab) + " k=" +
         std::to_string(key.k) + " samples=" + std::to_string(key.samples) + " dtype=" + key.dtype;
}

void write_key(hid_t file, const char* format, const LogitCacheKey& key) {
  h5::write_attr(file, "format", std::string(format));
  h5::write_attr(file, "format_version", int64_t(kLogitCacheVersion));
  h5::write_attr(file, "teacher_sha256", key.teacher_sha256);
  h5::write_attr(file, "tokenizer_sha256", key.tokenizer_sha256);
  h5::write_attr(file, "stream", key.stream);
  h5::write_attr(file, "seed", int64_t(key.seed));
  h5::write_attr(file, "offset", int64_t(key.offset));
  h5::write_attr(file, "k", int64_t(key.k));
  h5::write_attr(file, "samples", int64_t(key.samples));
  h5::write_attr(file, "dtype", key.dtype);
  h5::write_attr(file, "vocab", int64_t(key.vocab));
  h5::write_attr(file, "window", int64_t(key.window));
  h5::write_attr(file, "key_sha256", key.digest());
}

// Checks the format and version, then reads the key; the shape fields are
// checked before anything is sized from them (a crafted file must not).
LogitCacheKey read_key(hid_t file, const char* format) {
  UNDO_CHECK(h5::has_attr(file, "format") && h5::read_string_attr(file, "format") == format, "not an ", format,
             " file (no such format attribute)");
  const int64_t version = h5::read_int_attr(file, "format_version");
  UNDO_CHECK(version == kLogitCacheVersion, "format version ", version, ", this build reads only version ",
             kLogitCacheVersion, " (distill.cache = auto rebuilds it)");
  LogitCacheKey key;
  key.teacher_sha256 = h5::read_string_attr(file, "teacher_sha256");
  key.tokenizer_sha256 = h5::read_string_attr(file, "tokenizer_sha256");
  key.stream = h5::read_string_attr(file, "stream");
  key.seed = uint64_t(h5::read_int_attr(file, "seed"));
  key.offset = uint64_t(h5::read_int_attr(file, "offset"));
  key.k = int(h5::read_int_attr(file, "k"));
  key.samples = int(h5::read_int_attr(file, "samples"));
  key.dtype = h5::read_string_attr(file, "dtype");
  key.vocab = int(h5::read_int_attr(file, "vocab"));
  key.window = int(h5::read_int_attr(file, "window"));
  UNDO_CHECK(plausible_key(key), "implausible key: ", shape_of(key));
  return key;
}

void check_key_shape(const std::string& path, const LogitCacheKey& key, uint64_t rows) {
  UNDO_CHECK(plausible_key(key) && rows >= 1, "logit cache '", path, "': bad shape ", shape_of(key), " rows=", rows,
             " (dtype f32 | f16 | q8)");
}

// Reads rows [first, first + n) of dataset `set` (of `bytes` bytes a row) as stored.
void read_rows(hid_t set, hid_t type, uint64_t first, uint64_t n, void* buf, const std::string& what) {
  auto file_space = h5::select_rows(set, first, n);
  auto dims = h5::dims_of(set);
  dims[0] = n;
  auto mem = h5::memory_space(dims);
  H5_CHECK(H5Dread(set, type, mem, file_space, H5P_DEFAULT, buf), "read ", what, " rows ", first, "..", first + n,
           " (corrupted?)");
}

// The digest of row `r` of `count` rows held in `columns` (one buffer per data column).
std::array<uint8_t, 32> row_digest(const std::vector<CacheColumn>& cols, const std::vector<std::vector<uint8_t>>& data,
                                   uint64_t r) {
  Sha256 h;
  for (size_t c = 0; c < cols.size(); ++c) {
    const size_t b = cols[c].row_bytes();
    h.update(data[c].data() + r * b, b);
  }
  return h.digest();
}

std::vector<h5::Handle> open_datasets(hid_t file, const Datasets& d, const std::string& path) {
  std::vector<h5::Handle> sets;
  for (size_t i = 0; i < d.size(); ++i)
    sets.emplace_back(
        H5_CHECK(H5Dopen2(file, d.name(i).c_str(), H5P_DEFAULT), "open dataset ", d.name(i), " of '", path, "'"),
        H5Dclose);
  return sets;
}

// Recomputes the digests of rows [0, rows) of an open file's datasets and
// compares them with its row_sha256 column; feeds the stored digests to
// `content` when given. Throws naming the first row that differs.
void check_row_digests(const std::vector<h5::Handle>& sets, const Datasets& d, uint64_t rows, uint64_t block,
                       const std::string& path, Sha256* content) {
  std::vector<std::vector<uint8_t>> data(d.columns.size());
  std::vector<uint8_t> digests;
  for (uint64_t at = 0; at < rows; at += block) {
    const uint64_t n = std::min(block, rows - at);
    for (size_t c = 0; c < d.columns.size(); ++c) {
      data[c].resize(n * d.row_bytes(c));
      read_rows(sets[c], d.type(c), at, n, data[c].data(), d.name(c) + " of '" + path + "'");
    }
    digests.resize(n * kDigestBytes);
    read_rows(sets.back(), H5T_STD_U8LE, at, n, digests.data(), "row_sha256 of '" + path + "'");
    for (uint64_t r = 0; r < n; ++r) {
      auto actual = row_digest(d.columns, data, r);
      UNDO_CHECK(std::memcmp(actual.data(), digests.data() + r * kDigestBytes, kDigestBytes) == 0, "logit cache '",
                 path, "' is corrupted: row ", at + r, " does not match its recorded sha256");
    }
    if (content) content->update(digests.data(), digests.size());
  }
}

}  // namespace

// ---------------------------------------------------------------- part writer

struct LogitCachePartWriter::Impl {
  std::string path;
  LogitCacheKey key;
  uint64_t rows = 0;
  Datasets layout;
  h5::Handle file;
  std::vector<h5::Handle> sets;
};

LogitCachePartWriter::LogitCachePartWriter(const std::string& path, const LogitCacheKey& key, uint64_t rows,
                                           int deflate_level)
    : impl_(new Impl) {
  h5::quiet_errors();
  check_key_shape(path, key, rows);
  auto& m = *impl_;
  m.path = path, m.key = key, m.rows = rows;
  m.layout.columns = cache_columns(key);
  m.file = h5::Handle(H5_CHECK(H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT), "create '", path,
                               "' (it must not exist: a writer never replaces a file)"),
                      H5Fclose);
  for (size_t i = 0; i < m.layout.size(); ++i) {
    auto dims = dims_of(m.layout.column(i), rows, key.window);
    auto chunk = dims;
    chunk[0] = std::min<hsize_t>(dims[0], 16);  // a micro-batch's rows read few chunks
    h5::Handle dcpl(H5_CHECK(H5Pcreate(H5P_DATASET_CREATE), "dataset properties"), H5Pclose);
    H5_CHECK(H5Pset_chunk(dcpl, int(chunk.size()), chunk.data()), "chunk ", m.layout.name(i));
    if (deflate_level > 0) {
      H5_CHECK(H5Pset_shuffle(dcpl), "shuffle ", m.layout.name(i));
      H5_CHECK(H5Pset_deflate(dcpl, unsigned(deflate_level)), "deflate ", m.layout.name(i));
    }
    auto space = h5::memory_space(dims);
    m.sets.emplace_back(H5_CHECK(H5Dcreate2(m.file, m.layout.name(i).c_str(), m.layout.type(i), space, H5P_DEFAULT,
                                            dcpl, H5P_DEFAULT),
                                 "create dataset ", m.layout.name(i), " in '", path, "'"),
                        H5Dclose);
  }
  write_key(m.file, kPartFormat, key);
  h5::write_attr(m.file, "rows", int64_t(rows));
}

LogitCachePartWriter::~LogitCachePartWriter() = default;

void LogitCachePartWriter::write(const LogitRows& r, PartWriteTimes* times) {
  using clock = std::chrono::steady_clock;
  auto start = clock::now();
  auto& m = *impl_;
  UNDO_CHECK(r.first + r.count <= m.rows, "logit cache part '", m.path, "': rows ", r.first, "+", r.count, " past ",
             m.rows);
  UNDO_CHECK(r.columns.size() == m.layout.columns.size(), "logit cache rows: ", r.columns.size(),
             " columns, the key has ", m.layout.columns.size());
  std::vector<uint8_t> digests(r.count * kDigestBytes);
  for (uint64_t i = 0; i < r.count; ++i) {
    auto d = row_digest(m.layout.columns, r.columns, i);
    std::memcpy(digests.data() + i * kDigestBytes, d.data(), kDigestBytes);
  }
  auto hashed = clock::now();
  for (size_t i = 0; i < m.layout.size(); ++i) {
    const void* buf = i < r.columns.size() ? r.columns[i].data() : digests.data();
    const size_t have = i < r.columns.size() ? r.columns[i].size() : digests.size();
    UNDO_CHECK(have == r.count * m.layout.row_bytes(i), "logit cache rows: ", m.layout.name(i), " has ", have,
               " bytes, expected ", r.count * m.layout.row_bytes(i));
    auto file_space = h5::select_rows(m.sets[i], r.first, r.count);
    auto mem = h5::memory_space(dims_of(m.layout.column(i), r.count, m.key.window));
    H5_CHECK(H5Dwrite(m.sets[i], m.layout.type(i), mem, file_space, H5P_DEFAULT, buf), "write ", m.layout.name(i),
             " of '", m.path, "'");
  }
  if (times) {
    times->hash_s += std::chrono::duration<double>(hashed - start).count();
    times->write_s += std::chrono::duration<double>(clock::now() - hashed).count();
  }
}

void LogitCachePartWriter::close(uint64_t rows_done) {
  auto& m = *impl_;
  if (m.file.get() < 0) return;
  h5::write_attr(m.file, "rows_done", int64_t(std::min(rows_done, m.rows)));
  H5_CHECK(H5Fflush(m.file, H5F_SCOPE_GLOBAL), "flush '", m.path, "'");
  m.sets.clear();
  H5_CHECK(H5Fclose(m.file.release()), "close '", m.path, "'");
}

std::unique_ptr<LogitCachePartWriter> LogitCachePartWriter::continue_part(const std::string& path,
                                                                          const LogitCacheKey& key, uint64_t rows,
                                                                          uint64_t* rows_done) {
  h5::quiet_errors();
  try {
    std::unique_ptr<LogitCachePartWriter> w(new LogitCachePartWriter);
    w->impl_.reset(new Impl);
    auto& m = *w->impl_;
    m.path = path, m.key = key, m.rows = rows;
    m.layout.columns = cache_columns(key);
    m.file = h5::Handle(H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open '", path, "'"), H5Fclose);
    if (!read_key(m.file, kPartFormat).mismatch(key).empty()) return nullptr;
    if (h5::read_int_attr(m.file, "rows") != int64_t(rows) || !h5::has_attr(m.file, "rows_done")) return nullptr;
    const int64_t done = h5::read_int_attr(m.file, "rows_done");
    if (done < 0 || uint64_t(done) > rows) return nullptr;
    m.sets = open_datasets(m.file, m.layout, path);
    check_row_digests(m.sets, m.layout, uint64_t(done), 256, path, nullptr);
    H5_CHECK(H5Adelete(m.file, "rows_done"), "unstamp '", path, "'");
    H5_CHECK(H5Fflush(m.file, H5F_SCOPE_GLOBAL), "flush '", path, "'");
    *rows_done = uint64_t(done);
    return w;
  } catch (const std::exception&) {
    return nullptr;  // unreadable, or a row fails its digest: not a part to continue
  }
}

// ---------------------------------------------------------------- join

void join_cache_parts(const std::string& path, const LogitCacheKey& key, const std::vector<CachePart>& parts,
                      int64_t teacher_tokens) {
  h5::quiet_errors();
  UNDO_CHECK(!parts.empty(), "logit cache '", path, "': no parts to join");
  uint64_t rows = 0;
  for (auto& p : parts) {
    UNDO_CHECK(p.first == rows && p.count > 0, "logit cache '", path, "': part '", p.path, "' starts at row ",
               p.first, ", expected ", rows);
    rows += p.count;
  }
  check_key_shape(path, key, rows);
  Datasets layout;
  layout.columns = cache_columns(key);
  h5::Handle file(H5_CHECK(H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT), "create '", path, "'"),
                  H5Fclose);
  for (size_t i = 0; i < layout.size(); ++i) {
    const auto name = layout.name(i);
    auto dims = dims_of(layout.column(i), rows, key.window);
    auto space = h5::memory_space(dims);
    h5::Handle dcpl(H5_CHECK(H5Pcreate(H5P_DATASET_CREATE), "dataset properties"), H5Pclose);
    for (auto& p : parts) {
      auto vspace = h5::memory_space(dims);
      std::vector<hsize_t> start(dims.size(), 0), count = dims;
      start[0] = p.first, count[0] = p.count;
      H5_CHECK(H5Sselect_hyperslab(vspace, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr),
               "select rows of ", p.path);
      auto src_dims = dims;
      src_dims[0] = p.count;
      auto src = h5::memory_space(src_dims);
      H5_CHECK(H5Pset_virtual(dcpl, vspace, p.path.c_str(), name.c_str(), src), "map ", name, " of '", p.path, "'");
    }
    h5::Handle set(
        H5_CHECK(H5Dcreate2(file, name.c_str(), layout.type(i), space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
                 "create virtual dataset ", name, " in '", path, "'"),
        H5Dclose);
  }
  write_key(file, kIndexFormat, key);
  h5::write_attr(file, "rows", int64_t(rows));
  h5::write_attr(file, "parts", int64_t(parts.size()));
  h5::write_attr(file, "teacher_tokens", teacher_tokens);
  H5_CHECK(H5Fflush(file, H5F_SCOPE_GLOBAL), "flush '", path, "'");
  // The content checksum from the parts' row digests: 32 bytes a row, the data is not read.
  Sha256 content;
  {
    h5::Handle set(H5_CHECK(H5Dopen2(file, "row_sha256", H5P_DEFAULT), "open row_sha256 of '", path, "'"), H5Dclose);
    std::vector<uint8_t> digests;
    for (uint64_t at = 0; at < rows; at += 4096) {
      const uint64_t n = std::min<uint64_t>(4096, rows - at);
      digests.resize(n * kDigestBytes);
      read_rows(set, H5T_STD_U8LE, at, n, digests.data(), "row_sha256 of '" + path + "'");
      content.update(digests.data(), digests.size());
    }
  }
  h5::write_attr(file, "content_sha256", content.hex());
  H5_CHECK(H5Fclose(file.release()), "close '", path, "'");
}

// ---------------------------------------------------------------- reader

struct LogitCacheReader::Impl {
  std::string path;
  LogitCacheKey key;
  uint64_t rows = 0;
  int64_t teacher_tokens = 0;
  std::string content_sha;
  std::vector<std::string> parts;
  Datasets layout;
  h5::Handle file;
  std::vector<h5::Handle> sets;
};

namespace {

// The part files the index's virtual datasets map (absolute), each checked to
// be a finished part of this key: a missing part would otherwise read as zeros.
std::vector<std::string> checked_parts(hid_t set, const std::string& index, const LogitCacheKey& key) {
  namespace fs = std::filesystem;
  h5::Handle dcpl(H5_CHECK(H5Dget_create_plist(set), "dataset properties"), H5Pclose);
  UNDO_CHECK(H5Pget_layout(dcpl) == H5D_VIRTUAL, "its datasets are not virtual (not a cache index)");
  size_t n = 0;
  H5_CHECK(H5Pget_virtual_count(dcpl, &n), "virtual mappings");
  const fs::path dir = fs::absolute(fs::path(index)).parent_path();
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    ssize_t len = H5_CHECK(H5Pget_virtual_filename(dcpl, i, nullptr, 0), "virtual source name");
    std::string name(size_t(len) + 1, '\0');
    H5_CHECK(H5Pget_virtual_filename(dcpl, i, name.data(), name.size()), "virtual source name");
    name.resize(size_t(len));
    const std::string part = fs::path(name).is_absolute() ? name : (dir / name).string();
    UNDO_CHECK(file_exists(part), "its part '", part, "' is missing");
    h5::Handle f(H5_CHECK(H5Fopen(part.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open part '", part, "'"), H5Fclose);
    auto diff = read_key(f, kPartFormat).mismatch(key);
    UNDO_CHECK(diff.empty(), "its part '", part, "' belongs to another key: ", diff);
    UNDO_CHECK(h5::has_attr(f, "rows_done") && h5::read_int_attr(f, "rows_done") == h5::read_int_attr(f, "rows"),
               "its part '", part, "' is unfinished");
    out.push_back(part);
  }
  return out;
}

}  // namespace

LogitCacheReader::LogitCacheReader(const std::string& path) : impl_(new Impl) {
  h5::quiet_errors();
  auto& m = *impl_;
  m.path = path;
  try {
    UNDO_CHECK(H5Fis_hdf5(path.c_str()) > 0, "not an HDF5 file (truncated or overwritten?)");
    m.file = h5::Handle(H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open"), H5Fclose);
    m.key = read_key(m.file, kIndexFormat);
    UNDO_CHECK(h5::has_attr(m.file, "content_sha256"), "unfinished (no content_sha256): its join did not complete");
    m.rows = uint64_t(h5::read_int_attr(m.file, "rows"));
    m.teacher_tokens = h5::read_int_attr(m.file, "teacher_tokens");
    m.content_sha = h5::read_string_attr(m.file, "content_sha256");
    m.layout.columns = cache_columns(m.key);
    h5::Handle dapl(H5_CHECK(H5Pcreate(H5P_DATASET_ACCESS), "dataset access properties"), H5Pclose);
    // Relative part names resolve against the index's own directory, wherever the reader runs.
    H5_CHECK(H5Pset_virtual_prefix(dapl, "${ORIGIN}"), "virtual prefix");
    for (size_t i = 0; i < m.layout.size(); ++i) {
      m.sets.emplace_back(H5_CHECK(H5Dopen2(m.file, m.layout.name(i).c_str(), dapl), "open dataset ",
                                   m.layout.name(i)),
                          H5Dclose);
      auto dims = h5::dims_of(m.sets[i]);
      UNDO_CHECK(dims == dims_of(m.layout.column(i), m.rows, m.key.window), "dataset ", m.layout.name(i),
                 " has the wrong shape for rows=", m.rows, " window=", m.key.window, " k=", m.key.k,
                 " samples=", m.key.samples);
    }
    m.parts = checked_parts(m.sets[0], path, m.key);
  } catch (const std::exception& e) {
    UNDO_FAIL("logit cache '", path, "' is unreadable: ", e.what());
  }
}

LogitCacheReader::~LogitCacheReader() = default;
const std::string& LogitCacheReader::path() const { return impl_->path; }
const LogitCacheKey& LogitCacheReader::key() const { return impl_->key; }
uint64_t LogitCacheReader::rows() const { return impl_->rows; }
int64_t LogitCacheReader::teacher_tokens() const { return impl_->teacher_tokens; }
const std::string& LogitCacheReader::recorded_sha256() const { return impl_->content_sha; }
std::vector<std::string> LogitCacheReader::part_files() const { return impl_->parts; }

LogitRows LogitCacheReader::read(uint64_t first, uint64_t count) const {
  const auto& m = *impl_;
  UNDO_CHECK(first + count <= m.rows, "logit cache '", m.path, "' has ", m.rows, " rows; rows ", first, "..",
             first + count, " were asked for");
  LogitRows r;
  r.first = first, r.count = count;
  r.columns.resize(m.layout.columns.size());
  for (size_t c = 0; c < r.columns.size(); ++c) {
    r.columns[c].resize(count * m.layout.row_bytes(c));
    read_rows(m.sets[c], m.layout.type(c), first, count, r.columns[c].data(),
              m.layout.name(c) + " of logit cache '" + m.path + "'");
  }
  return r;
}

void LogitCacheReader::verify(uint64_t block) const {
  const auto& m = *impl_;
  Sha256 content;
  try {
    check_row_digests(m.sets, m.layout, m.rows, block, m.path, &content);
  } catch (const std::exception& e) {
    UNDO_FAIL("logit cache '", m.path, "' failed verification: ", e.what());
  }
  const std::string actual = content.hex();
  UNDO_CHECK(actual == m.content_sha, "logit cache '", m.path, "' is corrupted: its row digests hash to ", actual,
             ", not the recorded content_sha256 ", m.content_sha);
}

std::string logit_cache_manifest(const LogitCacheReader& cache) {
  const auto& k = cache.key();
  JsonObject o;
  o.add("file", cache.path())
      .add("format_version", kLogitCacheVersion)
      .add("format", k.format_name())
      .add("key_sha256", k.digest())
      .add("teacher_sha256", k.teacher_sha256)
      .add("tokenizer_sha256", k.tokenizer_sha256)
      .add("stream", k.stream)
      .add("seed", int64_t(k.seed))
      .add("offset", int64_t(k.offset))
      .add("k", k.k)
      .add("samples", k.samples)
      .add("dtype", k.dtype)
      .add("vocab", k.vocab)
      .add("window", k.window)
      .add("rows", int64_t(cache.rows()))
      .add("parts", int64_t(cache.part_files().size()))
      .add("bytes_per_position", logit_cache_bytes_per_position(k))
      .add("teacher_tokens", cache.teacher_tokens())
      .add("content_sha256", cache.recorded_sha256());
  return o.str() + "\n";
}

}  // namespace undo
