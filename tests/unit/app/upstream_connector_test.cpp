// app::UpstreamConnector against real kernel sockets on 127.0.0.1: a listening socket of the test
// plays the broker (over TLS too, with a CA and certificates made here with OpenSSL), an epoll fd
// of the test plays the event loop, and a fake LinkEvents plays Sessions. Every loop is bounded
// in iterations and in time.
#include "mqtt_proxy/app/upstream_connector.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "mqtt_proxy/os/fd.hpp"

namespace mqtt_proxy::app {
namespace {

using namespace std::chrono_literals;

constexpr std::uint32_t kTag = 7;

TimePoint now() {
  return std::chrono::time_point_cast<Duration>(std::chrono::steady_clock::now());
}

Bytes text(std::string_view s) {
  Bytes b(s.size());
  for (std::size_t k = 0; k < s.size(); ++k) b[k] = static_cast<std::byte>(s[k]);
  return b;
}

std::string str(const Bytes& b) {
  std::string s(b.size(), '\0');
  for (std::size_t k = 0; k < b.size(); ++k) s[k] = static_cast<char>(b[k]);
  return s;
}

Bytes pattern(std::size_t n) {
  Bytes b(n);
  for (std::size_t k = 0; k < n; ++k) b[k] = static_cast<std::byte>((k * 7 + k / 251) & 0xff);
  return b;
}

// Sessions, as far as the connector sees it: a record of what it was told, and knobs for what it
// asks.
struct FakeEvents final : upstream::LinkEvents {
  struct Side {
    Bytes out;  // outgoing()
    Bytes in;   // what on_upstream_data() gave
    bool read = true;
    bool fin = false;
    // wants_read() turns false once `in` holds this much.
    std::size_t pause_at = std::numeric_limits<std::size_t>::max();
    int sent_calls = 0;
    int refills = 0;  // on_sent(): append "+more" and touch(), this many times
    std::string why;  // on_failed()'s
  };

  UpstreamConnector* link = nullptr;
  std::map<std::uint64_t, Side> sides;
  std::vector<std::string> trace;  // connected / failed / closed, in order
  int depth = 0;
  bool nested = false;  // a LinkEvents call made from inside another

  void enter() {
    if (depth++ > 0) nested = true;
  }
  void leave() { --depth; }

  void on_connected(std::uint64_t id, TimePoint) override {
    enter();
    trace.push_back("connected " + std::to_string(id));
    leave();
  }
  void on_failed(std::uint64_t id, std::string_view why, TimePoint) override {
    enter();
    trace.push_back("failed " + std::to_string(id));
    sides[id].why = std::string(why);
    leave();
  }
  void on_upstream_data(std::uint64_t id, ByteSpan data, TimePoint) override {
    enter();
    Side& s = sides[id];
    s.in.insert(s.in.end(), data.begin(), data.end());
    if (s.in.size() >= s.pause_at) s.read = false;
    leave();
  }
  Bytes* outgoing(std::uint64_t id) override {
    const auto it = sides.find(id);
    return it == sides.end() ? nullptr : &it->second.out;
  }
  void on_sent(std::uint64_t id, TimePoint) override {
    enter();
    Side& s = sides[id];
    ++s.sent_calls;
    if (s.refills > 0) {
      --s.refills;
      const Bytes more = text("+more");
      s.out.insert(s.out.end(), more.begin(), more.end());
      link->touch(id);  // must only be recorded
    }
    leave();
  }
  bool wants_read(std::uint64_t id) const override {
    const auto it = sides.find(id);
    return it != sides.end() && it->second.read;
  }
  bool finished(std::uint64_t id) const override {
    const auto it = sides.find(id);
    return it != sides.end() && it->second.fin;
  }
  void on_closed(std::uint64_t id) override {
    enter();
    trace.push_back("closed " + std::to_string(id));
    leave();
  }

  bool has(const std::string& entry) const {
    return std::find(trace.begin(), trace.end(), entry) != trace.end();
  }
};

// A socket bound to 127.0.0.1 on a port of the kernel's choice; listening or not.
struct Listener {
  explicit Listener(bool listening = true) {
    fd = os::Fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof(a)), 0);
    socklen_t len = sizeof(a);
    EXPECT_EQ(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
    port = ntohs(a.sin_port);
    if (listening) {
      EXPECT_EQ(::listen(fd.get(), 8), 0);
    }
  }
  // The next connection, within `limit`; non-blocking.
  os::Fd accept_one(std::chrono::milliseconds limit = 3s) const {
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) != 1) return {};
    return os::Fd(::accept4(fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  }
  os::Fd fd;
  std::uint16_t port = 0;
};

// Whatever the broker side can read now (non-blocking); false at EOF or error.
bool drain(int fd, Bytes& into) {
  std::byte buf[65536];
  for (int k = 0; k < 1000; ++k) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      into.insert(into.end(), buf, buf + n);
      continue;
    }
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
  return true;
}

// Waits (bounded) until the broker side reads EOF, collecting what comes before it.
bool read_to_eof(int fd, Bytes& into, std::chrono::milliseconds limit = 3s) {
  const auto until = std::chrono::steady_clock::now() + limit;
  for (int k = 0; k < 1000 && std::chrono::steady_clock::now() < until; ++k) {
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, 10);
    if (!drain(fd, into)) return true;
  }
  return false;
}

// The event loop: an epoll fd, the connector registered in it, the fake Sessions attached.
class Harness {
 public:
  explicit Harness(const UpstreamTarget& target)
      : epoll_(::epoll_create1(EPOLL_CLOEXEC)),
        created_(UpstreamConnector::create(target, epoll_.get(), kTag, log::null_logger())) {}

  bool ok() const { return created_.ok(); }
  const std::string& error() const { return created_.error(); }
  UpstreamConnector& link() {
    if (!attached_) {
      (*created_)->attach(ev);
      ev.link = created_->get();
      attached_ = true;
    }
    return **created_;
  }

  // One loop turn: service() while it reports work (bounded), then one epoll_wait() of
  // `timeout_ms`, dispatched. Returns how many events epoll reported.
  int turn(int timeout_ms = 10, TimePoint at = now()) {
    for (int k = 0; k < 100 && (link().service(at) || link().busy()); ++k) {
    }
    epoll_event events[16];
    const int n = ::epoll_wait(epoll_.get(), events, 16, timeout_ms);
    for (int k = 0; k < n; ++k) {
      EXPECT_EQ(events[k].data.u64 >> 32, kTag);
      link().on_ready(static_cast<std::uint32_t>(events[k].data.u64 & 0xffffffffu),
                      events[k].events, now());
    }
    return n;
  }
  // Turns until `done()` holds, at most `limit` of time and 2000 turns.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    for (int k = 0; k < 2000 && std::chrono::steady_clock::now() < until; ++k) {
      if (done()) return true;
      turn();
    }
    return done();
  }
  // Dials `id` and runs until it is connected (or failed).
  bool connect(std::uint64_t id) {
    ev.sides[id];  // known to the fake: wants_read() true
    link().dial(id);
    EXPECT_TRUE(link().busy());
    return run_until([&] { return ev.trace.size() > 0; }) &&
           ev.has("connected " + std::to_string(id));
  }

  FakeEvents ev;

 private:
  os::Fd epoll_;
  Result<std::unique_ptr<UpstreamConnector>> created_;
  bool attached_ = false;
};

UpstreamTarget plain(std::uint16_t port) {
  UpstreamTarget t;
  t.host = "127.0.0.1";
  t.port = port;
  return t;
}

TEST(UpstreamConnector, DialsAndMovesBytesBothWays) {
  Listener broker;
  Harness h(plain(broker.port));
  ASSERT_TRUE(h.ok()) << h.error();
  ASSERT_TRUE(h.connect(1));
  EXPECT_EQ(h.link().connection_count(), 1u);
  const os::Fd server = broker.accept_one();
  ASSERT_TRUE(server.valid());

  // To the broker: written, erased from outgoing(), on_sent().
  h.ev.sides[1].out = text("hello");
  h.link().touch(1);
  EXPECT_TRUE(h.link().busy());
  Bytes got;
  ASSERT_TRUE(h.run_until([&] {
    drain(server.get(), got);
    return got.size() >= 5;
  }));
  EXPECT_EQ(str(got), "hello");
  EXPECT_TRUE(h.ev.sides[1].out.empty());
  EXPECT_GE(h.ev.sides[1].sent_calls, 1);

  // From the broker.
  ASSERT_EQ(::send(server.get(), "world", 5, MSG_NOSIGNAL), 5);
  ASSERT_TRUE(h.run_until([&] { return h.ev.sides[1].in.size() >= 5; }));
  EXPECT_EQ(str(h.ev.sides[1].in), "world");

  // More than the socket buffers hold: written as the broker reads, EPOLLOUT in between.
  const Bytes big = pattern(8u << 20);
  h.ev.sides[1].out = big;
  h.link().touch(1);
  got.clear();
  ASSERT_TRUE(h.run_until(
      [&] {
        drain(server.get(), got);
        return got.size() >= big.size();
      },
      20s));
  EXPECT_TRUE(got == big);
  EXPECT_TRUE(h.ev.sides[1].out.empty());
  EXPECT_GE(h.ev.sides[1].sent_calls, 2);
  EXPECT_FALSE(h.ev.nested);
  EXPECT_EQ(h.ev.trace, (std::vector<std::string>{"connected 1"}));
}

TEST(UpstreamConnector, CallbacksThatTouchAreOnlyRecorded) {
  Listener broker;
  Harness h(plain(broker.port));
  ASSERT_TRUE(h.ok()) << h.error();
  ASSERT_TRUE(h.connect(4));
  const os::Fd server = broker.accept_one();
  ASSERT_TRUE(server.valid());
  h.ev.sides[4].out = text("first");
  h.ev.sides[4].refills = 3;  // on_sent() appends and touches, three times
  h.link().touch(4);
  Bytes got;
  ASSERT_TRUE(h.run_until([&] {
    drain(server.get(), got);
    return got.size() >= 20;
  }));
  EXPECT_EQ(str(got), "first+more+more+more");
  EXPECT_FALSE(h.ev.nested);
  EXPECT_EQ(h.ev.sides[4].refills, 0);
}

TEST(UpstreamConnector, PausedReadingLeavesTheSocketQuietUntilTouched) {
  Listener broker;
  Harness h(plain(broker.port));
  ASSERT_TRUE(h.ok()) << h.error();
  ASSERT_TRUE(h.connect(2));
  const os::Fd server = broker.accept_one();
  ASSERT_TRUE(server.valid());

  h.ev.sides[2].read = false;
  h.link().touch(2);
  h.turn(0);
  ASSERT_EQ(::send(server.get(), "abc", 3, MSG_NOSIGNAL), 3);
  // Readable, but nobody reads: epoll must not report it (level-triggered, it would spin).
  for (int k = 0; k < 5; ++k) EXPECT_EQ(h.turn(20), 0) << k;
  EXPECT_TRUE(h.ev.sides[2].in.empty());

  h.ev.sides[2].read = true;
  h.link().touch(2);
  ASSERT_TRUE(h.run_until([&] { return h.ev.sides[2].in.size() >= 3; }));
  EXPECT_EQ(str(h.ev.sides[2].in), "abc");
}

TEST(UpstreamConnector, StopsReadingWhenWantsReadTurnsFalseMidStream) {
  Listener broker;
  Harness h(plain(broker.port));
  ASSERT_TRUE(h.ok()) << h.error();
  ASSERT_TRUE(h.connect(3));
  const os::Fd server = broker.accept_one();
  ASSERT_TRUE(server.valid());

  // The broker sends more than one chunk while reading is paused; then the session takes one
  // byte and turns wants_read() off after the first chunk.
  h.ev.sides[3].read = false;
  h.link().touch(3);
  h.turn(0);
  const Bytes sent = pattern(200 * 1024);
  std::size_t off = 0;
  for (int k = 0; k < 1000 && off < sent.size(); ++k) {
    const ssize_t n = ::send(server.get(), sent.data() + off, sent.size() - off, MSG_NOSIGNAL);
    if (n > 0) off += static_cast<std::size_t>(n);
  }
  ASSERT_EQ(off, sent.size());
  h.ev.sides[3].read = true;
  h.ev.sides[3].pause_at = 1;
  h.link().touch(3);
  ASSERT_TRUE(h.run_until([&] { return !h.ev.sides[3].in.empty(); }));
  for (int k = 0; k < 3; ++k) EXPECT_EQ(h.turn(20), 0) << k;
  EXPECT_LE(h.ev.sides[3].in.size(), 64u * 1024);  // one chunk, no more
  EXPECT_FALSE(h.link().busy());

  h.ev.sides[3].pause_at = std::numeric_limits<std::size_t>::max();
  h.ev.sides[3].read = true;
  h.link().touch(3);
  ASSERT_TRUE(h.run_until([&] { return h.ev.sides[3].in.size() >= sent.size(); }));
  EXPECT_TRUE(h.ev.sides[3].in == sent);
}

TEST(UpstreamConnector, BrokerEofIsAFailureAfterItsLastBytes) {
  Listener broker;
  Harness h(plain(broker.port));
  ASSERT_TRUE(h.ok()) << h.error();
  ASSERT_TRUE(h.connect(5));
  {
    const os::Fd server = broker.accept_one();
    ASSERT_TRUE(server.valid());
    ASSERT_EQ(::send(server.get(), "last", 4, MSG_NOSIGNAL), 4);
  }  // closed: FIN after the bytes
  ASSERT_TRUE(h.run_until([&] { return h.ev.has("closed 5"); }));
  EXPECT_EQ(h.ev.trace, (std::vector<std::string>{"connected 5", "failed 5", "closed 5"}));
  EXPECT_EQ(str(h.ev.sides[5].in), "last");
  EXPECT_EQ(h.ev.sides[5].why, "broker closed the connection");
  EXPECT_EQ(h.link().connection_count(), 0u);
  // Its slot is free: readiness reported for it now (a stale event) is ignored.
  h.link().on_ready(0, EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP, now());
  h.link().on_ready(12345, EPOLLIN, now());
  EXPECT_EQ(h.ev.trace.size(), 3u);
  EXPECT_EQ(h.turn(20), 0);
}

TEST(UpstreamConnector, RefusedConnectionFailsWithTheReason) {
  const Listener closed_port(false);  // bound, not listening: the kernel answers RST
  Harness h(plain(closed_port.port));
  ASSERT_TRUE(h.ok()) << h.error();
  h.link().dial(6);
  ASSERT_TRUE(h.run_until([&] { return h.ev.has("closed 6"); }));
  EXPECT_EQ(h.ev.trace, (std::vector<std::string>{"failed 6", "closed 6"}));
  EXPECT_EQ(h.ev.sides[6].why,
            "connect to 127.0.0.1:" + std::to_string(closed_port.port) + ": Connection refused");
  EXPECT_EQ(h.link().connection_count(), 0u);
}

TEST(UpstreamConnector, FinishedFlushesThenCloses) {
  Listener broker;
  Harness h(plain(broker.port));
  ASSERT_TRUE(h.ok()) << h.error();
  ASSERT_TRUE(h.connect(7));
  const os::Fd server = broker.accept_one();
  ASSERT_TRUE(server.valid());
  h.ev.sides[7].out = text("bye");
  h.ev.sides[7].fin = true;
  h.link().touch(7);
  ASSERT_TRUE(h.run_until([&] { return h.ev.has("closed 7"); }));
  EXPECT_EQ(h.ev.trace, (std::vector<std::string>{"connected 7", "closed 7"}));
  EXPECT_EQ(h.link().connection_count(), 0u);
  Bytes got;
  EXPECT_TRUE(read_to_eof(server.get(), got));  // the bytes, then the FIN
  EXPECT_EQ(str(got), "bye");
}

TEST(UpstreamConnector, FinishedWhileConnectingJustCloses) {
  Listener broker;
  Harness h(plain(broker.port));
  ASSERT_TRUE(h.ok()) << h.error();
  h.link().dial(8);
  EXPECT_FALSE(h.link().service(now()));  // connecting: nothing to say yet
  EXPECT_EQ(h.link().connection_count(), 1u);
  h.ev.sides[8].fin = true;
  h.link().touch(8);
  ASSERT_TRUE(h.run_until([&] { return h.ev.has("closed 8"); }));
  EXPECT_EQ(h.ev.trace, (std::vector<std::string>{"closed 8"}));
  EXPECT_EQ(h.link().connection_count(), 0u);
  for (int k = 0; k < 3; ++k) EXPECT_EQ(h.turn(10), 0);
}

TEST(UpstreamConnector, FinishedFlushIsBoundedWhenTheBrokerDoesNotRead) {
  Listener broker;
  Harness h(plain(broker.port));
  ASSERT_TRUE(h.ok()) << h.error();
  ASSERT_TRUE(h.connect(9));
  const os::Fd server = broker.accept_one();  // never read
  ASSERT_TRUE(server.valid());
  h.ev.sides[9].out = pattern(64u << 20);  // more than any socket buffers hold
  h.ev.sides[9].fin = true;
  h.link().touch(9);
  for (int k = 0; k < 10; ++k) h.turn(10);
  EXPECT_FALSE(h.ev.has("closed 9"));
  EXPECT_FALSE(h.ev.sides[9].out.empty());
  // Past the grace (5 s, as service() is told; no real wait).
  EXPECT_TRUE(h.link().service(now() + 6s));
  EXPECT_EQ(h.ev.trace, (std::vector<std::string>{"connected 9", "closed 9"}));
  EXPECT_EQ(h.link().connection_count(), 0u);
}

TEST(UpstreamConnector, UnresolvableHostIsACreateError) {
  UpstreamTarget t;
  t.host = "no-such-broker.invalid";
  Harness h(t);
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.error().find("no-such-broker.invalid"), std::string::npos) << h.error();
  EXPECT_EQ(h.error().find('\n'), std::string::npos);
}

TEST(UpstreamConnector, Describes) {
  {
    Harness h(plain(1883));
    ASSERT_TRUE(h.ok()) << h.error();
    EXPECT_EQ(h.link().describe(), "127.0.0.1:1883 (127.0.0.1)");
  }
  {
    UpstreamTarget t = plain(8883);
    t.host = "::1";
    t.tls = true;
    Harness h(t);
    ASSERT_TRUE(h.ok()) << h.error();
    EXPECT_EQ(h.link().describe(), "[::1]:8883 (::1) TLS");
  }
}

// --- TLS ---

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct CtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
struct ExtFree {
  void operator()(X509_EXTENSION* e) const { X509_EXTENSION_free(e); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Cert = std::unique_ptr<X509, X509Free>;

// A P-256 key (fast to make; EVP_EC_gen() is a macro with a cast that drops const).
Pkey make_key() {
  const std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> c(EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nullptr));
  EVP_PKEY* key = nullptr;
  if (!c || EVP_PKEY_keygen_init(c.get()) != 1 ||
      EVP_PKEY_CTX_set_ec_paramgen_curve_nid(c.get(), NID_X9_62_prime256v1) != 1 ||
      EVP_PKEY_keygen(c.get(), &key) != 1) {
    return nullptr;
  }
  return Pkey(key);
}

// A certificate for `key` named `cn`, signed by `issuer` (itself when null), a CA or not, with a
// subjectAltName when `san` is given ("IP:127.0.0.1").
Cert make_cert(EVP_PKEY* key, const char* cn, bool ca, const char* san, X509* issuer,
               EVP_PKEY* issuer_key) {
  static long serial = 1;
  Cert x(X509_new());
  X509_set_version(x.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 24 * 3600);
  X509_set_pubkey(x.get(), key);
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn),
                             -1, -1, 0);
  X509_set_issuer_name(x.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509V3_CTX v3{};
  X509V3_set_ctx(&v3, issuer ? issuer : x.get(), x.get(), nullptr, nullptr, 0);
  auto add = [&](int nid, const char* value) {
    const std::unique_ptr<X509_EXTENSION, ExtFree> e(X509V3_EXT_conf_nid(nullptr, &v3, nid, value));
    EXPECT_TRUE(e) << value;
    if (e) X509_add_ext(x.get(), e.get(), -1);
  };
  add(NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
  add(NID_subject_key_identifier, "hash");
  if (ca) add(NID_key_usage, "critical,keyCertSign,cRLSign");
  if (san) add(NID_subject_alt_name, san);
  EXPECT_GT(X509_sign(x.get(), issuer_key ? issuer_key : key, EVP_sha256()), 0);
  return x;
}

void write_pem(const std::filesystem::path& p, X509* x) {
  const std::unique_ptr<BIO, BioFree> b(BIO_new_file(p.c_str(), "w"));
  ASSERT_TRUE(b);
  ASSERT_EQ(PEM_write_bio_X509(b.get(), x), 1);
}

// A TLS broker on its own thread: accepts one client (blocking, with 5 s timeouts), then reads
// `expect` bytes, answers `reply` and reads to the client's close. Everything it saw is in its
// fields once joined.
class TlsBroker {
 public:
  TlsBroker(X509* cert, EVP_PKEY* key, std::size_t expect = 4, Bytes reply = text("pong"))
      : expect_(expect), reply_(std::move(reply)), ctx_(SSL_CTX_new(TLS_server_method())) {
    SSL_CTX_use_certificate(ctx_.get(), cert);
    SSL_CTX_use_PrivateKey(ctx_.get(), key);
    thread_ = std::jthread([this] { serve(); });
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  std::uint16_t port() const { return listener_.port; }

  std::atomic<bool> handshake_ok{false};
  std::atomic<bool> saw_eof{false};
  std::string received;  // read only after join()

 private:
  void serve() {
    const os::Fd fd = listener_.accept_one(5s);
    if (!fd.valid()) return;
    const int flags = 0;
    ::ioctl(fd.get(), FIONBIO, &flags);  // blocking, bounded by the timeouts
    const timeval tv{5, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    const std::unique_ptr<SSL, SslFree> ssl(SSL_new(ctx_.get()));
    SSL_set_fd(ssl.get(), fd.get());
    if (SSL_accept(ssl.get()) != 1) return;
    handshake_ok = true;
    // A big upload finds the socket full first: the client's writes must wait for EPOLLOUT.
    if (expect_ > 65536) std::this_thread::sleep_for(200ms);
    char buf[16384];
    for (int k = 0; k < 100000 && received.size() < expect_; ++k) {
      const int n = SSL_read(ssl.get(), buf, sizeof(buf));
      if (n <= 0) return;
      received.append(buf, static_cast<std::size_t>(n));
    }
    const int len = static_cast<int>(reply_.size());
    if (SSL_write(ssl.get(), reply_.data(), len) != len) return;
    for (int k = 0; k < 100; ++k) {
      const int n = SSL_read(ssl.get(), buf, sizeof(buf));
      if (n <= 0) {
        saw_eof = SSL_get_error(ssl.get(), n) == SSL_ERROR_ZERO_RETURN ||
                  SSL_get_error(ssl.get(), n) == SSL_ERROR_SYSCALL;
        break;
      }
      received.append(buf, static_cast<std::size_t>(n));
    }
    SSL_shutdown(ssl.get());
  }

  std::size_t expect_;
  Bytes reply_;
  Listener listener_;
  std::unique_ptr<SSL_CTX, CtxFree> ctx_;
  std::jthread thread_;
};

class UpstreamConnectorTls : public ::testing::Test {
 protected:
  void SetUp() override {
    // A broker closing under a write must not kill the test binary (the proxy ignores it too).
    std::signal(SIGPIPE, SIG_IGN);
    char tmpl[] = "/tmp/upstream_connector_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ca_key_ = make_key();
    other_key_ = make_key();
    server_key_ = make_key();
    ASSERT_TRUE(ca_key_ && other_key_ && server_key_);
    ca_ = make_cert(ca_key_.get(), "test CA", true, nullptr, nullptr, nullptr);
    other_ca_ = make_cert(other_key_.get(), "another CA", true, nullptr, nullptr, nullptr);
    write_pem(dir_ / "ca.pem", ca_.get());
    write_pem(dir_ / "other_ca.pem", other_ca_.get());
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  Cert server_cert(const char* san) {
    return make_cert(server_key_.get(), "broker", false, san, ca_.get(), ca_key_.get());
  }
  UpstreamTarget target(std::uint16_t port, const std::string& ca_file) const {
    UpstreamTarget t = plain(port);
    t.tls = true;
    t.cafile = (dir_ / ca_file).string();
    return t;
  }

  std::filesystem::path dir_;
  Pkey ca_key_, other_key_, server_key_;
  Cert ca_, other_ca_;
};

TEST_F(UpstreamConnectorTls, HandshakeAndBytesBothWays) {
  const Cert cert = server_cert("IP:127.0.0.1");
  TlsBroker broker(cert.get(), server_key_.get());
  Harness h(target(broker.port(), "ca.pem"));
  ASSERT_TRUE(h.ok()) << h.error();
  EXPECT_EQ(h.link().describe(), "127.0.0.1:" + std::to_string(broker.port()) +
                                     " (127.0.0.1) TLS CA " + (dir_ / "ca.pem").string());
  ASSERT_TRUE(h.connect(1)) << h.ev.sides[1].why;
  // Paused: the broker's answer (and TLS 1.3's tickets) wait in the kernel, and epoll is quiet.
  h.ev.sides[1].read = false;
  h.ev.sides[1].out = text("ping");
  h.link().touch(1);
  ASSERT_TRUE(h.run_until([&] { return h.ev.sides[1].out.empty(); }));
  for (int k = 0; k < 3; ++k) EXPECT_EQ(h.turn(20), 0) << k;
  EXPECT_TRUE(h.ev.sides[1].in.empty());
  h.ev.sides[1].read = true;
  h.link().touch(1);
  ASSERT_TRUE(h.run_until([&] { return h.ev.sides[1].in.size() >= 4; }));
  EXPECT_EQ(str(h.ev.sides[1].in), "pong");
  EXPECT_TRUE(h.ev.sides[1].out.empty());
  EXPECT_GE(h.ev.sides[1].sent_calls, 1);

  h.ev.sides[1].fin = true;  // close_notify, then FIN
  h.link().touch(1);
  ASSERT_TRUE(h.run_until([&] { return h.ev.has("closed 1"); }));
  broker.join();
  EXPECT_TRUE(broker.handshake_ok);
  EXPECT_EQ(broker.received, "ping");
  EXPECT_TRUE(broker.saw_eof);
  EXPECT_EQ(h.ev.trace, (std::vector<std::string>{"connected 1", "closed 1"}));
}

TEST_F(UpstreamConnectorTls, MovesMoreThanTheSocketBuffersHoldBothWays) {
  const Cert cert = server_cert("IP:127.0.0.1");
  const Bytes up = pattern(4u << 20);
  Bytes down = pattern(3u << 20);
  std::reverse(down.begin(), down.end());
  TlsBroker broker(cert.get(), server_key_.get(), up.size(), down);
  Harness h(target(broker.port(), "ca.pem"));
  ASSERT_TRUE(h.ok()) << h.error();
  ASSERT_TRUE(h.connect(1)) << h.ev.sides[1].why;
  h.ev.sides[1].out = up;
  h.link().touch(1);
  ASSERT_TRUE(h.run_until([&] { return h.ev.sides[1].in.size() >= down.size(); }, 20s));
  EXPECT_TRUE(h.ev.sides[1].in == down);
  EXPECT_TRUE(h.ev.sides[1].out.empty());
  EXPECT_GE(h.ev.sides[1].sent_calls, 2);  // partial writes, erased as they went
  h.ev.sides[1].fin = true;
  h.link().touch(1);
  ASSERT_TRUE(h.run_until([&] { return h.ev.has("closed 1"); }));
  broker.join();
  EXPECT_EQ(broker.received.size(), up.size());
  EXPECT_TRUE(broker.received == str(up));
  EXPECT_EQ(h.ev.trace, (std::vector<std::string>{"connected 1", "closed 1"}));
  EXPECT_FALSE(h.ev.nested);
}

TEST_F(UpstreamConnectorTls, WrongCaFailsTheHandshake) {
  const Cert cert = server_cert("IP:127.0.0.1");
  TlsBroker broker(cert.get(), server_key_.get());
  Harness h(target(broker.port(), "other_ca.pem"));
  ASSERT_TRUE(h.ok()) << h.error();
  h.link().dial(2);
  ASSERT_TRUE(h.run_until([&] { return h.ev.has("closed 2"); }));
  broker.join();
  EXPECT_EQ(h.ev.trace, (std::vector<std::string>{"failed 2", "closed 2"}));
  const std::string& why = h.ev.sides[2].why;
  EXPECT_TRUE(why.starts_with("TLS handshake with 127.0.0.1: certificate verify failed")) << why;
  EXPECT_EQ(why.find('\n'), std::string::npos);
  EXPECT_FALSE(broker.handshake_ok);
  std::cout << "  on_failed: " << why << "\n";
}

TEST_F(UpstreamConnectorTls, CertificateForAnotherAddressFailsTheHandshake) {
  const Cert cert = server_cert("DNS:elsewhere.example,IP:10.9.9.9");
  TlsBroker broker(cert.get(), server_key_.get());
  Harness h(target(broker.port(), "ca.pem"));
  ASSERT_TRUE(h.ok()) << h.error();
  h.link().dial(3);
  ASSERT_TRUE(h.run_until([&] { return h.ev.has("closed 3"); }));
  broker.join();
  EXPECT_EQ(h.ev.trace, (std::vector<std::string>{"failed 3", "closed 3"}));
  const std::string& why = h.ev.sides[3].why;
  EXPECT_TRUE(why.starts_with("TLS handshake with 127.0.0.1: certificate verify failed")) << why;
  EXPECT_NE(why.find("IP address mismatch"), std::string::npos) << why;
}

TEST_F(UpstreamConnectorTls, MissingOrBadCaFileIsACreateError) {
  {
    Harness h(target(8883, "missing.pem"));
    ASSERT_FALSE(h.ok());
    EXPECT_NE(h.error().find((dir_ / "missing.pem").string()), std::string::npos) << h.error();
    EXPECT_NE(h.error().find("No such file"), std::string::npos) << h.error();
    std::cout << "  create(): " << h.error() << "\n";
  }
  {
    const std::unique_ptr<BIO, BioFree> b(BIO_new_file((dir_ / "junk.pem").c_str(), "w"));
    ASSERT_TRUE(b);
    BIO_puts(b.get(), "not a certificate\n");
  }
  Harness h(target(8883, "junk.pem"));
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.error().find((dir_ / "junk.pem").string()), std::string::npos) << h.error();
  EXPECT_EQ(h.error().find('\n'), std::string::npos);
}

}  // namespace
}  // namespace mqtt_proxy::app
