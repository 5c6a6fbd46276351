// The checkpoint container, meta and tensor table: a file's bytes as read
// from disk, and a meta text and a payload as they would be after a checksum
// that verifies (a crafted file).
#include <exception>

#include "formats/checkpoint_file.h"
#include "formats/tensor_table.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes = undo::fuzz::text(data, size);
  try {
    auto frame = undo::check_checkpoint_frame(data, size, "fuzz.ckpt");
    // A version-3 index that passed lies within the file, and so does the payload it covers.
    if (frame.payload < data || frame.payload_bytes > size || frame.payload + frame.payload_bytes != data + size)
      __builtin_trap();
    undo::PayloadBlocks blocks(frame, "fuzz.ckpt");
    try {
      blocks.verify(0, frame.payload_bytes);
    } catch (const undo::CorruptBlock&) {
    }
    undo::parse_checkpoint_meta(std::string(frame.meta), "fuzz.ckpt");
    if (frame.version != undo::kCheckpointTorchArchive)
      undo::parse_tensor_table(frame.payload, frame.payload_bytes, "fuzz.ckpt");
  } catch (const std::exception&) {
  }
  try {
    // Every entry that parses lies within the payload.
    auto table = undo::parse_tensor_table(data, size, "fuzz.ckpt");
    for (auto& e : table.entries)
      if (e.offset > table.data_bytes || e.bytes > table.data_bytes - e.offset)
        __builtin_trap();
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
