// TensorBoard's event files, written beside metrics.jsonl so that a run (and
// a sweep: `tensorboard --logdir OUT/jobs`) is plotted with no code of the
// user's. A file is a sequence of records (length, its masked CRC-32C, an
// Event protocol buffer, that's masked CRC-32C); each Event holds a wall time,
// a step and scalar values by tag. The first event names the format
// ("brain.Event:2"), as TensorFlow's writer does; the second says where the
// run starts (a SessionLog START at the first step it logs), which is how a
// resumed run's file tells TensorBoard to drop the points an earlier file
// holds from that step on (written after the checkpoint it resumes from), as
// metrics.jsonl drops those lines: each step then has one point, the resumed
// run's.
//
// Written by hand rather than through a library: Debian packages no C or C++
// CRC-32C, and the two messages need five fields of protobuf's wire format,
// which would otherwise cost protoc and generated code. The test reads the
// files back with the real `tensorboard` package's reader.
//
// The events are a view, never the record: a directory that cannot be
// created or a write that fails (a full disk) is said once on stderr and the
// writer stops, while the run and metrics.jsonl go on.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

namespace undo {

// CRC-32C (Castagnoli), as the record format checks it.
uint32_t crc32c(const void* data, size_t size);

class TensorBoardEvents {
 public:
  // A new events file in `dir` (created), named as TensorFlow names them:
  // events.out.tfevents.<unix seconds>.<host>.<pid>, for a run whose first
  // logged step is `start_step` (0 fresh, the checkpoint's step + 1 resumed):
  // TensorBoard drops earlier files' points at that step and after.
  // `enabled` is false on every rank but 0: nothing is written then.
  TensorBoardEvents(const std::string& dir, bool enabled, int64_t start_step = 0);
  ~TensorBoardEvents();
  TensorBoardEvents(const TensorBoardEvents&) = delete;
  TensorBoardEvents& operator=(const TensorBoardEvents&) = delete;

  // One scalar at `step`, written at `wall_time` (Unix seconds).
  void scalar(const std::string& tag, int64_t step, double value, double wall_time);
  // Makes what was written readable now (a reader follows a live run).
  void flush();
  bool writing() const { return file_ != nullptr; }

 private:
  void record(const std::string& event);
  void give_up(const std::string& why);

  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace undo
