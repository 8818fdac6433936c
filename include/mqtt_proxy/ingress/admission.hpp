// What a listener with the PROXY protocol on admits (--proxy-protocol and the options beside it):
// which TCP peers may send a header, which headers are enough for the transport the operator
// requires, and what the broker is told about the client. Pure: the core calls it with the TCP
// peer and the parsed header.
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "mqtt_proxy/ingress/proxy_protocol.hpp"
#include "mqtt_proxy/util/time.hpp"
#include "mqtt_proxy/wire/address.hpp"

namespace mqtt_proxy::ingress {

struct ProxyProtocolPolicy {
  Mode mode = Mode::Any;
  // A connection whose header is not complete by then is closed: HAProxy sends it with its first
  // segment, so only a client that is not HAProxy, or one holding a connection open, waits.
  Duration header_timeout = std::chrono::seconds(5);
  // The TCP peers allowed to send headers (HAProxy's addresses). Empty: any, which lets every
  // client that can reach the port claim any address (the start-up log says so).
  std::vector<wire::Ipv4Address> trusted_sources;
  // The header must report TLS (the v2 SSL TLV with PP2_CLIENT_SSL): Mosquitto's
  // proxy_protocol_v2_require_tls.
  bool require_tls = false;
  // ... and a client certificate that was presented and verified.
  bool require_certificate = false;
  ProxyProtocolConfig parser;
};

// What the broker learns about a client from its connection.
struct ClientOrigin {
  wire::ClientAddress address;
  // The load balancer terminated TLS for this client (the header said so).
  bool tls = false;
  // The Common Name of a client certificate the load balancer verified; empty: none.
  std::string certificate_cn;
  // It speaks MQTT over WebSocket (--ws-port), not over plain TCP.
  bool websocket = false;

  ClientOrigin() = default;
  // Implicit: without the PROXY protocol a client is its TCP peer, and nothing more is known.
  ClientOrigin(wire::SocketAddress tcp_peer)
      : address(tcp_peer) {}  // NOLINT(google-explicit-constructor)
};

bool is_trusted_source(const ProxyProtocolPolicy& p, wire::Ipv4Address tcp_peer);

// Checks a parsed header against the policy. On success, the origin to hand to the broker (the
// header's source, or the TCP peer for LOCAL, UNKNOWN and UNSPEC, as the spec says); otherwise
// why the connection is refused.
struct Admitted {
  ClientOrigin origin;
  bool local = false;  // a LOCAL command: the load balancer's own health check
};
struct Refused {
  std::string reason;
};
std::variant<Admitted, Refused> admit(const ProxyProtocolPolicy& p, const ProxyHeader& h,
                                      wire::SocketAddress tcp_peer);

}  // namespace mqtt_proxy::ingress
