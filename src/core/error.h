// Errors and check macros. Every failing internal check names the source
// file and line, so a message from a rank on a cluster can be traced without
// a debugger; a refusal of the user's input (InputError) is one line about
// their key, file or value, with no source location, which would only be noise.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace undo {

// A failure caused by the user's input (config key, file, value). The CLI
// exits with code 2 for these, before any compute starts where possible.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A failure of the program or its environment (I/O, corrupted file, bug).
struct RuntimeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A run stopped by a signal (SIGUSR1 / SIGTERM: Slurm's warning before the
// time limit, or preemption) after writing a checkpoint. The CLI exits with
// kExitPreempted so that a job script knows to requeue, and a rerun resumes.
struct Preempted : std::runtime_error {
  using std::runtime_error::runtime_error;
};
constexpr int kExitPreempted = 75;  // EX_TEMPFAIL

namespace detail {
template <typename E, typename... Parts>
[[noreturn]] void fail(const char* file, int line, const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  if constexpr (!std::is_same_v<E, InputError>) os << " [" << file << ":" << line << "]";
  throw E(os.str());
}
}  // namespace detail

}  // namespace undo

// UNDO_CHECK(cond, "message parts", ...): throws RuntimeError naming file:line.
#define UNDO_CHECK(cond, ...)                                                   \
  do {                                                                          \
    if (!(cond))                                                                \
      ::undo::detail::fail<::undo::RuntimeError>(__FILE__, __LINE__,            \
                                                 "check failed: " #cond ": ",  \
                                                 __VA_ARGS__);                  \
  } while (0)

// UNDO_INPUT_CHECK: same, but the fault is the user's input (exit code 2), and
// the message names no source location.
#define UNDO_INPUT_CHECK(cond, ...)                                               \
  do {                                                                            \
    if (!(cond)) ::undo::detail::fail<::undo::InputError>(__FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

#define UNDO_FAIL(...) ::undo::detail::fail<::undo::RuntimeError>(__FILE__, __LINE__, __VA_ARGS__)
#define UNDO_INPUT_FAIL(...) ::undo::detail::fail<::undo::InputError>(__FILE__, __LINE__, __VA_ARGS__)
