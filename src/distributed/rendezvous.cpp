#include "distributed/rendezvous.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "core/sha256.h"

namespace undo {
namespace {

using ms = std::chrono::milliseconds;
using clock_type = std::chrono::steady_clock;

constexpr char kMagic[8] = {'U', 'N', 'D', 'O', 'R', 'D', 'V', '1'};
constexpr size_t kNonceBytes = 32, kProofBytes = 32;
constexpr uint32_t kMaxArgs = 1024, kMaxArgBytes = 64u << 20;
constexpr int kHandshakeSeconds = 10;  // a connection that does not prove itself by then is dropped

enum Op : uint8_t { kSet = 1, kGet, kAdd, kCheck, kDelete, kNumKeys, kCompareSet };
enum Status : uint8_t { kOk = 0, kMissing = 1, kBad = 2 };

bool read_full(int fd, void* buf, size_t n) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r, n -= size_t(r);
  }
  return true;
}

bool write_full(int fd, const void* buf, size_t n) {
  auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w, n -= size_t(w);
  }
  return true;
}

void append_u32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }

bool read_u32(int fd, uint32_t* v) { return read_full(fd, v, 4); }

void set_timeout(int fd, int seconds) {
  timeval tv{seconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

std::string proof(const std::string& secret, const char* role, const uint8_t* nonce) {
  auto mac = hmac_sha256(secret, std::string(role) + std::string(reinterpret_cast<const char*>(nonce), kNonceBytes));
  return std::string(reinterpret_cast<const char*>(mac.data()), mac.size());
}

// Compares without an early exit, so that timing does not tell how much of a proof was right.
bool same_bytes(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

void random_bytes(void* buf, size_t n) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = ::getrandom(p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    UNDO_CHECK(r > 0, "getrandom: ", std::strerror(errno));
    p += r, n -= size_t(r);
  }
}

std::string peer_name(const sockaddr_storage& a) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (a.ss_family == AF_INET) {
    auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    ::inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
    port = ntohs(v4->sin_port);
  } else if (a.ss_family == AF_INET6) {
    auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
    port = ntohs(v6->sin6_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

struct AddrList {
  addrinfo* head = nullptr;
  ~AddrList() {
    if (head) ::freeaddrinfo(head);
  }
};

void resolve(const std::string& host, int port, bool passive, AddrList* out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &out->head);
  UNDO_CHECK(rc == 0 && out->head, "rendezvous: cannot resolve '", host, "': ", ::gai_strerror(rc));
}

int64_t parse_count(const std::vector<uint8_t>& v) {
  std::string s(v.begin(), v.end());
  char* end = nullptr;
  long long x = std::strtoll(s.c_str(), &end, 10);
  return (s.empty() || *end) ? 0 : x;
}

std::vector<uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

}  // namespace

// ---------------------------------------------------------------- server

RendezvousServer::RendezvousServer(const std::string& address, int port, std::string secret)
    : secret_(std::move(secret)) {
  UNDO_INPUT_CHECK(!secret_.empty(), "rendezvous: an empty secret admits anyone");
  AddrList addrs;
  resolve(address, port, true, &addrs);
  std::string error = "no address";
  for (addrinfo* a = addrs.head; a && listen_fd_ < 0; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
      listen_fd_ = fd;
    } else {
      error = std::strerror(errno);
      ::close(fd);
    }
  }
  UNDO_CHECK(listen_fd_ >= 0, "rendezvous: cannot listen on ", address, ":", port, ": ", error);
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
  port_ = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                      : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  UNDO_CHECK(::pipe2(wake_, O_CLOEXEC) == 0, "rendezvous: pipe: ", std::strerror(errno));
  acceptor_ = std::thread([this] { accept_loop(); });
}

RendezvousServer::~RendezvousServer() {
  stopping_ = true;
  char c = 0;
  (void)!::write(wake_[1], &c, 1);
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::pair<int, std::thread>> connections;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [fd, t] : connections_)
      if (fd >= 0) ::shutdown(fd, SHUT_RDWR);  // ends the blocked reads
    connections.swap(connections_);
  }
  for (auto& [fd, t] : connections) t.join();
  for (auto& [fd, t] : connections)
    if (fd >= 0) ::close(fd);
  ::close(listen_fd_);
  ::close(wake_[0]);
  ::close(wake_[1]);
}

void RendezvousServer::accept_loop() {
  while (!stopping_) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (stopping_ || (fds[1].revents & POLLIN)) return;
    if (!(fds[0].revents & POLLIN)) continue;
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::lock_guard<std::mutex> lock(mutex_);
    // Connections whose thread has ended (closed, so marked -1) are joined and
    // dropped here, so that strangers connecting again and again hold nothing.
    for (auto it = connections_.begin(); it != connections_.end();) {
      if (it->first >= 0) {
        ++it;
        continue;
      }
      it->second.join();
      it = connections_.erase(it);
    }
    connections_.emplace_back(fd, std::thread());
    connections_.back().second = std::thread([this, fd, name = peer_name(peer)] { serve(fd, name); });
  }
}

bool RendezvousServer::admit(int fd) {
  uint8_t nonce[kNonceBytes];
  random_bytes(nonce, sizeof nonce);
  std::string hello(kMagic, sizeof kMagic);
  hello.append(reinterpret_cast<const char*>(nonce), sizeof nonce);
  std::string answer(kProofBytes, '\0');
  if (!write_full(fd, hello.data(), hello.size()) || !read_full(fd, answer.data(), answer.size())) return false;
  if (!same_bytes(answer, proof(secret_, "client", nonce))) return false;
  std::string ours = proof(secret_, "server", nonce);
  return write_full(fd, ours.data(), ours.size());
}

void RendezvousServer::serve(int fd, std::string peer) {
  set_timeout(fd, kHandshakeSeconds);
  bool admitted = admit(fd);
  if (!admitted) {
    refused_++;
    if (!stopping_)
      std::cerr << "rendezvous: refused a connection from " << peer << ": it did not prove this job's secret\n";
  } else {
    set_timeout(fd, 0);  // admitted ranks may sit idle between requests for as long as the job runs
    while (true) {
      uint8_t op = 0;
      uint32_t argc = 0;
      if (!read_full(fd, &op, 1) || !read_u32(fd, &argc) || argc > kMaxArgs) break;
      std::vector<std::string> args(argc);
      bool ok = true;
      for (auto& a : args) {
        uint32_t n = 0;
        ok = ok && read_u32(fd, &n) && n <= kMaxArgBytes;
        if (ok) a.resize(n), ok = read_full(fd, a.data(), n);
      }
      if (!ok) break;
      uint8_t status = kOk;
      bool found = true;
      auto value = handle(op, args, &found);
      if (!found) status = kMissing;
      if (op < kSet || op > kCompareSet) status = kBad;
      std::string reply(1, char(status));
      append_u32(reply, uint32_t(value.size()));
      reply.append(value.begin(), value.end());
      if (!write_full(fd, reply.data(), reply.size())) break;
    }
  }
  // Closed here, under the lock, so that the destructor never shuts down a reused descriptor.
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& c : connections_)
    if (c.first == fd) {
      ::close(fd);
      c.first = -1;
    }
}

std::vector<uint8_t> RendezvousServer::handle(uint8_t op, const std::vector<std::string>& a, bool* found) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto arg = [&](size_t i) { return i < a.size() ? a[i] : std::string(); };
  switch (op) {
    case kSet:
      data_[arg(0)] = bytes_of(arg(1));
      return {};
    case kGet: {
      auto it = data_.find(arg(0));
      if (it == data_.end()) {
        *found = false;
        return {};
      }
      return it->second;
    }
    case kAdd: {
      auto& v = data_[arg(0)];
      int64_t sum = parse_count(v) + parse_count(bytes_of(arg(1)));
      v = bytes_of(std::to_string(sum));
      return v;
    }
    case kCheck: {
      bool all = true;
      for (auto& k : a) all = all && data_.count(k);
      return bytes_of(all ? "1" : "0");
    }
    case kDelete:
      return bytes_of(data_.erase(arg(0)) ? "1" : "0");
    case kNumKeys:
      return bytes_of(std::to_string(data_.size()));
    case kCompareSet: {
      // As c10d's stores: a missing key with an empty expectation is set;
      // the value after the call is returned.
      auto it = data_.find(arg(0));
      auto expected = bytes_of(arg(1)), desired = bytes_of(arg(2));
      if (it == data_.end()) {
        if (!expected.empty()) return expected;
        data_[arg(0)] = desired;
        return desired;
      }
      if (it->second == expected) it->second = desired;
      return it->second;
    }
    default:
      return {};
  }
}

// ---------------------------------------------------------------- client

RendezvousStore::RendezvousStore(std::string host, int port, std::string secret, ms timeout)
    : host_(std::move(host)), secret_(std::move(secret)), port_(port) {
  timeout_ = timeout;
  const std::string where = host_ + ":" + std::to_string(port_);
  const auto deadline = clock_type::now() + timeout;
  std::string error = "no answer";
  while (fd_ < 0) {
    AddrList addrs;
    resolve(host_, port_, false, &addrs);
    for (addrinfo* a = addrs.head; a && fd_ < 0; a = a->ai_next) {
      int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) continue;
      if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
        fd_ = fd;
      } else {
        error = std::strerror(errno);
        ::close(fd);
      }
    }
    if (fd_ >= 0) break;
    UNDO_CHECK(clock_type::now() < deadline, "rendezvous at ", where, " did not answer within ",
               timeout.count() / 1000.0, " s: ", error);
    std::this_thread::sleep_for(ms(100));  // rank 0 may not be listening yet
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  set_timeout(fd_, int(std::max<int64_t>(1, timeout.count() / 1000)));
  auto give_up = [&](const std::string& why) {
    ::close(fd_);
    fd_ = -1;
    UNDO_FAIL("rendezvous at ", where, " ", why);
  };
  char hello[sizeof kMagic + kNonceBytes];
  if (!read_full(fd_, hello, sizeof hello) || std::memcmp(hello, kMagic, sizeof kMagic) != 0)
    give_up("did not greet as an undo rendezvous (a stopped rank 0, or another service on that port)");
  const auto* nonce = reinterpret_cast<const uint8_t*>(hello + sizeof kMagic);
  std::string reply(kProofBytes, '\0');
  if (!write_full(fd_, proof(secret_, "client", nonce).data(), kProofBytes) ||
      !read_full(fd_, reply.data(), reply.size()))
    give_up("refused this rank: it did not accept the job's secret (every rank must get the same "
            "UNDO_DIST_SECRET or dist.secret_file)");
  if (!same_bytes(reply, proof(secret_, "server", nonce)))
    give_up("does not hold the job's secret: not this job's store");
}

RendezvousStore::~RendezvousStore() {
  if (fd_ >= 0) ::close(fd_);
}

c10::intrusive_ptr<c10d::Store> RendezvousStore::clone() {
  return c10::make_intrusive<RendezvousStore>(host_, port_, secret_, timeout_);
}

std::vector<uint8_t> RendezvousStore::request(uint8_t op, const std::vector<std::string>& args) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string msg(1, char(op));
  append_u32(msg, uint32_t(args.size()));
  for (auto& a : args) {
    UNDO_CHECK(a.size() <= kMaxArgBytes, "rendezvous: a value of ", a.size(), " bytes is too large");
    append_u32(msg, uint32_t(a.size()));
    msg += a;
  }
  uint8_t status = 0;
  uint32_t n = 0;
  bool ok = fd_ >= 0 && write_full(fd_, msg.data(), msg.size()) && read_full(fd_, &status, 1) && read_u32(fd_, &n) &&
            n <= kMaxArgBytes;
  std::vector<uint8_t> value(ok ? n : 0);
  ok = ok && read_full(fd_, value.data(), value.size());
  UNDO_CHECK(ok, "rendezvous at ", host_, ":", port_, " stopped answering");
  UNDO_CHECK(status != kBad, "rendezvous: the server did not understand request ", int(op));
  if (status == kMissing) throw std::out_of_range("missing");
  return value;
}

void RendezvousStore::set(const std::string& key, const std::vector<uint8_t>& value) {
  request(kSet, {key, std::string(value.begin(), value.end())});
}

std::vector<uint8_t> RendezvousStore::compareSet(const std::string& key, const std::vector<uint8_t>& expected,
                                                 const std::vector<uint8_t>& desired) {
  return request(kCompareSet,
                 {key, std::string(expected.begin(), expected.end()), std::string(desired.begin(), desired.end())});
}

std::vector<uint8_t> RendezvousStore::get(const std::string& key) {
  wait({key}, timeout_);
  return request(kGet, {key});
}

int64_t RendezvousStore::add(const std::string& key, int64_t value) {
  return parse_count(request(kAdd, {key, std::to_string(value)}));
}

bool RendezvousStore::deleteKey(const std::string& key) { return request(kDelete, {key}) == bytes_of("1"); }

bool RendezvousStore::check(const std::vector<std::string>& keys) { return request(kCheck, keys) == bytes_of("1"); }

int64_t RendezvousStore::getNumKeys() { return parse_count(request(kNumKeys, {})); }

void RendezvousStore::wait(const std::vector<std::string>& keys) { wait(keys, timeout_); }

void RendezvousStore::wait(const std::vector<std::string>& keys, const ms& timeout) {
  const auto deadline = clock_type::now() + timeout;
  ms pause(1);
  while (!check(keys)) {
    if (timeout != kNoTimeout && clock_type::now() >= deadline) {
      std::ostringstream names;
      for (auto& k : keys) names << (names.tellp() > 0 ? ", " : "") << k;
      UNDO_FAIL("rendezvous: waited ", timeout.count() / 1000.0, " s for ", names.str());
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, ms(20));
  }
}

// ---------------------------------------------------------------- secrets

std::string job_secret_from(const std::string& secret_file) {
  if (const char* env = std::getenv("UNDO_DIST_SECRET"); env && *env) return env;
  UNDO_INPUT_CHECK(!secret_file.empty(),
                   "launched without MPI: the rendezvous admits only ranks that hold the job's secret; give every "
                   "rank the same UNDO_DIST_SECRET, or dist.secret_file (a file only you can read)");
  struct stat st {};
  UNDO_INPUT_CHECK(::stat(secret_file.c_str(), &st) == 0, "dist.secret_file '", secret_file,
                   "': ", std::strerror(errno));
  UNDO_INPUT_CHECK(S_ISREG(st.st_mode), "dist.secret_file '", secret_file, "' is not a regular file");
  UNDO_INPUT_CHECK(st.st_uid == ::geteuid(), "dist.secret_file '", secret_file, "' belongs to another user");
  UNDO_INPUT_CHECK((st.st_mode & 077) == 0, "dist.secret_file '", secret_file,
                   "' can be read by others (chmod 600 it): it would not be a secret");
  std::ifstream in(secret_file, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  UNDO_INPUT_CHECK(!s.empty(), "dist.secret_file '", secret_file, "' is empty");
  return s;
}

std::string random_secret() {
  uint8_t b[32];
  random_bytes(b, sizeof b);
  return to_hex(b, sizeof b);
}

}  // namespace undo
