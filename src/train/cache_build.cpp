#include "train/cache_build.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <iostream>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/fs.h"
#include "core/stop_signal.h"
#include "data/stream.h"
#include "distributed/communicator.h"
#include "model/device.h"
#include "model/precision.h"
#include "train/metrics.h"
#include "train/objectives/distill.h"

namespace undo {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string stream_mix_of(const LogitCacheKey& key) { return key.stream.substr(0, key.stream.find('|')); }

// The seed of the draws of the batch that starts at `row`.
uint64_t draw_seed(uint64_t stream_seed, uint64_t row) {
  uint64_t x = stream_seed * 0x9E3779B97F4A7C15ull ^ (row + 0x632BE59BD9B4E019ull);
  x ^= x >> 31, x *= 0xBF58476D1CE4E5B9ull, x ^= x >> 29;
  return x;
}

// One batch the teacher has run: the worker thread turns it into rows.
struct TeacherBatch {
  uint64_t first = 0;  // its first row in the part
  torch::Tensor inputs, logits;
  uint64_t seed = 0;
};

// The worker thread: batches of teacher logits go in, in order; it draws the
// targets from them (on the logits' device), packs, hashes and writes the rows
// to the part, while the teacher runs the next batch. HDF5 (a serial build) is
// called from this thread only while it runs. At most `depth` batches wait,
// bounding the logits held.
class CacheRowsThread {
 public:
  CacheRowsThread(LogitCachePartWriter& writer, const LogitCacheKey& key, size_t depth)
      : writer_(writer), key_(key), depth_(depth), thread_([this] { run(); }) {}
  ~CacheRowsThread() { finish_noexcept(); }

  // Queues a batch; blocks while `depth` are queued. Rethrows the worker's failure.
  void push(TeacherBatch batch, double* wait_s) {
    auto start = Clock::now();
    std::unique_lock<std::mutex> lock(mu_);
    space_.wait(lock, [&] { return queue_.size() < depth_ || failure_; });
    *wait_s += seconds_since(start);
    if (failure_) std::rethrow_exception(failure_);
    queue_.push_back(std::move(batch));
    work_.notify_one();
  }
  // Writes what is queued and stops the thread; returns the rows written and
  // adds the worker's phases to `times`.
  uint64_t finish(CacheBuildTimes* times) {
    finish_noexcept();
    if (failure_) std::rethrow_exception(failure_);
    times->probs_topk_s += targets_.probs_topk_s, times->sample_s += targets_.sample_s;
    times->to_host_s += to_host_s_, times->hash_s += writes_.hash_s, times->write_s += writes_.write_s;
    return rows_written_;
  }

 private:
  void process(const TeacherBatch& b) {
    torch::NoGradGuard no_grad;  // thread-local, as autocast is (the targets are computed in fp32)
    auto targets = teacher_targets(b.logits, key_.k, key_.samples, b.seed, &targets_);
    auto start = Clock::now();
    auto rows = cache_rows_of(targets, b.inputs, key_);
    rows.first = b.first;
    to_host_s_ += seconds_since(start);
    writer_.write(rows, &writes_);
    rows_written_ = rows.first + rows.count;
  }
  void run() {
    // One intra-op thread here: a fresh thread's OpenMP team would otherwise be
    // as wide as the machine, beside the teacher's (spinning threads, 2x slower
    // forwards measured at run.threads = 2). The setting is this thread's own.
    at::set_num_threads(1);
    for (;;) {
      TeacherBatch batch;
      {
        std::unique_lock<std::mutex> lock(mu_);
        work_.wait(lock, [&] { return !queue_.empty() || done_; });
        if (queue_.empty()) return;
        batch = queue_.front();  // stays queued (its logits held) until written
      }
      try {
        process(batch);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        failure_ = std::current_exception();
        queue_.clear();
        space_.notify_all();
        return;
      }
      std::lock_guard<std::mutex> lock(mu_);
      queue_.pop_front();
      space_.notify_all();
    }
  }
  void finish_noexcept() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
      work_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
  }

  LogitCachePartWriter& writer_;
  const LogitCacheKey key_;
  size_t depth_;
  std::mutex mu_;
  std::condition_variable work_, space_;
  std::deque<TeacherBatch> queue_;
  bool done_ = false;
  std::exception_ptr failure_;
  uint64_t rows_written_ = 0;
  TargetTimes targets_;
  double to_host_s_ = 0;
  PartWriteTimes writes_;
  std::thread thread_;  // last: started once the members it uses exist
};

// Opens the part to write: a paused one of this build is continued (its
// finished rows counted in `done`), anything else there is replaced.
std::unique_ptr<LogitCachePartWriter> open_part(const LogitCacheKey& key, const std::string& part, uint64_t rows,
                                                uint64_t* done) {
  *done = 0;
  if (file_exists(part)) {
    auto writer = LogitCachePartWriter::continue_part(part, key, rows, done);
    if (writer) {
      std::cerr << "logit cache part '" << part << "': continuing after its " << *done << " finished rows\n";
      return writer;
    }
    std::remove(part.c_str());  // not a paused part of this build: rebuilt whole
  }
  return std::make_unique<LogitCachePartWriter>(part, key, rows, 0);
}

}  // namespace

void CacheBuildTimes::add_to(JsonObject& o) const {
  JsonObject t;
  t.add("forward_s", forward_s)
      .add("probs_topk_s", probs_topk_s)
      .add("sample_s", sample_s)
      .add("to_host_s", to_host_s)
      .add("hash_s", hash_s)
      .add("write_s", write_s)
      .add("teacher_waited_for_writer_s", wait_s)
      .add("join_s", join_s)
      .add("total_s", total_s)
      .add("positions", positions)
      .add("positions_per_s", total_s > 0 ? double(positions) / total_s : 0.0);
  o.add("cache_build", t);
}

CacheBuildTimes build_cache_part(const Config& cfg, const LogitCacheKey& key, Transformer& teacher, uint64_t begin,
                                 uint64_t end, const std::string& part, uint64_t votes) {
  const auto start = Clock::now();
  const uint64_t batch = uint64_t(cfg.train.batch_size);
  CacheBuildTimes times;
  std::unique_ptr<LogitCachePartWriter> writer;
  std::unique_ptr<CacheRowsThread> thread;
  uint64_t done = 0;
  if (end > begin && !part.empty()) {
    writer = open_part(key, part, end - begin, &done);
    thread = std::make_unique<CacheRowsThread>(*writer, key, 1);
  }
  DistillStream stream{std::make_shared<StreamMix>(cfg.data.dir, parse_mix("--data", stream_mix_of(key)), "train",
                                                   key.window),
                       key.seed, key.offset, 0};
  teacher->eval();
  torch::NoGradGuard no_grad;
  auto comm = distributed();
  Progress progress("cache-logits", int64_t(end - begin) * key.window, !comm || comm->rank() == 0);
  // Stops the writer (its queue written) and stamps the part with the rows it holds.
  auto close_part = [&]() {
    if (!writer) return;
    writer->close(std::max(done, thread->finish(&times)));
  };
  for (uint64_t i = 0; i < votes; ++i) {
    const uint64_t at = begin + i * batch;
    if (stop_vote(comm.get())) {
      close_part();
      throw StopRequested();
    }
    if (at >= end || at < begin + done) {
      // This rank's share is done (or was, before a stop); it still votes with
      // the others, and a sharded teacher's gathers need every rank: one token.
      if (teacher->runner) teacher->forward(torch::zeros({1, 1}, torch::kLong).to(compute_device()));
      continue;
    }
    const int64_t n = int64_t(std::min<uint64_t>(batch, end - at));
    auto phase = Clock::now();
    auto inputs = stream.inputs(at, n);
    torch::Tensor logits;
    {
      AutocastGuard autocast(cfg.train.precision == "bf16", computing_on_cuda());
      logits = teacher->forward(inputs);
    }
    synchronize_compute_device();
    times.forward_s += seconds_since(phase);
    // The draws' generator is seeded by the stream's seed and the batch's first
    // row, and ranks build whole batches of one grid: the same draws at any world size.
    if (thread) thread->push({at - begin, inputs, logits, draw_seed(key.seed, at)}, &times.wait_s);
    times.positions += n * key.window;
    const double elapsed = seconds_since(start);
    progress.update_count(int64_t(at + uint64_t(n) - begin) * key.window, "positions",
                          elapsed > 0 ? double(times.positions) / elapsed : 0.0);
  }
  close_part();
  progress.finish();
  times.total_s = seconds_since(start);
  return times;
}

}  // namespace undo
