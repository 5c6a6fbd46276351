#include "results/csv_table.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <sstream>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"

namespace undo {
namespace {

std::vector<std::string> split_cells(const std::string& line) {
  std::vector<std::string> out;
  std::string cell;
  std::istringstream ss(line);
  while (std::getline(ss, cell, ',')) out.push_back(cell);
  if (!line.empty() && line.back() == ',') out.push_back("");
  return out;
}

}  // namespace

std::vector<CsvRow> parse_csv(const std::string& text, const std::string& source,
                              const std::vector<std::string>& required, const std::set<std::string>& text_columns) {
  std::istringstream in(text);
  std::string line;
  std::vector<std::string> header;
  if (std::getline(in, line)) header = split_cells(line);
  for (auto& column : required)
    UNDO_INPUT_CHECK(std::find(header.begin(), header.end(), column) != header.end(), "'", source,
                     "' has no column '", column, "' (written by another version? run `undo sweep collect` again)");
  std::vector<std::string> seen = header;
  std::sort(seen.begin(), seen.end());
  auto twice = std::adjacent_find(seen.begin(), seen.end());
  UNDO_INPUT_CHECK(twice == seen.end(), "'", source, "' names column '", printable(twice == seen.end() ? "" : *twice),
                   "' twice");
  std::vector<CsvRow> rows;
  for (int n = 2; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    auto cells = split_cells(line);
    UNDO_INPUT_CHECK(cells.size() == header.size(), source, ":", n, ": ", cells.size(), " cells, the header has ",
                     header.size());
    CsvRow r;
    for (size_t i = 0; i < header.size(); ++i) {
      const std::string& c = cells[i];
      if (!c.empty() && !text_columns.count(header[i])) {
        char* end = nullptr;
        std::strtod(c.c_str(), &end);
        UNDO_INPUT_CHECK(end == c.c_str() + c.size() && !std::isspace(static_cast<unsigned char>(c[0])), source, ":",
                         n, ": column '", printable(header[i]), "' holds '", printable(c), "', not a number");
      }
      r[header[i]] = c;
    }
    rows.push_back(std::move(r));
  }
  return rows;
}

std::vector<CsvRow> read_csv(const std::string& path, const std::vector<std::string>& required,
                             const std::set<std::string>& text_columns) {
  UNDO_INPUT_CHECK(file_exists(path), "'", path, "' is missing: run `undo sweep collect` first");
  return parse_csv(read_file(path), path, required, text_columns);
}

}  // namespace undo
