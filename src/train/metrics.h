// DIR/metrics.jsonl (one JSON object per line) and the console progress line.
#pragma once
#include <chrono>
#include <fstream>
#include <memory>
#include <set>
#include <string>

#include "core/json.h"
#include "train/tensorboard_events.h"

namespace undo {

class MetricsLog {
 public:
  // `enabled` is false on every rank but 0. On resume, lines past
  // `resume_step` (written after the checkpoint we resume from) are dropped,
  // and so is a torn line (a run killed mid-write): only whole JSON objects stay.
  // Where `tensorboard_dir` is given, every number of every line goes there
  // too, as a TensorBoard scalar tagged with its key at the line's step
  // (train/tensorboard_events.h), and a resumed run's points past
  // `resume_step` in earlier event files are dropped for TensorBoard alike.
  MetricsLog(const std::string& path, bool enabled, int64_t resume_step = -1, const std::string& tensorboard_dir = "");
  // Appends one line, with its wall-clock time as "time"; a failed write (a full disk) throws naming the file, so
  // that a run never goes on without its log.
  void write(const JsonObject& line);

 private:
  std::string path_;
  std::ofstream out_;
  bool enabled_;
  std::unique_ptr<TensorBoardEvents> events_;
  int64_t events_step_ = -1;
  std::set<std::string> events_tags_;  // the tags written at events_step_
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
