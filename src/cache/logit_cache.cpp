#include "cache/logit_cache.h"

#include <cmath>
#include <sstream>

#include "cache/h5.h"
#include "core/error.h"
#include "core/json.h"
#include "core/sha256.h"

namespace undo {

namespace {

hid_t id_file_type(int vocab) { return vocab <= 65536 ? H5T_STD_U16LE : H5T_STD_U32LE; }

// One dataset of the file: its name, shape [rows, window] or [rows, window,
// inner], values per row, its types on disk and in memory (ids and tokens are
// widened to uint32 in memory; log-probs are never converted: raw half bits or
// floats), and bytes per value in memory.
struct Dataset {
  const char* name;
  size_t inner;  // 0: two dimensions
  size_t per_row;
  hid_t file_type, mem_type;
  size_t value_bytes;
};

// The datasets of a file of this key, in checksum order. `f16` is the
// float16 type (h5::float16_type), owned by the caller.
std::vector<Dataset> datasets_of(const LogitCacheKey& key, hid_t f16) {
  const size_t w = size_t(key.window), k = size_t(key.k), s = size_t(key.samples);
  const bool half = key.dtype == "f16";
  const hid_t ids = id_file_type(key.vocab);
  std::vector<Dataset> d = {{"tokens", 0, w, ids, H5T_NATIVE_UINT32, 4},
                            {"topk_ids", k, w * k, ids, H5T_NATIVE_UINT32, 4},
                            {"topk_logp", k, w * k, half ? f16 : H5T_IEEE_F32LE, half ? f16 : H5T_NATIVE_FLOAT,
                             half ? size_t(2) : size_t(4)},
                            {"rest_logp", 0, w, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4}};
  if (s > 0) {
    d.push_back({"tail_ids", s, w * s, ids, H5T_NATIVE_UINT32, 4});
    d.push_back({"tail_logp", s, w * s, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4});
  }
  return d;
}

// The memory buffer of each dataset in `r` and its length in values, in datasets_of's order.
std::vector<std::pair<void*, size_t>> buffers_of(LogitRows& r, const LogitCacheKey& key) {
  const bool half = key.dtype == "f16";
  std::vector<std::pair<void*, size_t>> b = {
      {r.tokens.data(), r.tokens.size()},
      {r.ids.data(), r.ids.size()},
      {half ? (void*)r.logp_f16.data() : r.logp_f32.data(), half ? r.logp_f16.size() : r.logp_f32.size()},
      {r.rest_logp.data(), r.rest_logp.size()}};
  if (key.samples > 0) {
    b.push_back({r.tail_ids.data(), r.tail_ids.size()});
    b.push_back({r.tail_logp.data(), r.tail_logp.size()});
  }
  return b;
}

// Key fields as root attributes, one per field, so that h5py shows them plainly.
void write_key(hid_t file, const LogitCacheKey& key) {
  h5::write_attr(file, "format", std::string("undo-logit-cache"));
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

LogitCacheKey read_key(hid_t file) {
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
  // Checked before any shape is derived from them: a crafted file must not size buffers.
  UNDO_CHECK(key.window >= 1 && key.vocab >= 1 && key.k >= 1 && key.k <= key.vocab && key.samples >= 0 &&
                 key.samples <= 1 << 16 && (key.dtype == "f16" || key.dtype == "f32"),
             "implausible key: window=", key.window, " vocab=", key.vocab, " k=", key.k, " samples=", key.samples,
             " dtype=", key.dtype);
  return key;
}

}  // namespace

std::string LogitCacheKey::canonical() const {
  std::ostringstream os;
  os << "format_version=" << kLogitCacheVersion << "\nteacher_sha256=" << teacher_sha256
     << "\ntokenizer_sha256=" << tokenizer_sha256 << "\nstream=" << stream << "\nseed=" << seed
     << "\noffset=" << offset << "\nk=" << k << "\nsamples=" << samples << "\ndtype=" << dtype << "\nvocab=" << vocab << "\nwindow=" << window
     << "\n";
  return os.str();
}

std::string LogitCacheKey::digest() const {
  auto c = canonical();
  return sha256_hex(c.data(), c.size());
}

std::string LogitCacheKey::mismatch(const LogitCacheKey& o) const {
  std::ostringstream os;
  auto field = [&](const char* name, const auto& a, const auto& b) {
    if (a != b) os << (os.tellp() > 0 ? ", " : "") << name << " " << a << " (expected " << b << ")";
  };
  field("teacher_sha256", teacher_sha256, o.teacher_sha256);
  field("tokenizer_sha256", tokenizer_sha256, o.tokenizer_sha256);
  field("stream", stream, o.stream);
  field("seed", seed, o.seed);
  field("offset", offset, o.offset);
  field("k", k, o.k);
  field("samples", samples, o.samples);
  field("dtype", dtype, o.dtype);
  field("vocab", vocab, o.vocab);
  field("window", window, o.window);
  return os.str();
}

// ---------------------------------------------------------------- writer

struct LogitCacheWriter::Impl {
  std::string path;
  LogitCacheKey key;
  uint64_t rows;
  h5::Handle file;
  h5::Handle f16;
  std::vector<Dataset> layout;
  std::vector<h5::Handle> sets;
};

LogitCacheWriter::LogitCacheWriter(const std::string& path, const LogitCacheKey& key, uint64_t rows,
                                   int deflate_level)
    : impl_(new Impl{path, key, rows, {}, h5::float16_type(), {}, {}}) {
  h5::quiet_errors();
  UNDO_CHECK(key.k >= 1 && key.k <= key.vocab && key.window >= 1 && rows >= 1 && key.samples >= 0, "logit cache '",
             path, "': bad shape k=", key.k, " samples=", key.samples, " vocab=", key.vocab, " window=", key.window,
             " rows=", rows);
  UNDO_CHECK(key.dtype == "f16" || key.dtype == "f32", "logit cache dtype '", key.dtype, "' (f16 | f32)");
  auto& m = *impl_;
  m.file = h5::Handle(H5_CHECK(H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT),
                               "create '", path, "' (it must not exist: a writer never replaces a file)"),
                      H5Fclose);
  m.layout = datasets_of(key, m.f16);
  for (auto& d : m.layout) {
    std::vector<hsize_t> dims = {hsize_t(rows), hsize_t(key.window)};
    if (d.inner > 0) dims.push_back(hsize_t(d.inner));
    auto chunk = dims;
    chunk[0] = 1;  // one sequence per chunk: a micro-batch reads whole chunks
    h5::Handle dcpl(H5_CHECK(H5Pcreate(H5P_DATASET_CREATE), "dataset properties"), H5Pclose);
    H5_CHECK(H5Pset_chunk(dcpl, int(chunk.size()), chunk.data()), "chunk ", d.name);
    if (deflate_level > 0) {
      H5_CHECK(H5Pset_shuffle(dcpl), "shuffle ", d.name);
      H5_CHECK(H5Pset_deflate(dcpl, unsigned(deflate_level)), "deflate ", d.name);
    }
    auto space = h5::memory_space(dims);
    m.sets.emplace_back(H5_CHECK(H5Dcreate2(m.file, d.name, d.file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
                                 "create dataset ", d.name, " in '", path, "'"),
                        H5Dclose);
  }
  write_key(m.file, key);
}

LogitCacheWriter::~LogitCacheWriter() = default;

void LogitCacheWriter::write(const LogitRows& rows) {
  auto& m = *impl_;
  UNDO_CHECK(rows.first + rows.count <= m.rows, "logit cache '", m.path, "': rows ", rows.first, "+", rows.count,
             " past ", m.rows);
  auto bufs = buffers_of(const_cast<LogitRows&>(rows), m.key);  // only read from
  for (size_t i = 0; i < m.layout.size(); ++i) {
    const auto& d = m.layout[i];
    UNDO_CHECK(bufs[i].second == rows.count * d.per_row, "logit cache rows: ", d.name, " has ", bufs[i].second,
               " values, expected ", rows.count * d.per_row);
    auto file_space = h5::select_rows(m.sets[i], rows.first, rows.count);
    auto dims = h5::dims_of(m.sets[i]);
    dims[0] = rows.count;
    auto mem = h5::memory_space(dims);
    H5_CHECK(H5Dwrite(m.sets[i], d.mem_type, mem, file_space, H5P_DEFAULT, bufs[i].first), "write ", d.name, " of '",
             m.path, "'");
  }
}

void LogitCacheWriter::close() {
  auto& m = *impl_;
  if (m.file.get() < 0) return;
  H5_CHECK(H5Fflush(m.file, H5F_SCOPE_GLOBAL), "flush '", m.path, "'");
  m.sets.clear();
  H5_CHECK(H5Fclose(m.file.release()), "close '", m.path, "'");
}

void LogitCacheWriter::pause(uint64_t rows_done) {
  auto& m = *impl_;
  close();
  std::string sha;
  {
    LogitCacheReader reader(m.path, /*unfinished_ok=*/true);
    sha = reader.content_sha256(256, rows_done);
  }
  h5::Handle file(H5_CHECK(H5Fopen(m.path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "reopen '", m.path, "'"), H5Fclose);
  h5::write_attr(file, "rows_done", int64_t(rows_done));
  h5::write_attr(file, "part_sha256", sha);
  H5_CHECK(H5Fclose(file.release()), "close '", m.path, "'");
}

std::unique_ptr<LogitCacheWriter> LogitCacheWriter::continue_part(const std::string& path, const LogitCacheKey& key,
                                                                  uint64_t rows, uint64_t* rows_done) {
  h5::quiet_errors();
  try {
    {
      LogitCacheReader part(path, /*unfinished_ok=*/true);
      if (!part.key().mismatch(key).empty() || part.rows() != rows) return nullptr;
      h5::Handle file(H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open"), H5Fclose);
      if (!h5::has_attr(file, "rows_done") || !h5::has_attr(file, "part_sha256")) return nullptr;
      int64_t done = h5::read_int_attr(file, "rows_done");
      if (done < 0 || uint64_t(done) > rows) return nullptr;
      if (part.content_sha256(256, uint64_t(done)) != h5::read_string_attr(file, "part_sha256")) return nullptr;
      *rows_done = uint64_t(done);
    }
    std::unique_ptr<LogitCacheWriter> w(new LogitCacheWriter);
    w->impl_.reset(new Impl{path, key, rows, {}, h5::float16_type(), {}, {}});
    auto& m = *w->impl_;
    m.file = h5::Handle(H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open '", path, "' to continue"),
                        H5Fclose);
    H5_CHECK(H5Adelete(m.file, "rows_done"), "unstamp '", path, "'");
    H5_CHECK(H5Adelete(m.file, "part_sha256"), "unstamp '", path, "'");
    H5_CHECK(H5Fflush(m.file, H5F_SCOPE_GLOBAL), "flush '", path, "'");
    m.layout = datasets_of(key, m.f16);
    for (auto& d : m.layout)
      m.sets.emplace_back(H5_CHECK(H5Dopen2(m.file, d.name, H5P_DEFAULT), "open dataset ", d.name, " of '", path, "'"),
                          H5Dclose);
    return w;
  } catch (const std::exception&) {
    return nullptr;  // unreadable: not a part to continue
  }
}

void LogitCacheWriter::finish(int64_t teacher_tokens) {
  auto& m = *impl_;
  close();
  std::string sha;
  {
    // Hash what is on disk, read back through the same path a reader takes.
    LogitCacheReader reader(m.path, /*unfinished_ok=*/true);
    sha = reader.content_sha256();
  }
  m.file = h5::Handle(H5_CHECK(H5Fopen(m.path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "reopen '", m.path, "'"), H5Fclose);
  h5::write_attr(m.file, "rows", int64_t(m.rows));
  h5::write_attr(m.file, "teacher_tokens", teacher_tokens);
  h5::write_attr(m.file, "content_sha256", sha);
  m.file.reset();
}

// ---------------------------------------------------------------- reader

struct LogitCacheReader::Impl {
  std::string path;
  LogitCacheKey key;
  uint64_t rows = 0;
  int64_t teacher_tokens = 0;
  std::string content_sha;
  h5::Handle file;
  h5::Handle f16;
  std::vector<Dataset> layout;
  std::vector<h5::Handle> sets;
};

LogitCacheReader::LogitCacheReader(const std::string& path, bool unfinished_ok) : impl_(new Impl) {
  h5::quiet_errors();
  auto& m = *impl_;
  m.path = path;
  m.f16 = h5::float16_type();
  try {
    UNDO_CHECK(H5Fis_hdf5(path.c_str()) > 0, "not an HDF5 file (truncated or overwritten?)");
    m.file = h5::Handle(H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open"), H5Fclose);
    UNDO_CHECK(h5::has_attr(m.file, "format") && h5::read_string_attr(m.file, "format") == "undo-logit-cache",
               "not an undo logit cache (no format attribute)");
    int64_t version = h5::read_int_attr(m.file, "format_version");
    UNDO_CHECK(version == kLogitCacheVersion, "format version ", version, ", this build reads ", kLogitCacheVersion);
    m.key = read_key(m.file);
    if (!unfinished_ok) {
      UNDO_CHECK(h5::has_attr(m.file, "content_sha256"), "unfinished (no content_sha256): its writer did not complete");
      m.rows = uint64_t(h5::read_int_attr(m.file, "rows"));
      m.teacher_tokens = h5::read_int_attr(m.file, "teacher_tokens");
      m.content_sha = h5::read_string_attr(m.file, "content_sha256");
    }
    m.layout = datasets_of(m.key, m.f16);
    for (size_t i = 0; i < m.layout.size(); ++i) {
      const auto& d = m.layout[i];
      m.sets.emplace_back(H5_CHECK(H5Dopen2(m.file, d.name, H5P_DEFAULT), "open dataset ", d.name), H5Dclose);
      auto dims = h5::dims_of(m.sets[i]);
      if (unfinished_ok && i == 0 && !dims.empty()) m.rows = dims[0];
      size_t per_row = 1;
      for (size_t k = 1; k < dims.size(); ++k) per_row *= size_t(dims[k]);
      UNDO_CHECK(!dims.empty() && dims[0] == m.rows && per_row == d.per_row, "dataset ", d.name,
                 " has the wrong shape for rows=", m.rows, " window=", m.key.window, " k=", m.key.k,
                 " samples=", m.key.samples);
    }
  } catch (const std::exception& e) {
    UNDO_FAIL("logit cache '", path, "' is unreadable: ", e.what());
  }
}

LogitCacheReader::~LogitCacheReader() = default;
const LogitCacheKey& LogitCacheReader::key() const { return impl_->key; }
uint64_t LogitCacheReader::rows() const { return impl_->rows; }
int64_t LogitCacheReader::teacher_tokens() const { return impl_->teacher_tokens; }
const std::string& LogitCacheReader::recorded_sha256() const { return impl_->content_sha; }

LogitRows LogitCacheReader::read(uint64_t first, uint64_t count) const {
  auto& m = *impl_;
  UNDO_CHECK(first + count <= m.rows, "logit cache '", m.path, "' has ", m.rows, " rows; rows ", first, "..",
             first + count, " were asked for");
  LogitRows r;
  r.first = first;
  r.count = count;
  const size_t w = size_t(m.key.window), k = size_t(m.key.k), s = size_t(m.key.samples);
  r.tokens.resize(count * w);
  r.ids.resize(count * w * k);
  (m.key.dtype == "f16" ? (void)r.logp_f16.resize(count * w * k) : r.logp_f32.resize(count * w * k));
  r.rest_logp.resize(count * w);
  r.tail_ids.resize(count * w * s);
  r.tail_logp.resize(count * w * s);
  auto bufs = buffers_of(r, m.key);
  for (size_t i = 0; i < bufs.size(); ++i) read_dataset(i, first, count, bufs[i].first);
  return r;
}

void LogitCacheReader::read_dataset(size_t i, uint64_t first, uint64_t count, void* buf) const {
  const auto& m = *impl_;
  const auto& d = m.layout[i];
  auto file_space = h5::select_rows(m.sets[i], first, count);
  auto dims = h5::dims_of(m.sets[i]);
  dims[0] = count;
  auto mem = h5::memory_space(dims);
  H5_CHECK(H5Dread(m.sets[i], d.mem_type, mem, file_space, H5P_DEFAULT, buf), "read ", d.name, " rows ", first, "..",
           first + count, " of logit cache '", m.path, "' (corrupted?)");
}

std::string LogitCacheReader::content_sha256(uint64_t block, uint64_t rows) const {
  // Dataset by dataset (the order the checksum is defined in), each read once.
  const auto& m = *impl_;
  rows = std::min(rows, m.rows);
  Sha256 h;
  std::vector<char> buf;
  for (size_t i = 0; i < m.layout.size(); ++i)
    for (uint64_t at = 0; at < rows; at += block) {
      uint64_t n = std::min(block, rows - at);
      buf.resize(n * m.layout[i].per_row * m.layout[i].value_bytes);
      read_dataset(i, at, n, buf.data());
      h.update(buf.data(), buf.size());
    }
  return h.hex();
}

void LogitCacheReader::verify() const {
  std::string actual;
  try {
    actual = content_sha256();
  } catch (const std::exception& e) {
    UNDO_FAIL("logit cache '", impl_->path, "' is corrupted: ", e.what());
  }
  UNDO_CHECK(actual == impl_->content_sha, "logit cache '", impl_->path, "' is corrupted: content sha256 ", actual,
             " differs from the recorded ", impl_->content_sha);
}

uint64_t logit_cache_bytes(const LogitCacheKey& key, uint64_t rows) {
  auto f16 = h5::float16_type();
  uint64_t per_row = 0;
  for (auto& d : datasets_of(key, f16)) per_row += d.per_row * H5Tget_size(d.file_type);
  return rows * per_row;
}

void copy_rows(const LogitCacheReader& part, LogitCacheWriter& out, uint64_t at, uint64_t block) {
  for (uint64_t i = 0; i < part.rows(); i += block) {
    auto r = part.read(i, std::min(block, part.rows() - i));
    r.first = at + i;
    out.write(r);
  }
}

std::string logit_cache_manifest(const LogitCacheReader& cache, const std::string& path) {
  const auto& k = cache.key();
  JsonObject o;
  o.add("file", path)
      .add("format_version", kLogitCacheVersion)
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
      .add("teacher_tokens", cache.teacher_tokens())
      .add("content_sha256", cache.recorded_sha256());
  return o.str() + "\n";
}

}  // namespace undo
