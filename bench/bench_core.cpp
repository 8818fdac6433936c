// Benchmarks of the pure core, frames in and frames out, no I/O: TCP connection set-up with MQTT
// CONNECT, the heap an idle subscribed connection holds, and the PUBLISH forwarding paths with
// their heap allocations per message. Heap use is counted by replacing the global allocation
// functions (heap_counter.cpp).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include "client_packets.hpp"
#include "core_config.hpp"
#include "frame_client.hpp"
#include "frame_views.hpp"
#include "heap_counter.hpp"
#include "mqtt_proxy/core/proxy_core.hpp"
#include "mqtt_proxy/peering/peer_auth.hpp"

namespace mqtt_proxy::test {
namespace {

std::unique_ptr<core::ProxyCore> make_core(std::size_t max_connections) {
  core::CoreConfig cfg = test_core_config();
  cfg.max_connections = max_connections;
  cfg.max_half_open = max_connections;
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
    const auto v = parse_tcp_frame(core.frames().frame(e));
    if (!v) std::abort();  // the core sends nothing else
    if (v->tcp.dst_port() == c.port && (v->tcp.flags() & kSyn)) return v->tcp.seq();
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
      core->clear_datagrams();
    }
    if (core->open_connection_count() != count) state.SkipWithError("not every client connected");
    state.counters["bytes_per_connection"] =
        static_cast<double>(bench::live_heap_bytes() - before) / static_cast<double>(count);
  }
}
BENCHMARK(BM_IdleConnectionMemory)->Arg(10000)->Iterations(1)->Unit(benchmark::kMillisecond);

// Advances `c.rcv_nxt` past every segment the core sent to it.
void take_sent(core::ProxyCore& core, Client& c) {
  for (const auto& e : core.frames().entries()) {
    const auto v = parse_tcp_frame(core.frames().frame(e));
    if (!v) std::abort();  // the core sends nothing else
    const Seq end = v->tcp.seq() + static_cast<std::uint32_t>(v->tcp.payload().size());
    if (v->tcp.dst_port() == c.port && c.rcv_nxt < end) c.rcv_nxt = end;
  }
}

// A connected client subscribed to `filter`, everything sent to it so far taken.
Client subscriber(core::ProxyCore& core, std::uint32_t n, std::string_view filter, TimePoint now) {
  Client c = client_for(n);
  connect(core, c, now, connect_packet("sub"));
  const Bytes subscribe = subscribe_packet(filter);
  core.on_frame(0, c.frame(kAck | kPsh, subscribe), now);
  c.snd_nxt = c.snd_nxt + static_cast<std::uint32_t>(subscribe.size());
  core.flush(now);
  take_sent(core, c);
  core.frames().clear();
  core.clear_datagrams();
  return c;
}

// range(0) PUBLISHes of 24-byte payloads, back to back.
Bytes publish_burst(const benchmark::State& state) {
  Bytes burst;
  for (std::int64_t i = 0; i < state.range(0); ++i) {
    append(burst, publish_packet("bench/flat", std::string(24, 'x')));
  }
  return burst;
}

// Per iteration: prepare() (not counted), feed(now) hands the core its input, then the subscriber
// acknowledges what it got. Counts the core's heap allocations, not those of building client
// frames. Items are messages.
template <typename Prepare, typename Feed>
void run_forwarding(benchmark::State& state, core::ProxyCore& core, Client& sub, Prepare&& prepare,
                    Feed&& feed) {
  TimePoint now = t0();
  std::uint64_t allocations = 0, datagrams = 0;
  for (auto _ : state) {
    prepare();
    const auto before = bench::allocations();
    feed(now);
    core.flush(now);
    allocations += bench::allocations() - before;
    take_sent(core, sub);
    datagrams += core.datagrams().size();
    core.frames().clear();
    core.clear_datagrams();
    const Bytes ack = sub.frame(kAck);
    const auto before_ack = bench::allocations();
    core.on_frame(0, ack, now);
    core.flush(now);
    allocations += bench::allocations() - before_ack;
    core.frames().clear();
    now += std::chrono::microseconds(10);
  }
  const auto messages = static_cast<double>(state.iterations() * state.range(0));
  state.SetItemsProcessed(static_cast<std::int64_t>(messages));
  state.counters["allocs_per_msg"] = static_cast<double>(allocations) / messages;
  state.counters["datagrams_per_msg"] = static_cast<double>(datagrams) / messages;
}

// The forwarding path: a segment carrying range(0) PUBLISHes from a local publisher goes to one
// local subscriber and one peer.
void BM_PublishForwarding(benchmark::State& state) {
  auto core = make_core(16);
  core->on_peer_datagram(kPeerIp, subscribe_packet("bench/#"), t0());
  Client pub = client_for(1);
  connect(*core, pub, t0(), connect_packet("pub"));
  pub.rcv_nxt = pub.rcv_nxt + 4u;  // CONNACK
  Client sub = subscriber(*core, 2, "bench/#", t0());
  const Bytes burst = publish_burst(state);
  Bytes in;
  run_forwarding(
      state, *core, sub,
      [&] {
        in = pub.frame(kAck | kPsh, burst);
        pub.snd_nxt = pub.snd_nxt + static_cast<std::uint32_t>(burst.size());
      },
      [&](TimePoint now) { core->on_frame(0, in, now); });
  if (core->open_connection_count() != 2) state.SkipWithError("a client was disconnected");
}
BENCHMARK(BM_PublishForwarding)->Arg(1)->Arg(20);

// The receiving side of the peer protocol: a datagram of range(0) PUBLISHes (one unbatched, or a
// batch) delivered to one local subscriber.
void BM_PeerPublishDelivery(benchmark::State& state) {
  auto core = make_core(16);
  Client sub = subscriber(*core, 2, "bench/#", t0());
  const Bytes datagram = publish_burst(state);
  run_forwarding(
      state, *core, sub, [] {},
      [&](TimePoint now) { core->on_peer_datagram(kPeerIp, datagram, now); });
  if (core->open_connection_count() != 1) state.SkipWithError("the subscriber was disconnected");
}
BENCHMARK(BM_PeerPublishDelivery)->Arg(1)->Arg(30);

// What authentication costs per datagram (--peer-key-file): signing one of range(0) bytes, and
// checking one, as a forger's would be (rejected: every key is tried) or a real one.
void BM_PeerAuthSeal(benchmark::State& state) {
  const peering::auth::Keyring key({Bytes(32, std::byte{7})});
  const Bytes payload(static_cast<std::size_t>(state.range(0)), std::byte{1});
  Bytes d;
  std::uint64_t seq = 1;
  for (auto _ : state) {
    d = payload;
    key.seal(d, {kPeerIp, kPeerIp}, 1, seq++);
    benchmark::DoNotOptimize(d.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_PeerAuthSeal)->Arg(64)->Arg(1400);

void BM_PeerAuthOpen(benchmark::State& state) {
  const peering::auth::Keyring keys({Bytes(32, std::byte{7}), Bytes(32, std::byte{8})});
  Bytes d(static_cast<std::size_t>(state.range(0)), std::byte{1});
  peering::auth::Keyring({Bytes(32, std::byte{8})}).seal(d, {kPeerIp, kPeerIp}, 1, 1);
  peering::auth::OpenError e{};
  for (auto _ : state) {
    // Verified by the second key: what a forged datagram costs too (every key is tried).
    benchmark::DoNotOptimize(keys.open(d, {kPeerIp, kPeerIp}, e));
  }
}
BENCHMARK(BM_PeerAuthOpen)->Arg(64)->Arg(1400);

}  // namespace
}  // namespace mqtt_proxy::test

BENCHMARK_MAIN();
