// Upstream mode's broker side (docs/upstream.md): kernel TCP connections, optionally TLS, one per
// client, driven by the event loop's epoll. What Sessions asks for (dial, touch) is recorded and
// acted on in service(), so no LinkEvents call ever runs inside another.
//
// Read first: epoll(7) (level-triggered; EPOLLERR and EPOLLHUP are reported whatever the
// interest), connect(2) (EINPROGRESS, then SO_ERROR), SSL_get_error(3) (WANT_READ / WANT_WRITE from
// any call, SSL_write needing a read), SSL_set1_host(3), SSL_CTX_set_mode(3) (partial writes).
//
// A connection goes Connecting -> (Handshaking ->) Open -> Lingering -> closed:
// - Open and finished() turns true: `finishing`. What outgoing() holds is written; what the broker
//   sends is read and dropped (the session wants no more, and unread bytes at close() would make
//   the kernel send an RST that can destroy our last bytes before the broker reads them).
// - Flushed: close_notify (TLS, one non-blocking attempt), shutdown(SHUT_WR), on_closed(). The
//   socket then lingers, id-less, until the broker's FIN, still reading and dropping.
// - Finishing and lingering share one bound, kFinishGrace from finished() seen: a broker that
//   does not read (or never closes) costs a socket for at most that long. A flush given up on is
//   closed with SO_LINGER 0 (an RST), so that no orphaned socket keeps its unsent bytes either.
//   The bound is kept by a timerfd of the connector's own in the same epoll (slot kTimerSlot), so
//   it holds even when nothing else wakes the loop; it assumes `now` is CLOCK_MONOTONIC, as
//   monotonic_now() is. Deadlines are also checked on every service() and on_ready().
//
// epoll, level-triggered: EPOLLIN only while something will read (wants_read(), finishing,
// lingering, or OpenSSL waiting to read), EPOLLOUT only while connecting or bytes wait (or
// OpenSSL waits to write); MOD only when that set changes. EPOLLERR and EPOLLHUP come whatever the
// interest, so a connection they leave open after its read and write is ended there, even
// paused (what it had not read is lost; an RST had destroyed it anyway). Reading stops after
// kReadsPerTurn chunks and goes on next service(). Slots: a freed one is reused by the next dial,
// and only service() dials, so an event of the batch that freed a slot finds it free (ignored);
// a connecting socket's EPOLLOUT is believed only once getpeername() agrees.
// connection_count() counts the sessions' connections, not lingering sockets.
#include "mqtt_proxy/app/upstream_connector.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <functional>
#include <optional>
#include <queue>
#include <unordered_map>
#include <vector>

#include "mqtt_proxy/os/fd.hpp"

namespace mqtt_proxy::app {

namespace {

constexpr std::string_view kLog = "upstream";
// One read() or SSL_read() at most; a TLS record is at most 16 KiB, so SSL_read never leaves
// decrypted bytes behind for want of room.
constexpr std::size_t kReadChunk = 64 * 1024;
// Chunks read from one socket per turn (1 MiB): the others get theirs; the rest is read on the
// next service() (the id is touched again, so the loop does not sleep meanwhile).
constexpr int kReadsPerTurn = 16;
// Bytes handed to one SSL_write: a retry after WANT_WRITE must pass at least as many bytes as the
// call that wanted it, and outgoing() only grows between calls, so a fixed cap always holds.
constexpr std::size_t kTlsWriteChunk = 16 * 1024;
// From finished() to the socket closed, whatever the broker does (the file comment).
constexpr Duration kFinishGrace = std::chrono::seconds(5);
// The slot of the connector's timerfd: never a connection's (slots count up from 0).
constexpr std::uint32_t kTimerSlot = 0xffffffffu;

struct SslCtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
struct AddrinfoFree {
  void operator()(addrinfo* a) const { freeaddrinfo(a); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;

std::string errno_text(int e) {
  return std::strerror(e);  // NOLINT(concurrency-mt-unsafe): the loop is single-threaded
}

// The first reason on OpenSSL's error queue (its earliest, the cause), and the queue emptied so
// that the next call's SSL_get_error() sees only its own.
std::string openssl_reason() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return {};
#ifdef ERR_SYSTEM_ERROR
  // OpenSSL 3 keeps a failed system call's errno as the reason, with no string of its own.
  if (ERR_SYSTEM_ERROR(e)) return errno_text(ERR_GET_REASON(e));
#endif
  if (const char* r = ERR_reason_error_string(e)) return r;
  return fmt::format("OpenSSL error {:#x}", e);
}

// One line for a failed SSL call: the queue's reason, else the system's; after a handshake the
// certificate check's own words, e.g. "certificate verify failed (IP address mismatch)".
std::string tls_failure(const SSL* ssl, int ssl_error, int saved_errno) {
  std::string why = openssl_reason();
  if (why.empty()) {
    if (ssl_error == SSL_ERROR_SYSCALL && saved_errno != 0) {
      why = errno_text(saved_errno);
    } else if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN) {
      why = "the broker closed the connection";
    } else {
      why = fmt::format("SSL error {}", ssl_error);
    }
  }
  if (const long v = SSL_get_verify_result(ssl); v != X509_V_OK) {
    why += fmt::format(" ({})", X509_verify_cert_error_string(v));
  }
  return why;
}

// An IPv6 address before a ":port" goes in brackets (RFC 3986 3.2.2).
std::string bracketed(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

bool is_ip_literal(const std::string& host) {
  in6_addr a6{};
  in_addr a4{};
  return ::inet_pton(AF_INET, host.c_str(), &a4) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

// SSL_set_tlsext_host_name() is a macro with a C cast that drops const; this is it, cast-free.
bool set_sni(SSL* ssl, const std::string& host) {
  return SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                  const_cast<char*>(host.c_str())) == 1;  // OpenSSL copies, never writes, the name
}

enum class State : std::uint8_t { Free, Connecting, Handshaking, Open, Lingering };

struct Conn {
  State state = State::Free;
  std::uint64_t id = 0;          // the client connection's; none once Lingering
  std::uint32_t generation = 0;  // counts the slot's uses: a deadline of an earlier use is stale
  os::Fd fd;
  SslPtr ssl;                            // with TLS, from the TCP connection up
  std::uint32_t interest = 0;            // what epoll has for the socket now
  std::uint32_t handshake_interest = 0;  // Handshaking: what SSL_connect() waits for
  bool finishing = false;                // Open: finished() seen; flushing, then Lingering
  bool write_wants_read = false;         // TLS: the last SSL_write() said WANT_READ
  bool read_wants_write = false;         // TLS: the last SSL_read() said WANT_WRITE
  std::optional<TimePoint> close_by;     // finishing or Lingering: closed then at the latest
};

struct Deadline {
  TimePoint at;
  std::uint32_t slot;
  std::uint32_t generation;
  friend bool operator>(const Deadline& a, const Deadline& b) { return a.at > b.at; }
};

enum class Io : std::uint8_t { Data, Blocked, Eof, Error };
struct ReadOutcome {
  Io io;
  std::size_t n = 0;
  std::string error;
};

}  // namespace

struct UpstreamConnector::Impl {
  Impl(const UpstreamTarget& t, int epfd, std::uint32_t epoll_tag, log::Logger& logger)
      : target(t), epoll_fd(epfd), tag(epoll_tag), log(logger), read_buf(kReadChunk) {}

  UpstreamTarget target;
  std::string host;  // target.host without [ ] around an IPv6 literal
  int epoll_fd;
  std::uint32_t tag;
  log::Logger& log;
  upstream::LinkEvents* const* owner_events = nullptr;  // the owner's events_, set by attach()

  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string address;   // numeric: "10.0.0.2", "::1"
  std::string endpoint;  // for messages: "10.0.0.2:1883", "[::1]:1883"
  bool host_is_ip = false;
  SslCtxPtr ctx;

  os::Fd timer;
  std::optional<TimePoint> timer_at;
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> deadlines;

  std::vector<Conn> slots;
  std::vector<std::uint32_t> free_slots;
  std::unordered_map<std::uint64_t, std::uint32_t> by_id;
  // Recorded by dial() and touch(); service() swaps them with the second pair and works on that,
  // so what its calls record waits for the next service().
  std::vector<std::uint64_t> dials, touches, dials_now, touches_now;
  std::vector<std::byte> read_buf;
  bool notified = false;  // a LinkEvents notification since the last service() returned

  // --- set-up ---

  Status resolve() {
    host = target.host;
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(target.port);
    const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
    if (rc != 0) {
      const std::string why = rc == EAI_SYSTEM ? errno_text(errno) : ::gai_strerror(rc);
      return Error{fmt::format("upstream broker {}: cannot resolve: {}", host, why)};
    }
    const std::unique_ptr<addrinfo, AddrinfoFree> owned(found);
    // Resolved once: the first address is the one every connection dials.
    std::memcpy(&addr, found->ai_addr, found->ai_addrlen);
    addr_len = found->ai_addrlen;
    char text[NI_MAXHOST] = {};
    if (::getnameinfo(found->ai_addr, found->ai_addrlen, text, sizeof(text), nullptr, 0,
                      NI_NUMERICHOST) != 0) {
      return Error{fmt::format("upstream broker {}: cannot print its address", host)};
    }
    address = text;
    endpoint = fmt::format("{}:{}", bracketed(address), target.port);
    host_is_ip = is_ip_literal(host);
    return {};
  }

  Status make_tls_context() {
    ERR_clear_error();
    ctx.reset(SSL_CTX_new(TLS_client_method()));
    if (!ctx) return Error{"upstream TLS: SSL_CTX_new: " + openssl_reason()};
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    // Partial writes: SSL_write() returns per record, so what was sent can be erased from
    // outgoing() as with a plain socket. Moving buffer: outgoing() is a vector that may reallocate
    // between a WANT_WRITE and its retry.
    SSL_CTX_set_mode(ctx.get(),
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    // A broker that closes without close_notify has closed, as over plain TCP: MQTT packets carry
    // their lengths, so a cut cannot pass for a shorter packet.
    SSL_CTX_set_options(ctx.get(), SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    if (target.cafile.empty()) {
      if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
        return Error{"upstream TLS: the system's CA paths: " + openssl_reason()};
      }
    } else if (SSL_CTX_load_verify_locations(ctx.get(), target.cafile.c_str(), nullptr) != 1) {
      const std::string why = openssl_reason();
      return Error{fmt::format("upstream CA file {}: {}", target.cafile,
                               why.empty() ? "no certificate in it" : why)};
    }
    ERR_clear_error();
    return {};
  }

  Status make_timer() {
    timer = os::Fd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
    if (!timer.valid()) return Error{"upstream: timerfd_create: " + errno_text(errno)};
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.u64 = key(kTimerSlot);
    if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, timer.get(), &e) != 0) {
      return Error{"upstream: epoll_ctl: " + errno_text(errno)};
    }
    return {};
  }

  // --- helpers ---

  std::uint64_t key(std::uint32_t slot) const {
    return (std::uint64_t{tag} << 32) | slot;
  }

  upstream::LinkEvents& ev() const {
    assert(owner_events && *owner_events && "UpstreamConnector::attach() before any dial");
    return **owner_events;
  }
  // The notifications (not the queries) tell service()'s caller that the core has work.
  void notify_connected(std::uint64_t id, TimePoint now) {
    notified = true;
    ev().on_connected(id, now);
  }
  void notify_failed(std::uint64_t id, std::string_view why, TimePoint now) {
    notified = true;
    ev().on_failed(id, why, now);
  }
  void notify_closed(std::uint64_t id) {
    notified = true;
    ev().on_closed(id);
  }

  bool has_outgoing(std::uint64_t id) const {
    const Bytes* out = ev().outgoing(id);
    return out != nullptr && !out->empty();
  }

  std::uint32_t take_slot() {
    if (!free_slots.empty()) {
      const std::uint32_t s = free_slots.back();
      free_slots.pop_back();
      return s;
    }
    slots.emplace_back();
    return static_cast<std::uint32_t>(slots.size() - 1);
  }

  // Closes the socket (epoll forgets it with it; DEL first all the same, in case the fd was
  // inherited somewhere) and frees the slot. No callback.
  void release(std::uint32_t slot) {
    Conn& c = slots[slot];
    if (c.fd.valid()) ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c.fd.get(), nullptr);
    if (c.state != State::Lingering) by_id.erase(c.id);
    const std::uint32_t next_generation = c.generation + 1;
    c = Conn{};
    c.generation = next_generation;
    free_slots.push_back(slot);
  }

  // Dialling, TLS or the connection failed: on_failed, the socket closed, on_closed (a finishing
  // session gets on_closed alone: it has ended, and the failure is only ours to log).
  void fail(std::uint32_t slot, const std::string& why, TimePoint now) {
    const std::uint64_t id = slots[slot].id;
    const bool finishing = slots[slot].finishing;
    log.debug(kLog, "connection {} to {}: {}", id, endpoint, why);
    if (!finishing) notify_failed(id, why, now);
    release(slot);
    notify_closed(id);
  }

  // The session ended while the connection was not up yet: nothing to send, nothing to say.
  void drop(std::uint32_t slot) {
    const std::uint64_t id = slots[slot].id;
    release(slot);
    notify_closed(id);
  }

  void set_interest(std::uint32_t slot, std::uint32_t want) {
    Conn& c = slots[slot];
    if (want == c.interest) return;
    epoll_event e{};
    e.events = want;
    e.data.u64 = key(slot);
    if (::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c.fd.get(), &e) != 0) {
      log.warn(kLog, "connection {} to {}: epoll_ctl: {}", c.id, endpoint, errno_text(errno));
      return;
    }
    c.interest = want;
  }

  // EPOLLIN only while something will read: a readable socket nobody reads would wake the loop
  // forever (level-triggered).
  void update_interest(std::uint32_t slot) {
    const Conn& c = slots[slot];
    std::uint32_t want = 0;
    switch (c.state) {
      case State::Free:
        return;
      case State::Connecting:
        want = EPOLLOUT;
        break;
      case State::Handshaking:
        want = c.handshake_interest;
        break;
      case State::Open: {
        // While finishing we read too (and drop it). A TLS call that wants the other direction
        // waits for that one alone: a writable socket would not help an SSL_write that must read.
        const bool bytes = has_outgoing(c.id);
        const bool reading = c.finishing || ev().wants_read(c.id);
        if (reading || (bytes && c.write_wants_read)) want |= EPOLLIN;
        if ((bytes && !c.write_wants_read) || (reading && c.read_wants_write)) want |= EPOLLOUT;
        break;
      }
      case State::Lingering:
        want = EPOLLIN;
        break;
    }
    set_interest(slot, want);
  }

  void add_deadline(std::uint32_t slot, TimePoint at) {
    slots[slot].close_by = at;
    deadlines.push({at, slot, slots[slot].generation});
  }

  // Sets the timerfd to the earliest live deadline (only when that moved).
  void arm_timer() {
    while (!deadlines.empty()) {
      const Deadline& d = deadlines.top();
      if (slots[d.slot].generation == d.generation && slots[d.slot].close_by) break;
      deadlines.pop();
    }
    const std::optional<TimePoint> at =
        deadlines.empty() ? std::nullopt : std::optional<TimePoint>(deadlines.top().at);
    if (at == timer_at) return;
    itimerspec its{};  // zero: disarmed
    if (at) {
      const auto ns = std::max<std::int64_t>(at->time_since_epoch().count(), 1);
      its.it_value.tv_sec = ns / 1'000'000'000;
      its.it_value.tv_nsec = ns % 1'000'000'000;
    }
    ::timerfd_settime(timer.get(), TFD_TIMER_ABSTIME, &its, nullptr);
    timer_at = at;
  }

  // Finishing or lingering sockets past kFinishGrace are closed.
  void expire(TimePoint now) {
    while (!deadlines.empty() && deadlines.top().at <= now) {
      const Deadline d = deadlines.top();
      deadlines.pop();
      Conn& c = slots[d.slot];
      if (c.generation != d.generation || !c.close_by) continue;
      if (c.state == State::Lingering) {
        release(d.slot);  // our FIN is out; the broker's never came
        continue;
      }
      // The broker did not take what was left within the grace: an RST, so that no orphaned
      // socket keeps trying to send it.
      log.debug(kLog, "connection {} to {}: not flushed within {} ms, reset", c.id, endpoint,
                to_ms(kFinishGrace));
      const linger abort{1, 0};
      ::setsockopt(c.fd.get(), SOL_SOCKET, SO_LINGER, &abort, sizeof(abort));
      drop(d.slot);
    }
  }

  // --- dialling ---

  void start_dial(std::uint64_t id, TimePoint now) {
    if (by_id.contains(id)) {
      log.warn(kLog, "connection {}: dialled twice; the second ignored", id);
      return;
    }
    if (ev().finished(id)) {  // ended before we got to it
      notify_closed(id);
      return;
    }
    os::Fd fd(::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
      dial_failed(id, "socket: " + errno_text(errno), now);
      return;
    }
    // MQTT is small packets both ways, each waited for: Nagle would hold them back.
    const int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    const int rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), addr_len);
    if (rc != 0 && errno != EINPROGRESS) {
      dial_failed(id, fmt::format("connect to {}: {}", endpoint, errno_text(errno)), now);
      return;
    }
    const std::uint32_t slot = take_slot();
    Conn& c = slots[slot];
    c.state = State::Connecting;
    c.id = id;
    c.fd = std::move(fd);
    by_id[id] = slot;
    epoll_event e{};
    e.events = EPOLLOUT;
    e.data.u64 = key(slot);
    if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, c.fd.get(), &e) != 0) {
      fail(slot, "epoll_ctl: " + errno_text(errno), now);
      return;
    }
    c.interest = EPOLLOUT;
    log.debug(kLog, "connection {}: connecting to {}", id, endpoint);
    if (rc == 0) connected(slot, now);
  }

  // Failed before there was a slot.
  void dial_failed(std::uint64_t id, const std::string& why, TimePoint now) {
    log.debug(kLog, "connection {}: {}", id, why);
    notify_failed(id, why, now);
    notify_closed(id);
  }

  void on_connect_ready(std::uint32_t slot, std::uint32_t events_mask, TimePoint now) {
    Conn& c = slots[slot];
    int err = 0;
    socklen_t len = sizeof(err);
    if (::getsockopt(c.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) {
      fail(slot, fmt::format("connect to {}: {}", endpoint, errno_text(err)), now);
      return;
    }
    // SO_ERROR is 0 while still connecting too (an event meant for an earlier use of the slot):
    // only a peer address says it is done.
    sockaddr_storage peer{};
    socklen_t peer_len = sizeof(peer);
    if (::getpeername(c.fd.get(), reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) {
      if ((events_mask & (EPOLLERR | EPOLLHUP)) != 0 || errno != ENOTCONN) {
        fail(slot, fmt::format("connect to {}: {}", endpoint, errno_text(errno)), now);
      }
      return;
    }
    connected(slot, now);
  }

  void connected(std::uint32_t slot, TimePoint now) {
    Conn& c = slots[slot];
    if (!ctx) {
      c.state = State::Open;
      log.debug(kLog, "connection {}: connected to {}", c.id, endpoint);
      notify_connected(c.id, now);
      work_open(slot, now);
      return;
    }
    ERR_clear_error();
    SslPtr ssl(SSL_new(ctx.get()));
    if (!ssl || SSL_set_fd(ssl.get(), c.fd.get()) != 1) {
      fail(slot, "TLS: SSL_new: " + openssl_reason(), now);
      return;
    }
    // SNI and the certificate's name or address: a broker's certificate must be for the host we
    // were told, not just signed by a trusted CA. RFC 6066 3: no IP literal in SNI.
    const bool named =
        host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), host.c_str()) == 1
                   : set_sni(ssl.get(), host) && SSL_set1_host(ssl.get(), host.c_str()) == 1;
    if (!named) {
      fail(slot,
           fmt::format("TLS: cannot check the certificate for {}: {}", host, openssl_reason()),
           now);
      return;
    }
    c.ssl = std::move(ssl);
    c.state = State::Handshaking;
    handshake(slot, now);
  }

  void handshake(std::uint32_t slot, TimePoint now) {
    Conn& c = slots[slot];
    ERR_clear_error();
    errno = 0;  // SSL_ERROR_SYSCALL reports this call's errno, not an older one
    const int rc = SSL_connect(c.ssl.get());
    const int saved_errno = errno;
    if (rc == 1) {
      c.state = State::Open;
      c.handshake_interest = 0;
      log.debug(kLog, "connection {}: {} with {} ({}, {})", c.id, SSL_get_version(c.ssl.get()),
                host, endpoint, SSL_get_cipher_name(c.ssl.get()));
      notify_connected(c.id, now);
      work_open(slot, now);
      return;
    }
    const int err = SSL_get_error(c.ssl.get(), rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      c.handshake_interest = err == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
      update_interest(slot);
      return;
    }
    fail(slot,
         fmt::format("TLS handshake with {}: {}", host, tls_failure(c.ssl.get(), err, saved_errno)),
         now);
  }

  // --- open connections ---

  // After a touch or readiness: notice finished(), write, read (or drop what is read while
  // finishing), then set the interest. Every step is non-blocking and stops at EAGAIN.
  void work_open(std::uint32_t slot, TimePoint now) {
    Conn& c = slots[slot];
    if (!c.finishing && ev().finished(c.id)) {
      c.finishing = true;
      add_deadline(slot, now + kFinishGrace);
    }
    if (!flush(slot, now)) return;
    if (c.finishing) {
      if (!drop_input(slot)) return;
      if (!has_outgoing(c.id)) {
        finish(slot);
        return;
      }
    } else if (!read_in(slot, now)) {
      return;
    }
    update_interest(slot);
  }

  // Writes outgoing() as far as the socket takes it; false when the connection failed (released).
  bool flush(std::uint32_t slot, TimePoint now) {
    Conn& c = slots[slot];
    Bytes* out = ev().outgoing(c.id);
    if (out == nullptr || out->empty()) return true;
    std::size_t written = 0;
    std::string failure;
    c.write_wants_read = false;
    while (written < out->size()) {
      const std::size_t left = out->size() - written;
      if (c.ssl) {
        ERR_clear_error();
        errno = 0;
        const int n = SSL_write(c.ssl.get(), out->data() + written,
                                static_cast<int>(std::min(left, kTlsWriteChunk)));
        const int saved_errno = errno;
        if (n > 0) {
          written += static_cast<std::size_t>(n);
          continue;
        }
        const int err = SSL_get_error(c.ssl.get(), n);
        if (err == SSL_ERROR_WANT_WRITE) break;
        if (err == SSL_ERROR_WANT_READ) {
          c.write_wants_read = true;
          break;
        }
        failure = tls_failure(c.ssl.get(), err, saved_errno);
        break;
      }
      const ssize_t n = ::send(c.fd.get(), out->data() + written, left, MSG_NOSIGNAL);
      if (n > 0) {
        written += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      failure = errno_text(n < 0 ? errno : EPIPE);
      break;
    }
    if (written > 0) {
      // Erased once per flush, not per record: a large backlog is not moved once per 16 KiB.
      out->erase(out->begin(), out->begin() + static_cast<std::ptrdiff_t>(written));
    }
    if (!failure.empty()) {
      fail(slot, fmt::format("write to {}: {}", endpoint, failure), now);
      return false;
    }
    if (written > 0) {
      notified = true;
      ev().on_sent(c.id, now);  // may fill outgoing() and touch(): recorded for the next turn
    }
    return true;
  }

  ReadOutcome read_some(Conn& c, bool through_tls) {
    if (through_tls) {
      ERR_clear_error();
      errno = 0;  // SSL_ERROR_SYSCALL reports this call's errno, not an older one
      const int n = SSL_read(c.ssl.get(), read_buf.data(), static_cast<int>(read_buf.size()));
      const int saved_errno = errno;
      if (n > 0) {
        c.read_wants_write = false;
        return {Io::Data, static_cast<std::size_t>(n), {}};
      }
      const int err = SSL_get_error(c.ssl.get(), n);
      switch (err) {
        case SSL_ERROR_WANT_READ:
          c.read_wants_write = false;
          return {Io::Blocked, 0, {}};
        case SSL_ERROR_WANT_WRITE:
          c.read_wants_write = true;
          return {Io::Blocked, 0, {}};
        case SSL_ERROR_ZERO_RETURN:  // close_notify
          return {Io::Eof, 0, {}};
        case SSL_ERROR_SYSCALL:
          if (ERR_peek_error() == 0 && saved_errno == 0) return {Io::Eof, 0, {}};
          break;
        default:
          break;
      }
      return {Io::Error, 0, tls_failure(c.ssl.get(), err, saved_errno)};
    }
    for (;;) {
      const ssize_t n = ::recv(c.fd.get(), read_buf.data(), read_buf.size(), 0);
      if (n > 0) return {Io::Data, static_cast<std::size_t>(n), {}};
      if (n == 0) return {Io::Eof, 0, {}};
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return {Io::Blocked, 0, {}};
      return {Io::Error, 0, errno_text(errno)};
    }
  }

  // Gives the broker's bytes to the session while it wants them; false when the connection ended
  // (released).
  bool read_in(std::uint32_t slot, TimePoint now) {
    Conn& c = slots[slot];
    for (int k = 0; k < kReadsPerTurn; ++k) {
      if (!ev().wants_read(c.id) || ev().finished(c.id)) return true;  // asked again after each
      const ReadOutcome r = read_some(c, c.ssl != nullptr);
      switch (r.io) {
        case Io::Data:
          notified = true;
          ev().on_upstream_data(c.id, ByteSpan(read_buf.data(), r.n), now);
          continue;
        case Io::Blocked:
          return true;
        case Io::Eof:
          fail(slot, "broker closed the connection", now);
          return false;
        case Io::Error:
          fail(slot, fmt::format("read from {}: {}", endpoint, r.error), now);
          return false;
      }
    }
    touches.push_back(c.id);  // more may wait (in the kernel, or decrypted in OpenSSL): next turn
    return true;
  }

  // Finishing: reads and drops (the file comment). The broker's EOF or an error ends the flush
  // too: nobody would read the rest. False when the connection was closed.
  bool drop_input(std::uint32_t slot) {
    Conn& c = slots[slot];
    for (int k = 0; k < kReadsPerTurn; ++k) {
      const ReadOutcome r = read_some(c, c.ssl != nullptr);
      if (r.io == Io::Data) continue;
      if (r.io == Io::Blocked) return true;
      log.debug(kLog, "connection {} to {}: {} while flushing", c.id, endpoint,
                r.io == Io::Eof ? "broker closed" : r.error);
      drop(slot);
      return false;
    }
    return true;  // level-triggered EPOLLIN brings us back
  }

  // Flushed: close_notify, FIN, on_closed; the socket lingers (the file comment).
  void finish(std::uint32_t slot) {
    Conn& c = slots[slot];
    if (c.ssl) {
      // One attempt: a full socket buffer loses the close_notify, not the session's bytes.
      ERR_clear_error();
      SSL_shutdown(c.ssl.get());
      ERR_clear_error();
      c.ssl.reset();
    }
    ::shutdown(c.fd.get(), SHUT_WR);
    const std::uint64_t id = c.id;
    by_id.erase(id);
    c.state = State::Lingering;
    c.id = 0;
    c.finishing = false;
    set_interest(slot, EPOLLIN);
    log.debug(kLog, "connection {} to {}: closed", id, endpoint);
    notify_closed(id);
  }

  void linger_read(std::uint32_t slot) {
    Conn& c = slots[slot];
    for (int k = 0; k < kReadsPerTurn; ++k) {
      const ReadOutcome r = read_some(c, false);
      if (r.io == Io::Data) continue;
      if (r.io != Io::Blocked) release(slot);  // the broker's FIN (or an error): done
      return;
    }
  }

  // --- entry points ---

  void on_touch(std::uint64_t id, TimePoint now) {
    const auto it = by_id.find(id);
    if (it == by_id.end()) return;  // closed meanwhile, or never dialled
    const std::uint32_t slot = it->second;
    switch (slots[slot].state) {
      case State::Connecting:
      case State::Handshaking:
        if (ev().finished(id)) drop(slot);
        return;
      case State::Open:
        work_open(slot, now);
        return;
      case State::Free:
      case State::Lingering:
        return;
    }
  }

  void on_ready(std::uint32_t slot, std::uint32_t events_mask, TimePoint now) {
    if (slot == kTimerSlot) {
      std::uint64_t expirations = 0;
      while (::read(timer.get(), &expirations, sizeof(expirations)) > 0) {
      }
      timer_at.reset();  // it fired: set it again even if the deadline did not move
    } else if (slot < slots.size()) {
      dispatch(slot, events_mask, now);
    }
    expire(now);
    arm_timer();
  }

  void dispatch(std::uint32_t slot, std::uint32_t events_mask, TimePoint now) {
    Conn& c = slots[slot];
    const bool broken = (events_mask & (EPOLLERR | EPOLLHUP)) != 0;
    const std::uint32_t generation = c.generation;
    switch (c.state) {
      case State::Free:
        return;  // closed earlier in this batch of events
      case State::Connecting:
        on_connect_ready(slot, events_mask, now);
        return;
      case State::Handshaking:
        handshake(slot, now);
        break;
      case State::Open:
        work_open(slot, now);
        break;
      case State::Lingering:
        linger_read(slot);
        if (broken && slots[slot].generation == generation) release(slot);
        return;
    }
    // EPOLLERR and EPOLLHUP come whatever the interest: a connection the steps above left open
    // (paused, or its error not met by a read or write) is ended here, or the loop would spin.
    // (A session finished by those steps is Lingering now: it needs no failure of its own.)
    if (!broken || slots[slot].generation != generation || slots[slot].state == State::Free ||
        slots[slot].state == State::Lingering) {
      return;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(slots[slot].fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (slots[slot].state == State::Handshaking) {
      fail(slot,
           fmt::format("TLS handshake with {}: {}", host,
                       err != 0 ? errno_text(err) : "the broker closed the connection"),
           now);
    } else {
      fail(slot,
           err != 0 ? fmt::format("read from {}: {}", endpoint, errno_text(err))
                    : std::string("broker closed the connection"),
           now);
    }
  }

  bool service(TimePoint now) {
    expire(now);
    dials_now.swap(dials);
    for (const std::uint64_t id : dials_now) start_dial(id, now);
    dials_now.clear();
    touches_now.swap(touches);
    std::sort(touches_now.begin(), touches_now.end());
    touches_now.erase(std::unique(touches_now.begin(), touches_now.end()), touches_now.end());
    for (const std::uint64_t id : touches_now) on_touch(id, now);
    touches_now.clear();
    arm_timer();
    return std::exchange(notified, false);
  }

  std::string describe() const {
    std::string s = fmt::format("{}:{} ({})", bracketed(host), target.port, address);
    if (target.tls) {
      s += " TLS";
      if (!target.cafile.empty()) s += " CA " + target.cafile;
    }
    return s;
  }
};

Result<std::unique_ptr<UpstreamConnector>> UpstreamConnector::create(const UpstreamTarget& target,
                                                                     int epoll_fd,
                                                                     std::uint32_t epoll_tag,
                                                                     log::Logger& log) {
  auto impl = std::make_unique<Impl>(target, epoll_fd, epoll_tag, log);
  if (auto s = impl->resolve(); !s) return Error{s.error()};
  if (target.tls) {
    if (auto s = impl->make_tls_context(); !s) return Error{s.error()};
  }
  if (auto s = impl->make_timer(); !s) return Error{s.error()};
  // The constructor is private (create() is the only way in), so make_unique cannot call it; the
  // object is owned from the expression that makes it.
  return std::unique_ptr<UpstreamConnector>(new UpstreamConnector(std::move(impl)));
}

UpstreamConnector::UpstreamConnector(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  impl_->owner_events = &events_;
}

// The sockets close with their slots (closing takes them out of the epoll set); SSL objects are
// freed without close_notify, and nothing is called back.
UpstreamConnector::~UpstreamConnector() = default;

void UpstreamConnector::dial(std::uint64_t id) {
  impl_->dials.push_back(id);
}

void UpstreamConnector::touch(std::uint64_t id) {
  impl_->touches.push_back(id);
}

void UpstreamConnector::on_ready(std::uint32_t slot, std::uint32_t events, TimePoint now) {
  impl_->on_ready(slot, events, now);
}

bool UpstreamConnector::service(TimePoint now) {
  return impl_->service(now);
}

bool UpstreamConnector::busy() const {
  return !impl_->dials.empty() || !impl_->touches.empty();
}

std::size_t UpstreamConnector::connection_count() const {
  return impl_->by_id.size();
}

std::string UpstreamConnector::describe() const {
  return impl_->describe();
}

}  // namespace mqtt_proxy::app
