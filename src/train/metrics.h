// DIR/metrics.jsonl (one JSON object per line) and the console progress line.
#pragma once
#include <chrono>
#include <fstream>
#include <string>

#include "core/json.h"

namespace undo {

class MetricsLog {
 public:
  // `enabled` is false on every rank but 0. On resume, lines past
  // `resume_step` (written after the checkpoint we resume from) are dropped,
  // and so is a torn line (a run killed mid-write): only whole JSON objects stay.
  MetricsLog(const std::string& path, bool enabled, int64_t resume_step = -1);
  // Appends one line; a failed write (a full disk) throws naming the file, so
  // that a run never goes on without its log.
  void write(const JsonObject& line);

 private:
  std::string path_;
  std::ofstream out_;
  bool enabled_;
};

// A progress bar with tokens/s and ETA on a terminal; a plain line every
// `interval_s` seconds otherwise (Slurm logs).
class Progress {
 public:
  Progress(std::string label, int64_t total_steps, bool enabled, double interval_s = 30);
  void update(int64_t step, double loss, double tokens_per_s);
  // For a stage counted in `unit` (a cache build's positions) rather than steps.
  void update_count(int64_t done, const char* unit, double per_s);
  void finish();

 private:
  std::string label_;
  int64_t total_;
  bool enabled_, tty_;
  double interval_s_;
  std::chrono::steady_clock::time_point start_, last_;
  // Whether a line is due at `done` (rate limited), and the seconds elapsed and left.
  bool due(int64_t done, double* elapsed, double* eta);
};

}  // namespace undo
