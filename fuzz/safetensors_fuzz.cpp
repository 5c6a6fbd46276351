// The safetensors header of an untrusted file: every tensor it accepts must
// lie inside the file with exactly its shape's bytes.
#include <exception>

#include "formats/safetensors_file.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto index = undo::parse_safetensors_header(undo::fuzz::text(data, size), size, "fuzz.safetensors");
    for (auto& t : index.tensors)
      if (index.data_offset + t.end > size || t.begin > t.end) __builtin_trap();
  } catch (const std::exception&) {
  }
  return 0;
}
