// Export to the safetensors layout (u64 header length, JSON header, raw
// little-endian data) so that weights load in Python with safetensors or numpy.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>

namespace undo {

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata);
// Reads F32/BF16/F16/I64 tensors back (for tests and round trips).
std::map<std::string, torch::Tensor> read_safetensors(const std::string& path);

}  // namespace undo
