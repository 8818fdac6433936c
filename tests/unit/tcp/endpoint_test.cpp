// Trace-style tests of the server-side TCP endpoint. Every test runs at four pairs of initial
// sequence numbers: small ones; both just below 2^32, so every sequence comparison crosses the
// wrap; and both just below 2^31, where a sequence number or a difference cast to a signed 32-bit
// integer changes sign.
#include "mqtt_proxy/tcp/endpoint.hpp"

#include <gtest/gtest.h>

#include "tcp_harness.hpp"

namespace mqtt_proxy::test {
namespace {

using tcp::State;
namespace ev = tcp::event;
using namespace std::chrono_literals;

struct Isns {
  std::uint32_t client;
  std::uint32_t server;
  const char* name;
};

void PrintTo(const Isns& i, std::ostream* os) {
  *os << "client ISN " << i.client << ", server ISS " << i.server;
}

class TcpEndpoint : public ::testing::TestWithParam<Isns> {
 protected:
  TcpHarness make(tcp::EndpointConfig cfg = TcpHarness::default_config(),
                  std::optional<std::uint16_t> mss = 1460, std::uint16_t window = 65535,
                  std::optional<std::uint8_t> wscale = {}) {
    return TcpHarness(GetParam().client, GetParam().server, cfg, mss, window, wscale);
  }
  TcpHarness established(tcp::EndpointConfig cfg = TcpHarness::default_config()) {
    auto t = make(cfg);
    t.establish();
    return t;
  }
};

INSTANTIATE_TEST_SUITE_P(Isn, TcpEndpoint,
                         ::testing::Values(Isns{1000, 5000, "Small"},
                                           Isns{0xfffffff0u, 0xfffffffau, "NearWrap1"},
                                           Isns{0xffffffffu, 0xffffffffu, "NearWrap2"},
                                           Isns{0x7ffffff0u, 0x7ffffffau, "NearSignBit"}),
                         [](const auto& p) { return std::string(p.param.name); });

// --- Handshake -----------------------------------------------------------------------------------

TEST_P(TcpEndpoint, AnswersSynWithSynAckCarryingMss) {
  auto t = make();
  EXPECT_EQ(t.ep->state(), State::SynReceived);
  t.flush();
  const auto s = t.take_one();
  EXPECT_EQ(s.flags, kSyn | kAck);
  EXPECT_EQ(s.seq, t.local_isn);
  EXPECT_EQ(s.ack, Seq{t.client_isn} + 1);
  ASSERT_TRUE(s.mss);
  EXPECT_EQ(*s.mss, 1460);
  EXPECT_EQ(s.window, 65535);
}

TEST_P(TcpEndpoint, HandshakeAckEstablishes) {
  auto t = make();
  t.flush();
  t.take();
  t.inject(kAck, t.client_nxt, "", t.local_isn + 1);
  EXPECT_EQ(t.ep->state(), State::Established);
  EXPECT_TRUE(t.ep->take_events() & ev::kEstablished);
  t.flush();
  t.expect_silence();  // nothing to acknowledge
}

TEST_P(TcpEndpoint, HandshakeAckWithDataDeliversIt) {
  auto t = make();
  t.flush();
  t.take();
  t.inject(kAck | kPsh, t.client_nxt, "hello", t.local_isn + 1);
  EXPECT_EQ(t.ep->state(), State::Established);
  EXPECT_EQ(t.read_all(), "hello");
  t.flush();
  EXPECT_EQ(t.take_one().ack, Seq{t.client_isn} + 6);
}

TEST_P(TcpEndpoint, UnacceptableAckInSynReceivedIsReset) {
  auto t = make();
  t.flush();
  t.take();
  t.inject(kAck, t.client_nxt, "", t.local_isn + 77);
  const auto s = t.take_one();
  EXPECT_EQ(s.flags, kRst);
  EXPECT_EQ(s.seq, t.local_isn + 77);
  EXPECT_EQ(t.ep->state(), State::SynReceived);
}

TEST_P(TcpEndpoint, RetransmittedSynGetsSynAckAgain) {
  auto t = make();
  t.flush();
  t.take();
  t.inject(kSyn, Seq{t.client_isn}, "", Seq{0});
  t.flush();
  const auto s = t.take_one();
  EXPECT_EQ(s.flags, kSyn | kAck);
  EXPECT_EQ(s.seq, t.local_isn);
}

TEST_P(TcpEndpoint, SynAckRetransmittedWithBackoffThenGivesUp) {
  auto cfg = TcpHarness::default_config();
  cfg.max_synack_retransmits = 2;
  auto t = make(cfg);
  t.flush();
  t.take();
  t.advance(999ms);
  t.expect_silence();
  t.advance(1ms);  // initial RTO: 1 s (RFC 6298 2.1)
  EXPECT_EQ(t.take_one().flags, kSyn | kAck);
  t.advance(1999ms);
  t.expect_silence();
  t.advance(1ms);  // backed off to 2 s
  EXPECT_EQ(t.take_one().flags, kSyn | kAck);
  t.advance(4s);
  t.expect_silence();  // no RST for a handshake that never completed
  EXPECT_TRUE(t.ep->is_closed());
  EXPECT_TRUE(t.ep->take_events() & ev::kTimedOut);
}

TEST_P(TcpEndpoint, MssFromSynIsRespectedAndClamped) {
  {
    auto t = make(TcpHarness::default_config(), std::nullopt);
    EXPECT_EQ(t.ep->effective_mss(), 536);  // RFC 9293 default
  }
  {
    auto t = make(TcpHarness::default_config(), 10);
    EXPECT_EQ(t.ep->effective_mss(), 64);  // clamped floor
  }
  {
    auto t = make(TcpHarness::default_config(), 0);
    EXPECT_EQ(t.ep->effective_mss(), 536);  // zero means absent
  }
  {
    auto t = make(TcpHarness::default_config(), 9000);
    EXPECT_EQ(t.ep->effective_mss(), 1460);  // never above ours
  }
}

// --- Receiving -----------------------------------------------------------------------------------

TEST_P(TcpEndpoint, InOrderDataIsDeliveredAndAckedOncePerFlush) {
  auto t = established();
  t.client_send("abc");
  t.client_send("defg");
  EXPECT_TRUE(t.ep->take_events() & ev::kData);
  EXPECT_EQ(t.read_all(), "abcdefg");
  t.flush();
  const auto s = t.take_one();  // one ACK for the whole batch
  EXPECT_EQ(s.flags, kAck);
  EXPECT_EQ(s.ack, t.client_nxt);
  EXPECT_EQ(s.seq, t.server_seq(1));
}

TEST_P(TcpEndpoint, OutOfOrderSegmentIsHeldUntilTheHoleFills) {
  auto t = established();
  const Seq base = t.client_nxt;
  t.inject(kAck, base + 3, "def");
  EXPECT_EQ(t.read_all(), "");
  const auto dup = t.take_one();  // duplicate ACK at once
  EXPECT_EQ(dup.ack, base);
  t.inject(kAck, base + 6, "ghi");
  EXPECT_EQ(t.take_one().ack, base);
  t.inject(kAck, base, "abc");
  EXPECT_EQ(t.read_all(), "abcdefghi");
  t.flush();
  EXPECT_EQ(t.take_one().ack, base + 9);
  EXPECT_EQ(t.counters->tcp_out_of_order, 2u);
}

TEST_P(TcpEndpoint, DuplicateSegmentIsIgnoredAndAcked) {
  auto t = established();
  const Seq base = t.client_nxt;
  t.client_send("abc");
  EXPECT_EQ(t.read_all(), "abc");
  t.flush();
  t.take();
  t.inject(kAck, base, "abc");  // the client did not see our ACK
  EXPECT_EQ(t.read_all(), "");
  const auto s = t.take_one();
  EXPECT_EQ(s.ack, base + 3);
  EXPECT_EQ(t.counters->tcp_duplicate_segments, 1u);
}

TEST_P(TcpEndpoint, OverlappingRetransmissionIsTrimmedFirstDataWins) {
  auto t = established();
  const Seq base = t.client_nxt;
  t.inject(kAck, base, "abcd");
  t.inject(kAck, base + 2, "XYef");  // overlaps "cd" with other bytes
  EXPECT_EQ(t.read_all(), "abcdef");
  t.inject(kAck, base + 10, "kl");
  t.inject(kAck, base + 8, "ijKL");  // overlaps queued "kl"
  t.inject(kAck, base + 6, "gh");
  EXPECT_EQ(t.read_all(), "ghijkl");
  EXPECT_EQ(t.counters->tcp_overlap_mismatch_bytes, 2u);
}

TEST_P(TcpEndpoint, SegmentBeyondTheWindowIsDroppedWithRateLimitedAck) {
  auto t = established();
  const Seq base = t.client_nxt;
  t.inject(kAck, base + 70000, "zz");
  EXPECT_EQ(t.take_one().ack, base);
  t.inject(kAck, base + 70000, "zz");
  t.expect_silence();  // within 500 ms of the last such ACK
  t.advance(500ms);
  t.inject(kAck, base + 70000, "zz");
  EXPECT_EQ(t.take_one().ack, base);
  EXPECT_EQ(t.read_all(), "");
}

TEST_P(TcpEndpoint, WindowShrinksWithUnreadDataAndClosesAtZero) {
  auto cfg = TcpHarness::default_config();
  cfg.rcv_buffer = 10;
  auto t = established(cfg);
  t.client_send("0123456");
  t.flush();
  EXPECT_EQ(t.take_one().window, 3);
  t.client_send("789");
  t.flush();
  EXPECT_EQ(t.take_one().window, 0);
  const Seq before = t.client_nxt;
  t.inject(kAck, before, "X");  // no room: dropped, ACK repeats the zero window
  EXPECT_EQ(t.take_one().ack, before);
  EXPECT_EQ(t.read_all(), "0123456789");
  t.flush();
  const auto update = t.take_one();  // the window reopened: tell the client
  EXPECT_EQ(update.window, 10);
  EXPECT_EQ(update.ack, before);
  t.flush();
  t.expect_silence();
}

TEST_P(TcpEndpoint, AckOfUnsentDataIsAnsweredAndTheSegmentDropped) {
  auto t = established();
  t.inject(kAck | kPsh, t.client_nxt, "data", t.local_isn + 500);
  EXPECT_EQ(t.read_all(), "");
  const auto s = t.take_one();
  EXPECT_EQ(s.flags, kAck);
  EXPECT_EQ(s.seq, t.server_seq(1));
}

// --- Sending -------------------------------------------------------------------------------------

TEST_P(TcpEndpoint, SendsDataInMssSizedSegmentsWithinPeerWindow) {
  auto t = make(TcpHarness::default_config(), 100, 250);
  t.establish();
  t.app_send(std::string(400, 'x'));
  t.flush();
  auto s = t.take();
  ASSERT_EQ(s.size(), 3u);  // 100 + 100 + 50: the window is 250
  EXPECT_EQ(s[0].seq, t.server_seq(1));
  EXPECT_EQ(s[0].payload.size(), 100u);
  EXPECT_EQ(s[1].seq, t.server_seq(101));
  EXPECT_EQ(s[2].payload.size(), 50u);
  EXPECT_FALSE(s[0].flags & kPsh);
  t.client_ack(t.server_seq(251), 250);
  t.flush();
  s = t.take();
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].seq, t.server_seq(251));
  EXPECT_EQ(s[1].payload.size(), 50u);
  EXPECT_TRUE(s[1].flags & kPsh);  // the last bytes queued
  t.client_ack(t.server_seq(401));
  EXPECT_EQ(t.ep->queued_bytes(), 0u);
}

TEST_P(TcpEndpoint, DataAndAckShareOneSegment) {
  auto t = established();
  t.client_send("ping");
  t.app_send("pong");
  t.flush();
  const auto s = t.take_one();
  EXPECT_EQ(s.payload, "pong");
  EXPECT_EQ(s.ack, t.client_nxt);
}

TEST_P(TcpEndpoint, RetransmitsUnackedDataAfterRtoWithBackoff) {
  auto t = established();  // handshake RTT 0: RTO is the 200 ms floor
  t.app_send("abc");
  t.flush();
  EXPECT_EQ(t.take_one().payload, "abc");
  t.advance(199ms);
  t.expect_silence();
  t.advance(1ms);
  auto s = t.take_one();
  EXPECT_EQ(s.seq, t.server_seq(1));
  EXPECT_EQ(s.payload, "abc");
  t.advance(399ms);
  t.expect_silence();
  t.advance(1ms);  // doubled
  EXPECT_EQ(t.take_one().payload, "abc");
  t.client_ack(t.server_seq(4));
  t.advance(10s);
  t.expect_silence();
  EXPECT_EQ(t.counters->tcp_retransmits, 2u);
}

TEST_P(TcpEndpoint, KarnIgnoresRttOfRetransmittedSegments) {
  auto t = established();
  const auto srtt_before = t.ep->srtt();
  t.app_send("abc");
  t.flush();
  t.take();
  t.advance(200ms);
  t.take();
  t.advance(50ms);
  t.client_ack(t.server_seq(4));
  EXPECT_EQ(t.ep->srtt(), srtt_before);  // no sample from the retransmitted segment
  t.app_send("def");
  t.flush();
  t.take();
  t.now += 40ms;
  t.client_ack(t.server_seq(7));
  ASSERT_TRUE(t.ep->srtt());
  EXPECT_GT(*t.ep->srtt(), Duration::zero());
}

TEST_P(TcpEndpoint, RttSampleSetsRto) {
  auto t = make();
  t.flush();
  t.take();
  t.now += 100ms;
  t.inject(kAck, t.client_nxt, "", t.local_isn + 1);
  // RFC 6298 2.2: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4 RTTVAR = 300 ms
  ASSERT_TRUE(t.ep->srtt());
  EXPECT_EQ(*t.ep->srtt(), Duration(100ms));
  EXPECT_EQ(t.ep->rto(), Duration(300ms));
}

// RFC 6298 5.7: when the SYN-ACK had to be retransmitted, the RTO for data starts at 3 s and stays
// there until an RTT sample exists (Karn's rule gives none from the handshake).
TEST_P(TcpEndpoint, RtoIsThreeSecondsAfterARetransmittedSynAckUntilAnRttSample) {
  auto t = make();
  t.flush();
  EXPECT_EQ(t.take_one().flags, kSyn | kAck);
  t.advance(1s);
  EXPECT_EQ(t.take_one().flags, kSyn | kAck);  // retransmitted
  t.now += 10ms;
  t.client_ack(t.local_isn + 1);
  ASSERT_EQ(t.ep->state(), State::Established);
  EXPECT_FALSE(t.ep->srtt());  // the ACK may be for either SYN-ACK: no sample
  EXPECT_EQ(t.ep->rto(), Duration(3s));
  t.app_send("abc");
  t.flush();
  EXPECT_EQ(t.take_one().payload, "abc");
  t.advance(2999ms);
  t.expect_silence();
  t.advance(1ms);
  EXPECT_EQ(t.take_one().payload, "abc");  // at 3 s, not at the initial 1 s
  // The retransmission is not timed either; the next new segment gives the first sample.
  t.now += 50ms;
  t.client_ack(t.server_seq(4));
  EXPECT_FALSE(t.ep->srtt());
  EXPECT_EQ(t.ep->rto(), Duration(3s));  // forward progress ends the backoff, not the 3 s floor
  t.app_send("def");
  t.flush();
  EXPECT_EQ(t.take_one().payload, "def");
  t.now += 100ms;
  t.client_ack(t.server_seq(7));
  ASSERT_TRUE(t.ep->srtt());
  EXPECT_EQ(*t.ep->srtt(), Duration(100ms));
  EXPECT_EQ(t.ep->rto(), Duration(300ms));  // RFC 6298 2.2 from the sample; the 3 s are gone
}

// Without a SYN-ACK retransmission there is no 3 s floor: an endpoint with no RTT sample (the
// cookie's SYN-ACK was never timed) uses the initial RTO of 1 s (RFC 6298 2.1).
TEST_P(TcpEndpoint, RtoWithoutASampleIsTheInitialOneWhenTheSynAckWasNotRetransmitted) {
  const Seq iss{GetParam().server};
  tcp::SegmentIn ack;
  ack.seq = Seq{GetParam().client} + 1;
  ack.ack = iss + 1;
  ack.flags = kAck;
  ack.window = 65535;
  metrics::Counters counters;
  auto ep = tcp::Endpoint::from_cookie(TcpHarness::default_config(), ack, iss, 1460, counters);
  RecordingOutbox out;
  ep.on_segment(ack, t0(), out);
  ASSERT_EQ(ep.state(), State::Established);
  EXPECT_FALSE(ep.srtt());
  EXPECT_EQ(ep.rto(), Duration(1s));
  ep.send(as_bytes("abc"));
  ep.flush(t0(), out);
  ASSERT_EQ(out.sent.size(), 1u);
  EXPECT_EQ(out.sent[0].payload, "abc");
  ep.on_timer(t0() + 999ms, out);
  EXPECT_EQ(out.sent.size(), 1u);
  ep.on_timer(t0() + 1s, out);
  ASSERT_EQ(out.sent.size(), 2u);
  EXPECT_EQ(out.sent[1].seq, iss + 1);
  EXPECT_EQ(out.sent[1].payload, "abc");
}

TEST_P(TcpEndpoint, AbortsAfterRetransmissionsRunOut) {
  auto cfg = TcpHarness::default_config();
  cfg.max_retransmits = 3;
  cfg.user_timeout = Duration::zero();  // the retry limit, not the stall clock, ends this one
  auto t = established(cfg);
  t.app_send("abc");
  t.flush();
  t.take();
  for (int i = 0; i < 3; ++i) {
    t.advance(60s);
    EXPECT_EQ(t.take_one().payload, "abc");
  }
  t.advance(60s);
  const auto s = t.take_one();
  EXPECT_TRUE(s.flags & kRst);
  EXPECT_TRUE(t.ep->is_closed());
  const auto e = t.ep->take_events();
  EXPECT_TRUE(e & ev::kTimedOut);
  EXPECT_TRUE(e & ev::kClosed);
}

TEST_P(TcpEndpoint, ThreeDuplicateAcksTriggerFastRetransmit) {
  auto t = established();
  t.app_send(std::string(1460 * 4, 'x'));
  t.flush();
  EXPECT_EQ(t.take().size(), 4u);
  const Seq una = t.server_seq(1);
  t.client_ack(una);
  t.client_ack(una);
  t.expect_silence();
  t.client_ack(una);  // the third duplicate
  const auto s = t.take_one();
  EXPECT_EQ(s.seq, una);
  EXPECT_EQ(s.payload.size(), 1460u);
  EXPECT_EQ(t.counters->tcp_fast_retransmits, 1u);
}

TEST_P(TcpEndpoint, ZeroWindowIsProbedAndReopens) {
  auto t = established();
  t.client_ack(t.server_seq(1), 0);
  t.app_send("abc");
  t.flush();
  t.expect_silence();  // no room at the client
  t.advance(200ms);
  const auto probe = t.take_one();
  EXPECT_EQ(probe.seq, t.server_seq(0));  // an old sequence number draws an ACK
  EXPECT_TRUE(probe.payload.empty());
  t.client_ack(t.server_seq(1), 1000);  // window update
  t.flush();
  EXPECT_EQ(t.take_one().payload, "abc");
}

// --- Closing -------------------------------------------------------------------------------------

TEST_P(TcpEndpoint, PeerFinThenOurFinClosesViaLastAck) {
  auto t = established();
  t.client_fin();
  EXPECT_EQ(t.ep->state(), State::CloseWait);
  EXPECT_TRUE(t.ep->take_events() & ev::kPeerFin);
  t.ep->close();
  EXPECT_EQ(t.ep->state(), State::LastAck);
  t.flush();
  const auto s = t.take_one();
  EXPECT_EQ(s.flags, kFin | kAck);
  EXPECT_EQ(s.ack, t.client_nxt);  // acknowledges the client's FIN
  t.client_ack(t.server_seq(2));
  EXPECT_TRUE(t.ep->is_closed());
}

TEST_P(TcpEndpoint, FinWithDataDeliversDataThenEof) {
  auto t = established();
  t.client_send("bye", kFin);
  EXPECT_EQ(t.read_all(), "bye");
  EXPECT_EQ(t.ep->state(), State::CloseWait);
  t.flush();
  EXPECT_EQ(t.take_one().ack, t.client_nxt);
}

TEST_P(TcpEndpoint, FinBeforeAHoleWaitsForTheHole) {
  auto t = established();
  const Seq base = t.client_nxt;
  t.inject(kAck | kFin, base + 3, "def");
  EXPECT_EQ(t.ep->state(), State::Established);
  t.take();
  t.inject(kAck, base, "abc");
  EXPECT_EQ(t.read_all(), "abcdef");
  EXPECT_EQ(t.ep->state(), State::CloseWait);
  t.flush();
  EXPECT_EQ(t.take_one().ack, base + 7);
}

TEST_P(TcpEndpoint, OurFinFirstGoesThroughTimeWait) {
  auto t = established();
  t.app_send("last");
  t.ep->close();
  EXPECT_EQ(t.ep->state(), State::FinWait1);
  t.flush();
  const auto s = t.take_one();  // FIN rides on the last data
  EXPECT_EQ(s.payload, "last");
  EXPECT_TRUE(s.flags & kFin);
  t.client_ack(t.server_seq(6));
  EXPECT_EQ(t.ep->state(), State::FinWait2);
  t.client_fin();
  EXPECT_EQ(t.ep->state(), State::TimeWait);
  t.flush();
  EXPECT_EQ(t.take_one().ack, t.client_nxt);
  t.advance(59s);
  EXPECT_EQ(t.ep->state(), State::TimeWait);
  t.advance(1s);
  EXPECT_TRUE(t.ep->is_closed());
}

// A client that acknowledges our FIN and never sends its own would hold the connection in
// FIN-WAIT-2 forever; it is freed fin_wait2_timeout after that ACK (as Linux's tcp_fin_timeout).
TEST_P(TcpEndpoint, FinWait2WithoutThePeersFinEndsAtTheTimeout) {
  auto cfg = TcpHarness::default_config();
  cfg.fin_wait2_timeout = 30s;  // not TIME-WAIT's 60 s, so it is this timer that ends it
  auto t = established(cfg);
  t.ep->close();
  t.flush();
  EXPECT_EQ(t.take_one().flags, kFin | kAck);
  t.advance(150ms);  // the ACK comes later than the FIN left, within the FIN's RTO
  t.expect_silence();
  t.client_ack(t.server_seq(2));
  EXPECT_EQ(t.ep->state(), State::FinWait2);
  t.ep->take_events();
  const TimePoint acked = t.now;
  EXPECT_EQ(t.ep->next_deadline(), acked + 30s);  // counted from the ACK, not from close()
  t.advance(29s);
  t.advance(999ms);
  EXPECT_EQ(t.ep->state(), State::FinWait2);
  EXPECT_FALSE(t.ep->take_events() & ev::kClosed);
  t.advance(1ms);
  EXPECT_TRUE(t.ep->is_closed());
  EXPECT_TRUE(t.ep->take_events() & ev::kClosed);
  t.expect_silence();  // freed quietly: no RST, no retransmitted FIN
  EXPECT_FALSE(t.ep->next_deadline());
}

TEST_P(TcpEndpoint, RetransmittedFinInTimeWaitIsAckedAgain) {
  auto t = established();
  t.ep->close();
  t.flush();
  t.take();
  t.client_ack(t.server_seq(2));
  t.client_fin();
  t.flush();
  t.take();
  t.inject(kAck | kFin, t.client_nxt - 1, "");  // our ACK was lost
  EXPECT_EQ(t.take_one().ack, t.client_nxt);
}

TEST_P(TcpEndpoint, SimultaneousCloseGoesThroughClosing) {
  auto t = established();
  t.ep->close();
  t.flush();
  t.take();
  t.client_fin();  // crosses our FIN: it does not acknowledge it
  EXPECT_EQ(t.ep->state(), State::Closing);
  t.client_ack(t.server_seq(2));
  EXPECT_EQ(t.ep->state(), State::TimeWait);
}

TEST_P(TcpEndpoint, OurFinIsRetransmitted) {
  auto t = established();
  t.ep->close();
  t.flush();
  EXPECT_EQ(t.take_one().flags, kFin | kAck);
  t.advance(200ms);
  const auto s = t.take_one();
  EXPECT_EQ(s.flags, kFin | kAck);
  EXPECT_EQ(s.seq, t.server_seq(1));
}

TEST_P(TcpEndpoint, DataAfterPeerFinIsIgnored) {
  auto t = established();
  t.client_fin();
  t.read_all();
  t.inject(kAck | kPsh, t.client_nxt, "late");
  EXPECT_EQ(t.read_all(), "");
}

// --- Resets and RFC 5961 ------------------------------------------------------------------------

TEST_P(TcpEndpoint, RstAtRcvNxtResets) {
  auto t = established();
  t.inject(kRst, t.client_nxt, "");
  EXPECT_TRUE(t.ep->is_closed());
  const auto e = t.ep->take_events();
  EXPECT_TRUE(e & ev::kReset);
  t.flush();
  t.expect_silence();
}

TEST_P(TcpEndpoint, InWindowRstNotAtRcvNxtDrawsChallengeAck) {
  auto t = established();
  t.inject(kRst, t.client_nxt + 100, "");
  EXPECT_EQ(t.ep->state(), State::Established);
  const auto s = t.take_one();
  EXPECT_EQ(s.flags, kAck);
  EXPECT_EQ(s.ack, t.client_nxt);
}

TEST_P(TcpEndpoint, OutOfWindowRstIsDroppedSilently) {
  auto t = established();
  t.inject(kRst, t.client_nxt + 100000, "");
  t.inject(kRst, t.client_nxt - 1, "");
  EXPECT_EQ(t.ep->state(), State::Established);
  t.expect_silence();
}

TEST_P(TcpEndpoint, SynInEstablishedDrawsChallengeAck) {
  auto t = established();
  t.inject(kSyn, t.client_nxt + 10, "");
  EXPECT_EQ(t.ep->state(), State::Established);
  EXPECT_EQ(t.take_one().flags, kAck);
}

TEST_P(TcpEndpoint, ChallengeAcksAreRateLimited) {
  auto cfg = TcpHarness::default_config();
  cfg.challenge_acks_per_second = 3;
  auto t = established(cfg);
  for (int i = 0; i < 10; ++i) t.inject(kRst, t.client_nxt + 100, "");
  EXPECT_EQ(t.take().size(), 3u);
  t.advance(1s);
  t.inject(kRst, t.client_nxt + 100, "");
  EXPECT_EQ(t.take().size(), 1u);
}

TEST_P(TcpEndpoint, AckFarBelowSndUnaDrawsChallengeAck) {
  auto t = established();
  t.inject(kAck | kPsh, t.client_nxt, "x", t.local_isn - 200000);
  EXPECT_EQ(t.read_all(), "");
  EXPECT_EQ(t.take_one().flags, kAck);
}

TEST_P(TcpEndpoint, AbortSendsRst) {
  auto t = established();
  t.ep->abort(t.out);
  const auto s = t.take_one();
  EXPECT_TRUE(s.flags & kRst);
  EXPECT_EQ(s.seq, t.server_seq(1));
  EXPECT_TRUE(t.ep->is_closed());
}

// --- Sequence wraparound end to end -------------------------------------------------------------

TEST_P(TcpEndpoint, LongTransferBothWaysAcrossTheWrap) {
  auto t = established();
  std::string received;
  std::string expected;
  for (int i = 0; i < 200; ++i) {
    const std::string chunk(97, static_cast<char>('a' + i % 26));
    t.client_send(chunk);
    expected += chunk;
    received += t.read_all();
    t.app_send(chunk);
    t.flush();
    for (const auto& s : t.take()) {
      if (!s.payload.empty()) t.client_ack(s.seq + static_cast<std::uint32_t>(s.payload.size()));
    }
  }
  EXPECT_EQ(received, expected);
  EXPECT_EQ(t.ep->queued_bytes(), 0u);
  EXPECT_EQ(t.ep->snd_una(), t.server_seq(1 + 200 * 97));
}

// --- Window scaling (RFC 7323) -------------------------------------------------------------------

TEST(WindowScale, ShiftIsTheSmallestThatFitsTheBuffer) {
  EXPECT_EQ(tcp::window_scale_for(65535), 0);
  EXPECT_EQ(tcp::window_scale_for(65536), 1);
  EXPECT_EQ(tcp::window_scale_for(262144), 3);
  EXPECT_EQ(tcp::window_scale_for(0xffffffffu), 14);
}

TEST_P(TcpEndpoint, NoWindowScaleOfferedMeansNoneAnsweredAndAWindowBelow64k) {
  auto cfg = TcpHarness::default_config();
  cfg.rcv_buffer = 262144;
  auto t = make(cfg);
  t.flush();
  const auto synack = t.take_one();
  EXPECT_FALSE(synack.wscale);
  EXPECT_EQ(synack.window, 65535);
  t.client_ack(t.local_isn + 1, 1000);
  EXPECT_EQ(t.ep->snd_wnd(), 1000u);  // the field as is
  t.client_send("x");
  t.flush();
  EXPECT_EQ(t.take_one().window, 65534);
}

TEST_P(TcpEndpoint, ScalesBothWindowsWhenTheClientOffersIt) {
  auto cfg = TcpHarness::default_config();
  cfg.rcv_buffer = 262144;
  auto t = make(cfg, 1460, 65535, 7);
  t.flush();
  const auto synack = t.take_one();
  ASSERT_TRUE(synack.wscale);
  EXPECT_EQ(*synack.wscale, 3);
  EXPECT_EQ(synack.window, 65535);  // a SYN-ACK's window is never scaled
  // The client's window fields are now shifted by 7.
  t.client_ack(t.local_isn + 1, 1000);
  EXPECT_EQ(t.ep->state(), State::Established);
  EXPECT_EQ(t.ep->snd_wnd(), 128000u);
  // Ours by 3: 8000 unread bytes leave (262144 - 8000) >> 3.
  t.client_send(std::string(8000, 'a'));
  t.flush();
  EXPECT_EQ(t.take_one().window, (262144 - 8000) >> 3);
  // The whole window can be filled, beyond 65535.
  for (int i = 0; i < 200; ++i) t.client_send(std::string(1000, 'b'));
  EXPECT_EQ(t.read_all().size(), 208000u);
}

TEST_P(TcpEndpoint, ScaledPeerWindowLetsMoreThan64kBeInFlight) {
  auto t = make(TcpHarness::default_config(), 1460, 65535, 4);
  t.flush();
  t.take();
  t.client_ack(t.local_isn + 1, 0x2000);  // 128 KiB
  ASSERT_EQ(t.ep->snd_wnd(), 0x20000u);
  t.app_send(std::string(300000, 'z'));
  // Slow start: every acknowledged segment grows the congestion window by one MSS. Acknowledge the
  // oldest segment in flight, one at a time, until the window is far beyond 64 KiB.
  std::vector<Sent> flight;
  for (int i = 0; i < 100; ++i) {
    t.flush();
    for (auto& s : t.take()) flight.push_back(std::move(s));
    ASSERT_FALSE(flight.empty());
    const auto& first = flight.front();
    t.client_ack(first.seq + static_cast<std::uint32_t>(first.payload.size()), 0x2000);
    flight.erase(flight.begin());
  }
  t.flush();
  EXPECT_GT(t.ep->snd_nxt() - t.ep->snd_una(), 65535u);
  EXPECT_LE(t.ep->snd_nxt() - t.ep->snd_una(), 0x20000u);
}

TEST_P(TcpEndpoint, WindowScaleAbove14IsUsedAs14) {
  auto t = make(TcpHarness::default_config(), 1460, 65535, 20);
  t.flush();
  t.take();
  t.inject(kAck, t.client_nxt, "", t.local_isn + 1, 1);
  EXPECT_EQ(t.ep->snd_wscale(), 14);
  EXPECT_EQ(t.ep->snd_wnd(), 1u << 14);
}

// --- Stall (user) timeout and zero-window probing ------------------------------------------------

TEST_P(TcpEndpoint, ReaderThatNeverOpensItsWindowIsAbortedAfterTheStallTimeout) {
  auto cfg = TcpHarness::default_config();
  cfg.user_timeout = 30s;
  auto t = established(cfg);
  t.client_ack(t.local_isn + 1, 0);  // the client stops reading
  t.app_send("queued");
  t.flush();
  t.expect_silence();  // nothing fits a zero window
  // The client answers every probe with the same zero window; the connection stays until 30 s.
  for (int i = 0; i < 29; ++i) {
    t.advance(1s);
    for (const auto& s : t.take()) {
      EXPECT_EQ(s.seq, t.local_isn);  // probes carry an old sequence number, no data
      t.client_ack(t.local_isn + 1, 0);
    }
  }
  EXPECT_EQ(t.ep->state(), State::Established);
  EXPECT_GT(t.counters->tcp_zero_window_probes, 0u);
  t.advance(1s);
  const auto s = t.take();
  ASSERT_FALSE(s.empty());
  EXPECT_TRUE(s.back().flags & kRst);
  EXPECT_TRUE(t.ep->is_closed());
  const auto e = t.ep->take_events();
  EXPECT_TRUE(e & ev::kStalled);
}

TEST_P(TcpEndpoint, AcknowledgementProgressRestartsTheStallClock) {
  auto cfg = TcpHarness::default_config();
  cfg.user_timeout = 30s;
  auto t = established(cfg);
  t.client_ack(t.local_isn + 1, 3);  // a tiny window: three bytes at a time
  t.app_send("abcdefghijkl");
  t.flush();
  EXPECT_EQ(t.take_one().payload, "abc");
  t.now += 20s;
  t.client_ack(t.local_isn + 4, 3);
  t.flush();
  EXPECT_EQ(t.take_one().payload, "def");
  t.advance(20s);  // 40 s since the data was queued, 20 s since the last progress
  EXPECT_EQ(t.ep->state(), State::Established);
  t.take();
  t.advance(11s);
  EXPECT_TRUE(t.ep->is_closed());
  EXPECT_TRUE(t.ep->take_events() & ev::kStalled);
}

TEST_P(TcpEndpoint, IdleConnectionWithNothingQueuedNeverStalls) {
  auto cfg = TcpHarness::default_config();
  cfg.user_timeout = 30s;
  auto t = established(cfg);
  t.app_send("x");
  t.flush();
  t.take();
  t.client_ack(t.local_isn + 2);
  t.flush();
  EXPECT_FALSE(t.ep->stalled_since());
  EXPECT_FALSE(t.ep->next_deadline());
  t.advance(3600s);
  EXPECT_EQ(t.ep->state(), State::Established);
}

// --- SYN cookies: an endpoint born established ---------------------------------------------------

TEST_P(TcpEndpoint, EndpointFromCookieTakesTheCompletingAckAndItsData) {
  const Seq iss{GetParam().server};
  const Seq client_isn{GetParam().client};
  tcp::SegmentIn ack;
  ack.seq = client_isn + 1;
  ack.ack = iss + 1;
  ack.flags = kAck | kPsh;
  ack.window = 4000;
  const auto data = as_bytes("hello");
  ack.payload = data;
  metrics::Counters counters;
  auto ep = tcp::Endpoint::from_cookie(TcpHarness::default_config(), ack, iss, 1200, counters);
  RecordingOutbox out;
  ep.on_segment(ack, t0(), out);
  EXPECT_EQ(ep.state(), State::Established);
  EXPECT_EQ(ep.effective_mss(), 1200);
  EXPECT_EQ(ep.snd_wnd(), 4000u);
  EXPECT_EQ(str(ep.received()), "hello");
  const auto e = ep.take_events();
  EXPECT_TRUE(e & ev::kEstablished);
  EXPECT_TRUE(e & ev::kData);
  ep.flush(t0(), out);
  ASSERT_EQ(out.sent.size(), 1u);
  EXPECT_EQ(out.sent[0].flags, kAck);  // no SYN-ACK: the cookie's was the one
  EXPECT_EQ(out.sent[0].seq, iss + 1);
  EXPECT_EQ(out.sent[0].ack, client_isn + 6);
}

// Found by the simulation: a retransmission once carried bytes queued after the original send,
// beyond SND.MAX, and the peer's ACK for them was then refused as acknowledging unsent data.
TEST_P(TcpEndpoint, RetransmissionCarriesOnlyWhatWasSentBefore) {
  auto t = established();
  t.client_ack(t.local_isn + 1, 3);
  t.app_send("abc");
  t.flush();
  EXPECT_EQ(t.take_one().payload, "abc");
  t.app_send("defgh");  // queued, but the window is full
  t.flush();
  t.expect_silence();
  t.advance(1s);
  EXPECT_EQ(t.take_one().payload, "abc");
}

// Found by the simulation: with the peer's window closed and its window update lost, the
// retransmission timer must still send something, or both sides wait forever.
TEST_P(TcpEndpoint, TimeoutWithAClosedWindowStillSendsTheFirstSegment) {
  auto t = established();
  t.app_send("abcdef");
  t.flush();
  EXPECT_EQ(t.take_one().payload, "abcdef");
  t.client_ack(t.local_isn + 4, 0);  // three bytes taken, then the window closed
  t.flush();
  t.expect_silence();
  t.advance(2s);
  const auto s = t.take_one();
  EXPECT_EQ(s.seq, t.local_isn + 4);
  EXPECT_EQ(s.payload, "def");
  t.client_ack(t.local_isn + 7, 100);
  EXPECT_EQ(t.ep->queued_bytes(), 0u);
}

TEST_P(TcpEndpoint, ForwardProgressEndsTheRetransmissionBackoff) {
  auto t = established();
  t.app_send("abc");
  t.flush();
  t.take();
  // The handshake's RTT sample was 0 ms, so the RTO starts at its 200 ms floor.
  t.advance(200ms);
  t.advance(400ms);
  t.take();
  EXPECT_EQ(t.ep->rto(), Duration(800ms));
  t.client_ack(t.local_isn + 4);
  EXPECT_EQ(t.ep->rto(), Duration(200ms));
}

}  // namespace
}  // namespace mqtt_proxy::test
