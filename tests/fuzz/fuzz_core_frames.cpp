// Fuzzes the whole core with a timeline: records of [delay][length][TCP segment]. Each segment (TCP
// header and payload, as the fuzzer writes them) is wrapped in Ethernet/IPv4 addressed to the
// proxy, so inputs reach the connection table instead of dying in the L2/L3 checks; the delay moves
// the clock so retransmission, keepalive and TIME-WAIT timers fire too.
#include <cstddef>
#include <cstdint>

#include "core_config.hpp"
#include "fuzz_target.hpp"
#include "mqtt_proxy/core/proxy_core.hpp"
#include "test_network.hpp"

using namespace mqtt_proxy;
using test::kClientIp;
using test::kClientMac;
using test::kProxyIp;
using test::kProxyMac;

namespace {
Bytes wrap(ByteSpan tcp) {
  Bytes f(14 + 20);
  MutableByteSpan b{f};
  for (std::size_t i = 0; i < 6; ++i) {
    store_u8(b, i, kProxyMac.octets[i]);
    store_u8(b, 6 + i, kClientMac.octets[i]);
  }
  store_be16(b, 12, 0x0800);
  store_u8(b, 14, 0x45);
  store_be16(b, 16, static_cast<std::uint16_t>(20 + tcp.size()));
  store_u8(b, 22, 64);
  store_u8(b, 23, 6);
  store_be32(b, 26, kClientIp.value);
  store_be32(b, 30, kProxyIp.value);
  append(f, tcp);
  if (f.size() >= 38) {  // aim at the MQTT port; the source port stays the fuzzer's
    f[36] = std::byte{0x07};
    f[37] = std::byte{0x5b};
  }
  return f;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Any login is accepted, so a mutated CONNECT still opens a session.
  core::CoreConfig cfg = test::test_core_config(test::Login::Anyone);
  cfg.max_connections = 8;
  cfg.max_half_open = 2;  // so SYN cookies are reached too
  core::ProxyCore core(cfg, log::null_logger());
  core.set_isn_function([](const tcp::ConnKey&, TimePoint) { return wire::Seq{0xfffff000u}; });
  TimePoint now{std::chrono::hours(1)};
  core.start(now);
  std::size_t i = 0;
  while (i + 3 <= size) {
    now += std::chrono::milliseconds(std::uint64_t{data[i]} * data[i] * 4);  // up to ~4 minutes
    const std::size_t len = (std::size_t{data[i + 1]} << 8 | data[i + 2]) % 1600;
    i += 3;
    const std::size_t n = std::min(len, size - i);
    const ByteSpan seg{reinterpret_cast<const std::byte*>(data + i), n};
    i += n;
    const Bytes frame = wrap(seg);
    core.on_frame(0, frame, now);
    core.on_timers(now);
    core.flush(now);
    core.frames().clear();
    core.clear_datagrams();
  }
  core.shutdown(now);
  core.flush(now);
  return 0;
}
