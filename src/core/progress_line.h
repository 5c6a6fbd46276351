// One progress line for a stage counted in items (documents tokenized,
// tensors read or written, questions scored): done/total, rate and time left.
// Quiet for a stage that ends within `quiet_s` seconds (most do, in tests);
// after that a line every `interval_s` seconds when stderr is not a terminal
// (a Slurm log), or one line redrawn in place on a terminal, and a last line
// at the end. The training stages have their own (train/metrics.h), with loss.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace undo {

class ProgressLine {
 public:
  ProgressLine(std::string label, int64_t total, std::string unit, bool enabled = true, double quiet_s = 5,
               double interval_s = 30);
  ~ProgressLine();  // ends the line on a terminal
  void update(int64_t done);

 private:
  std::string label_, unit_;
  int64_t total_;
  bool enabled_, tty_, shown_ = false;
  double quiet_s_, interval_s_, last_shown_s_ = 0;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace undo
