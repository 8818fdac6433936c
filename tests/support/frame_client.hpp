// A client with just enough TCP to talk to the proxy core: it builds complete Ethernet/IPv4/TCP
// frames addressed to the proxy. Shared by the core tests and the core benchmarks.
#pragma once

#include <optional>

#include "mqtt_proxy/wire/frame.hpp"
#include "test_network.hpp"
#include "test_util.hpp"

namespace mqtt_proxy::test {

using wire::Seq;
using namespace wire::tcp_flags;

// One simulated client.
struct Client {
  wire::MacAddress mac;
  wire::Ipv4Address ip;
  std::uint16_t port;
  Seq snd_nxt{1000};
  Seq rcv_nxt;
  Bytes stream;  // in-order bytes received from the proxy
  std::uint16_t window = 65535;
  std::uint16_t server_port = 1883;  // the proxy's port it connects to (1883, or --ws-port's)

  Bytes frame(std::uint8_t flags, ByteSpan payload = {}, std::optional<Seq> seq = {},
              wire::MacAddress dst_mac = kProxyMac, wire::Ipv4Address dst_ip = kProxyIp,
              std::uint16_t dst_port = 0) const {
    wire::TcpFrameSpec s;
    s.src_mac = mac;
    s.dst_mac = dst_mac;
    s.src_ip = ip;
    s.dst_ip = dst_ip;
    s.src_port = port;
    s.dst_port = dst_port != 0 ? dst_port : server_port;
    s.seq = seq.value_or(snd_nxt);
    s.ack = rcv_nxt;
    s.flags = flags;
    s.window = window;
    if (flags & kSyn) s.mss = 1460;
    s.payload = payload;
    Bytes f(wire::tcp_frame_size(s));
    wire::emit_tcp_frame(s, f);
    return f;
  }
};

}  // namespace mqtt_proxy::test
