#include "train/teacher_cache.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"
#include "core/sha256.h"
#include "core/stop_signal.h"
#include "data/prepared_check.h"
#include "data/stream.h"
#include "distributed/communicator.h"
#include "model/device.h"
#include "model/precision.h"
#include "train/cache_build.h"

namespace undo {

namespace {

std::string canonical_mix(const std::string& spec) {
  std::ostringstream os;
  for (auto& [stream, weight] : parse_mix("--data", spec))  // weights come back normalised
    os << (os.tellp() > 0 ? "," : "") << stream << ":" << weight;
  return os.str();
}

// What is wrong with the file at `path` for `key` and `rows` ("" = usable).
// A foreign key throws: such a file is never used, rebuilt over or deleted.
// A usable one is verified in full first (the read-back a reuse costs,
// bench/logit-cache's verify column): the file has sat on a disk since its
// build, and a bad row would otherwise train every student that reads it.
std::string check_existing(const std::string& path, const LogitCacheKey& key, uint64_t rows) {
  if (!file_exists(path)) return "missing";
  std::unique_ptr<LogitCacheReader> reader;
  try {
    reader = std::make_unique<LogitCacheReader>(path);
  } catch (const std::exception& e) {
    return e.what();
  }
  auto diff = reader->key().mismatch(key);
  UNDO_INPUT_CHECK(diff.empty(), "logit cache '", path, "' was made with another key: ", diff);
  if (reader->rows() < rows)
    return "it has " + std::to_string(reader->rows()) + " rows, " + std::to_string(rows) + " are needed";
  try {
    reader->verify();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// Each rank's part of a build at `world` ranks: named without a pid, so that
// a build stopped by a signal is continued by the next one at the same world size.
std::string part_path(const std::string& file, int rank, int world) {
  return file + ".part" + std::to_string(rank) + "-of-" + std::to_string(world);
}

// Temporaries of a builder that died, and parts of a build at another world
// size (we hold the lock: nobody else writes them).
void remove_stale_temporaries(const std::string& file, int world) {
  namespace fs = std::filesystem;
  fs::path p(file);
  auto dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  const std::string name = p.filename().string(), tmp = name + ".tmp.", part = name + ".part",
                    ours = "-of-" + std::to_string(world);
  for (auto& e : fs::directory_iterator(dir)) {
    const std::string f = e.path().filename().string();
    bool stale_part = f.rfind(part, 0) == 0 &&
                      (f.size() < ours.size() || f.compare(f.size() - ours.size(), ours.size(), ours) != 0);
    if (f.rfind(tmp, 0) == 0 || stale_part) fs::remove(e.path());
  }
}

}  // namespace

LogitCacheKey teacher_cache_key(const Config& cfg, const std::string& teacher_path, const std::string& mix_spec,
                                int vocab) {
  LogitCacheKey key;
  key.teacher_sha256 = sha256_file(teacher_path);
  key.tokenizer_sha256 = sha256_file(prepared_tokenizer(cfg.data.dir));
  key.stream = canonical_mix(mix_spec) + "|train|" + std::to_string(cfg.model.seq_len);
  key.seed = uint64_t(cfg.distill.data_seed);
  key.offset = uint64_t(cfg.distill.data_offset);
  key.k = std::min(cfg.distill.cache_k, vocab);
  key.samples = key.k < vocab ? cfg.distill.cache_samples : 0;  // nothing is left over to draw from
  UNDO_INPUT_CHECK(key.k + key.samples >= 1, "distill.cache_k = 0 and distill.cache_samples = 0: the cache would hold "
                   "nothing of the teacher (set either above 0)");
  key.dtype = cfg.distill.cache_dtype;
  key.vocab = vocab;
  key.window = cfg.model.seq_len;
  return key;
}

std::string teacher_cache_path(const Config& cfg, const LogitCacheKey& key) {
  // Never the current directory: the run's own when no cache root is given.
  const std::string dir = cfg.distill.cache_dir.empty() ? join_path(cfg.run.dir, "logit-cache") : cfg.distill.cache_dir;
  return join_path(dir, "logits-" + key.digest().substr(0, 20) + ".h5");
}

TeacherCache ensure_teacher_cache(const Config& cfg, const LogitCacheKey& key, uint64_t rows, Transformer& teacher,
                                  const std::string& mode, std::string file) {
  if (file.empty()) file = teacher_cache_path(cfg, key);
  auto comm = distributed();
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->world() : 1;
  TeacherCache result{file, false, 0, {}};

  // Rank 0 decides under the lock (held until the cache is in place); the
  // others learn the decision and rank 0's pid, which names the merged temporary.
  std::unique_ptr<FileLock> lock;
  int64_t decision = 0;  // 0 use, 1 build, -1 rank 0 failed
  if (rank == 0) {
    try {
      auto dir = std::filesystem::path(file).parent_path().string();
      if (!dir.empty()) make_dirs(dir);
      lock = std::make_unique<FileLock>(file + ".lock");
      auto problem = check_existing(file, key, rows);
      if (!problem.empty()) {
        UNDO_INPUT_CHECK(mode != "require", "distill.cache = require, but logit cache '", file, "' is not usable: ",
                         problem);
        if (problem != "missing") std::cerr << "logit cache '" << file << "': " << problem << "; rebuilding\n";
        remove_stale_temporaries(file, world);
        // Refuse now rather than fill the disk half way (HDF5 then fails badly).
        // The parts are the cache: nothing is copied, so its size is all it needs.
        const uint64_t need = logit_cache_bytes(key, rows) + (16u << 20);
        struct statvfs fs_stat {};
        if (::statvfs(dir.empty() ? "." : dir.c_str(), &fs_stat) == 0) {
          const uint64_t free_bytes = uint64_t(fs_stat.f_bavail) * uint64_t(fs_stat.f_frsize);
          UNDO_INPUT_CHECK(free_bytes >= need, "logit cache '", file, "' needs about ", need >> 20, " MiB to build, ",
                           "and '", dir.empty() ? "." : dir, "' has ",
                           free_bytes >> 20, " MiB free: set distill.cache_dir to a larger disk, or distill.cache = off");
        }
        decision = 1;
      }
    } catch (...) {
      if (!comm) throw;
      decision = -1;
      auto tell = torch::tensor({decision, int64_t(::getpid())}, torch::kLong);
      comm->broadcast({tell}, 0);
      throw;
    }
  }
  int64_t tag = ::getpid();
  if (comm) {
    auto tell = torch::tensor({decision, tag}, torch::kLong);
    comm->broadcast({tell}, 0);
    decision = tell[0].item<int64_t>();
    tag = tell[1].item<int64_t>();
    UNDO_INPUT_CHECK(decision >= 0, "logit cache '", file, "': rank 0 refused it (its error says why)");
  }

  if (decision == 1) {
    const std::string tmp = file + ".tmp." + std::to_string(tag);
    auto part_of = [&](int r) { return part_path(file, r, world); };
    // Each rank takes whole batches of the same global grid, so that every row
    // is computed in the same batch (same kernels, same bits) at any world size.
    const uint64_t batch = uint64_t(cfg.train.batch_size), batches = (rows + batch - 1) / batch;
    auto slice = [&](int r) {
      return std::make_pair(std::min(rows, batch * (batches * uint64_t(r) / uint64_t(world))),
                            std::min(rows, batch * (batches * uint64_t(r + 1) / uint64_t(world))));
    };
    auto [begin, end] = slice(rank);
    // The most batches any rank builds: every rank votes on a stop that often.
    const uint64_t votes = (batches + uint64_t(world) - 1) / uint64_t(world);
    install_stop_handlers();
    try {
      result.times = build_cache_part(cfg, key, teacher, begin, end, part_of(rank), votes);
    } catch (const StopRequested&) {
      // Each rank's part keeps its finished rows; the next build continues them.
      throw Preempted("logit cache '" + file + "': stop signal received; the teacher's finished rows are kept in " +
                      part_of(rank) + " and the next build at " + std::to_string(world) +
                      " rank(s) continues them");
    } catch (...) {
      std::remove(part_of(rank).c_str());  // a failed build (a full disk) leaves no temporaries
      throw;
    }
    if (comm) comm->barrier();
    if (rank == 0) try {
      // The parts stay where they are: the index maps them (no copy, no second disk).
      auto join_start = std::chrono::steady_clock::now();
      std::vector<CachePart> parts;
      for (int r = 0; r < world; ++r) {
        auto [b, e] = slice(r);
        if (e > b) parts.push_back({std::filesystem::path(part_of(r)).filename().string(), b, e - b});
      }
      join_cache_parts(tmp, key, parts, int64_t(rows) * key.window);
      UNDO_CHECK(std::rename(tmp.c_str(), file.c_str()) == 0, "cannot rename ", tmp, " to ", file);
      write_file_atomic(file + ".json", logit_cache_manifest(LogitCacheReader(file)));
      result.times.join_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - join_start).count();
      const auto& t = result.times;
      std::cerr << "logit cache '" << file << "': built, " << rows << " sequences x " << key.window << " positions, "
                << key.format_name() << ", " << parts.size() << " part(s)\n"
                << "cache-logits phases (rank 0): forward " << t.forward_s << " s, probabilities and top-k "
                << t.probs_topk_s << " s, draws " << t.sample_s << " s, packing " << t.to_host_s << " s, hashing "
                << t.hash_s << " s, writing " << t.write_s << " s (the teacher waited " << t.wait_s
                << " s for them), join " << t.join_s << " s\n";
    } catch (...) {
      std::remove(tmp.c_str());  // the finished parts stay: the next build continues them (nothing left to do)
      throw;
    }
    result.built = true;
  } else if (rank == 0) {
    std::cerr << "logit cache '" << file << "': verified, reusing it\n";
  }
  if (comm) comm->barrier();  // the file is in place before any rank opens it
  result.teacher_tokens = LogitCacheReader(file).teacher_tokens();
  return result;
}

}  // namespace undo
