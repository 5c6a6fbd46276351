// results.csv / curves.csv as the report reads them.
#include <exception>

#include "fuzz_util.h"
#include "results/csv_table.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto rows = undo::parse_csv(undo::fuzz::text(data, size), "fuzz.csv", {"model"}, {"model", "role"});
    for (auto& r : rows)
      if (!r.count("model")) __builtin_trap();
  } catch (const std::exception&) {
  }
  return 0;
}
