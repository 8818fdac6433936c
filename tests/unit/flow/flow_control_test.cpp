#include "mqtt_proxy/flow/flow_control.hpp"

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace mqtt_proxy::test {
namespace {

using namespace std::chrono_literals;
using flow::FlowControl;
using flow::Id;

constexpr Id kSub = 7;  // a local subscriber (connection handle 7)
constexpr Id kSub2 = 8;
constexpr Id kPub = 1;  // a local publisher
constexpr Id kPub2 = 2;
const Id kPeerSource = flow::peer(0);

flow::FlowConfig config(flow::Policy policy = flow::Policy::Backpressure) {
  flow::FlowConfig c;
  c.policy = policy;
  c.high_water = 1000;
  c.low_water = 500;
  c.grace = 1500ms;
  return c;
}

class Flow : public ::testing::Test {
 protected:
  std::vector<Id> resumed() {
    auto r = f_.resumed();
    f_.resumed().clear();
    return r;
  }
  metrics::Counters c_;
  FlowControl f_{config(), c_};
  TimePoint now_ = t0();
};

TEST_F(Flow, NothingPausesBelowTheHighWaterMark) {
  f_.on_queued(kPub, kSub, 1000, now_);
  EXPECT_FALSE(f_.is_paused(kPub));
  EXPECT_FALSE(f_.is_congested(kSub));
  EXPECT_FALSE(f_.next_deadline());
}

TEST_F(Flow, ACongestedSinkPausesEverySourceThatFeedsItOnce) {
  f_.on_queued(kPub, kSub, 1001, now_);
  EXPECT_TRUE(f_.is_congested(kSub));
  EXPECT_TRUE(f_.is_paused(kPub));
  f_.on_queued(kPub, kSub, 1100, now_);  // the same source again: still one wait
  f_.on_queued(kPeerSource, kSub, 1200, now_);
  f_.on_queued(flow::kNone, kSub, 1300, now_);  // a will: nobody to pause
  EXPECT_TRUE(f_.is_paused(kPeerSource));
  EXPECT_EQ(f_.paused_count(), 2u);
  EXPECT_EQ(c_.flow_sinks_congested, 1u);
  EXPECT_EQ(c_.flow_sources_paused, 2u);
  EXPECT_FALSE(f_.is_paused(kPub2));  // it sends elsewhere
}

TEST_F(Flow, SourcesResumeBelowTheLowWaterMarkNotBefore) {
  f_.on_queued(kPub, kSub, 2000, now_);
  f_.update(kSub, 800, now_ + 10ms, now_ + 10ms);  // draining, between the marks
  EXPECT_TRUE(f_.is_paused(kPub));
  EXPECT_TRUE(resumed().empty());
  f_.update(kSub, 500, now_ + 20ms, now_ + 20ms);
  EXPECT_FALSE(f_.is_paused(kPub));
  EXPECT_FALSE(f_.is_congested(kSub));
  EXPECT_EQ(resumed(), (std::vector<Id>{kPub}));
}

TEST_F(Flow, ASourceWaitingForTwoSinksResumesWhenBothDrained) {
  f_.on_queued(kPub, kSub, 2000, now_);
  f_.on_queued(kPub, kSub2, 2000, now_);
  f_.update(kSub, 0, now_, now_);
  EXPECT_TRUE(f_.is_paused(kPub));
  EXPECT_TRUE(resumed().empty());
  f_.update(kSub2, 0, now_, now_);
  EXPECT_EQ(resumed(), (std::vector<Id>{kPub}));
}

TEST_F(Flow, ASinkWithoutProgressForTheGraceIsStuckAndReleasesItsSources) {
  f_.on_queued(kPub, kSub, 2000, now_);
  EXPECT_EQ(*f_.next_deadline(), now_ + 1500ms);
  // Progress at +1 s moves the deadline: the grace counts from the last progress.
  f_.update(kSub, 1800, now_ + 1s, now_ + 1s);
  EXPECT_EQ(*f_.next_deadline(), now_ + 2500ms);
  f_.update(kSub, 1800, now_ + 1s, now_ + 2499ms);
  EXPECT_FALSE(f_.is_stuck(kSub));
  f_.update(kSub, 1800, now_ + 1s, now_ + 2500ms);
  EXPECT_TRUE(f_.is_stuck(kSub));
  EXPECT_EQ(c_.flow_sinks_stuck, 1u);
  EXPECT_EQ(resumed(), (std::vector<Id>{kPub}));
  // A stuck sink pauses nobody; it stays stuck until it drains.
  f_.on_queued(kPub2, kSub, 1900, now_ + 3s);
  EXPECT_FALSE(f_.is_paused(kPub2));
  EXPECT_FALSE(f_.next_deadline());
  f_.update(kSub, 100, now_ + 4s, now_ + 4s);
  EXPECT_FALSE(f_.is_stuck(kSub));
  EXPECT_FALSE(f_.is_congested(kSub));
}

TEST_F(Flow, AStuckSinkEmptiedWithoutProgressStaysStuck) {
  // A peer's queue is emptied by dropping it: that is no sign of life.
  f_.on_queued(kPub, kSub, 2000, now_);
  f_.update(kSub, 2000, now_, now_ + 2s);
  ASSERT_TRUE(f_.is_stuck(kSub));
  f_.update(kSub, 0, now_, now_ + 3s);
  EXPECT_TRUE(f_.is_stuck(kSub));
  f_.update(kSub, 0, now_ + 4s, now_ + 4s);  // it answered
  EXPECT_FALSE(f_.is_stuck(kSub));
}

TEST_F(Flow, RemovingASinkReleasesItsWaitersAndRemovingASourceForgetsIt) {
  f_.on_queued(kPub, kSub, 2000, now_);
  f_.on_queued(kPub2, kSub, 2000, now_);
  f_.remove(kPub2);  // the publisher disconnected
  EXPECT_FALSE(f_.is_paused(kPub2));
  f_.remove(kSub);  // the subscriber disconnected
  EXPECT_FALSE(f_.is_congested(kSub));
  EXPECT_EQ(resumed(), (std::vector<Id>{kPub}));
}

TEST(FlowDrop, TheDropPolicyNeverPauses) {
  metrics::Counters c;
  FlowControl f(config(flow::Policy::Drop), c);
  f.on_queued(kPub, kSub, 1'000'000, t0());
  EXPECT_FALSE(f.is_paused(kPub));
  EXPECT_FALSE(f.is_congested(kSub));
}

TEST(FlowIds, ClientsAndPeersNeverCollide) {
  EXPECT_FALSE(flow::is_peer(flow::client(42)));
  EXPECT_TRUE(flow::is_peer(flow::peer(0)));
  EXPECT_EQ(flow::peer_index(flow::peer(5)), 5u);
  EXPECT_NE(flow::peer(0), flow::client(0));
}

}  // namespace
}  // namespace mqtt_proxy::test
