// Mixed precision: bf16 autocast over fp32 master weights. The autocast API
// moved between LibTorch 1.13 and 2.x; the difference is confined here.
#pragma once
#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <string>

namespace undo {

// The dtype autocast computes matrix products in.
constexpr auto kComputeDtype = at::kBFloat16;

class AutocastGuard {
 public:
  // enabled=false is a no-op, so call sites need no branches.
  AutocastGuard(bool enabled, bool cuda) : enabled_(enabled), cuda_(cuda) {
    if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    auto dev = cuda_ ? at::kCUDA : at::kCPU;
    at::autocast::set_autocast_dtype(dev, kComputeDtype);
    at::autocast::set_autocast_enabled(dev, true);
#else
    if (cuda_) {
      at::autocast::set_autocast_gpu_dtype(kComputeDtype);
      at::autocast::set_enabled(true);
    } else {
      at::autocast::set_autocast_cpu_dtype(kComputeDtype);
      at::autocast::set_cpu_enabled(true);
    }
#endif
  }
  ~AutocastGuard() {
    if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(cuda_ ? at::kCUDA : at::kCPU, false);
#else
    if (cuda_) at::autocast::set_enabled(false);
    else at::autocast::set_cpu_enabled(false);
#endif
    at::autocast::clear_cache();  // drop the bf16 weight copies made for this pass
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool enabled_, cuda_;
};

}  // namespace undo
