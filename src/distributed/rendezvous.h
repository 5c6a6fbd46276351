// The job's rendezvous: a small key-value store served by rank 0 that the
// backends (Gloo, NCCL) use to find each other, and the heartbeats use to
// name a lost rank. It replaces c10d's TCPStore, which listens on every
// interface and admits anyone who connects.
//
// The server listens only on the address the other ranks use (loopback when
// the job has one host). A connection is admitted only after it proves that
// it holds the job's secret: the server sends a random nonce, the client
// answers HMAC-SHA256(secret, "client" + nonce), and the server proves itself
// back with HMAC-SHA256(secret, "server" + nonce), so that neither a stranger
// nor a stranger's fake store is talked to. A refused connection is closed at
// once and named on standard error. The secret never crosses the network.
//
// What it does not do: encrypt (the keys are addresses and ids, not data).
// The backends' own connections between ranks are not authenticated by it.
#pragma once
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace undo {

class RendezvousServer {
 public:
  // Listens on `address` (a numeric IPv4/IPv6 address or a name that resolves
  // to one) at `port` (0: a free port). Throws naming the address when it cannot.
  RendezvousServer(const std::string& address, int port, std::string secret);
  ~RendezvousServer();
  RendezvousServer(const RendezvousServer&) = delete;
  RendezvousServer& operator=(const RendezvousServer&) = delete;
  int port() const { return port_; }
  // Connections refused so far (a wrong secret, a malformed handshake).
  int refused() const { return refused_.load(); }

 private:
  void accept_loop();
  void serve(int fd, std::string peer);
  bool admit(int fd);
  std::vector<uint8_t> handle(uint8_t op, const std::vector<std::string>& args, bool* ok);

  std::string secret_;
  int listen_fd_ = -1, port_ = 0;
  int wake_[2] = {-1, -1};  // a pipe that ends accept_loop's poll at shutdown
  std::atomic<bool> stopping_{false};
  std::atomic<int> refused_{0};
  std::thread acceptor_;
  std::mutex mutex_;  // data_, connections_
  std::map<std::string, std::vector<uint8_t>> data_;
  std::vector<std::pair<int, std::thread>> connections_;
};

// A client of a RendezvousServer, as c10d's Store. One connection, used by one
// request at a time; clone() opens another (for another thread).
class RendezvousStore : public c10d::Store {
 public:
  // Connects (retrying until `timeout`: rank 0 may start last) and proves the
  // secret. Throws naming host:port when the server refuses or never answers.
  RendezvousStore(std::string host, int port, std::string secret, std::chrono::milliseconds timeout);
  ~RendezvousStore() override;

  using c10d::Store::set;  // the string overload
  c10::intrusive_ptr<c10d::Store> clone() override;
  void set(const std::string& key, const std::vector<uint8_t>& value) override;
  std::vector<uint8_t> compareSet(const std::string& key, const std::vector<uint8_t>& expected,
                                  const std::vector<uint8_t>& desired) override;
  std::vector<uint8_t> get(const std::string& key) override;
  int64_t add(const std::string& key, int64_t value) override;
  bool deleteKey(const std::string& key) override;
  bool check(const std::vector<std::string>& keys) override;
  int64_t getNumKeys() override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override;

 private:
  std::vector<uint8_t> request(uint8_t op, const std::vector<std::string>& args);

  std::string host_, secret_;
  int port_;
  int fd_ = -1;
  std::mutex mutex_;
};

// The secret of a job launched without MPI: UNDO_DIST_SECRET from the
// launcher's environment, else the contents of `secret_file`, which must be a
// regular file of this user that nobody else can read. Throws naming what to
// set when there is neither.
std::string job_secret_from(const std::string& secret_file);
// A fresh random secret (rank 0 of an MPI job makes one and sends it over MPI).
std::string random_secret();

}  // namespace undo
