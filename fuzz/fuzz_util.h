// What the harnesses share: the input as a string, and a scratch file that
// holds it for readers that take a path.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace undo::fuzz {

inline std::string text(const uint8_t* data, size_t size) { return std::string(reinterpret_cast<const char*>(data), size); }

// Writes `bytes` to this process's scratch file (under $TMPDIR) and returns its path.
const std::string& scratch_file(const std::string& bytes, const char* suffix);

}  // namespace undo::fuzz
