// The safetensors container apart from tensors: u64 header length, a JSON
// header ({"name": {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}),
// raw little-endian data. Torch-free, so that the header of an untrusted file
// is parsed and checked (fuzz/safetensors_fuzz.cpp) before any tensor is made.
// Field order and spacing are free, as in files written by the Python library.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace undo {

struct SafetensorsEntry {
  std::string name, dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets into the data, after the header
};

struct SafetensorsIndex {
  std::vector<SafetensorsEntry> tensors;  // in file order of their offsets
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // where the data starts in the file
};

// Bytes per element of a safetensors dtype name; 0 for one undo does not read.
size_t safetensors_dtype_bytes(const std::string& dtype);

// Parses the header of a file of `file_size` bytes whose first bytes are
// `head` (at least the header). Checks that every tensor's bytes lie inside
// the data and match its shape and dtype; throws naming `path`, the tensor
// and the field.
SafetensorsIndex parse_safetensors_header(const std::string& head, uint64_t file_size, const std::string& path);

}  // namespace undo
