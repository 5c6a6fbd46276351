#include "model/safetensors.h"

#include <cstring>
#include <regex>

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"

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
  UNDO_CHECK(file.size() >= 8, "safetensors file '", path, "' is truncated");
  uint64_t n;
  std::memcpy(&n, file.data(), 8);
  UNDO_CHECK(8 + n <= file.size(), "safetensors file '", path, "' has a header longer than the file");
  std::string header = file.substr(8, n);
  const char* data = file.data() + 8 + n;
  size_t data_len = file.size() - 8 - n;
  std::map<std::string, torch::Tensor> out;
  // Entries written by write_safetensors (and by the Python library) have this shape.
  std::regex entry("\"([^\"]+)\": \\{\"dtype\": ?\"([A-Z0-9]+)\", \"shape\": ?\\[([0-9, ]*)\\], "
                   "\"data_offsets\": ?\\[([0-9]+), ?([0-9]+)\\]\\}");
  for (std::sregex_iterator it(header.begin(), header.end(), entry), end; it != end; ++it) {
    auto& m = *it;
    std::vector<int64_t> shape;
    std::string dims = m[3];
    size_t pos = 0;
    while (pos < dims.size()) {
      size_t next = dims.find(',', pos);
      std::string part = dims.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
      if (part.find_first_not_of(' ') != std::string::npos) shape.push_back(std::stoll(part));
      if (next == std::string::npos) break;
      pos = next + 1;
    }
    size_t b = std::stoull(m[4]), e = std::stoull(m[5]);
    UNDO_CHECK(b <= e && e <= data_len, "safetensors '", path, "': tensor ", m[1], " lies outside the file");
    auto t = torch::empty(shape, torch::TensorOptions().dtype(dtype_from(m[2])));
    UNDO_CHECK(size_t(t.numel()) * t.element_size() == e - b, "safetensors '", path, "': tensor ", m[1],
               " has ", e - b, " bytes for its shape");
    std::memcpy(t.data_ptr(), data + b, e - b);
    out[m[1]] = t;
  }
  return out;
}

}  // namespace undo
