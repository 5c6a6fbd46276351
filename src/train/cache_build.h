// One rank's share of a logit-cache build: the teacher runs over rows
// [begin, end) of the distillation stream while a worker thread draws the
// previous batch's targets, packs, hashes and writes them into the rank's
// part file, so that all of the cache's own work overlaps the next forward. Each phase is timed, for the
// summary and for bench/logit-cache.
#pragma once
#include <string>

#include "cache/logit_cache.h"
#include "core/config.h"
#include "core/json.h"
#include "model/transformer.h"

namespace undo {

// Seconds per phase of one rank's build (forward to write), and of the join.
// The forward runs on the calling thread, the rest on the worker; wait_s is
// the time the teacher waited for the worker: 0 when the cache's work is
// fully hidden behind the forward passes.
struct CacheBuildTimes {
  double forward_s = 0, probs_topk_s = 0, sample_s = 0, to_host_s = 0;  // teacher side
  double hash_s = 0, write_s = 0;                                       // writer thread
  double wait_s = 0, join_s = 0, total_s = 0;
  int64_t positions = 0;  // built here (not those a paused part already had)
  void add_to(JsonObject& o) const;
};

// Builds rows [begin, end) into `part` (rows [0, end - begin) of it),
// continuing a part that a stop paused. Between batches the ranks vote on a
// stop (`votes` times on every rank, whatever its share): on a stop the part
// keeps its finished rows and StopRequested is thrown. The part is closed
// finished on return. An empty `part` runs the teacher alone, writing nothing:
// the plain forward pass a build's throughput is compared with (bench/logit-cache).
CacheBuildTimes build_cache_part(const Config& cfg, const LogitCacheKey& key, Transformer& teacher, uint64_t begin,
                                 uint64_t end, const std::string& part, uint64_t votes);

}  // namespace undo
