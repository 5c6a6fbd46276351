#include "train/metrics.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"

namespace undo {

namespace {
int64_t step_of(const std::string& line) {
  auto p = line.find("\"step\": ");
  return p == std::string::npos ? -1 : std::atoll(line.c_str() + p + 8);
}
}  // namespace

MetricsLog::MetricsLog(const std::string& path, bool enabled, int64_t resume_step, const std::string& tensorboard_dir)
    : path_(path), enabled_(enabled) {
  if (!enabled_) return;
  if (!tensorboard_dir.empty())
    events_ = std::make_unique<TensorBoardEvents>(tensorboard_dir, true, resume_step >= 0 ? resume_step + 1 : 0);
  if (resume_step >= 0 && file_exists(path)) {
    std::istringstream in(read_file(path));
    std::string line, kept;
    while (std::getline(in, line)) {
      bool whole = line.size() >= 2 && line.front() == '{' && line.back() == '}';
      if (whole && step_of(line) <= resume_step) kept += line + "\n";
    }
    write_file_atomic(path, kept);
  } else if (resume_step < 0) {
    write_file_atomic(path, "");
  }
  out_.open(path, std::ios::app);
  UNDO_CHECK(out_.good(), "cannot open ", path, " for appending: ", std::strerror(errno));
}

void MetricsLog::write(const JsonObject& line) {
  if (!enabled_) return;
  // Each line ends with its wall-clock time (Unix seconds, to the
  // millisecond), for plotting against time and for matching a line to a log.
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  char time[32];
  std::snprintf(time, sizeof time, "%.3f", now);
  JsonObject stamped = line;
  stamped.add_raw("time", time);
  errno = 0;
  out_ << stamped.str() << "\n";
  out_.flush();
  UNDO_CHECK(out_.good(), "writing ", path_, " failed (", errno ? std::strerror(errno) : "stream error",
             "): the run stops rather than go on without its log");
  if (!events_) return;
  int64_t step = 0;
  for (auto& [key, value] : line.fields())
    if (key == "step" && is_json_number(value)) step = std::atoll(value.c_str());
  // A key that two lines of one step both hold (the tokens count of a step's
  // training and evaluation lines) is one point, not two.
  if (step != events_step_) events_step_ = step, events_tags_.clear();
  for (auto& [key, value] : line.fields())
    if (key != "step" && is_json_number(value) && events_tags_.insert(key).second)
      events_->scalar(key, step, std::strtod(value.c_str(), nullptr), now);
  events_->flush();
}

Progress::Progress(std::string label, int64_t total_steps, bool enabled, double interval_s)
    : label_(std::move(label)), total_(total_steps), enabled_(enabled), tty_(::isatty(2)), interval_s_(interval_s),
      start_(std::chrono::steady_clock::now()), last_(start_) {}

bool Progress::due(int64_t done, double* elapsed, double* eta) {
  if (!enabled_) return false;
  auto now = std::chrono::steady_clock::now();
  double since_last = std::chrono::duration<double>(now - last_).count();
  if (!tty_ && since_last < interval_s_ && done != total_) return false;
  if (tty_ && since_last < 0.2 && done != total_) return false;
  last_ = now;
  *elapsed = std::chrono::duration<double>(now - start_).count();
  *eta = done > 0 ? *elapsed / double(done) * double(total_ - done) : 0;
  return true;
}

void Progress::update_count(int64_t done, const char* unit, double per_s) {
  double elapsed = 0, eta = 0;
  if (!due(done, &elapsed, &eta)) return;
  char buf[256];
  std::snprintf(buf, sizeof buf, tty_ ? "\r%s %lld/%lld %s  %.0f %s/s  elapsed %.0fs  ETA %.0fs "
                                      : "%s %lld/%lld %s %.0f %s/s elapsed %.0fs ETA %.0fs\n",
                label_.c_str(), static_cast<long long>(done), static_cast<long long>(total_), unit, per_s, unit,
                elapsed, eta);
  std::cerr << buf << std::flush;
}

void Progress::update(int64_t step, double loss, double tokens_per_s) {
  double elapsed = 0, eta = 0;
  if (!due(step, &elapsed, &eta)) return;
  char buf[256];
  if (tty_) {
    int width = 24, filled = int(width * step / std::max<int64_t>(total_, 1));
    std::string bar(size_t(filled), '#');
    bar.resize(size_t(width), '.');
    std::snprintf(buf, sizeof buf, "\r%s [%s] %lld/%lld loss %.4f  %.0f tok/s  ETA %.0fs ", label_.c_str(),
                  bar.c_str(), static_cast<long long>(step), static_cast<long long>(total_), loss, tokens_per_s, eta);
  } else {
    std::snprintf(buf, sizeof buf, "%s step %lld/%lld loss %.4f %.0f tok/s elapsed %.0fs ETA %.0fs\n",
                  label_.c_str(), static_cast<long long>(step), static_cast<long long>(total_), loss, tokens_per_s,
                  elapsed, eta);
  }
  std::cerr << buf << std::flush;
}

void Progress::finish() {
  if (enabled_ && tty_) std::cerr << "\n";
}

}  // namespace undo
