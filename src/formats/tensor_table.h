// The payload of a version-2 or 3 checkpoint: a table that names each tensor, its
// dtype and shape and where its bytes lie, then the tensors' raw bytes
// (little-endian, row-major, each starting on a 64-byte boundary).
//
// The table comes first and is fixed before any tensor is written, so that
//  - a writer streams the tensors one at a time (a zero-3 run gathers one unit,
//    writes it and frees it: no rank ever holds the model whole to save it);
//  - a reader takes any tensor, or any run of elements of one, without reading
//    the others (a zero-3 rank reads only its shards).
// Torch-free, like the container (formats/checkpoint_file.h), so that what is
// parsed before anything is trusted can be fuzzed alone.
//
// Layout: u64 table_bytes, then table_bytes of text, one line per tensor:
//   name \t dtype \t dims (comma-separated; empty for a scalar) \t offset \t bytes \n
// offsets counted from the end of the table, in the order of the lines.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace undo {

struct TensorEntry {
  std::string name;
  std::string dtype;  // f32, bf16, f16, i64, u8
  std::vector<int64_t> shape;
  uint64_t offset = 0, bytes = 0;  // filled by layout_tensor_table
  uint64_t numel() const;
};

// Bytes per element of a dtype name; 0 for a name this format does not know.
size_t tensor_dtype_size(const std::string& dtype);

struct TensorTable {
  std::vector<TensorEntry> entries;
  uint64_t data_at = 0;     // where the first tensor's bytes start in the payload
  uint64_t data_bytes = 0;  // from there to the payload's end
  const TensorEntry* find(const std::string& name) const;  // null when absent
};

// Sets each entry's offset and bytes, and returns the payload's head (the
// length and the table); `table` gets the layout. Throws on a name that
// repeats or holds a tab or newline, or an unknown dtype.
std::string layout_tensor_table(const std::vector<TensorEntry>& entries, TensorTable* table);

// The table of a payload of `size` bytes (the whole payload, or at least its
// head), with every entry checked against the payload's size: known dtype,
// bytes = numel x dtype size without overflow, in order, 64-aligned, within
// the payload. Throws InputError naming `path` and the line.
TensorTable parse_tensor_table(const uint8_t* payload, uint64_t size, const std::string& path);

}  // namespace undo
