// A packetdrill-style harness for the TCP endpoint: the test plays the client, injects segments,
// moves virtual time and checks the segments the endpoint sends.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mqtt_proxy/tcp/endpoint.hpp"
#include "mqtt_proxy/wire/frame.hpp"
#include "test_util.hpp"

namespace mqtt_proxy::test {

using namespace wire::tcp_flags;
using wire::Seq;

struct Sent {
  Seq seq;
  Seq ack;
  std::uint8_t flags = 0;
  std::uint16_t window = 0;
  std::optional<std::uint16_t> mss;
  std::optional<std::uint8_t> wscale;
  std::string payload;
};

inline std::string flag_names(std::uint8_t f) {
  std::string s;
  if (f & kSyn) s += "S";
  if (f & kFin) s += "F";
  if (f & kRst) s += "R";
  if (f & kPsh) s += "P";
  if (f & kAck) s += ".";
  return s;
}

inline std::ostream& operator<<(std::ostream& os, const Sent& s) {
  return os << "[" << flag_names(s.flags) << " seq=" << s.seq.raw << " ack=" << s.ack.raw
            << " win=" << s.window << " len=" << s.payload.size() << "]";
}

class RecordingOutbox : public tcp::Outbox {
 public:
  void emit(const tcp::SegmentOut& s) override {
    sent.push_back(Sent{s.seq, s.ack, s.flags, s.window, s.mss, s.wscale, str(s.payload)});
  }
  std::vector<Sent> sent;
};

class TcpHarness {
 public:
  // The client's ISN and the server's ISS; tests run with both near 2^32 as well.
  TcpHarness(std::uint32_t isn, std::uint32_t iss, tcp::EndpointConfig cfg = default_config(),
             std::optional<std::uint16_t> mss = 1460, std::uint16_t client_window = 65535,
             std::optional<std::uint8_t> wscale = {})
      : client_isn(isn), local_isn(Seq{iss}), now(t0()) {
    tcp::SegmentIn syn;
    syn.seq = Seq{isn};
    syn.flags = kSyn;
    syn.window = client_window;
    syn.mss = mss;
    syn.wscale = wscale;
    ep.emplace(cfg, syn, Seq{iss}, *counters);
    client_nxt = Seq{isn} + 1;
    client_window_ = client_window;
  }

  static tcp::EndpointConfig default_config() {
    tcp::EndpointConfig c;
    c.local_mss = 1460;
    c.time_wait = std::chrono::seconds(60);
    return c;
  }

  // Completes the handshake: flush (SYN-ACK out), then the client's ACK.
  void establish() {
    flush();
    auto s = take();
    ASSERT_EQ(s.size(), 1u);
    ASSERT_EQ(s[0].flags, kSyn | kAck);
    client_ack_ = s[0].seq + 1;
    inject(kAck, client_nxt, "");
    ASSERT_EQ(ep->state(), tcp::State::Established);
    ep->take_events();
  }

  // The client sends a segment at `seq` (default: its next sequence number).
  void inject(std::uint8_t flags, Seq seq, std::string_view payload,
              std::optional<Seq> ack = std::nullopt, std::optional<std::uint16_t> window = {}) {
    tcp::SegmentIn s;
    s.seq = seq;
    s.ack = ack.value_or(client_ack_);
    s.flags = flags;
    s.window = window.value_or(client_window_);
    const auto b = as_bytes(payload);
    s.payload = b;
    ep->on_segment(s, now, out);
  }
  // In-order data from the client; advances the client's sequence number.
  void client_send(std::string_view data, std::uint8_t extra = 0) {
    inject(kAck | kPsh | extra, client_nxt, data);
    client_nxt = client_nxt + static_cast<std::uint32_t>(data.size()) + ((extra & kFin) ? 1u : 0u);
  }
  void client_fin() {
    inject(kAck | kFin, client_nxt, "");
    client_nxt = client_nxt + 1;
  }
  // The client acknowledges up to `ack` with `window`.
  void client_ack(Seq ack, std::optional<std::uint16_t> window = {}) {
    client_ack_ = ack;
    if (window) client_window_ = *window;
    inject(kAck, client_nxt, "", ack, window);
  }

  void app_send(std::string_view data) { ep->send(as_bytes(data)); }
  void flush() { ep->flush(now, out); }
  void advance(Duration d) {
    now += d;
    ep->on_timer(now, out);
  }

  std::vector<Sent> take() {
    auto s = std::move(out.sent);
    out.sent.clear();
    return s;
  }
  Sent take_one() {
    auto s = take();
    EXPECT_EQ(s.size(), 1u) << "expected exactly one segment";
    return s.empty() ? Sent{} : s[0];
  }
  void expect_silence() {
    auto s = take();
    EXPECT_TRUE(s.empty()) << "unexpected segment " << (s.empty() ? Sent{} : s[0]);
  }
  std::string read_all() {
    const auto r = ep->received();
    std::string s = str(r);
    ep->consume(r.size());
    return s;
  }

  Seq server_seq(std::uint32_t offset) const {
    return local_isn + offset;
  }  // offset 1 = first data

  std::uint32_t client_isn_raw() const { return client_isn; }

  std::uint32_t client_isn;
  Seq local_isn;
  Seq client_nxt;
  TimePoint now;
  // On the heap, so the endpoint's pointer to it survives a move of the harness.
  std::unique_ptr<metrics::Counters> counters = std::make_unique<metrics::Counters>();
  std::optional<tcp::Endpoint> ep;
  RecordingOutbox out;

 private:
  Seq client_ack_;
  std::uint16_t client_window_ = 65535;
};

}  // namespace mqtt_proxy::test
