#include "mqtt_proxy/ingress/admission.hpp"

#include <algorithm>

namespace mqtt_proxy::ingress {

bool is_trusted_source(const ProxyProtocolPolicy& p, wire::Ipv4Address tcp_peer) {
  return p.trusted_sources.empty() || std::find(p.trusted_sources.begin(), p.trusted_sources.end(),
                                                tcp_peer) != p.trusted_sources.end();
}

std::variant<Admitted, Refused> admit(const ProxyProtocolPolicy& p, const ProxyHeader& h,
                                      wire::SocketAddress tcp_peer) {
  Admitted a;
  a.origin = ClientOrigin(tcp_peer);
  if (h.command == Command::Local) {
    // A health check carries no client and no TLS facts. It is admitted as the load balancer
    // itself; when TLS is required it may not speak MQTT (the core closes it if it sends any).
    a.local = true;
    return a;
  }
  if (h.carries_addresses()) {
    if (h.family == Family::Inet) {
      a.origin.address = wire::SocketAddress{h.source.ipv4, h.source.port};
    } else if (h.family == Family::Inet6) {
      a.origin.address = wire::ClientAddress::v6(h.source.ipv6, h.source.port);
      // A dual-stack listener (HAProxy `bind :::1883 v4v6`) names IPv4 clients by their mapped
      // addresses, ::ffff:a.b.c.d (RFC 4291 2.5.5.2): they are IPv4 clients, and are named so.
      const auto& v6 = h.source.ipv6;
      if (std::all_of(v6.begin(), v6.begin() + 10, [](std::uint8_t b) { return b == 0; }) &&
          v6[10] == 0xff && v6[11] == 0xff) {
        a.origin.address = wire::SocketAddress{
            wire::Ipv4Address{(std::uint32_t{v6[12]} << 24) | (std::uint32_t{v6[13]} << 16) |
                              (std::uint32_t{v6[14]} << 8) | v6[15]},
            h.source.port};
      }
    }
    // AF_UNIX: a path names no remote host; the TCP peer (the load balancer) stays the name.
  }
  const bool tls = h.ssl.present && (h.ssl.client & pp2_client::kSsl) != 0;
  if ((p.require_tls || p.require_certificate) && !tls) {
    return Refused{h.version == 1 ? "TLS required, and a v1 header cannot report TLS"
                                  : "TLS required, and the header reports a plain connection"};
  }
  if (p.require_certificate && !h.ssl.verified_client_certificate()) {
    return Refused{(h.ssl.client & (pp2_client::kCertConn | pp2_client::kCertSess)) == 0
                       ? "a client certificate is required, and the client presented none"
                       : "a client certificate is required, and it did not verify"};
  }
  a.origin.tls = tls;
  // Only a verified certificate's CN is an identity; an unverified one is the client's claim.
  if (h.ssl.verified_client_certificate()) a.origin.certificate_cn = h.ssl.cn;
  return a;
}

}  // namespace mqtt_proxy::ingress
