// The CSV tables a sweep writes (results.csv, curves.csv) read back by column
// name, for the report. Plain cells only: the writers never put a comma, a
// quote or a newline in a cell. Torch-free and fuzzed (fuzz/csv_fuzz.cpp).
#pragma once
#include <map>
#include <set>
#include <string>
#include <vector>

namespace undo {

using CsvRow = std::map<std::string, std::string>;

// The rows of CSV `text`; every column in `required` must be in the header,
// and every cell of a column not in `text_columns` must be empty or a number,
// so that no reader of a cell ever meets garbage. Errors name `source` (a
// path), the line and the column.
std::vector<CsvRow> parse_csv(const std::string& text, const std::string& source,
                              const std::vector<std::string>& required, const std::set<std::string>& text_columns);
// The same for the file at `path`, which must exist.
std::vector<CsvRow> read_csv(const std::string& path, const std::vector<std::string>& required,
                             const std::set<std::string>& text_columns);

}  // namespace undo
