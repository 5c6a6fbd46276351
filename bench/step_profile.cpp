#include "step_profile.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iomanip>
#include <set>
#include <unordered_map>

namespace undo::bench {
namespace {

namespace prof = torch::autograd::profiler;
using Clock = std::chrono::steady_clock;

struct Event {
  std::string name;
  uint64_t start, end, thread;
  int64_t seq;
  int parent = -1;
  double child_ns = 0;
};

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }
bool is_backward_call(const std::string& name) { return starts_with(name, "autograd::engine::evaluate_function"); }

// Parents by time nesting within each thread: an event's parent is the
// innermost earlier event on its thread that has not ended when it starts.
std::vector<Event> nested_events(const std::vector<prof::KinetoEvent>& raw) {
  std::vector<Event> ev;
  for (const auto& e : raw)
    if (e.deviceType() == c10::DeviceType::CPU && e.durationNs() > 0)
      ev.push_back({e.name(), e.startNs(), e.endNs(), e.startThreadId(), e.sequenceNr()});
  std::sort(ev.begin(), ev.end(), [](const Event& a, const Event& b) {
    return a.thread != b.thread ? a.thread < b.thread : a.start != b.start ? a.start < b.start : a.end > b.end;
  });
  std::vector<int> open;
  for (int i = 0; i < int(ev.size()); ++i) {
    while (!open.empty() && (ev[size_t(open.back())].thread != ev[size_t(i)].thread ||
                             ev[size_t(open.back())].end <= ev[size_t(i)].start))
      open.pop_back();
    if (!open.empty()) {
      ev[size_t(i)].parent = open.back();
      ev[size_t(open.back())].child_ns += double(ev[size_t(i)].end - ev[size_t(i)].start);
    }
    open.push_back(i);
  }
  return ev;
}

// Each event's undo:: scope: its own name, its forward operator's scope for a
// backward call, else its parent's ("" outside every scope).
std::vector<std::string> scopes_of(const std::vector<Event>& ev) {
  std::vector<std::string> scope(ev.size());
  std::vector<bool> in_backward(ev.size(), false);
  std::unordered_map<int64_t, std::string> forward_scope;  // sequence number -> scope
  auto resolve = [&](bool link_backward) {
    for (size_t i = 0; i < ev.size(); ++i) {  // parents come before their children
      const int p = ev[i].parent;
      in_backward[i] = is_backward_call(ev[i].name) || (p >= 0 && in_backward[size_t(p)]);
      if (starts_with(ev[i].name, "undo::")) {
        scope[i] = ev[i].name;
      } else if (link_backward && is_backward_call(ev[i].name) && forward_scope.count(ev[i].seq)) {
        scope[i] = forward_scope[ev[i].seq];
      } else {
        scope[i] = p >= 0 ? scope[size_t(p)] : "";
      }
      if (!link_backward && !in_backward[i] && ev[i].seq >= 0 && !scope[i].empty()) forward_scope[ev[i].seq] = scope[i];
    }
  };
  resolve(false);
  resolve(true);
  return scope;
}

std::string bucket_of(const std::string& op, const std::string& scope) {
  static const std::set<std::string> gemm = {"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm"};
  static const std::set<std::string> alloc = {"aten::empty", "aten::empty_strided", "aten::resize_"};
  static const std::map<std::string, std::string> named = {{"undo::norm", "norms (RMSNorm)"},
                                                           {"undo::rotary", "rotary"},
                                                           {"undo::attention", "attention (softmax, mask)"},
                                                           {"undo::activation", "gated activation (GeGLU)"},
                                                           {"undo::loss", "loss (outside its GEMMs)"},
                                                           {"undo::optimizer", "optimizer (AdamW)"}};
  if (gemm.count(op)) return "GEMM";
  if (alloc.count(op)) return "allocator";
  auto it = named.find(scope);
  return it == named.end() ? "elementwise and other" : it->second;
}

}  // namespace

void StepProfile::start() {
  const std::set<torch::profiler::impl::ActivityType> cpu = {torch::profiler::impl::ActivityType::CPU};
  const torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO);
  prof::prepareProfiler(config, cpu);
  prof::enableProfiler(config, cpu);
  started_ = Clock::now();
}

void StepProfile::stop(int steps) {
  const double wall_ms = std::chrono::duration<double, std::milli>(Clock::now() - started_).count();
  auto result = prof::disableProfiler();
  const auto ev = nested_events(result->events());
  const auto scope = scopes_of(ev);
  std::map<std::string, double> by_op;
  double recorded_ms = 0;
  for (size_t i = 0; i < ev.size(); ++i) {
    const double self_ms = (double(ev[i].end - ev[i].start) - ev[i].child_ns) / 1e6 / steps;
    bucket_ms_[bucket_of(ev[i].name, scope[i])] += self_ms;
    by_op[ev[i].name] += self_ms;
    recorded_ms += self_ms;
  }
  step_ms_ = wall_ms / steps;
  // What no operator covers: the Trainer's own code, data, and waits between operators.
  bucket_ms_["outside any operator"] = std::max(0.0, step_ms_ - recorded_ms);
  for (auto& [name, ms] : by_op) top_.emplace_back(ms, name);
  std::sort(top_.rbegin(), top_.rend());
  if (top_.size() > 30) top_.resize(30);
}

void StepProfile::print(std::ostream& out) const {
  out << std::fixed << std::setprecision(1);
  out << "profile of one step (" << step_ms_ << " ms, self time of each operator, LibTorch's profiler):\n";
  std::vector<std::pair<double, std::string>> rows;
  for (auto& [name, ms] : bucket_ms_) rows.emplace_back(ms, name);
  std::sort(rows.rbegin(), rows.rend());
  for (auto& [ms, name] : rows)
    out << "  " << std::left << std::setw(28) << name << std::right << std::setw(9) << ms << " ms "
        << std::setw(6) << 100 * ms / step_ms_ << " %\n";
  out << "operators taking the most self time:\n";
  for (auto& [ms, name] : top_)
    out << "  " << std::left << std::setw(44) << name << std::right << std::setw(9) << ms << " ms\n";
}

double measured_gemm_gflops(const ModelConfig& m, int64_t rows, const std::string& precision, bool fused_blocks) {
  const auto dtype = precision == "bf16" ? torch::kBFloat16 : torch::kFloat;
  const int64_t d = m.d_model, q = int64_t(m.n_heads) * m.head_size(), kv = int64_t(m.kv_heads()) * m.head_size();
  const int64_t T = m.seq_len, batch = std::max<int64_t>(1, rows / T) * m.n_heads, hd = m.head_size();
  struct Product {
    std::vector<int64_t> a, b;
    double count;  // how many of it a forward runs
  };
  const double L = m.n_layers;
  // Fused blocks (model/block_kernels.h) make q, k and v one product, and gate and up another.
  std::vector<Product> products = {{{rows, m.d_ff}, {m.d_ff, d}, L},       {{rows, q}, {q, d}, L},
                                   {{batch, T, hd}, {batch, hd, T}, L}, {{batch, T, T}, {batch, T, hd}, L},
                                   {{rows, d}, {d, m.vocab_size}, 1}};
  if (fused_blocks)
    products.insert(products.end(), {{{rows, d}, {d, q + 2 * kv}, L}, {{rows, d}, {d, 2 * m.d_ff}, L}});
  else
    products.insert(products.end(), {{{rows, d}, {d, q}, L}, {{rows, d}, {d, kv}, 2 * L}, {{rows, d}, {d, m.d_ff}, 2 * L}});
  double flops = 0, seconds = 0;
  for (const auto& p : products) {
    auto a = torch::randn(p.a).to(dtype), b = torch::randn(p.b).to(dtype);
    double best = 1e30;
    for (int r = 0; r < 6; ++r) {  // the first run warms the kernel's caches and is not kept
      auto t0 = Clock::now();
      auto c = torch::matmul(a, b);
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      if (r > 0) best = std::min(best, s);
    }
    const double product_flops = 2.0 * double(a.numel()) * double(p.b.back());
    flops += p.count * product_flops;
    seconds += p.count * best;
  }
  return flops / seconds / 1e9;
}

}  // namespace undo::bench
