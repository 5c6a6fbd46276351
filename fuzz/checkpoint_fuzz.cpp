// The checkpoint container and meta: a file's bytes as read from disk, and a
// meta text as it would be after a checksum that verifies (a crafted file).
#include <exception>

#include "formats/checkpoint_file.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes = undo::fuzz::text(data, size);
  try {
    auto [meta, payload] = undo::unframe_checkpoint(bytes, "fuzz.ckpt");
    undo::parse_checkpoint_meta(meta, "fuzz.ckpt");
  } catch (const std::exception&) {
  }
  try {
    auto m = undo::parse_checkpoint_meta(bytes, "fuzz.ckpt");
    // What parsed must write back and parse to the same architecture.
    auto again = undo::parse_checkpoint_meta(undo::checkpoint_meta_text(m, "x"), "fuzz.ckpt");
    if (again.model.d_model != m.model.d_model || again.step != m.step) __builtin_trap();
  } catch (const std::exception&) {
  }
  return 0;
}
