#include "formats/safetensors_file.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/config.h"
#include "core/error.h"
#include "core/json.h"

namespace undo {
namespace {

constexpr uint64_t kMaxHeader = 100u << 20;  // the format's own limit

// "[1, 2, 3]" -> {1, 2, 3}: non-negative integers only.
std::vector<int64_t> integer_list(const std::string& raw, const std::string& what) {
  UNDO_INPUT_CHECK(raw.size() >= 2 && raw.front() == '[' && raw.back() == ']', what, " is not a list: '", raw, "'");
  std::vector<int64_t> out;
  std::string body = raw.substr(1, raw.size() - 2);
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) return out;
  size_t pos = 0;
  while (true) {
    size_t comma = body.find(',', pos);
    std::string item = body.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    auto b = item.find_first_not_of(" \t\r\n"), e = item.find_last_not_of(" \t\r\n");
    item = b == std::string::npos ? "" : item.substr(b, e - b + 1);
    out.push_back(parse_integer(what, item, 0));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

}  // namespace

size_t safetensors_dtype_bytes(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL") return 1;
  return 0;
}

SafetensorsIndex parse_safetensors_header(const std::string& head, uint64_t file_size, const std::string& path) {
  const std::string where = "safetensors file '" + path + "'";
  UNDO_INPUT_CHECK(head.size() >= 8 && file_size >= 8, where, " is truncated (no header length)");
  uint64_t n = 0;
  std::memcpy(&n, head.data(), 8);
  UNDO_INPUT_CHECK(n <= kMaxHeader, where, ": header length ", n, " is over the format's 100 MiB");
  UNDO_INPUT_CHECK(n <= file_size - 8, where, ": header length ", n, " is past the end of the file (", file_size,
                   " bytes)");
  UNDO_INPUT_CHECK(head.size() >= 8 + n, where, ": header cut short");
  SafetensorsIndex index;
  index.data_offset = 8 + n;
  const uint64_t data_len = file_size - index.data_offset;
  std::map<std::string, std::string> top;
  try {
    top = parse_flat_json(head.substr(8, n));
  } catch (const std::exception& e) {
    UNDO_INPUT_FAIL(where, ": header is not a JSON object: ", e.what());
  }
  for (auto& [name, raw] : top) {
    const std::string what = where + ", tensor '" + printable(name) + "'";
    try {
      if (name == "__metadata__") {
        index.metadata = parse_flat_json(raw);
        continue;
      }
      auto fields = parse_flat_json(raw);
      for (const char* k : {"dtype", "shape", "data_offsets"})
        UNDO_INPUT_CHECK(fields.count(k), what, " has no '", k, "'");
      SafetensorsEntry t;
      t.name = name;
      t.dtype = fields["dtype"];
      const size_t elem = safetensors_dtype_bytes(t.dtype);
      UNDO_INPUT_CHECK(elem > 0, what, ": dtype '", printable(t.dtype), "' is not one undo reads");
      t.shape = integer_list(fields["shape"], what + " shape");
      auto offsets = integer_list(fields["data_offsets"], what + " data_offsets");
      UNDO_INPUT_CHECK(offsets.size() == 2, what, ": data_offsets needs [begin, end]");
      t.begin = uint64_t(offsets[0]), t.end = uint64_t(offsets[1]);
      UNDO_INPUT_CHECK(t.begin <= t.end && t.end <= data_len, what, ": data_offsets [", t.begin, ", ", t.end,
                       "] lie outside the ", data_len, " data bytes");
      uint64_t bytes = elem;
      for (int64_t d : t.shape) {
        UNDO_INPUT_CHECK(d == 0 || bytes <= std::numeric_limits<uint64_t>::max() / uint64_t(d), what,
                         ": shape overflows");
        bytes *= uint64_t(d);
      }
      UNDO_INPUT_CHECK(bytes == t.end - t.begin, what, ": ", t.end - t.begin, " bytes for a ", t.dtype,
                       " shape needing ", bytes);
      index.tensors.push_back(std::move(t));
    } catch (const InputError&) {
      throw;
    } catch (const std::exception& e) {
      UNDO_INPUT_FAIL(what, ": ", e.what());
    }
  }
  std::sort(index.tensors.begin(), index.tensors.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < index.tensors.size(); ++i)
    UNDO_INPUT_CHECK(index.tensors[i].begin >= index.tensors[i - 1].end, where, ": tensors '",
                     printable(index.tensors[i - 1].name), "' and '", printable(index.tensors[i].name), "' overlap");
  return index;
}

}  // namespace undo
