// The JSON readers: manifests and metrics lines (parse_flat_json), a
// JSON-lines file, and an attack curve's points read from such lines.
#include <exception>

#include "core/json.h"
#include "fuzz_util.h"
#include "results/attack_curve.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes = undo::fuzz::text(data, size);
  try {
    undo::parse_flat_json(bytes);
  } catch (const std::exception&) {
  }
  try {
    for (auto& line : undo::read_json_lines(undo::fuzz::scratch_file(bytes, ".jsonl"))) {
      try {
        undo::AttackPoint::from_json(line);
      } catch (const std::exception&) {
      }
    }
  } catch (const std::exception&) {
  }
  return 0;
}
