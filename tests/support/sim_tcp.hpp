// A seeded network simulation for the TCP endpoint: a lossy, reordering, duplicating link with
// delay joins the endpoint to a small independent client-side TCP (the reference peer). Everything
// runs in virtual time, so one run is a pure function of its seed.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>

#include "mqtt_proxy/tcp/endpoint.hpp"
#include "mqtt_proxy/wire/frame.hpp"
#include "test_util.hpp"

namespace mqtt_proxy::test::sim {

using namespace wire::tcp_flags;
using wire::Seq;

// A segment on the simulated wire, owning its payload.
struct Wire {
  Seq seq;
  Seq ack;
  std::uint8_t flags = 0;
  std::uint16_t window = 0;
  std::optional<std::uint16_t> mss;
  std::optional<std::uint8_t> wscale;
  Bytes payload;
};

struct LinkParams {
  double loss = 0;
  double duplicate = 0;
  Duration delay = std::chrono::milliseconds(1);
  Duration jitter{};  // uniform extra delay per segment; reorders segments closer than this
};

// One direction of the link.
class Link {
 public:
  Link(const LinkParams& p, std::mt19937_64& rng, std::ostream* trace = nullptr,
       std::string name = {})
      : p_(p), rng_(rng), trace_(trace), name_(std::move(name)) {}

  void send(const Wire& w, TimePoint now) {
    ++sent_;
    const bool lost = chance(p_.loss);
    if (trace_) {
      *trace_ << std::chrono::duration_cast<std::chrono::microseconds>(now - t0()).count() << "us "
              << name_ << " flags=" << int(w.flags) << " seq=" << w.seq.raw << " ack=" << w.ack.raw
              << " win=" << w.window << " len=" << w.payload.size() << (lost ? " LOST" : "")
              << "\n";
    }
    if (lost) {
      ++lost_;
      return;
    }
    enqueue(w, now);
    if (chance(p_.duplicate)) enqueue(w, now);
  }
  std::optional<TimePoint> next_arrival() const {
    if (queue_.empty()) return std::nullopt;
    return queue_.begin()->first;
  }
  // Removes and returns the next segment due at or before `now`.
  std::optional<Wire> pop_due(TimePoint now) {
    if (queue_.empty() || queue_.begin()->first > now) return std::nullopt;
    Wire w = std::move(queue_.begin()->second);
    queue_.erase(queue_.begin());
    return w;
  }
  std::uint64_t sent() const { return sent_; }
  std::uint64_t lost() const { return lost_; }

 private:
  bool chance(double p) { return p > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  void enqueue(const Wire& w, TimePoint now) {
    Duration d = p_.delay;
    if (p_.jitter > Duration::zero()) {
      d += Duration(std::uniform_int_distribution<Duration::rep>(0, p_.jitter.count())(rng_));
    }
    queue_.emplace(now + d, w);  // equal times keep their sending order
  }

  LinkParams p_;
  std::mt19937_64& rng_;
  std::ostream* trace_;
  std::string name_;
  std::multimap<TimePoint, Wire> queue_;
  std::uint64_t sent_ = 0;
  std::uint64_t lost_ = 0;
};

// The client side of one connection, written for clarity, not speed: go-back-N retransmission with
// a doubling timeout, in-order reception only (anything else is dropped and answered with a
// duplicate ACK), a receive buffer its application drains at its own pace, one ACK per segment.
class RefPeer {
 public:
  struct Config {
    Seq isn;
    std::uint16_t mss = 1460;
    std::optional<std::uint8_t> wscale;  // offered in the SYN
    std::uint32_t rcv_buffer = 65535;
    bool close_when_done = true;  // FIN after the data; false: the connection stays open
  };

  RefPeer(const Config& cfg, Bytes data, std::function<void(const Wire&)> send)
      : cfg_(cfg), data_(std::move(data)), send_(std::move(send)) {
    snd_una_ = cfg.isn;
    snd_nxt_ = cfg.isn;
    snd_max_ = cfg.isn;
  }

  void connect(TimePoint now) {
    send_syn();
    rto_at_ = now + rto_;
  }

  void on_segment(const Wire& s, TimePoint now) {
    if (!error_.empty()) return;
    if (s.flags & kRst) {
      error_ = "peer received RST";
      return;
    }
    if (!open_) {
      if ((s.flags & (kSyn | kAck)) != (kSyn | kAck) || s.ack != cfg_.isn + 1u) return;
      open_ = true;
      rcv_nxt_ = s.seq + 1u;
      snd_una_ = cfg_.isn + 1u;
      snd_nxt_ = snd_una_;
      snd_max_ = snd_una_;
      eff_mss_ = std::min<std::uint16_t>(cfg_.mss, s.mss.value_or(536));
      if (cfg_.wscale && s.wscale) {
        snd_shift_ = *s.wscale;
        rcv_shift_ = *cfg_.wscale;
      }
      snd_wnd_ = s.window;  // unscaled in a SYN-ACK
      wl1_ = s.seq;
      wl2_ = s.ack;
      rto_at_.reset();
      rto_ = kRtoInitial;
      send_ack();
      transmit(now, false);
      return;
    }
    if (s.flags & kSyn) {  // our ACK of the SYN-ACK was lost
      send_ack();
      return;
    }
    if (s.flags & kAck) on_ack(s, now);
    // Data, a FIN, or a segment with an unexpected sequence number (a zero-window probe) is
    // answered with an ACK.
    if (!s.payload.empty() || (s.flags & kFin) || s.seq != rcv_nxt_) {
      on_data(s);
      send_ack();
    }
    transmit(now, false);
  }

  void on_timer(TimePoint now) {
    if (!error_.empty() || !rto_at_ || *rto_at_ > now) return;
    rto_at_.reset();
    rto_ = std::min(rto_ * 2, kRtoMax);
    ++timeouts_;
    if (!open_) {
      send_syn();
      rto_at_ = now + rto_;
      return;
    }
    snd_nxt_ = snd_una_;  // go back N; with a zero window this sends a one-byte probe
    transmit(now, true);
  }

  // The application reads up to `n` buffered bytes.
  void app_read(std::size_t n) {
    const std::uint32_t before = advertised_bytes();
    unread_ -= std::min<std::size_t>(n, unread_);
    const std::uint32_t after = advertised_bytes();
    if (open_ && after > before && (before < eff_mss_ || after - before >= cfg_.rcv_buffer / 2)) {
      send_ack();  // window update
    }
  }

  std::optional<TimePoint> deadline() const { return rto_at_; }
  bool done() const { return fin_received_ && fin_acked(); }
  bool fin_received() const { return fin_received_; }
  bool fin_acked() const { return fin_sent_ && snd_una_ == fin_seq() + 1u; }
  const Bytes& received() const { return received_; }
  const std::string& error() const { return error_; }
  std::uint64_t timeouts() const { return timeouts_; }

 private:
  static constexpr Duration kRtoInitial = std::chrono::milliseconds(300);
  static constexpr Duration kRtoMax = std::chrono::seconds(8);
  static constexpr std::uint32_t kMaxFlightSegments = 16;

  Seq fin_seq() const { return cfg_.isn + 1u + static_cast<std::uint32_t>(data_.size()); }
  std::uint32_t space() const { return cfg_.rcv_buffer - static_cast<std::uint32_t>(unread_); }
  std::uint32_t advertised_bytes() const {
    return std::min<std::uint32_t>(space() >> rcv_shift_, 0xffff) << rcv_shift_;
  }

  void send_syn() {
    Wire w;
    w.seq = cfg_.isn;
    w.flags = kSyn;
    w.window = static_cast<std::uint16_t>(std::min<std::uint32_t>(cfg_.rcv_buffer, 0xffff));
    w.mss = cfg_.mss;
    w.wscale = cfg_.wscale;
    send_(w);
  }
  Wire segment(Seq seq, std::uint8_t flags) const {
    Wire w;
    w.seq = seq;
    w.ack = rcv_nxt_;
    w.flags = flags | kAck;
    w.window = static_cast<std::uint16_t>(advertised_bytes() >> rcv_shift_);
    return w;
  }
  void send_ack() { send_(segment(snd_nxt_, 0)); }

  void on_ack(const Wire& s, TimePoint now) {
    if (s.ack > snd_max_) return;  // acknowledges something never sent: ignore
    if (s.ack > snd_una_) {
      snd_una_ = s.ack;
      if (snd_nxt_ < snd_una_) snd_nxt_ = snd_una_;
      rto_ = kRtoInitial;
      rto_at_.reset();
      if (snd_una_ < snd_max_) rto_at_ = now + rto_;
    }
    if (wl1_ < s.seq || (wl1_ == s.seq && wl2_ <= s.ack)) {
      snd_wnd_ = std::uint32_t{s.window} << snd_shift_;
      wl1_ = s.seq;
      wl2_ = s.ack;
    }
  }

  void on_data(const Wire& s) {
    if (fin_received_ || s.seq != rcv_nxt_) return;  // old, duplicate or out of order: dropped
    const auto take = std::min<std::size_t>(s.payload.size(), space());
    received_.insert(received_.end(), s.payload.begin(),
                     s.payload.begin() + static_cast<std::ptrdiff_t>(take));
    unread_ += take;
    rcv_nxt_ += static_cast<std::uint32_t>(take);
    if ((s.flags & kFin) && take == s.payload.size()) {
      fin_received_ = true;
      rcv_nxt_ += 1u;
    }
  }

  void transmit(TimePoint now, bool probe) {
    const Seq end = fin_seq();
    if (!cfg_.close_when_done) {
      send_data_only(now, probe, end);
      return;
    }
    while (snd_nxt_ < end) {
      const std::uint32_t in_flight = snd_nxt_ - snd_una_;
      const std::uint32_t wnd = std::min(snd_wnd_, kMaxFlightSegments * eff_mss_);
      std::uint32_t len = 0;
      if (in_flight < wnd) {
        len = std::min({std::uint32_t{eff_mss_}, wnd - in_flight, end - snd_nxt_});
      } else if (probe && in_flight == 0) {
        len = 1;  // zero-window probe
      } else {
        break;
      }
      probe = false;
      Wire w = segment(snd_nxt_, kPsh);
      const auto off = static_cast<std::ptrdiff_t>(snd_nxt_ - (cfg_.isn + 1u));
      w.payload.assign(data_.begin() + off, data_.begin() + off + len);
      snd_nxt_ += len;
      if (snd_nxt_ == end) {
        w.flags |= kFin;
        fin_sent_ = true;
        snd_nxt_ += 1u;
      }
      send_(w);
      if (snd_max_ < snd_nxt_) snd_max_ = snd_nxt_;
    }
    if (snd_nxt_ == end && !(fin_sent_ && snd_max_ > end)) {
      send_(segment(end, kFin));  // no data at all, or the FIN alone
      fin_sent_ = true;
      snd_nxt_ = end + 1u;
      snd_max_ = snd_nxt_;
    } else if (snd_nxt_ == end && probe) {
      send_(segment(end, kFin));  // a timeout with only the FIN outstanding
      snd_nxt_ = end + 1u;
    }
    const bool waiting = snd_una_ < snd_max_ || snd_nxt_ <= end;
    if (waiting && !rto_at_) rto_at_ = now + rto_;
    if (!waiting) rto_at_.reset();
  }

  // transmit() for a connection that never closes: the data, within the window, and nothing more.
  void send_data_only(TimePoint now, bool probe, Seq end) {
    while (snd_nxt_ < end) {
      const std::uint32_t in_flight = snd_nxt_ - snd_una_;
      const std::uint32_t wnd = std::min(snd_wnd_, kMaxFlightSegments * eff_mss_);
      std::uint32_t len = 0;
      if (in_flight < wnd) {
        len = std::min({std::uint32_t{eff_mss_}, wnd - in_flight, end - snd_nxt_});
      } else if (probe && in_flight == 0) {
        len = 1;
      } else {
        break;
      }
      probe = false;
      Wire w = segment(snd_nxt_, kPsh);
      const auto off = static_cast<std::ptrdiff_t>(snd_nxt_ - (cfg_.isn + 1u));
      w.payload.assign(data_.begin() + off, data_.begin() + off + len);
      snd_nxt_ += len;
      send_(w);
      if (snd_max_ < snd_nxt_) snd_max_ = snd_nxt_;
    }
    const bool waiting = snd_una_ < snd_max_ || snd_nxt_ < end;
    if (waiting && !rto_at_) rto_at_ = now + rto_;
    if (!waiting) rto_at_.reset();
  }

  Config cfg_;
  Bytes data_;
  std::function<void(const Wire&)> send_;
  bool open_ = false;
  Seq snd_una_, snd_nxt_, snd_max_, wl1_, wl2_;
  std::uint32_t snd_wnd_ = 0;
  std::uint16_t eff_mss_ = 536;
  std::uint8_t snd_shift_ = 0;
  std::uint8_t rcv_shift_ = 0;
  bool fin_sent_ = false;
  Seq rcv_nxt_;
  bool fin_received_ = false;
  Bytes received_;
  std::size_t unread_ = 0;
  Duration rto_ = kRtoInitial;
  std::optional<TimePoint> rto_at_;
  std::uint64_t timeouts_ = 0;
  std::string error_;
};

}  // namespace mqtt_proxy::test::sim
