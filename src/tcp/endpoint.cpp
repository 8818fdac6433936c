// Server-side TCP endpoint.
//
// Read first: RFC 9293 (TCP, in particular 3.10.7.4 "Other states" for the order in which a segment
// is checked), RFC 6298 (retransmission timer), RFC 5681 (congestion control), RFC 5961 (blind
// in-window attacks: challenge ACKs), RFC 6528 (ISN, see isn.cpp), RFC 1122 4.2.2.17 (zero-window
// probing).
//
// Window scaling (RFC 7323) is used when the client offers it. Not negotiated, on purpose: SACK and
// timestamps (so PAWS does not apply; TIME-WAIT and the ISN generator keep old segments out).

#include "mqtt_proxy/tcp/endpoint.hpp"

#include <algorithm>

#include "mqtt_proxy/wire/frame.hpp"

namespace mqtt_proxy::tcp {

using namespace wire::tcp_flags;

const char* state_name(State s) {
  switch (s) {
    case State::SynReceived:
      return "SYN-RECEIVED";
    case State::Established:
      return "ESTABLISHED";
    case State::CloseWait:
      return "CLOSE-WAIT";
    case State::LastAck:
      return "LAST-ACK";
    case State::FinWait1:
      return "FIN-WAIT-1";
    case State::FinWait2:
      return "FIN-WAIT-2";
    case State::Closing:
      return "CLOSING";
    case State::TimeWait:
      return "TIME-WAIT";
    case State::Closed:
      return "CLOSED";
  }
  return "?";
}

std::uint8_t window_scale_for(std::uint32_t buffer) {
  std::uint8_t shift = 0;
  while (shift < 14 && (buffer >> shift) > 0xffff) ++shift;
  return shift;
}

Endpoint::Endpoint(const EndpointConfig& cfg, const SegmentIn& syn, Seq iss,
                   metrics::Counters& counters)
    : cfg_(cfg), counters_(&counters), rto_(cfg.rto_initial) {
  if (syn.wscale) {
    wscale_ok_ = true;
    // RFC 7323 2.3: a shift above 14 is used as 14.
    snd_wscale_ = std::min<std::uint8_t>(*syn.wscale, 14);
    rcv_wscale_ = window_scale_for(cfg_.rcv_buffer);
  } else if (cfg_.rcv_buffer > 0xffff) {
    cfg_.rcv_buffer = 0xffff;  // no scaling: a window the field cannot carry would go unused
  }
  iss_ = iss;
  snd_una_ = iss;
  snd_nxt_ = iss;
  snd_max_ = iss;
  tx_base_ = iss + 1;
  irs_ = syn.seq;
  rcv_nxt_ = syn.seq + 1;
  snd_wnd_ = syn.window;  // a SYN's window is never scaled
  max_snd_wnd_ = snd_wnd_;
  snd_wl1_ = syn.seq;
  snd_wl2_ = iss;
  // RFC 9293 3.7.1: no MSS option means 536. An MSS of 0 is treated as absent.
  std::uint16_t peer_mss = (syn.mss && *syn.mss > 0) ? *syn.mss : 536;
  peer_mss = std::max(peer_mss, cfg_.min_peer_mss);
  effective_mss_ = std::min(peer_mss, cfg_.local_mss);
  cwnd_ = 10u * effective_mss_;  // RFC 6928 initial window
}

Endpoint Endpoint::from_cookie(const EndpointConfig& cfg, const SegmentIn& ack, Seq iss,
                               std::uint16_t peer_mss, metrics::Counters& counters) {
  SegmentIn syn;
  syn.seq = ack.seq - 1;
  syn.flags = kSyn;
  syn.window = ack.window;
  syn.mss = peer_mss;
  Endpoint ep(cfg, syn, iss, counters);
  ep.synack_due_ = false;
  ep.snd_nxt_ = iss + 1;
  ep.snd_max_ = iss + 1;
  // on_segment() then takes `ack` as the handshake's completion in SYN-RECEIVED.
  return ep;
}

// Out-of-order bytes lie inside the window already offered, so only unread in-order bytes shrink
// it; counting the others would move the right edge left (RFC 9293 3.8.6.2.2 says not to).
std::uint32_t Endpoint::rcv_wnd() const {
  const std::size_t used = rx_.size();
  return used >= cfg_.rcv_buffer ? 0 : static_cast<std::uint32_t>(cfg_.rcv_buffer - used);
}

std::uint16_t Endpoint::advertised_window() const {
  return static_cast<std::uint16_t>(std::min<std::uint32_t>(rcv_wnd() >> rcv_wscale_, 0xffff));
}

void Endpoint::emit(Outbox& out, Seq seq, std::uint8_t flags, ByteSpan payload) {
  SegmentOut s;
  s.seq = seq;
  s.flags = flags;
  if (flags & kAck) {
    s.ack = rcv_nxt_;
    ack_pending_ = false;
  }
  s.window = advertised_window();
  s.payload = payload;
  last_window_sent_ = std::uint32_t{s.window} << rcv_wscale_;
  out.emit(s);
}

void Endpoint::emit_synack(TimePoint now, Outbox& out) {
  SegmentOut s;
  s.seq = iss_;
  s.ack = rcv_nxt_;
  s.flags = kSyn | kAck;
  s.window = static_cast<std::uint16_t>(std::min<std::uint32_t>(rcv_wnd(), 0xffff));  // unscaled
  s.mss = cfg_.local_mss;
  if (wscale_ok_) s.wscale = rcv_wscale_;
  out.emit(s);
  ack_pending_ = false;
  synack_due_ = false;
  if (snd_max_ == iss_) {  // first transmission: time it for the first RTT sample
    rtt_active_ = true;
    rtt_seq_ = iss_;
    rtt_start_ = now;
  }
  snd_nxt_ = iss_ + 1;
  snd_max_ = iss_ + 1;
  arm_rto(now);
}

bool Endpoint::allow_challenge_ack(TimePoint now) {
  if (now - challenge_window_start_ >= std::chrono::seconds(1)) {
    challenge_window_start_ = now;
    challenge_acks_in_window_ = 0;
  }
  if (challenge_acks_in_window_ >= cfg_.challenge_acks_per_second) return false;
  ++challenge_acks_in_window_;
  return true;
}

void Endpoint::challenge_ack(TimePoint now, Outbox& out) {
  if (!allow_challenge_ack(now)) return;
  ++counters_->tcp_challenge_acks;
  emit(out, snd_nxt_, kAck);
}

void Endpoint::on_segment(const SegmentIn& s, TimePoint now, Outbox& out) {
  if (state_ == State::Closed) return;
  const bool syn = s.flags & kSyn;
  const bool rst = s.flags & kRst;
  const bool fin = s.flags & kFin;

  // Our SYN-ACK was lost and the client retransmits its SYN: answer with the SYN-ACK again.
  if (state_ == State::SynReceived && syn && !rst && !(s.flags & kAck) && s.seq == irs_) {
    synack_due_ = true;
    return;
  }

  // RFC 9293 3.10.7.4, first: is the segment acceptable?
  const auto seg_len =
      static_cast<std::uint32_t>(s.payload.size()) + (syn ? 1u : 0u) + (fin ? 1u : 0u);
  const std::uint32_t wnd = rcv_wnd();
  const Seq wnd_end = rcv_nxt_ + wnd;
  bool acceptable;
  if (seg_len == 0) {
    acceptable = (wnd == 0) ? s.seq == rcv_nxt_ : in_range(s.seq, rcv_nxt_, wnd_end);
  } else {
    acceptable = wnd > 0 && (in_range(s.seq, rcv_nxt_, wnd_end) ||
                             in_range(s.seq + (seg_len - 1), rcv_nxt_, wnd_end));
  }
  // With a zero window, valid ACKs and RSTs must still be processed (RFC 9293 3.10.7.4).
  const bool zero_window_ack_only = !acceptable && wnd == 0 && s.seq == rcv_nxt_;
  if (!acceptable && !zero_window_ack_only) {
    if (rst) return;  // RFC 5961 3.2: an out-of-window RST is dropped silently
    if (state_ == State::TimeWait && fin) linger_until_ = now + cfg_.time_wait;
    const bool old_data = seg_len > 0 && s.seq + seg_len <= rcv_nxt_;
    if (old_data) {
      // A retransmission of what we have: our ACK was probably lost. Answer at once; this is how
      // the peer recovers.
      ++counters_->tcp_duplicate_segments;
      emit(out, snd_nxt_, kAck);
    } else if (!last_oow_ack_ || now - *last_oow_ack_ >= cfg_.out_of_window_ack_interval) {
      // Beyond the window, or a bare ACK with an old sequence number: ACK, rate-limited (as Linux
      // does) so a flood cannot make us an amplifier and two stacks cannot trade ACKs forever.
      last_oow_ack_ = now;
      emit(out, snd_nxt_, kAck);
    }
    return;
  }

  // Second: RST (RFC 5961 3.2).
  if (rst) {
    if (s.seq == rcv_nxt_) {
      events_ |= event::kReset;
      set_state(State::Closed, now);
    } else {
      challenge_ack(now, out);
    }
    return;
  }

  // Fourth: a SYN in a synchronized state, whatever its sequence number (RFC 5961 4.2).
  if (syn) {
    challenge_ack(now, out);
    return;
  }

  // Fifth: the ACK field.
  if (!(s.flags & kAck)) return;
  if (state_ == State::SynReceived) {
    if (!(snd_una_ < s.ack && s.ack <= snd_max_)) {
      // Unacceptable ACK in SYN-RECEIVED: reset it (RFC 9293 3.10.7.4), the connection stays.
      ++counters_->tcp_bad_acks;
      SegmentOut r;
      r.seq = s.ack;
      r.flags = kRst;
      out.emit(r);
      return;
    }
    set_state(State::Established, now);
    events_ |= event::kEstablished;
  }
  if (!process_ack(s, now, out)) return;
  if (state_ == State::Closed) return;
  if (zero_window_ack_only) {
    if (!s.payload.empty() || fin) emit(out, snd_nxt_, kAck);
    return;
  }

  // Seventh and eighth: the text and the FIN.
  if (!s.payload.empty() || fin) process_text(s, now, out);
}

bool Endpoint::process_ack(const SegmentIn& s, TimePoint now, Outbox& out) {
  // RFC 5961 5.2: acceptable ACKs lie in [SND.UNA - MAX.SND.WND, SND.MAX].
  if (s.ack > snd_max_) {
    ++counters_->tcp_bad_acks;
    challenge_ack(now, out);  // an ACK for data we never sent
    return false;
  }
  if (s.ack < snd_una_ - max_snd_wnd_) {
    ++counters_->tcp_bad_acks;
    challenge_ack(now, out);
    return false;
  }

  const std::uint32_t seg_wnd = std::uint32_t{s.window} << snd_wscale_;
  const bool window_unchanged = seg_wnd == snd_wnd_;
  if (s.ack > snd_una_) {
    const std::uint32_t acked = s.ack - snd_una_;
    if (s.ack > tx_base_) {
      const auto n = std::min<std::size_t>(s.ack - tx_base_, tx_.size());
      tx_.pop(n);
      tx_base_ += static_cast<std::uint32_t>(n);
    }
    snd_una_ = s.ack;
    if (stalled_since_) stalled_since_ = now;
    if (snd_nxt_ < snd_una_) snd_nxt_ = snd_una_;
    if (rtt_active_ && s.ack > rtt_seq_) {
      rtt_active_ = false;
      sample_rtt(now - rtt_start_);
    }
    retries_ = 0;
    // Forward progress ends the backoff (as lwIP and BSD's retransmit shift do): the backed-off RTO
    // would otherwise stay until an RTT sample, and Karn's rule blocks samples while segments keep
    // being retransmitted, so a lossy path could drift to minute-long timeouts.
    rto_ = current_rto();
    // RFC 5681 3.1/3.2: grow the congestion window; leaving fast recovery deflates it.
    if (dupacks_ >= 3) {
      cwnd_ = ssthresh_;
    } else if (cwnd_ < ssthresh_) {
      cwnd_ += std::min<std::uint32_t>(acked, effective_mss_);
    } else {
      cwnd_ += std::max<std::uint32_t>(
          1, static_cast<std::uint32_t>(std::uint64_t{effective_mss_} * effective_mss_ / cwnd_));
    }
    dupacks_ = 0;
    // RFC 6298 5.2/5.3
    rto_at_.reset();
    if (snd_una_ < snd_max_) arm_rto(now);
    if (fin_sent_ && snd_una_ > fin_seq_) on_fin_acked(now);
  } else if (s.ack == snd_una_ && s.payload.empty() && !(s.flags & kFin) && window_unchanged &&
             snd_una_ < snd_max_) {
    // RFC 5681 3.2: the third duplicate ACK triggers a fast retransmit.
    ++dupacks_;
    if (dupacks_ == 3) {
      ssthresh_ = loss_ssthresh();
      ++counters_->tcp_fast_retransmits;
      ++counters_->tcp_retransmits;
      retransmit_first(out);
      cwnd_ = ssthresh_ + 3u * effective_mss_;
    } else if (dupacks_ > 3) {
      cwnd_ += effective_mss_;
    }
  }

  // RFC 9293 3.10.7.4: update the send window only from segments that are not older than the last
  // one.
  if (snd_wl1_ < s.seq || (snd_wl1_ == s.seq && snd_wl2_ <= s.ack)) {
    snd_wnd_ = seg_wnd;
    snd_wl1_ = s.seq;
    snd_wl2_ = s.ack;
    max_snd_wnd_ = std::max(max_snd_wnd_, snd_wnd_);
    if (snd_wnd_ > 0) {
      persist_at_.reset();
      persist_backoff_ = 0;
    }
  }
  return true;
}

void Endpoint::process_text(const SegmentIn& s, TimePoint now, Outbox& out) {
  Seq seq = s.seq;
  ByteSpan data = s.payload;
  bool fin = s.flags & kFin;

  // Trim what we already have (first data wins) and what lies beyond the window.
  if (seq < rcv_nxt_) {
    const std::uint32_t skip = rcv_nxt_ - seq;
    if (skip > data.size()) {
      data = {};
      fin = false;  // that FIN was already taken
    } else {
      data = data.subspan(skip);
    }
    seq = rcv_nxt_;
  }
  const std::uint32_t room = rcv_wnd() - (seq - rcv_nxt_);
  if (data.size() > room) {
    data = data.first(room);
    fin = false;
  }

  const bool accepts_data =
      (state_ == State::Established || state_ == State::FinWait1 || state_ == State::FinWait2) &&
      !fin_received_;
  if (!accepts_data) {
    // Data after the peer's FIN, or in a state that takes none: acknowledge what we have, drop it.
    if (!data.empty() || fin) ack_pending_ = true;
    return;
  }

  const std::uint64_t seg_offset = rx_offset_ + (seq - rcv_nxt_);
  if (fin) peer_fin_offset_ = seg_offset + data.size();

  if (seq == rcv_nxt_) {
    if (!data.empty()) {
      rx_.push(data);
      rx_offset_ += data.size();
      Bytes more;
      if (!reassembler_.empty() && reassembler_.pop_contiguous(rx_offset_, more) > 0) {
        rx_.push(more);
        rx_offset_ += more.size();
      }
      rcv_nxt_ = irs_ + 1 + static_cast<std::uint32_t>(rx_offset_);
      events_ |= event::kData;
    }
    ack_pending_ = true;
  } else if (!data.empty()) {
    ++counters_->tcp_out_of_order;
    counters_->tcp_overlap_mismatch_bytes += reassembler_.insert(seg_offset, data);
    // A duplicate ACK now, not at the end of the batch: the peer counts them for fast retransmit.
    emit(out, snd_nxt_, kAck);
  }

  if (peer_fin_offset_ && *peer_fin_offset_ == rx_offset_) receive_fin(now);
}

void Endpoint::receive_fin(TimePoint now) {
  peer_fin_offset_.reset();
  fin_received_ = true;
  rcv_nxt_ = rcv_nxt_ + 1;
  ack_pending_ = true;
  events_ |= event::kPeerFin;
  reassembler_.clear();
  switch (state_) {
    case State::Established:
      set_state(State::CloseWait, now);
      break;
    case State::FinWait1:
      set_state(State::Closing, now);
      break;
    case State::FinWait2:
      set_state(State::TimeWait, now);
      break;
    default:
      break;
  }
}

void Endpoint::on_fin_acked(TimePoint now) {
  switch (state_) {
    case State::FinWait1:
      set_state(State::FinWait2, now);
      break;
    case State::Closing:
      set_state(State::TimeWait, now);
      break;
    case State::LastAck:
      set_state(State::Closed, now);
      break;
    default:
      break;
  }
}

void Endpoint::set_state(State next, TimePoint now) {
  state_ = next;
  switch (next) {
    case State::FinWait2:
      linger_until_ = now + cfg_.fin_wait2_timeout;
      break;
    case State::TimeWait:
      linger_until_ = now + cfg_.time_wait;
      rto_at_.reset();
      persist_at_.reset();
      stalled_since_.reset();
      tx_.clear();
      reassembler_.clear();
      break;
    case State::Closed:
      events_ |= event::kClosed;
      rto_at_.reset();
      persist_at_.reset();
      stalled_since_.reset();
      linger_until_.reset();
      tx_.clear();
      reassembler_.clear();
      break;
    default:
      break;
  }
}

void Endpoint::send(ByteSpan data) {
  if (fin_queued_ || state_ == State::Closed) return;
  tx_.push(data);
}

void Endpoint::close() {
  if (fin_queued_) return;
  switch (state_) {
    case State::SynReceived:
      // Nothing was ever delivered on it: drop it. A late ACK from the peer meets the stateless
      // RST.
      set_state(State::Closed, {});
      return;
    case State::Established:
      set_state(State::FinWait1, {});
      break;
    case State::CloseWait:
      set_state(State::LastAck, {});
      break;
    default:
      return;
  }
  fin_queued_ = true;
  fin_seq_ = data_end();
}

void Endpoint::abort(Outbox& out) {
  if (state_ == State::Closed) return;
  if (state_ != State::TimeWait) emit(out, snd_nxt_, kRst | kAck);
  set_state(State::Closed, {});
}

void Endpoint::sample_rtt(Duration r) {
  if (!srtt_) {
    srtt_ = r;
    rttvar_ = r / 2;
  } else {
    const Duration diff = *srtt_ > r ? *srtt_ - r : r - *srtt_;
    rttvar_ = (rttvar_ * 3 + diff) / 4;
    srtt_ = (*srtt_ * 7 + r) / 8;
  }
  rto_ = current_rto();
}

Duration Endpoint::current_rto() const {
  // RFC 6298 2.2/2.3, with a 1 ms clock granularity G.
  constexpr Duration kGranularity = std::chrono::milliseconds(1);
  if (!srtt_) {
    // RFC 6298 5.7: a handshake that needed a retransmission starts data with at least 3 s.
    return synack_retransmitted_ ? std::max(cfg_.rto_initial, Duration(std::chrono::seconds(3)))
                                 : cfg_.rto_initial;
  }
  return std::clamp(*srtt_ + std::max(kGranularity, rttvar_ * 4), cfg_.rto_min, cfg_.rto_max);
}

void Endpoint::retransmit_first(Outbox& out) {
  rtt_active_ = false;  // Karn: never time a retransmitted segment
  // Only what was sent before: bytes queued since then are new data, subject to the windows.
  const Seq end = fin_sent_ ? fin_seq_ : snd_max_;
  if (snd_una_ < end) {
    const auto len = std::min<std::uint32_t>(effective_mss_, end - snd_una_);
    std::uint8_t flags = kAck;
    if (snd_una_ + len == end) {
      flags |= kPsh;
      if (fin_sent_) flags |= kFin;
    }
    emit(out, snd_una_, flags, tx_.view(snd_una_ - tx_base_, len));
  } else if (fin_sent_ && snd_una_ == fin_seq_) {
    emit(out, fin_seq_, kFin | kAck);
  }
}

std::uint32_t Endpoint::loss_ssthresh() const {
  // RFC 5681 (4): half the data in flight, at least two segments.
  return std::max<std::uint32_t>((snd_max_ - snd_una_) / 2, 2u * effective_mss_);
}

void Endpoint::send_fin(TimePoint now, Outbox& out) {
  emit(out, fin_seq_, kFin | kAck);
  fin_sent_ = true;
  snd_nxt_ = fin_seq_ + 1;
  if (snd_nxt_ > snd_max_) snd_max_ = snd_nxt_;
  arm_rto(now);
}

void Endpoint::send_data(TimePoint now, Outbox& out) {
  const Seq end = data_end();
  while (snd_nxt_ < end) {
    const std::uint32_t in_flight = snd_nxt_ - snd_una_;
    const std::uint32_t wnd = std::min(snd_wnd_, cwnd_);
    if (in_flight >= wnd) break;
    const std::uint32_t len =
        std::min({std::uint32_t{effective_mss_}, wnd - in_flight, end - snd_nxt_});
    const Seq seq = snd_nxt_;
    std::uint8_t flags = kAck;
    const bool last = seq + len == end;
    if (last) {
      flags |= kPsh;
      if (fin_queued_) flags |= kFin;
    }
    if (seq == snd_max_ && !rtt_active_) {
      rtt_active_ = true;
      rtt_seq_ = seq;
      rtt_start_ = now;
    }
    emit(out, seq, flags, tx_.view(seq - tx_base_, len));
    snd_nxt_ = seq + len + ((flags & kFin) ? 1u : 0u);
    if (flags & kFin) fin_sent_ = true;
    if (snd_nxt_ > snd_max_) snd_max_ = snd_nxt_;
    arm_rto(now);
  }
}

void Endpoint::flush(TimePoint now, Outbox& out) {
  if (state_ == State::Closed) return;
  if (state_ == State::SynReceived) {
    if (synack_due_) emit_synack(now, out);
    return;
  }
  if (tx_.empty()) {
    stalled_since_.reset();
  } else if (!stalled_since_) {
    stalled_since_ = now;
  }
  if (state_ != State::TimeWait) {
    send_data(now, out);
    // A FIN needs no window; send it once all data went out.
    if (fin_queued_ && snd_nxt_ == fin_seq_) send_fin(now, out);
    // Zero window with data waiting and nothing in flight: probe so a lost window update cannot
    // deadlock us.
    if (snd_wnd_ == 0 && snd_nxt_ < data_end() && snd_una_ == snd_max_ && !persist_at_) {
      persist_at_ = now + rto_;
    }
  }
  // RFC 9293 3.8.6.2.2: announce a reopened window once it grew by min(buffer/2, MSS), so a client
  // that saw a (nearly) closed window need not wait for its persist timer.
  const std::uint32_t wnd = advertised_window();
  const std::uint32_t step = std::min<std::uint32_t>(cfg_.rcv_buffer / 2, effective_mss_);
  const bool window_update = !fin_received_ && wnd > last_window_sent_ &&
                             wnd - last_window_sent_ >= step && last_window_sent_ < step;
  if (ack_pending_ || window_update) emit(out, snd_nxt_, kAck);
}

void Endpoint::on_timer(TimePoint now, Outbox& out) {
  if (state_ == State::Closed) return;
  if (linger_until_ && *linger_until_ <= now) {
    set_state(State::Closed, now);
    return;
  }
  if (stalled_since_ && cfg_.user_timeout > Duration::zero() &&
      *stalled_since_ + cfg_.user_timeout <= now) {
    emit(out, snd_nxt_, kRst | kAck);
    events_ |= event::kStalled;
    set_state(State::Closed, now);
    return;
  }
  if (rto_at_ && *rto_at_ <= now) {
    rto_at_.reset();
    const bool handshaking = state_ == State::SynReceived;
    if (handshaking || snd_una_ < snd_max_) {
      ++retries_;
      const int limit = handshaking ? cfg_.max_synack_retransmits : cfg_.max_retransmits;
      if (retries_ > limit) {
        if (!handshaking) emit(out, snd_nxt_, kRst | kAck);
        events_ |= event::kTimedOut;
        set_state(State::Closed, now);
        return;
      }
      rto_ = std::min(rto_ * 2, cfg_.rto_max);  // RFC 6298 5.5: back off
      rtt_active_ = false;
      ++counters_->tcp_retransmits;
      if (handshaking) {
        synack_retransmitted_ = true;
        emit_synack(now, out);
      } else {
        // RFC 5681 3.1: after a timeout, one segment at a time from SND.UNA (go-back-N).
        ssthresh_ = loss_ssthresh();
        cwnd_ = effective_mss_;
        dupacks_ = 0;
        snd_nxt_ = snd_una_;
        send_data(now, out);
        if (snd_nxt_ == snd_una_ && snd_una_ < (fin_sent_ ? fin_seq_ : snd_max_)) {
          // The window is closed, yet something is unacknowledged: send the first segment anyway
          // (as Linux does). It doubles as a window probe, so a lost window update cannot leave
          // both sides waiting.
          retransmit_first(out);
        }
        if (fin_sent_ && snd_nxt_ == fin_seq_) send_fin(now, out);
      }
      rto_at_ = now + rto_;
    }
  }
  if (persist_at_ && *persist_at_ <= now) {
    persist_at_.reset();
    if (snd_wnd_ == 0 && snd_nxt_ < data_end()) {
      // A probe with an old sequence number draws an ACK carrying the current window and puts no
      // data beyond the window. It never counts as a retransmission.
      emit(out, snd_una_ - 1, kAck);
      ++counters_->tcp_zero_window_probes;
      persist_backoff_ = std::min(persist_backoff_ + 1, 6);
      persist_at_ = now + std::min(rto_ * (1 << persist_backoff_), cfg_.rto_max);
    }
  }
}

std::optional<TimePoint> Endpoint::next_deadline() const {
  if (state_ == State::Closed) return std::nullopt;
  std::optional<TimePoint> stall_deadline;
  if (stalled_since_ && cfg_.user_timeout > Duration::zero()) {
    stall_deadline = *stalled_since_ + cfg_.user_timeout;
  }
  return earliest(earliest(rto_at_, persist_at_), earliest(linger_until_, stall_deadline));
}

}  // namespace mqtt_proxy::tcp
