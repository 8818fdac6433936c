// The server side of one TCP connection, as a pure state machine: segments and the current time go
// in, segments come out through an Outbox, events and in-order bytes are read off by the owner.
#pragma once

#include <cstdint>
#include <optional>

#include "mqtt_proxy/metrics/counters.hpp"
#include "mqtt_proxy/tcp/reassembler.hpp"
#include "mqtt_proxy/util/byte_queue.hpp"
#include "mqtt_proxy/util/bytes.hpp"
#include "mqtt_proxy/util/time.hpp"
#include "mqtt_proxy/wire/seq.hpp"

namespace mqtt_proxy::tcp {

// Sequence numbers are the wire's type: the TCP header carries them, this layer does the
// arithmetic.
using wire::in_range;
using wire::Seq;

enum class State {
  SynReceived,
  Established,
  CloseWait,
  LastAck,
  FinWait1,
  FinWait2,
  Closing,
  TimeWait,
  Closed,
};

const char* state_name(State s);

// Header fields of a received segment that the endpoint needs. Options matter only on the SYN.
struct SegmentIn {
  Seq seq;
  Seq ack;
  std::uint8_t flags = 0;
  std::uint16_t window = 0;
  std::optional<std::uint16_t> mss;
  std::optional<std::uint8_t> wscale;
  ByteSpan payload;
};

struct SegmentOut {
  Seq seq;
  Seq ack;
  std::uint8_t flags = 0;
  std::uint16_t window = 0;
  std::optional<std::uint16_t> mss;    // on SYN-ACK
  std::optional<std::uint8_t> wscale;  // on SYN-ACK, when the SYN offered window scaling
  ByteSpan payload;                    // valid only during Outbox::emit
};

class Outbox {
 public:
  virtual ~Outbox() = default;
  virtual void emit(const SegmentOut& s) = 0;
};

struct EndpointConfig {
  std::uint16_t local_mss = 1460;  // what we accept: interface MTU - 40
  // Receive buffer: the window we advertise is what is left of it. Above 65535 it needs the window
  // scale option, which is offered only to clients that offer it (RFC 7323 1.3).
  std::uint32_t rcv_buffer = 65535;
  std::uint16_t min_peer_mss = 64;  // floor for the peer's announced MSS (CVE-2019-11479 class)
  Duration rto_initial = std::chrono::seconds(1);     // RFC 6298 2.1
  Duration rto_min = std::chrono::milliseconds(200);  // Linux's floor; RFC 6298 allows below 1 s
  Duration rto_max = std::chrono::seconds(60);
  int max_retransmits = 10;  // then the connection is aborted
  int max_synack_retransmits = 5;
  Duration time_wait = std::chrono::seconds(60);
  Duration fin_wait2_timeout = std::chrono::seconds(60);
  // RFC 5482's user timeout: data waiting and SND.UNA not moving for this long aborts the
  // connection, whether the peer is gone or just reads nothing (a zero window is probed forever
  // otherwise). Zero turns it off.
  Duration user_timeout = std::chrono::seconds(60);
  int challenge_acks_per_second = 10;  // RFC 5961 7, per connection (never global: CVE-2016-5696)
  Duration out_of_window_ack_interval = std::chrono::milliseconds(500);
};

// Things that happened since the owner last asked; a bit set.
namespace event {
inline constexpr std::uint8_t kEstablished = 0x01;
inline constexpr std::uint8_t kData = 0x02;      // bytes are waiting in received()
inline constexpr std::uint8_t kPeerFin = 0x04;   // the peer will send no more
inline constexpr std::uint8_t kReset = 0x08;     // the peer reset the connection
inline constexpr std::uint8_t kTimedOut = 0x10;  // retransmissions exhausted; we sent RST
inline constexpr std::uint8_t kClosed = 0x20;    // state is Closed; the endpoint can be freed
inline constexpr std::uint8_t kStalled = 0x40;   // user timeout: no progress; we sent RST
}  // namespace event

// The window scale shift that fits `buffer` into the 16-bit window field (RFC 7323 2.3: at most
// 14).
std::uint8_t window_scale_for(std::uint32_t buffer);

class Endpoint {
 public:
  // Passive open: `syn` is an acceptable SYN; `iss` our initial sequence number. The SYN-ACK goes
  // out at the next flush(). The endpoint counts what it does in `counters` (its tcp_* fields),
  // which must outlive it.
  Endpoint(const EndpointConfig& cfg, const SegmentIn& syn, Seq iss, metrics::Counters& counters);
  // An endpoint whose handshake was done statelessly with a SYN cookie: `ack` completes it (ISN
  // iss, the client's ISN ack.seq - 1, the MSS the cookie carried). No window scaling: the cookie's
  // SYN-ACK offered none. Pass `ack` to on_segment() next; it may carry data.
  static Endpoint from_cookie(const EndpointConfig& cfg, const SegmentIn& ack, Seq iss,
                              std::uint16_t peer_mss, metrics::Counters& counters);

  void on_segment(const SegmentIn& s, TimePoint now, Outbox& out);
  void on_timer(TimePoint now, Outbox& out);
  // Sends what is due: the SYN-ACK, new data within the peer's window and our congestion window, a
  // FIN, and at most one pure ACK for everything received since the last flush.
  void flush(TimePoint now, Outbox& out);

  // Queues bytes for the peer. Always accepted until close(); callers bound memory with
  // queued_bytes().
  void send(ByteSpan data);
  // Graceful close: FIN after all queued data.
  void close();
  // RST now; no more output.
  void abort(Outbox& out);

  ByteSpan received() const { return rx_.all(); }
  void consume(std::size_t n) { rx_.pop(n); }

  std::uint8_t take_events() {
    const auto e = events_;
    events_ = 0;
    return e;
  }

  State state() const { return state_; }
  bool is_closed() const { return state_ == State::Closed; }
  bool can_send() const { return state_ == State::Established || state_ == State::CloseWait; }
  std::size_t queued_bytes() const { return tx_.size(); }  // sent-but-unacked plus unsent
  std::optional<TimePoint> next_deadline() const;
  // Since when queued data has been waiting with no acknowledgement progress, if it is.
  std::optional<TimePoint> stalled_since() const { return stalled_since_; }

  Seq iss() const { return iss_; }
  Seq irs() const { return irs_; }
  Seq rcv_nxt() const { return rcv_nxt_; }
  Seq snd_una() const { return snd_una_; }
  Seq snd_nxt() const { return snd_nxt_; }
  std::uint32_t snd_wnd() const { return snd_wnd_; }
  std::uint32_t cwnd() const { return cwnd_; }
  std::uint16_t effective_mss() const { return effective_mss_; }
  std::uint8_t snd_wscale() const { return snd_wscale_; }
  std::uint8_t rcv_wscale() const { return rcv_wscale_; }
  Duration rto() const { return rto_; }
  std::optional<Duration> srtt() const { return srtt_; }

 private:
  std::uint32_t rcv_wnd() const;
  std::uint16_t advertised_window() const;  // the field: rcv_wnd() >> rcv_wscale_
  void emit(Outbox& out, Seq seq, std::uint8_t flags, ByteSpan payload = {});
  void emit_synack(TimePoint now, Outbox& out);
  bool allow_challenge_ack(TimePoint now);
  void challenge_ack(TimePoint now, Outbox& out);
  bool process_ack(const SegmentIn& s, TimePoint now, Outbox& out);
  void process_text(const SegmentIn& s, TimePoint now, Outbox& out);
  void receive_fin(TimePoint now);
  void on_fin_acked(TimePoint now);
  void send_data(TimePoint now, Outbox& out);
  // Our FIN, once all data is out (or again after a timeout): it takes a sequence number.
  void send_fin(TimePoint now, Outbox& out);
  // The slow-start threshold after a loss is detected (RFC 5681 (4)).
  std::uint32_t loss_ssthresh() const;
  void retransmit_first(Outbox& out);
  void sample_rtt(Duration r);
  Duration current_rto() const;  // from SRTT and RTTVAR, without backoff
  void set_state(State next, TimePoint now);
  void arm_rto(TimePoint now) {
    if (!rto_at_) rto_at_ = now + rto_;
  }
  Seq data_end() const { return tx_base_ + static_cast<std::uint32_t>(tx_.size()); }

  EndpointConfig cfg_;
  metrics::Counters* counters_;
  State state_ = State::SynReceived;
  std::uint8_t events_ = 0;

  // Send sequence space (RFC 9293 3.3.1). snd_max_ is the highest sequence sent so far; snd_nxt_
  // falls back to snd_una_ after a retransmission timeout (go-back-N).
  Seq iss_;
  Seq snd_una_;
  Seq snd_nxt_;
  Seq snd_max_;
  Seq snd_wl1_;
  Seq snd_wl2_;
  std::uint32_t snd_wnd_ = 0;
  std::uint32_t max_snd_wnd_ = 0;
  std::uint8_t snd_wscale_ = 0;  // applied to the peer's window field
  std::uint8_t rcv_wscale_ = 0;  // applied to ours
  bool wscale_ok_ = false;       // the SYN offered window scaling, so the SYN-ACK answers it
  std::uint16_t effective_mss_ = 536;
  Seq tx_base_;  // sequence number of tx_[0]
  ByteQueue tx_;
  bool fin_queued_ = false;
  bool fin_sent_ = false;
  Seq fin_seq_;

  // Congestion control (RFC 5681): slow start, congestion avoidance, fast retransmit.
  std::uint32_t cwnd_ = 0;
  std::uint32_t ssthresh_ = 0xffffffffu;
  int dupacks_ = 0;

  // Retransmission timer (RFC 6298) and RTT measurement with Karn's rule.
  Duration rto_;
  std::optional<Duration> srtt_;
  Duration rttvar_{};
  std::optional<TimePoint> rto_at_;
  int retries_ = 0;
  bool rtt_active_ = false;
  Seq rtt_seq_;
  TimePoint rtt_start_{};

  // Zero-window probing (RFC 9293 3.8.6.1).
  std::optional<TimePoint> persist_at_;
  int persist_backoff_ = 0;

  // Receive sequence space. rx_offset_ counts data bytes delivered in order; it keys the
  // reassembler.
  Seq irs_;
  Seq rcv_nxt_;
  std::uint64_t rx_offset_ = 0;
  ByteQueue rx_;
  Reassembler reassembler_;  // out-of-order data
  std::optional<std::uint64_t> peer_fin_offset_;
  bool fin_received_ = false;
  bool ack_pending_ = false;
  std::uint32_t last_window_sent_ = 0xffff;  // in bytes
  bool synack_due_ = true;
  bool synack_retransmitted_ = false;

  std::optional<TimePoint> linger_until_;  // TIME-WAIT or FIN-WAIT-2 timeout
  // Since when data has been waiting without SND.UNA moving (the user timeout's clock).
  std::optional<TimePoint> stalled_since_;
  TimePoint challenge_window_start_{};
  int challenge_acks_in_window_ = 0;
  std::optional<TimePoint> last_oow_ack_;
};

}  // namespace mqtt_proxy::tcp
