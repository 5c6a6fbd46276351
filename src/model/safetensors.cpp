#include "model/safetensors.h"

#include <cstring>

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "formats/safetensors_file.h"

namespace undo {
namespace {

const char* dtype_name(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat: return "F32";
    case torch::kBFloat16: return "BF16";
    case torch::kHalf: return "F16";
    case torch::kLong: return "I64";
    default: UNDO_FAIL("safetensors export: unsupported dtype ", t);
  }
}

torch::ScalarType dtype_from(const std::string& s) {
  if (s == "F32") return torch::kFloat;
  if (s == "BF16") return torch::kBFloat16;
  if (s == "F16") return torch::kHalf;
  if (s == "I64") return torch::kLong;
  UNDO_FAIL("safetensors: unsupported dtype ", s);
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  JsonObject header;
  JsonObject meta;
  for (auto& [k, v] : metadata) meta.add(k, v);
  header.add("__metadata__", meta);
  std::string data;
  for (auto& [name, t0] : tensors) {
    auto t = t0.detach().contiguous().cpu();
    std::string shape = "[";
    for (int64_t i = 0; i < t.dim(); ++i) shape += (i ? "," : "") + std::to_string(t.size(i));
    shape += "]";
    size_t begin = data.size(), bytes = size_t(t.numel()) * t.element_size();
    data.append(static_cast<const char*>(t.data_ptr()), bytes);
    header.add_raw(name, "{\"dtype\": \"" + std::string(dtype_name(t.scalar_type())) + "\", \"shape\": " + shape +
                             ", \"data_offsets\": [" + std::to_string(begin) + ", " + std::to_string(begin + bytes) +
                             "]}");
  }
  std::string h = header.str();
  h.append((8 - h.size() % 8) % 8, ' ');  // the format allows trailing spaces; keeps data 8-byte aligned
  uint64_t n = h.size();
  std::string file(8, '\0');
  std::memcpy(&file[0], &n, 8);
  write_file_atomic(path, file + h + data);
}

std::map<std::string, torch::Tensor> read_safetensors(const std::string& path) {
  std::string file = read_file(path);
  auto index = parse_safetensors_header(file, file.size(), path);
  const char* data = file.data() + index.data_offset;
  std::map<std::string, torch::Tensor> out;
  for (auto& e : index.tensors) {
    auto t = torch::empty(e.shape, torch::TensorOptions().dtype(dtype_from(e.dtype)));
    std::memcpy(t.data_ptr(), data + e.begin, e.end - e.begin);  // sizes checked by the header parser
    out[e.name] = t;
  }
  return out;
}

}  // namespace undo
