// Upstream mode's broker side: one non-blocking kernel TCP connection per client, optionally with
// TLS (OpenSSL), registered in the event loop's epoll. It implements upstream::Link: the relays'
// requests (dial, touch) are only recorded, and service() acts on them after the core's turn.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "mqtt_proxy/upstream/sessions.hpp"
#include "mqtt_proxy/util/log.hpp"
#include "mqtt_proxy/util/result.hpp"
#include "mqtt_proxy/util/time.hpp"

namespace mqtt_proxy::app {

struct UpstreamTarget {
  std::string host;  // a name or an IPv4/IPv6 literal; resolved once, by create()
  std::uint16_t port = 1883;
  bool tls = false;    // --upstream-tls
  std::string cafile;  // --upstream-cafile (PEM); empty: the system's default CA paths
};

class UpstreamConnector final : public upstream::Link {
 public:
  // Resolves the host and, with TLS, makes the SSL_CTX (CA file loaded, peer verified, the host
  // name checked against the certificate and sent as SNI). `epoll_fd` is the loop's; every socket
  // is registered with data.u64 = (std::uint64_t{epoll_tag} << 32) | slot.
  static Result<std::unique_ptr<UpstreamConnector>> create(const UpstreamTarget& target,
                                                           int epoll_fd, std::uint32_t epoll_tag,
                                                           log::Logger& log);
  ~UpstreamConnector() override;

  // Set once, before any dial.
  void attach(upstream::LinkEvents& events) { events_ = &events; }

  // upstream::Link
  void dial(std::uint64_t id) override;
  void touch(std::uint64_t id) override;

  // epoll reported `events` for the socket in `slot` (the low 32 bits of data.u64).
  void on_ready(std::uint32_t slot, std::uint32_t events, TimePoint now);
  // Acts on what dial() and touch() recorded: connects, writes outgoing(), sets each socket's
  // epoll interest from wants_read() and what waits to be written, closes finished ones. True
  // when it called into the LinkEvents (the core then has work: flush it, and call again).
  bool service(TimePoint now);
  // Recorded work remains (the loop must not sleep).
  bool busy() const;
  std::size_t connection_count() const;
  // "HOST:PORT (ADDRESS)", with " TLS" when on: for the ready line.
  std::string describe() const;

 private:
  struct Impl;
  explicit UpstreamConnector(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  upstream::LinkEvents* events_ = nullptr;
};

}  // namespace mqtt_proxy::app
