// results.csv / curves.csv as the report reads them: the cells by column
// name, then the typed rows (results/results_table.h).
#include <exception>

#include "fuzz_util.h"
#include "results/csv_table.h"
#include "results/results_table.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text = undo::fuzz::text(data, size);
  try {
    auto rows = undo::parse_csv(text, "fuzz.csv", {"model"}, {"model", "role"});
    for (auto& r : rows)
      if (!r.count("model")) __builtin_trap();
  } catch (const std::exception&) {
  }
  try {
    undo::parse_results_csv(text, "results.csv");
  } catch (const std::exception&) {
  }
  return 0;
}
