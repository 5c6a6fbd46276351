#include "cache/logit_cache.h"

#include <cmath>
#include <sstream>

#include "cache/h5.h"
#include "core/error.h"
#include "core/json.h"
#include "core/sha256.h"

namespace undo {

namespace {

const char* kDatasets[] = {"tokens", "topk_ids", "topk_logp", "rest_logp"};

hid_t id_file_type(int vocab) { return vocab <= 65536 ? H5T_STD_U16LE : H5T_STD_U32LE; }

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
  key.dtype = h5::read_string_attr(file, "dtype");
  key.vocab = int(h5::read_int_attr(file, "vocab"));
  key.window = int(h5::read_int_attr(file, "window"));
  return key;
}

// Element counts per row of each dataset.
std::vector<size_t> row_sizes(const LogitCacheKey& key) {
  size_t w = size_t(key.window), k = size_t(key.k);
  return {w, w * k, w * k, w};
}

}  // namespace

std::string LogitCacheKey::canonical() const {
  std::ostringstream os;
  os << "format_version=" << kLogitCacheVersion << "\nteacher_sha256=" << teacher_sha256
     << "\ntokenizer_sha256=" << tokenizer_sha256 << "\nstream=" << stream << "\nseed=" << seed
     << "\noffset=" << offset << "\nk=" << k << "\ndtype=" << dtype << "\nvocab=" << vocab << "\nwindow=" << window
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
  h5::Handle sets[4];
  h5::Handle f16;
};

LogitCacheWriter::LogitCacheWriter(const std::string& path, const LogitCacheKey& key, uint64_t rows,
                                   int deflate_level)
    : impl_(new Impl{path, key, rows, {}, {}, h5::float16_type()}) {
  h5::quiet_errors();
  UNDO_CHECK(key.k >= 1 && key.k <= key.vocab && key.window >= 1 && rows >= 1, "logit cache '", path,
             "': bad shape k=", key.k, " vocab=", key.vocab, " window=", key.window, " rows=", rows);
  UNDO_CHECK(key.dtype == "f16" || key.dtype == "f32", "logit cache dtype '", key.dtype, "' (f16 | f32)");
  auto& m = *impl_;
  m.file = h5::Handle(H5_CHECK(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "create '", path, "'"),
                      H5Fclose);
  hsize_t R = rows, W = hsize_t(key.window), K = hsize_t(key.k);
  std::vector<std::vector<hsize_t>> dims = {{R, W}, {R, W, K}, {R, W, K}, {R, W}};
  hid_t types[4] = {id_file_type(key.vocab), id_file_type(key.vocab),
                    key.dtype == "f16" ? m.f16.get() : H5T_IEEE_F32LE, H5T_IEEE_F32LE};
  for (int i = 0; i < 4; ++i) {
    auto chunk = dims[i];
    chunk[0] = 1;  // one sequence per chunk: a micro-batch reads whole chunks
    h5::Handle dcpl(H5_CHECK(H5Pcreate(H5P_DATASET_CREATE), "dataset properties"), H5Pclose);
    H5_CHECK(H5Pset_chunk(dcpl, int(chunk.size()), chunk.data()), "chunk ", kDatasets[i]);
    if (deflate_level > 0) {
      H5_CHECK(H5Pset_shuffle(dcpl), "shuffle ", kDatasets[i]);
      H5_CHECK(H5Pset_deflate(dcpl, unsigned(deflate_level)), "deflate ", kDatasets[i]);
    }
    auto space = h5::memory_space(dims[i]);
    m.sets[i] = h5::Handle(H5_CHECK(H5Dcreate2(m.file, kDatasets[i], types[i], space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
                                    "create dataset ", kDatasets[i], " in '", path, "'"),
                           H5Dclose);
  }
  write_key(m.file, key);
}

LogitCacheWriter::~LogitCacheWriter() = default;

void LogitCacheWriter::write(const LogitRows& r) {
  auto& m = *impl_;
  UNDO_CHECK(r.first + r.count <= m.rows, "logit cache '", m.path, "': rows ", r.first, "+", r.count, " past ", m.rows);
  auto sizes = row_sizes(m.key);
  bool f16 = m.key.dtype == "f16";
  const void* bufs[4] = {r.tokens.data(), r.ids.data(), f16 ? (const void*)r.logp_f16.data() : r.logp_f32.data(),
                         r.rest_logp.data()};
  size_t have[4] = {r.tokens.size(), r.ids.size(), f16 ? r.logp_f16.size() : r.logp_f32.size(), r.rest_logp.size()};
  // Memory types: no conversion for the log-probs (raw half bits or floats).
  hid_t mem_types[4] = {H5T_NATIVE_UINT32, H5T_NATIVE_UINT32, f16 ? m.f16.get() : H5T_NATIVE_FLOAT, H5T_NATIVE_FLOAT};
  for (int i = 0; i < 4; ++i) {
    UNDO_CHECK(have[i] == r.count * sizes[i], "logit cache rows: ", kDatasets[i], " has ", have[i], " values, expected ",
               r.count * sizes[i]);
    auto file_space = h5::select_rows(m.sets[i], r.first, r.count);
    auto dims = h5::dims_of(m.sets[i]);
    dims[0] = r.count;
    auto mem = h5::memory_space(dims);
    H5_CHECK(H5Dwrite(m.sets[i], mem_types[i], mem, file_space, H5P_DEFAULT, bufs[i]), "write ", kDatasets[i], " of '",
             m.path, "'");
  }
}

void LogitCacheWriter::finish(int64_t teacher_tokens) {
  auto& m = *impl_;
  H5_CHECK(H5Fflush(m.file, H5F_SCOPE_GLOBAL), "flush '", m.path, "'");
  std::string sha;
  {
    // Hash what is on disk, read back through the same path a reader takes.
    for (auto& s : m.sets) s.reset();
    m.file.reset();
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
  h5::Handle sets[4];
  h5::Handle f16;
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
    auto sizes = row_sizes(m.key);
    for (int i = 0; i < 4; ++i) {
      m.sets[i] = h5::Handle(H5_CHECK(H5Dopen2(m.file, kDatasets[i], H5P_DEFAULT), "open dataset ", kDatasets[i]),
                             H5Dclose);
      auto dims = h5::dims_of(m.sets[i]);
      if (unfinished_ok && i == 0) m.rows = dims[0];
      size_t per_row = 1;
      for (size_t d = 1; d < dims.size(); ++d) per_row *= size_t(dims[d]);
      UNDO_CHECK(!dims.empty() && dims[0] == m.rows && per_row == sizes[i], "dataset ", kDatasets[i],
                 " has the wrong shape for rows=", m.rows, " window=", m.key.window, " k=", m.key.k);
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
  auto sizes = row_sizes(m.key);
  bool f16 = m.key.dtype == "f16";
  r.tokens.resize(count * sizes[0]);
  r.ids.resize(count * sizes[1]);
  (f16 ? (void)r.logp_f16.resize(count * sizes[2]) : r.logp_f32.resize(count * sizes[2]));
  r.rest_logp.resize(count * sizes[3]);
  void* bufs[4] = {r.tokens.data(), r.ids.data(), f16 ? (void*)r.logp_f16.data() : r.logp_f32.data(),
                   r.rest_logp.data()};
  for (int i = 0; i < 4; ++i) read_dataset(i, first, count, bufs[i]);
  return r;
}

void LogitCacheReader::read_dataset(int i, uint64_t first, uint64_t count, void* buf) const {
  const auto& m = *impl_;
  bool f16 = m.key.dtype == "f16";
  hid_t mem_types[4] = {H5T_NATIVE_UINT32, H5T_NATIVE_UINT32, f16 ? m.f16.get() : H5T_NATIVE_FLOAT, H5T_NATIVE_FLOAT};
  auto file_space = h5::select_rows(m.sets[i], first, count);
  auto dims = h5::dims_of(m.sets[i]);
  dims[0] = count;
  auto mem = h5::memory_space(dims);
  H5_CHECK(H5Dread(m.sets[i], mem_types[i], mem, file_space, H5P_DEFAULT, buf), "read ", kDatasets[i], " rows ",
           first, "..", first + count, " of logit cache '", m.path, "' (corrupted?)");
}

std::string LogitCacheReader::content_sha256(uint64_t block) const {
  // Dataset by dataset (the order the checksum is defined in), each read once.
  const auto& m = *impl_;
  auto sizes = row_sizes(m.key);
  const size_t value_bytes[4] = {4, 4, m.key.dtype == "f16" ? size_t(2) : size_t(4), 4};
  Sha256 h;
  std::vector<char> buf;
  for (int i = 0; i < 4; ++i)
    for (uint64_t at = 0; at < m.rows; at += block) {
      uint64_t n = std::min(block, m.rows - at);
      buf.resize(n * sizes[i] * value_bytes[i]);
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
      .add("dtype", k.dtype)
      .add("vocab", k.vocab)
      .add("window", k.window)
      .add("rows", int64_t(cache.rows()))
      .add("teacher_tokens", cache.teacher_tokens())
      .add("content_sha256", cache.recorded_sha256());
  return o.str() + "\n";
}

}  // namespace undo
