// The key and the column layout of a logit cache: what a file of a key holds,
// independent of how it is written or read (cache/logit_cache.h).
#include <sstream>

#include "cache/logit_cache.h"
#include "core/error.h"
#include "core/sha256.h"

namespace undo {

size_t value_bytes(CacheValue v) {
  switch (v) {
    case CacheValue::u8: return 1;
    case CacheValue::u16:
    case CacheValue::f16: return 2;
    case CacheValue::u32:
    case CacheValue::f32: return 4;
  }
  return 0;
}

std::vector<CacheColumn> cache_columns(const LogitCacheKey& key) {
  const size_t w = size_t(key.window), k = size_t(key.k), s = size_t(key.samples);
  const CacheValue ids = key.vocab <= 65536 ? CacheValue::u16 : CacheValue::u32;
  const CacheValue logp = key.dtype == "f32" ? CacheValue::f32 : key.dtype == "f16" ? CacheValue::f16 : CacheValue::u8;
  std::vector<CacheColumn> c = {{"tokens", 0, w, ids}};
  if (k > 0) {
    c.push_back({"topk_ids", k, w * k, ids});
    c.push_back({"topk_logp", k, w * k, logp});
    c.push_back({"rest_logp", 0, w, CacheValue::f32});
  }
  if (s > 0) {
    c.push_back({"draw_ids", s, w * s, ids});
    c.push_back({"draw_logp", s, w * s, logp});
  }
  return c;
}

ColumnIndex column_index(const LogitCacheKey& key) {
  ColumnIndex x;
  auto cols = cache_columns(key);
  for (size_t i = 0; i < cols.size(); ++i) {
    const auto& n = cols[i].name;
    int* slot = n == "tokens"      ? &x.tokens
                : n == "topk_ids"  ? &x.topk_ids
                : n == "topk_logp" ? &x.topk_logp
                : n == "rest_logp" ? &x.rest_logp
                : n == "draw_ids"  ? &x.draw_ids
                                   : &x.draw_logp;
    *slot = int(i);
  }
  return x;
}

double logit_cache_bytes_per_position(const LogitCacheKey& key) {
  double row = 32;  // the row digest
  for (auto& c : cache_columns(key)) row += double(c.row_bytes());
  return row / double(key.window);
}

uint64_t logit_cache_bytes(const LogitCacheKey& key, uint64_t rows) {
  uint64_t row = 32;
  for (auto& c : cache_columns(key)) row += c.row_bytes();
  return rows * row;
}

std::string LogitCacheKey::canonical() const {
  std::ostringstream os;
  os << "format_version=" << kLogitCacheVersion << "\nteacher_sha256=" << teacher_sha256
     << "\ntokenizer_sha256=" << tokenizer_sha256 << "\nstream=" << stream << "\nseed=" << seed
     << "\noffset=" << offset << "\nk=" << k << "\nsamples=" << samples << "\ndtype=" << dtype
     << "\nvocab=" << vocab << "\nwindow=" << window << "\n";
  return os.str();
}

std::string LogitCacheKey::digest() const {
  auto c = canonical();
  return sha256_hex(c.data(), c.size());
}

std::string LogitCacheKey::format_name() const {
  std::string f = k > 0 ? "top" + std::to_string(k) : "";
  if (samples > 0) f += (k > 0 ? "+s" : "s") + std::to_string(samples);
  return f + " " + dtype;
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

}  // namespace undo
