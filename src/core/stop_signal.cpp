#include "core/stop_signal.h"

#include <atomic>
#include <csignal>
#include <cstdlib>

namespace undo {
namespace {
std::atomic<int> g_stop_signal{0};
void on_stop_signal(int sig) { g_stop_signal.store(sig); }  // async-signal-safe: a lock-free store
}  // namespace

void install_stop_handlers(bool interrupt_too) {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  // SA_RESTART: a blocking read or write in progress resumes instead of
  // failing with EINTR; the flag is seen at the next safe point.
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  if (interrupt_too) sigaction(SIGINT, &sa, nullptr);
}

void count_safe_point() {
  static const long long at = [] {
    const char* v = std::getenv("UNDO_FAULT_TERM_AT_POLL");
    return v ? std::atoll(v) : 0LL;
  }();
  static long long polls = 0;
  if (at > 0 && ++polls == at) std::raise(SIGTERM);
}

bool stop_signalled() { return g_stop_signal.load() != 0; }
void clear_stop_signal() { g_stop_signal.store(0); }

}  // namespace undo
