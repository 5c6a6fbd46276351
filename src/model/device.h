// Where models and batches live: run.device. Every stage moves its models
// there after prepare_run and every data path moves its batches there; on CPU
// those moves are no-ops. Checkpoints and caches are always written from CPU
// copies, so files made on a GPU load anywhere.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <string>

namespace undo {

// "cpu" or "cuda"; with cuda, rank `local_rank` of a node takes GPU
// local_rank % (visible GPUs). Fails with an InputError naming run.device when
// this LibTorch has no CUDA or no GPU is visible.
void select_compute_device(const std::string& name, int local_rank);
c10::Device compute_device();  // CPU until select_compute_device runs
bool computing_on_cuda();
// A batch built on the host, on the compute device. On a GPU it goes through
// pinned memory and does not block: the copy overlaps the step already queued.
// `host` must own its memory (not a from_blob view of a buffer about to die).
at::Tensor to_compute_device(const at::Tensor& host);
// Waits for the GPU's queued work (a no-op on the CPU): for timings only.
void synchronize_compute_device();

// The libraries this build computes with: "2.11.0" and the CUDA runtime's
// version ("13.0"), or "" where this LibTorch has none. For `undo --version`
// and each run directory's version.json.
std::string libtorch_version();
std::string cuda_runtime_version();

// A tensor's memory taken away and given back under it, its shape, dtype,
// device and every view of it staying (FSDP's way): for parameters whose
// values live elsewhere (zero 3's shards) between the moments they are used.
// A tensor without its memory must not be read.
void free_storage(const at::Tensor& t);
void allocate_storage(const at::Tensor& t);
int64_t storage_bytes(const at::Tensor& t);  // 0 for an undefined tensor

}  // namespace undo
