// The Ethernet, IPv4 and TCP views of one frame, parsed in one step.
#pragma once

#include <optional>

#include "mqtt_proxy/wire/frame.hpp"

namespace mqtt_proxy::test {

struct TcpFrameViews {
  wire::EthernetView eth;
  wire::Ipv4View ip;
  wire::TcpView tcp;
};

// Nothing when a layer does not parse or the frame is not TCP in IPv4.
inline std::optional<TcpFrameViews> parse_tcp_frame(ByteSpan frame) {
  const auto eth = wire::EthernetView::parse(frame);
  if (!eth || eth->ether_type() != wire::kEtherTypeIpv4) return std::nullopt;
  const auto ip = wire::Ipv4View::parse(eth->payload());
  if (!ip || ip->protocol() != wire::kIpProtoTcp) return std::nullopt;
  const auto tcp = wire::TcpView::parse(ip->payload());
  if (!tcp) return std::nullopt;
  return TcpFrameViews{*eth, *ip, *tcp};
}

}  // namespace mqtt_proxy::test
