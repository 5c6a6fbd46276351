#include "train/teacher_cache.h"

#include <sys/statvfs.h>
#include <unistd.h>

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
#include "train/objectives/distill.h"

namespace undo {

namespace {

std::string canonical_mix(const std::string& spec) {
  std::ostringstream os;
  for (auto& [stream, weight] : parse_mix("--data", spec))  // weights come back normalised
    os << (os.tellp() > 0 ? "," : "") << stream << ":" << weight;
  return os.str();
}

std::string stream_mix_of(const LogitCacheKey& key) { return key.stream.substr(0, key.stream.find('|')); }

// What is wrong with the file at `path` for `key` and `rows` ("" = usable).
// A foreign key throws: such a file is never used, rebuilt over or deleted.
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

// The seed of the tail draws of the batch that starts at `row`.
uint64_t draw_seed(uint64_t stream_seed, uint64_t row) {
  uint64_t x = stream_seed * 0x9E3779B97F4A7C15ull ^ (row + 0x632BE59BD9B4E019ull);
  x ^= x >> 31, x *= 0xBF58476D1CE4E5B9ull, x ^= x >> 29;
  return x;
}

// Runs the teacher over rows [begin, end) of the stream into a part file,
// continuing a part that a stop paused. Between batches the ranks vote on a
// stop (`votes` times on every rank, whatever its share): on a stop the part
// keeps its finished rows (LogitCacheWriter::pause) and StopRequested is thrown.
void build_part(const Config& cfg, const LogitCacheKey& key, Transformer& teacher, uint64_t begin, uint64_t end,
                const std::string& part, uint64_t votes) {
  const uint64_t batch = uint64_t(cfg.train.batch_size);
  std::unique_ptr<LogitCacheWriter> writer;
  uint64_t done = 0;
  if (end > begin) {
    if (file_exists(part)) {
      writer = LogitCacheWriter::continue_part(part, key, end - begin, &done);
      if (writer)
        std::cerr << "logit cache part '" << part << "': continuing after its " << done << " finished rows\n";
      else
        std::remove(part.c_str());  // not a paused part of this build: rebuilt whole
    }
    if (!writer) writer = std::make_unique<LogitCacheWriter>(part, key, end - begin, 0);
  }
  DistillStream stream{std::make_shared<StreamMix>(cfg.data.dir, parse_mix("--data", stream_mix_of(key)), "train",
                                                   key.window),
                       key.seed, key.offset, 0};
  teacher->eval();
  torch::NoGradGuard no_grad;
  auto comm = distributed();
  for (uint64_t i = 0; i < votes; ++i) {
    const uint64_t at = begin + i * batch;
    if (stop_vote(comm.get())) {
      if (writer) writer->pause(std::min(end, at) - begin);
      throw StopRequested();
    }
    if (at >= end || at < begin + done) {
      // This rank's share is done (or was, before a stop); it still votes with
      // the others, and a sharded teacher's gathers need every rank: one token.
      if (teacher->runner) teacher->forward(torch::zeros({1, 1}, torch::kLong).to(compute_device()));
      continue;
    }
    int64_t n = int64_t(std::min<uint64_t>(batch, end - at));
    auto inputs = stream.inputs(at, n);
    torch::Tensor logits;
    {
      AutocastGuard autocast(cfg.train.precision == "bf16", computing_on_cuda());
      logits = teacher->forward(inputs);
    }
    // The draws' generator is seeded by the stream's seed and the batch's first
    // row, and ranks build whole batches of one grid: the same draws at any world size.
    auto top = teacher_targets(logits, key.k, key.samples, draw_seed(key.seed, at));
    LogitRows rows;
    rows.first = at - begin;
    rows.count = uint64_t(n);
    auto as_u32 = [](const torch::Tensor& t) {
      auto c = t.to(torch::kCPU).to(torch::kLong).contiguous();
      return std::vector<uint32_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
    };
    auto as_f32 = [](const torch::Tensor& t) {
      auto c = t.to(torch::kCPU).contiguous();
      return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
    };
    rows.tokens = as_u32(inputs);
    rows.ids = as_u32(top.ids);
    if (key.dtype == "f16") {
      auto h = top.logp.to(torch::kHalf).to(torch::kCPU).contiguous();  // rounded by torch, stored as raw bits
      auto* p = reinterpret_cast<const uint16_t*>(h.data_ptr<at::Half>());
      rows.logp_f16.assign(p, p + h.numel());
    } else {
      rows.logp_f32 = as_f32(top.logp);
    }
    rows.rest_logp = as_f32(top.rest_logp);
    if (key.samples > 0) {
      rows.tail_ids = as_u32(top.tail_ids);
      rows.tail_logp = as_f32(top.tail_logp);
    }
    writer->write(rows);
  }
  if (writer) writer->close();
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
  key.dtype = cfg.distill.cache_dtype;
  key.vocab = vocab;
  key.window = cfg.model.seq_len;
  return key;
}

std::string teacher_cache_path(const Config& cfg, const LogitCacheKey& key) {
  return join_path(cfg.distill.cache_dir, "logits-" + key.digest().substr(0, 20) + ".h5");
}

TeacherCache ensure_teacher_cache(const Config& cfg, const LogitCacheKey& key, uint64_t rows, Transformer& teacher,
                                  const std::string& mode, std::string file) {
  if (file.empty()) file = teacher_cache_path(cfg, key);
  auto comm = distributed();
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->world() : 1;
  TeacherCache result{file, false, 0};

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
        // The parts and the merged file are both on disk before the parts go:
        // refuse now rather than fill the disk half way (HDF5 then fails badly).
        const uint64_t need = 2 * logit_cache_bytes(key, rows) + (16u << 20);
        struct statvfs fs_stat {};
        if (::statvfs(dir.empty() ? "." : dir.c_str(), &fs_stat) == 0) {
          const uint64_t free_bytes = uint64_t(fs_stat.f_bavail) * uint64_t(fs_stat.f_frsize);
          UNDO_INPUT_CHECK(free_bytes >= need, "logit cache '", file, "' needs about ", need >> 20, " MiB to build ",
                           "(its parts and the merged file), and '", dir.empty() ? "." : dir, "' has ",
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
      build_part(cfg, key, teacher, begin, end, part_of(rank), votes);
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
      {
        LogitCacheWriter out(tmp, key, rows, cfg.distill.cache_deflate);
        for (int r = 0; r < world; ++r) {
          auto [b, e] = slice(r);
          if (e > b) copy_rows(LogitCacheReader(part_of(r), /*unfinished_ok=*/true), out, b);
        }
        out.finish(int64_t(rows) * key.window);
      }
      for (int r = 0; r < world; ++r) std::remove(part_of(r).c_str());
      UNDO_CHECK(std::rename(tmp.c_str(), file.c_str()) == 0, "cannot rename ", tmp, " to ", file);
      LogitCacheReader done(file);
      write_file_atomic(file + ".json", logit_cache_manifest(done, file));
      std::cerr << "logit cache '" << file << "': built, " << rows << " sequences x " << key.window
                << " positions, top-" << key.k << " " << key.dtype
                << (key.samples ? " + " + std::to_string(key.samples) + " tail draws" : std::string()) << "\n";
    } catch (...) {
      for (int r = 0; r < world; ++r) std::remove(part_of(r).c_str());
      std::remove(tmp.c_str());
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
