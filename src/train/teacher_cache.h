// Finding, verifying and building the teacher-logit cache of a distillation
// (the HDF5 format is cache/logit_cache.h). One teacher pass serves a sweep's
// students: the cache is named by its key, built once under a lock, and used
// only when its key matches and its checksum verifies.
#pragma once
#include <string>

#include "cache/logit_cache.h"
#include "core/config.h"
#include "model/transformer.h"
#include "train/cache_build.h"

namespace undo {

// The key of the cache a distillation from `teacher_path` over the mix `mix_spec` needs.
LogitCacheKey teacher_cache_key(const Config& cfg, const std::string& teacher_path, const std::string& mix_spec,
                                int vocab);
// distill.cache_dir/logits-<key digest>.h5, or under <run.dir>/logit-cache when
// no cache dir is set (the length is not part of the name: a longer cache of
// the same key serves a shorter run).
std::string teacher_cache_path(const Config& cfg, const LogitCacheKey& key);

struct TeacherCache {
  std::string path;
  bool built = false;          // built by this call (else an existing one was verified and reused)
  int64_t teacher_tokens = 0;  // the teacher's forward tokens that made it
  CacheBuildTimes times;       // this rank's build (zeros when reused)
};

// Returns a verified cache of at least `rows` rows for `key`, at `file` (or
// teacher_cache_path when empty). mode "auto" builds it when missing, short or
// corrupted; "require" refuses instead. A file whose key differs is always
// refused. Every rank calls this; the build splits rows across ranks.
TeacherCache ensure_teacher_cache(const Config& cfg, const LogitCacheKey& key, uint64_t rows, Transformer& teacher,
                                  const std::string& mode, std::string file = "");

}  // namespace undo
