// Benchmarks of the pure core, frames in and frames out, no I/O: TCP connection set-up with MQTT
// CONNECT, and the heap an idle subscribed connection holds. Live heap bytes are counted by
// replacing the global allocation functions (heap_counter.cpp).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include "client_packets.hpp"
#include "frame_client.hpp"
#include "heap_counter.hpp"
#include "mqtt_proxy/core/proxy_core.hpp"

namespace mqtt_proxy::test {
namespace {

std::unique_ptr<core::ProxyCore> make_core(std::size_t max_connections) {
  core::CoreConfig cfg;
  cfg.interfaces.push_back(core::InterfaceInfo{"eth0", kProxyMac, {kProxyIp}, 1500});
  cfg.broker.username = "jorge";
  cfg.broker.password = "passwd";
  cfg.max_connections = max_connections;
  cfg.max_half_open = max_connections;
  cfg.peering.peers = {*wire::Ipv4Address::parse("192.168.1.104")};
  auto core = std::make_unique<core::ProxyCore>(cfg, log::null_logger());
  core->start(t0());
  return core;
}

Client client_for(std::uint32_t n) {
  const auto port = static_cast<std::uint16_t>(1024 + n % 60000);
  const auto host = static_cast<std::uint8_t>(2 + n / 60000);
  return Client{wire::MacAddress{{0x02, 0, 0, 0, 1, host}},
                wire::Ipv4Address{0xc0a80200u + host},
                port,
                Seq{1000},
                Seq{},
                {},
                65535};
}

// The SYN-ACK's sequence number for `c`, from the frames the core sent.
Seq synack_seq(core::ProxyCore& core, const Client& c) {
  for (const auto& e : core.frames().entries()) {
    const auto f = core.frames().frame(e);
    const auto tcp = wire::TcpView::parse(
        wire::Ipv4View::parse(wire::EthernetView::parse(f)->payload())->payload());
    if (tcp->dst_port() == c.port && (tcp->flags() & kSyn)) return tcp->seq();
  }
  std::abort();  // the core must have answered
}

// SYN, SYN-ACK, ACK, CONNECT, CONNACK: one client connected. Leaves the CONNACK unacknowledged.
void connect(core::ProxyCore& core, Client& c, TimePoint now, const Bytes& connect_bytes) {
  core.on_frame(0, c.frame(kSyn), now);
  core.flush(now);
  c.rcv_nxt = synack_seq(core, c) + 1u;
  c.snd_nxt = c.snd_nxt + 1u;
  core.frames().clear();
  core.on_frame(0, c.frame(kAck | kPsh, connect_bytes), now);
  c.snd_nxt = c.snd_nxt + static_cast<std::uint32_t>(connect_bytes.size());
  core.flush(now);
  core.frames().clear();
}

void BM_ConnectionSetup(benchmark::State& state) {
  auto core = make_core(1 << 20);
  const Bytes connect_bytes = connect_packet("bench");
  TimePoint now = t0();
  std::uint32_t n = 0;
  for (auto _ : state) {
    Client c = client_for(n++ % 100000);
    connect(*core, c, now, connect_bytes);
    core->on_frame(0, c.frame(kRst), now);  // freed at once, so the table stays small
    core->flush(now);
    core->frames().clear();
    now += std::chrono::microseconds(10);
  }
  state.SetItemsProcessed(state.iterations());
  if (core->connection_count() != 0) state.SkipWithError("connections were not freed");
}
BENCHMARK(BM_ConnectionSetup);

void BM_IdleConnectionMemory(benchmark::State& state) {
  const auto count = static_cast<std::uint32_t>(state.range(0));
  for (auto _ : state) {
    auto core = make_core(count + 1);
    TimePoint now = t0();
    const std::int64_t before = bench::live_heap_bytes();
    for (std::uint32_t i = 0; i < count; ++i) {
      Client c = client_for(i);
      connect(*core, c, now, connect_packet("idle-" + std::to_string(i), 600));
      const Bytes sub = subscribe_packet("idle/" + std::to_string(i));
      core->on_frame(0, c.frame(kAck | kPsh, sub), now);
      c.snd_nxt = c.snd_nxt + static_cast<std::uint32_t>(sub.size());
      core->flush(now);
      core->frames().clear();
      // The client acknowledges CONNACK (4 bytes) and SUBACK (5 bytes): nothing stays queued.
      c.rcv_nxt = c.rcv_nxt + 9u;
      core->on_frame(0, c.frame(kAck), now);
      core->flush(now);
      core->frames().clear();
      core->datagrams().clear();
    }
    if (core->open_connection_count() != count) state.SkipWithError("not every client connected");
    state.counters["bytes_per_connection"] =
        static_cast<double>(bench::live_heap_bytes() - before) / static_cast<double>(count);
  }
}
BENCHMARK(BM_IdleConnectionMemory)->Arg(10000)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace mqtt_proxy::test

BENCHMARK_MAIN();
