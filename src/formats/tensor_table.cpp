#include "formats/tensor_table.h"

#include <cstring>
#include <limits>
#include <set>
#include <sstream>

#include "core/error.h"

namespace undo {
namespace {

constexpr uint64_t kAlign = 64;

uint64_t align_up(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// The fields of one table line, split at tabs (exactly five).
std::vector<std::string> fields_of(const std::string& line) {
  std::vector<std::string> out;
  size_t at = 0;
  for (;;) {
    size_t tab = line.find('\t', at);
    out.push_back(line.substr(at, tab == std::string::npos ? std::string::npos : tab - at));
    if (tab == std::string::npos) return out;
    at = tab + 1;
  }
}

// A decimal number with nothing else around it, at most `max`.
bool parse_u64(const std::string& s, uint64_t max, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const uint64_t d = uint64_t(c - '0');
    if (v > (max - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

}  // namespace

uint64_t TensorEntry::numel() const {
  uint64_t n = 1;
  for (auto d : shape) n *= uint64_t(d);
  return n;
}

size_t tensor_dtype_size(const std::string& dtype) {
  if (dtype == "f32") return 4;
  if (dtype == "bf16" || dtype == "f16") return 2;
  if (dtype == "i64") return 8;
  if (dtype == "u8") return 1;
  return 0;
}

const TensorEntry* TensorTable::find(const std::string& name) const {
  for (auto& e : entries)
    if (e.name == name) return &e;
  return nullptr;
}

std::string layout_tensor_table(const std::vector<TensorEntry>& entries, TensorTable* table) {
  table->entries = entries;
  std::set<std::string> names;
  std::ostringstream text;
  uint64_t at = 0;
  for (auto& e : table->entries) {
    UNDO_CHECK(!e.name.empty() && e.name.find_first_of("\t\n") == std::string::npos, "tensor name '", e.name,
               "' is empty or holds a tab or newline");
    UNDO_CHECK(names.insert(e.name).second, "tensor '", e.name, "' twice in one checkpoint");
    const size_t width = tensor_dtype_size(e.dtype);
    UNDO_CHECK(width > 0, "tensor '", e.name, "' has dtype '", e.dtype, "', which checkpoints do not store");
    e.offset = at;
    e.bytes = e.numel() * width;
    at = align_up(at + e.bytes);
    text << e.name << '\t' << e.dtype << '\t';
    for (size_t i = 0; i < e.shape.size(); ++i) text << (i ? "," : "") << e.shape[i];
    text << '\t' << e.offset << '\t' << e.bytes << '\n';
  }
  std::string body = text.str();
  // The data starts aligned in the payload too (the table's length pads it).
  body.resize(size_t(align_up(8 + body.size()) - 8), '\n');
  const uint64_t table_bytes = body.size();
  std::string head(8, '\0');
  std::memcpy(&head[0], &table_bytes, 8);
  table->data_at = 8 + table_bytes;
  table->data_bytes = at;
  return head + body;
}

TensorTable parse_tensor_table(const uint8_t* payload, uint64_t size, const std::string& path) {
  auto where = [&] { return "checkpoint '" + path + "': its tensor table "; };
  UNDO_INPUT_CHECK(size >= 8, where(), "is missing (a payload of ", size, " bytes)");
  uint64_t table_bytes;
  std::memcpy(&table_bytes, payload, 8);
  UNDO_INPUT_CHECK(table_bytes <= size - 8, where(), "claims ", table_bytes, " bytes of a ", size, "-byte payload");
  TensorTable table;
  table.data_at = 8 + table_bytes;
  table.data_bytes = size - table.data_at;
  const std::string text(reinterpret_cast<const char*>(payload) + 8, size_t(table_bytes));
  std::istringstream lines(text);
  std::string line;
  std::set<std::string> names;
  uint64_t next = 0;  // the least offset the next tensor may have
  int number = 0;
  while (std::getline(lines, line)) {
    ++number;
    if (line.empty()) continue;  // the padding
    auto bad = [&](const std::string& what) {
      return where() + "line " + std::to_string(number) + " ('" + line.substr(0, 80) + "'): " + what;
    };
    auto f = fields_of(line);
    if (f.size() != 5) throw InputError(bad("expected 5 tab-separated fields, found " + std::to_string(f.size())));
    TensorEntry e;
    e.name = f[0];
    e.dtype = f[1];
    if (e.name.empty() || !names.insert(e.name).second) throw InputError(bad("empty or repeated name"));
    const size_t width = tensor_dtype_size(e.dtype);
    if (width == 0) throw InputError(bad("unknown dtype '" + e.dtype + "'"));
    // Each dimension is bounded and their product is checked as it grows, so
    // that numel x width cannot wrap around to a size that fits the file.
    uint64_t numel = 1;
    if (!f[2].empty()) {
      std::string dims = f[2];
      size_t at = 0;
      for (;;) {
        size_t comma = dims.find(',', at);
        std::string d = dims.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
        uint64_t v;
        if (!parse_u64(d, uint64_t(std::numeric_limits<int64_t>::max()), &v))
          throw InputError(bad("bad dimension '" + d + "'"));
        if (v != 0 && numel > std::numeric_limits<uint64_t>::max() / width / v)
          throw InputError(bad("its shape overflows"));
        numel *= v;
        e.shape.push_back(int64_t(v));
        if (comma == std::string::npos) break;
        at = comma + 1;
      }
    }
    if (!parse_u64(f[3], std::numeric_limits<uint64_t>::max(), &e.offset) ||
        !parse_u64(f[4], std::numeric_limits<uint64_t>::max(), &e.bytes))
      throw InputError(bad("bad offset or byte count"));
    if (e.bytes != numel * width)
      throw InputError(bad(std::to_string(e.bytes) + " bytes for " + std::to_string(numel) + " elements of " +
                           e.dtype));
    if (e.offset % kAlign != 0 || e.offset < next) throw InputError(bad("offset out of order or unaligned"));
    if (e.offset > table.data_bytes || e.bytes > table.data_bytes - e.offset)
      throw InputError(bad("runs past the payload's end (" + std::to_string(table.data_bytes) + " bytes of data)"));
    next = e.offset + e.bytes;
    table.entries.push_back(std::move(e));
  }
  return table;
}

}  // namespace undo
