#include "core/spelling.h"

#include <algorithm>
#include <limits>

namespace undo {
namespace {

// Optimal string alignment distance (Damerau-Levenshtein without repeated
// edits of one substring): a swapped pair of letters, the commonest slip, is one edit.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

size_t allowed_edits(const std::string& typed) { return typed.size() <= 4 ? 1 : typed.size() <= 8 ? 2 : 3; }

}  // namespace

std::string nearest_name(const std::string& typed, const std::vector<std::string>& names) {
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  const bool sectioned = typed.find('.') != std::string::npos;
  for (const std::string& name : names) {
    size_t distance = edit_distance(typed, name);
    if (const auto dot = name.find('.'); !sectioned && dot != std::string::npos)
      distance = std::min(distance, edit_distance(typed, name.substr(dot + 1)));
    if (distance < best_distance) best_distance = distance, best = name;
  }
  return best_distance <= allowed_edits(typed) ? best : "";
}

std::string did_you_mean(const std::string& typed, const std::vector<std::string>& names) {
  const std::string near = nearest_name(typed, names);
  return near.empty() ? "" : " (did you mean '" + near + "'?)";
}

}  // namespace undo
