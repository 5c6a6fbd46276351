#include "core/progress_line.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>

namespace undo {

ProgressLine::ProgressLine(std::string label, int64_t total, std::string unit, bool enabled, double quiet_s,
                           double interval_s)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), enabled_(enabled), tty_(::isatty(2)),
      quiet_s_(quiet_s), interval_s_(interval_s), start_(std::chrono::steady_clock::now()) {}

ProgressLine::~ProgressLine() {
  if (shown_ && tty_) std::cerr << "\n";
}

void ProgressLine::update(int64_t done) {
  if (!enabled_) return;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const bool last = done >= total_;
  if (!shown_ && elapsed < quiet_s_) return;  // a short stage says nothing
  if (shown_ && !last && elapsed - last_shown_s_ < (tty_ ? 0.2 : interval_s_)) return;
  const double rate = elapsed > 0 ? double(done) / elapsed : 0;
  const double left = rate > 0 ? double(total_ - done) / rate : 0;
  char buf[256];
  std::snprintf(buf, sizeof buf, tty_ ? "\r%s: %lld/%lld %s, %.1f %s/s, %.0fs elapsed, about %.0fs left "
                                      : "%s: %lld/%lld %s, %.1f %s/s, %.0fs elapsed, about %.0fs left\n",
                label_.c_str(), static_cast<long long>(done), static_cast<long long>(total_), unit_.c_str(), rate,
                unit_.c_str(), elapsed, left);
  std::cerr << buf << std::flush;
  shown_ = true;
  last_shown_s_ = elapsed;
}

}  // namespace undo
