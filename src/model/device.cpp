#include "model/device.h"

#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/version.h>
#include <torch/cuda.h>

#include "core/error.h"

namespace undo {
namespace {
c10::Device& current() {
  static c10::Device device(c10::kCPU);
  return device;
}
}  // namespace

void select_compute_device(const std::string& name, int local_rank) {
  if (name == "cpu") {
    current() = c10::Device(c10::kCPU);
    return;
  }
  UNDO_INPUT_CHECK(name == "cuda", "run.device = '", name, "': expected cpu or cuda");
  UNDO_INPUT_CHECK(torch::cuda::is_available(), "run.device = cuda, but ",
                   torch::cuda::device_count() == 0 ? "no GPU is visible to this process"
                                                    : "CUDA is not usable here",
                   " (a CPU-only LibTorch sees none: build against LibTorch with CUDA, docs/ARCHITECTURE.md)");
  int gpus = int(torch::cuda::device_count());
  current() = c10::Device(c10::kCUDA, c10::DeviceIndex(local_rank % gpus));
  // Also the process's current GPU, so that NCCL and allocations without an explicit device land there.
  c10::impl::getDeviceGuardImpl(c10::kCUDA)->setDevice(current());
}

c10::Device compute_device() { return current(); }

bool computing_on_cuda() { return current().is_cuda(); }

at::Tensor to_compute_device(const at::Tensor& host) {
  if (!computing_on_cuda()) return host;
  // The pinned copy stays alive until its transfer ends (LibTorch's caching host allocator tracks it).
  return host.pin_memory().to(current(), /*non_blocking=*/true);
}

void synchronize_compute_device() {
  if (computing_on_cuda()) torch::cuda::synchronize(current().index());
}

void free_storage(const at::Tensor& t) {
  auto* s = t.storage().unsafeGetStorageImpl();
  if (s->nbytes() == 0) return;
  s->set_data_ptr_noswap(at::DataPtr(nullptr, t.device()));
  s->set_nbytes(0);
}

void allocate_storage(const at::Tensor& t) {
  auto* s = t.storage().unsafeGetStorageImpl();
  const size_t bytes = size_t(t.numel()) * t.element_size();
  if (s->nbytes() == bytes) return;
  s->set_data_ptr_noswap(s->allocator()->allocate(bytes));
  s->set_nbytes(bytes);
}

int64_t storage_bytes(const at::Tensor& t) {
  return t.defined() ? int64_t(t.storage().unsafeGetStorageImpl()->nbytes()) : 0;
}

std::string libtorch_version() { return TORCH_VERSION; }

std::string cuda_runtime_version() {
  const auto& hooks = at::detail::getCUDAHooks();
  if (!hooks.hasCUDART()) return "";
  const long v = hooks.versionCUDART();  // 13000 for CUDA 13.0
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

}  // namespace undo
