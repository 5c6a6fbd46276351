// The output head's loss, chunked (model/head_loss.h) against whole logits:
// peak memory and time of one forward and backward of the cross-entropy from
// the final hidden state, at a given vocabulary. Prints one JSON line.
//   build/undo_head_loss_bench --vocab 32768 --rows 4096 --d-model 256 --fused 1 [--loss ce|kl] [--precision bf16]
//                              [--chunk ROWS (0: the default)]
// The allocator figure counts every CPU tensor's bytes (a counting allocator
// in front of LibTorch's own; oneDNN's scratch space is outside it) from just
// before the loss to its peak; the RSS figure is this process's peak resident
// memory, so bench/head-loss runs each configuration in a process of its own.
#include <sys/resource.h>

#include <mutex>
#include <thread>
#include <unordered_map>
#include <chrono>
#include <cstring>
#include <iostream>

#include <c10/core/CPUAllocator.h>

#include "core/json.h"
#include "model/head_loss.h"
#include "model/precision.h"
#include "train/fused_ce.h"
#include "train/objectives/distill.h"
#include "train/trainer.h"

using namespace undo;

namespace {

// LibTorch's CPU allocator with a count of the bytes it holds and their peak.
// Each allocation's context is its own address (raw_allocate, which oneDNN
// uses, requires it), so the sizes are kept in a table by address.
class CountingAllocator final : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* base) : base_(base) { instance_ = this; }

  c10::DataPtr allocate(size_t n) override {
    auto inner = base_->allocate(n);
    void* data = inner.get();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      held_[data] = Held{std::move(inner), n};
      now_ += int64_t(n);
      peak_ = std::max(peak_, now_);
    }
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }

  int64_t now() {
    std::lock_guard<std::mutex> lock(mutex_);
    return now_;
  }
  int64_t peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    return peak_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    peak_ = now_;
  }

 private:
  struct Held {
    c10::DataPtr inner;
    size_t bytes = 0;
  };
  static void release(void* data) {
    Held gone;  // freed through the base allocator as it leaves scope, outside the lock
    {
      std::lock_guard<std::mutex> lock(instance_->mutex_);
      auto it = instance_->held_.find(data);
      if (it == instance_->held_.end()) return;
      gone = std::move(it->second);
      instance_->held_.erase(it);
      instance_->now_ -= int64_t(gone.bytes);
    }
  }
  static inline CountingAllocator* instance_ = nullptr;
  c10::Allocator* base_;
  std::mutex mutex_;
  std::unordered_map<void*, Held> held_;
  int64_t now_ = 0, peak_ = 0;
};

int64_t max_rss_bytes() {
  struct rusage u {};
  ::getrusage(RUSAGE_SELF, &u);
  return int64_t(u.ru_maxrss) * 1024;
}

struct Options {
  int64_t vocab = 4096, rows = 4096, d_model = 256, chunk = 0;
  bool fused = true;
  std::string loss = "ce", precision = "bf16";
  int repeats = 3;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string key = argv[i], value = argv[i + 1];
    if (key == "--vocab") o.vocab = std::stoll(value);
    else if (key == "--rows") o.rows = std::stoll(value);
    else if (key == "--d-model") o.d_model = std::stoll(value);
    else if (key == "--fused") o.fused = value == "1";
    else if (key == "--loss") o.loss = value;
    else if (key == "--precision") o.precision = value;
    else if (key == "--repeats") o.repeats = std::stoi(value);
    else if (key == "--chunk") o.chunk = std::stoll(value);
    else throw std::runtime_error("unknown option " + key);
  }
  if (o.loss != "ce" && o.loss != "kl") throw std::runtime_error("--loss is ce or kl, not " + o.loss);
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    keep_freed_memory();  // as every training stage does (train/trainer.h): no fresh pages for each chunk
    at::set_num_threads(int(std::max(1u, std::thread::hardware_concurrency())));
    static CountingAllocator counting(c10::GetDefaultCPUAllocator());
    c10::SetCPUAllocator(&counting, /*priority=*/100);
    torch::manual_seed(0);
    auto h = torch::randn({o.rows, o.d_model}).requires_grad_(true);
    auto w = (torch::randn({o.vocab, o.d_model}) * 0.05).requires_grad_(true);
    std::shared_ptr<const PositionLoss> loss;
    if (o.loss == "ce") {
      loss = std::make_shared<CrossEntropyRows>(torch::randint(o.vocab, {o.rows}, torch::kLong));
    } else {  // a teacher's 32 cached ids per position, as a top-k cache gives them
      torch::NoGradGuard no_grad;
      auto ids = torch::randint(o.vocab, {o.rows, 32}, torch::kLong);
      auto logp = torch::log_softmax(torch::randn({o.rows, 32}), -1) - 0.1;
      loss = cached_kl_loss(TeacherTargets{ids, logp, torch::full({o.rows}, std::log(1 - std::exp(-0.1))), {}, {}});
    }
    AutocastGuard autocast(o.precision == "bf16", /*cuda=*/false);
    double best = 1e30;
    int64_t peak = 0;
    for (int r = 0; r < o.repeats; ++r) {
      h.mutable_grad() = torch::Tensor();
      w.mutable_grad() = torch::Tensor();
      counting.reset_peak();
      const int64_t before = counting.now();
      auto t0 = std::chrono::steady_clock::now();
      auto value = o.fused ? chunked_head_loss(h, w, 0, loss, o.chunk) : whole_logits_loss(head_logits(h, w, 0), loss);
      value.backward();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      // The gradients of h and w are outputs, kept after the call: they are not the loss's working memory.
      peak = std::max(peak, counting.peak() - before - int64_t(h.numel() + w.numel()) * int64_t(sizeof(float)));
    }
    JsonObject j;
    j.add("impl", o.fused ? "chunked" : "whole-logits").add("loss", o.loss).add("vocab", o.vocab)
        .add("rows", o.rows).add("d_model", o.d_model).add("precision", o.precision)
        .add("chunk_rows", o.chunk ? o.chunk : default_chunk_rows(o.vocab)).add("loss_peak_bytes", peak)
        .add("max_rss_bytes", max_rss_bytes()).add("step_ms", 1000 * best).add("rows_per_s", double(o.rows) / best);
    std::cout << j.str() << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "undo_head_loss_bench: " << e.what() << "\n";
    return 2;
  }
}
