// Fuzzes MQTT2MULTICAST: the REQUEST and REPLY parsers, the client fed REPLYs and multicast
// datagrams in any order and at any time, and whole captured frames into a core that has the
// multicast mode on (ARP, UDP and IPv4 headers as the capture hands them over).
//
// Input: records of [kind:1][length:2][bytes]. Kinds (mod 5): 0 a REPLY payload from the server,
// 1 a multicast datagram payload, 2 a raw Ethernet frame for the core, 3 a REQUEST to parse, 4 a
// local action (subscribe, unsubscribe or publish on a topic named by the bytes) and time passing.
#include <cstddef>
#include <cstdint>

#include "core_config.hpp"
#include "fuzz_target.hpp"
#include "mqtt_proxy/broker/broker.hpp"
#include "mqtt_proxy/core/proxy_core.hpp"
#include "mqtt_proxy/m2m/client.hpp"
#include "mqtt_proxy/peering/peering.hpp"
#include "null_host.hpp"
#include "test_network.hpp"

using namespace mqtt_proxy;

namespace {
constexpr wire::Ipv4Address kServer{0xc0a80164};
constexpr wire::Ipv4Address kSender{0xc0a80169};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  metrics::Counters counters;
  test::NullHost host;
  peering::Peering peering({{test::kPeerIp}}, log::null_logger(), counters);
  broker::Broker b({}, host, peering, log::null_logger(), counters);
  m2m::ClientConfig mc;
  mc.mac = test::kProxyMac;
  mc.address = test::kProxyIp;
  mc.max_queued_messages = 8;
  m2m::Client client(mc, log::null_logger(), counters);
  b.set_multicast(&client);
  core::CoreConfig cc = test::test_core_config();
  cc.m2m = mc;
  core::ProxyCore core(cc, log::null_logger());

  TimePoint now{std::chrono::hours(1)};
  client.start(now);
  core.start(now);
  client.subscribed("topic1", now);
  client.publish("topic1", {}, false, now);

  const ByteSpan in{reinterpret_cast<const std::byte*>(data), size};
  std::size_t at = 0;
  while (at + 3 <= in.size()) {
    const unsigned kind = load_u8(in, at) % 5;
    const std::size_t len = std::min<std::size_t>(load_be16(in, at + 1), in.size() - at - 3);
    const ByteSpan rec = in.subspan(at + 3, len);
    at += 3 + len;
    switch (kind) {
      case 0:
        client.on_reply(kServer, mc.server_port, rec, now);
        break;
      case 1:
        if (auto p = client.on_datagram(kSender, wire::Ipv4Address{0xe1000000}, rec)) {
          b.on_peer_publish(*p, flow::kNone, now);
        }
        break;
      case 2:
        core.on_frame(0, rec, now);
        core.on_timers(now);
        core.flush(now);
        core.frames().clear();
        break;
      case 3:
        if (auto r = m2m::parse_request(rec)) {
          Bytes again;
          m2m::encode_request(again, r->tid, static_cast<m2m::Flags>(r->flags % 3), r->topic);
          if (again.size() != rec.size()) __builtin_trap();  // parse and encode disagree
        }
        break;
      case 4: {
        const std::string_view topic = as_chars(rec.first(std::min<std::size_t>(len, 8)));
        switch (len % 3) {
          case 0:
            client.subscribed(topic, now);
            break;
          case 1:
            client.unsubscribed(topic, now);
            break;
          default:
            client.publish(topic, rec, false, now);
            break;
        }
        now += std::chrono::milliseconds(len * 37);
        client.on_timers(now);
        client.clear_frames();
        client.memberships().clear();
        break;
      }
    }
  }
  return 0;
}
