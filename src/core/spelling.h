// "Did you mean ...": the nearest of the names a program knows to one it was
// given, for the messages that refuse an unknown configuration key or stage.
#pragma once
#include <string>
#include <vector>

namespace undo {

// The name in `names` nearest to `typed` by edit distance (insertions,
// deletions, substitutions and swaps of neighbours), where it is near enough
// to be a slip: at most 1 for names of up to 4 letters, 2 up to 8, else 3.
// A key given without its section ("steps") is matched against the part
// after each name's dot too. "" where none is near enough.
std::string nearest_name(const std::string& typed, const std::vector<std::string>& names);

// " (did you mean 'NAME'?)", or "" where nearest_name finds none.
std::string did_you_mean(const std::string& typed, const std::vector<std::string>& names);

}  // namespace undo
