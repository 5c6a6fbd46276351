// The logit caches under a directory, for people managing disk: each found by
// its index file, with its size on disk (index and parts), its key, and the
// runs under the directory that read it (their summary.json names it) or that
// may still need it (an unfinished sweep job whose cache dir holds it).
// `undo cache ls | verify | gc` is built on this (cli/stage_cache.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "cache/logit_cache.h"

namespace undo {

struct CacheEntry {
  std::string path;                // the index file
  std::string problem;             // "" when it opened; else why not (listed, never deleted by gc)
  LogitCacheKey key;
  uint64_t rows = 0;
  uint64_t bytes = 0;              // index + parts + manifest
  int64_t created = 0;             // the index's modification time (seconds since the epoch)
  std::vector<std::string> files;  // every file of the cache: index, parts, manifest, lock
  std::vector<std::string> read_by;     // run directories whose summary.json names it
  std::vector<std::string> needed_by;   // unfinished sweep jobs that may read it (their cache dir holds it)
};

// Every cache under `root` (recursively), sorted by path.
std::vector<CacheEntry> find_caches(const std::string& root);

}  // namespace undo
