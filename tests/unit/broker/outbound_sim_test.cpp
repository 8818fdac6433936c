// A seeded simulation of Outbound against a model client over a connection that breaks at random
// points of the QoS 1 and 2 flows, while messages keep coming.
//
// The client follows the receiver's rules: QoS 1, deliver and PUBACK every PUBLISH; QoS 2 "Method
// B" (3.1.1 figure 4.3, v5 4.3.3): remember the packet id from PUBLISH until PUBREL, deliver only
// on the PUBLISH that adds it, PUBREC every time, PUBCOMP every PUBREL. Its session, like the
// broker's, survives the breaks. A break delivers a random prefix of what was in flight each way
// (TCP: what was written before the cut may arrive, the rest is lost) and the replies to that are
// lost too. The connection then stays down for a while and comes back with a random window.
//
// After the churn the link stays up until everything is acknowledged, and then: every QoS 2
// message was delivered exactly once, every QoS 1 message at least once, QoS 0 at most once, and
// the first deliveries of all of them are in the order they were offered. With small limits, what
// is lost is exactly what offer() said it dropped. Along the way: the broker never has more QoS 1
// and 2 PUBLISHes unacknowledged than the window allows (v5 4.9's send quota), never reuses a
// packet id the client still holds, and never sees an acknowledgement it does not expect.
#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "mqtt_proxy/broker/outbound.hpp"
#include "test_util.hpp"

namespace mqtt_proxy::test {
namespace {

using namespace std::chrono_literals;
using broker::AckResult;
using broker::OfferResult;

constexpr int kSteps = 3000;
constexpr std::uint64_t kSeeds = 20;

struct Packet {
  enum class Kind { Publish, Pubrel, Puback, Pubrec, Pubcomp };
  Kind kind = Kind::Publish;
  std::uint16_t packet_id = 0;
  std::uint8_t qos = 0;
  bool dup = false;
  std::uint64_t seq = 0;  // which message (PUBLISH)
};

// The receiving client, Method B for QoS 2.
struct Client {
  std::set<std::uint16_t> held;         // QoS 2 ids between PUBLISH and PUBREL
  std::vector<std::uint64_t> app;       // messages handed to the application, in order
  std::vector<std::string> violations;  // what the broker did wrong

  void receive(const Packet& p, std::deque<Packet>& up) {
    switch (p.kind) {
      case Packet::Kind::Publish:
        if (p.qos == 0) {
          app.push_back(p.seq);
        } else if (p.qos == 1) {
          app.push_back(p.seq);
          up.push_back({Packet::Kind::Puback, p.packet_id});
        } else {
          const bool is_new = held.insert(p.packet_id).second;
          if (is_new) {
            app.push_back(p.seq);
          } else if (!p.dup) {
            violations.push_back("a new QoS 2 PUBLISH reused id " + std::to_string(p.packet_id) +
                                 " that the client still holds");
          }
          up.push_back({Packet::Kind::Pubrec, p.packet_id});
        }
        break;
      case Packet::Kind::Pubrel:
        held.erase(p.packet_id);  // an unknown id is answered all the same (v5: 0x92)
        up.push_back({Packet::Kind::Pubcomp, p.packet_id});
        break;
      default:
        violations.push_back("the broker sent an acknowledgement");
    }
  }
};

struct Limits {
  std::size_t max_queued_messages = 0;
  std::size_t max_queued_bytes = 0;
};

class SimRun {
 public:
  SimRun(std::uint64_t seed, Limits limits) : rng_(seed), ob_(config(limits), pick_window()) {
    window_ = ob_.window();
    quota_ = window_;
  }

  // Starts the run at the packet ids' wrap with flows still open across it: up to three QoS 2
  // messages reach the client, which holds their ids, while their PUBRECs are still on the way;
  // then as many QoS 1 flows open and close as it takes for the next id to be 65535.
  void start_at_the_wrap() {
    const int open = std::min(window_ - 1, 3);
    for (int i = 0; i < open; ++i) offer(2);
    while (!down_.empty()) to_client();
    const auto m = std::make_shared<broker::StoredMessage>();
    m->topic = "warm-up";
    m->qos = 1;
    for (int i = 0; i < 65534 - open; ++i) {
      broker::Delivery d;
      d.message = m;
      d.subscription_qos = 1;
      ob_.offer(std::move(d), now_, out_);
      const std::uint16_t id = out_.at(0).packet_id;
      out_.clear();
      ob_.on_puback(id, now_, out_);
    }
  }

  void churn() {
    for (int step = 0; step < kSteps; ++step) {
      now_ += 1ms;
      const int r = std::uniform_int_distribution<int>(0, 99)(rng_);
      if (connected_) {
        if (r < 30) {
          offer();
        } else if (r < 62) {
          to_client();
        } else if (r < 97) {
          to_broker();
        } else {
          cut();
        }
      } else if (r < 60) {
        offer();
      } else if (r < 70) {
        reconnect();
      }
    }
  }

  // The link stays up until nothing is left to send or acknowledge.
  void settle() {
    if (!connected_) reconnect();
    while (!down_.empty() || !up_.empty()) {
      to_client();
      to_broker();
    }
  }

  const broker::Outbound& outbound() const { return ob_; }
  const Client& client() const { return client_; }
  // Effective QoS of every message offered, by sequence number.
  const std::map<std::uint64_t, std::uint8_t>& offered() const { return offered_; }
  const std::set<std::uint64_t>& refused() const { return refused_; }
  const std::vector<std::string>& violations() const { return violations_; }

 private:
  static broker::OutboundConfig config(Limits limits) {
    broker::OutboundConfig c;
    c.max_queued_messages = limits.max_queued_messages;
    c.max_queued_bytes = limits.max_queued_bytes;
    c.queue_qos0 = true;
    return c;
  }
  std::uint16_t pick_window() {
    return static_cast<std::uint16_t>(std::uniform_int_distribution<int>(1, 8)(rng_));
  }

  // A new message, at random QoS unless `qos` (publisher's and subscription's) is given.
  void offer(std::optional<std::uint8_t> qos = std::nullopt) {
    const std::uint64_t seq = next_seq_++;
    auto m = std::make_shared<broker::StoredMessage>();
    m->topic = std::to_string(seq);
    auto pick_qos = [&] {
      return qos ? *qos : static_cast<std::uint8_t>(std::uniform_int_distribution<int>(0, 2)(rng_));
    };
    m->qos = pick_qos();
    m->payload.resize(std::uniform_int_distribution<std::size_t>(0, 20)(rng_));
    broker::Delivery d;
    d.subscription_qos = pick_qos();
    offered_[seq] = std::min(m->qos, d.subscription_qos);
    d.message = std::move(m);
    const OfferResult r = ob_.offer(std::move(d), now_, out_);
    if (r.outcome == OfferResult::Outcome::Dropped) refused_.insert(seq);
    emit();
  }

  // The Sends of the last call go on the wire (or nowhere, after a cut).
  void emit() {
    for (const broker::Send& s : out_) {
      Packet p;
      p.packet_id = s.packet_id;
      if (s.kind == broker::Send::Kind::Pubrel) {
        p.kind = Packet::Kind::Pubrel;
      } else {
        p.qos = s.qos;
        p.dup = s.dup;
        p.seq = std::stoull(s.message->topic);
        // v5 4.9: each QoS 1 or 2 PUBLISH spends one of the window's send quota.
        if (s.qos > 0 && --quota_ < 0) {
          violations_.push_back("more PUBLISHes unacknowledged than the window of " +
                                std::to_string(window_));
        }
      }
      if (connected_) down_.push_back(p);
    }
    out_.clear();
  }

  void to_client() {
    if (down_.empty()) return;
    const Packet p = down_.front();
    down_.pop_front();
    client_.receive(p, up_);
  }

  void to_broker() {
    if (up_.empty()) return;
    const Packet p = up_.front();
    up_.pop_front();
    AckResult r = AckResult::Unknown;
    switch (p.kind) {
      case Packet::Kind::Puback:
        r = ob_.on_puback(p.packet_id, now_, out_);
        break;
      case Packet::Kind::Pubrec:
        r = ob_.on_pubrec(p.packet_id, 0, now_, out_);
        break;
      case Packet::Kind::Pubcomp:
        r = ob_.on_pubcomp(p.packet_id, now_, out_);
        break;
      default:
        violations_.push_back("the client sent a PUBLISH or PUBREL");
    }
    if (r == AckResult::Unknown || r == AckResult::WrongState) {
      violations_.push_back("an acknowledgement the broker did not expect, id " +
                            std::to_string(p.packet_id));
    }
    // PUBACK and PUBCOMP return a unit of quota, up to the window (v5 4.9).
    if (r == AckResult::Done) quota_ = std::min<int>(quota_ + 1, window_);
    emit();
  }

  // The connection breaks: a prefix of each direction arrives, the replies are lost.
  void cut() {
    const auto up_arrives = std::uniform_int_distribution<std::size_t>(0, up_.size())(rng_);
    const auto down_arrives = std::uniform_int_distribution<std::size_t>(0, down_.size())(rng_);
    connected_ = false;  // what the broker sends from here is lost
    for (std::size_t i = 0; i < up_arrives; ++i) to_broker();
    std::deque<Packet> lost_replies;
    for (std::size_t i = 0; i < down_arrives; ++i) {
      client_.receive(down_.front(), lost_replies);
      down_.pop_front();
    }
    down_.clear();
    up_.clear();
    ob_.disconnected();
  }

  void reconnect() {
    window_ = pick_window();
    quota_ = window_;
    connected_ = true;
    ob_.reconnected(static_cast<std::uint16_t>(window_), now_, out_);
    emit();
  }

  std::mt19937_64 rng_;
  broker::Outbound ob_;
  Client client_;
  std::vector<broker::Send> out_;
  std::deque<Packet> down_, up_;
  bool connected_ = true;
  int window_ = 0;
  int quota_ = 0;
  TimePoint now_ = t0();
  std::uint64_t next_seq_ = 0;
  std::map<std::uint64_t, std::uint8_t> offered_;
  std::set<std::uint64_t> refused_;
  std::vector<std::string> violations_;
};

// What the client's application got, checked against what was offered and what offer() refused.
void check(const SimRun& run, std::uint64_t seed) {
  for (const auto& v : run.violations()) ADD_FAILURE() << "seed " << seed << ": " << v;
  for (const auto& v : run.client().violations) ADD_FAILURE() << "seed " << seed << ": " << v;
  EXPECT_EQ(run.outbound().inflight_count(), 0u) << "seed " << seed;
  EXPECT_EQ(run.outbound().queued_count(), 0u) << "seed " << seed;
  EXPECT_EQ(run.outbound().queued_bytes(), 0u) << "seed " << seed;

  std::map<std::uint64_t, int> times;
  std::uint64_t last_first = 0;
  bool any = false;
  for (const std::uint64_t seq : run.client().app) {
    if (times[seq]++ > 0) continue;  // a QoS 1 duplicate
    EXPECT_TRUE(!any || seq > last_first)
        << "seed " << seed << ": message " << seq << " first delivered after " << last_first;
    last_first = seq;
    any = true;
  }
  std::size_t qos2 = 0;
  for (const auto& [seq, qos] : run.offered()) {
    const int n = times.contains(seq) ? times.at(seq) : 0;
    const bool refused = run.refused().contains(seq);
    EXPECT_FALSE(refused && n > 0) << "seed " << seed << ": refused message " << seq << " came";
    if (qos == 2) {
      ++qos2;
      EXPECT_EQ(n, refused ? 0 : 1) << "seed " << seed << ": QoS 2 message " << seq;
    } else if (qos == 1) {
      if (!refused) {
        EXPECT_GE(n, 1) << "seed " << seed << ": QoS 1 message " << seq << " lost";
      }
    } else {
      EXPECT_LE(n, 1) << "seed " << seed << ": QoS 0 message " << seq;
    }
  }
  EXPECT_GT(qos2, 0u) << "seed " << seed;
}

class OutboundSim : public ::testing::TestWithParam<std::uint64_t> {};

TEST_P(OutboundSim, EveryMessageArrivesAsItsQosPromisesAndInOrder) {
  SimRun run(GetParam(), Limits{});  // no limits: nothing may be dropped
  // For a tenth of the seeds: the warm-up to the wrap is the slow part.
  if (GetParam() % 10 == 0) run.start_at_the_wrap();
  run.churn();
  run.settle();
  check(run, GetParam());
  EXPECT_TRUE(run.refused().empty()) << "seed " << GetParam();
  EXPECT_EQ(run.outbound().dropped_total(), 0u) << "seed " << GetParam();
  EXPECT_GT(run.outbound().resent(), 0u) << "seed " << GetParam();
}

TEST_P(OutboundSim, WhatIsLostIsWhatWasCounted) {
  std::mt19937_64 rng(GetParam() + 1000);
  Limits limits;
  limits.max_queued_messages = std::uniform_int_distribution<std::size_t>(1, 12)(rng);
  limits.max_queued_bytes = std::uniform_int_distribution<std::size_t>(20, 150)(rng);
  SimRun run(GetParam(), limits);
  run.churn();
  run.settle();
  check(run, GetParam());
  EXPECT_EQ(run.outbound().dropped_total(), run.refused().size()) << "seed " << GetParam();
  EXPECT_GT(run.refused().size(), 0u) << "seed " << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Seeds, OutboundSim, ::testing::Range<std::uint64_t>(0, kSeeds));

}  // namespace
}  // namespace mqtt_proxy::test
