#include "train/tensorboard_events.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "core/fs.h"

namespace undo {
namespace {

// Protocol buffer wire format, the parts an Event needs: a field's key is
// (number << 3 | wire type); 0 = varint, 1 = 64-bit, 2 = length-delimited, 5 = 32-bit.
void varint(std::string& out, uint64_t v) {
  do {
    out += char((v & 0x7F) | (v >= 0x80 ? 0x80 : 0));
    v >>= 7;
  } while (v);
}
void key(std::string& out, int field, int wire) { varint(out, uint64_t(field) << 3 | uint64_t(wire)); }
void fixed(std::string& out, const void* v, size_t n) { out.append(static_cast<const char*>(v), n); }  // little-endian host
void bytes_field(std::string& out, int field, const std::string& bytes) {
  key(out, field, 2);
  varint(out, bytes.size());
  out += bytes;
}

// Event { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5;
//         SessionLog session_log = 7; }   SessionLog { Status status = 1; }  (START = 1)
std::string event(double wall_time, int64_t step) {
  std::string e;
  key(e, 1, 1);
  fixed(e, &wall_time, 8);
  key(e, 2, 0);
  varint(e, uint64_t(step));
  return e;
}

// The record format's checksum: CRC-32C rotated and offset, so that a CRC of
// data holding CRCs is not degenerate.
uint32_t masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // the reflected Castagnoli polynomial
      t[i] = c;
    }
    return t;
  }();
  uint32_t crc = 0xFFFFFFFFu;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

TensorBoardEvents::TensorBoardEvents(const std::string& dir, bool enabled, int64_t start_step) {
  if (!enabled) return;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  char host[256] = "host";
  ::gethostname(host, sizeof host - 1);
  path_ = join_path(dir, "events.out.tfevents." + std::to_string(int64_t(unix_now())) + "." + host + "." +
                             std::to_string(::getpid()));
  file_ = ec ? nullptr : std::fopen(path_.c_str(), "wb");
  if (!file_) {
    give_up(ec ? ec.message() : std::strerror(errno));
    return;
  }
  std::string first = event(unix_now(), 0);
  bytes_field(first, 3, "brain.Event:2");
  record(first);
  std::string start = event(unix_now(), start_step), session_log;
  key(session_log, 1, 0);
  varint(session_log, 1);
  bytes_field(start, 7, session_log);
  record(start);
  flush();
}

TensorBoardEvents::~TensorBoardEvents() {
  if (file_) std::fclose(file_);
}

void TensorBoardEvents::scalar(const std::string& tag, int64_t step, double value, double wall_time) {
  if (!file_) return;
  // Summary { repeated Value value = 1; }  Value { string tag = 1; float simple_value = 2; }
  std::string v;
  bytes_field(v, 1, tag);
  const float f = float(value);
  key(v, 2, 5);
  fixed(v, &f, 4);
  std::string summary;
  bytes_field(summary, 1, v);
  std::string e = event(wall_time, step);
  bytes_field(e, 5, summary);
  record(e);
}

void TensorBoardEvents::flush() {
  if (file_ && std::fflush(file_) != 0) give_up(std::strerror(errno));
}

void TensorBoardEvents::record(const std::string& event) {
  // uint64 length, uint32 masked CRC of the length, the bytes, uint32 masked CRC of the bytes.
  const uint64_t length = event.size();
  const uint32_t length_crc = masked(crc32c(&length, 8)), data_crc = masked(crc32c(event.data(), event.size()));
  std::string r;
  fixed(r, &length, 8);
  fixed(r, &length_crc, 4);
  r += event;
  fixed(r, &data_crc, 4);
  if (std::fwrite(r.data(), 1, r.size(), file_) != r.size()) give_up(std::strerror(errno));
}

void TensorBoardEvents::give_up(const std::string& why) {
  std::cerr << "warning: TensorBoard events are not written (" << path_ << ": " << why
            << "); the run goes on, and metrics.jsonl stays its record\n";
  if (file_) std::fclose(file_);
  file_ = nullptr;
}

}  // namespace undo
