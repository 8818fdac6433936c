// A seeded simulation of two peers' interest over a lossy, reordering link (docs/peering.md, "Soft
// state"): both sides' subscribers come and go for a minute while 20% of the datagrams each way
// are lost and the rest arrive 1-20 ms later, out of order when they overtake each other. Once
// the churn stops, each side must hold exactly what the other subscribed to within one refresh
// interval (30 s, the default), with the defaults: the heartbeat's digest and the answer to
// RESYNC mend what the losses broke, whichever way.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <string>

#include "mqtt_proxy/peering/peering.hpp"
#include "test_util.hpp"

namespace mqtt_proxy::test {
namespace {

using namespace std::chrono_literals;
using wire::Ipv4Address;

const Ipv4Address kA = *Ipv4Address::parse("192.168.1.101");
const Ipv4Address kB = *Ipv4Address::parse("192.168.1.104");

struct Side {
  Ipv4Address addr;
  metrics::Counters counters;
  std::optional<peering::Peering> peering;
  std::set<std::string> local;  // what its subscribers want, as the broker would report it
};

class InterestSim : public ::testing::TestWithParam<std::uint64_t> {};

TEST_P(InterestSim, BothSidesHoldWhatTheOtherWantsWithinARefreshAfterTheChurn) {
  std::mt19937_64 rng(GetParam());
  std::bernoulli_distribution lost(0.2);
  std::uniform_int_distribution<int> delay_ms(1, 20);
  std::uniform_int_distribution<int> gap_ms(0, 500);
  std::uniform_int_distribution<int> pick(0, 29);

  Side sides[2];
  sides[0].addr = kA;
  sides[1].addr = kB;
  for (int s = 0; s < 2; ++s) {
    peering::PeeringConfig cfg{{sides[1 - s].addr}};
    cfg.epoch = s == 0 ? 0xaaaa0001 : 0xbbbb0001;
    sides[s].peering.emplace(cfg, log::null_logger(), sides[s].counters);
  }

  TimePoint now = t0();
  // In flight: arrival time -> (receiving side, bytes); a multimap keeps equal times in order.
  std::multimap<TimePoint, std::pair<int, Bytes>> wire;
  std::size_t sent = 0, dropped = 0;
  auto flush = [&](int s) {
    peering::Peering& p = *sides[s].peering;
    p.end_turn();
    for (const auto& d : p.outbox()) {
      ++sent;
      if (lost(rng)) {
        ++dropped;
        continue;
      }
      wire.emplace(now + std::chrono::milliseconds(delay_ms(rng)), std::pair{1 - s, d.bytes});
    }
    p.clear_outbox();
  };
  auto churn = [&](int s) {
    const std::string filter = fmt::format("sim/{}", pick(rng));
    Side& side = sides[s];
    if (side.local.insert(filter).second) {
      side.peering->local_filter_added(filter, now);
    } else {
      side.local.erase(filter);
      side.peering->local_filter_removed(filter);
    }
    flush(s);
  };
  auto agree = [&] {
    for (int s = 0; s < 2; ++s) {
      const Side& holder = sides[1 - s];
      const Side& owner = sides[s];
      if (holder.peering->peer_filter_count(owner.addr) != owner.local.size()) return false;
      for (int k = 0; k < 30; ++k) {
        const std::string topic = fmt::format("sim/{}", k);
        if (holder.peering->peer_wants(owner.addr, topic) != owner.local.contains(topic)) {
          return false;
        }
      }
    }
    return true;
  };

  for (int s = 0; s < 2; ++s) {
    sides[s].peering->start(now);
    flush(s);
  }
  const TimePoint churn_end = now + 60s;
  TimePoint next_churn[2] = {now, now + 7ms};
  // Since when they agree without a break (TimePoint::max(): they do not).
  TimePoint agreed_at = TimePoint::max();
  const TimePoint end = churn_end + 30s;
  while (now < end) {
    std::optional<TimePoint> next =
        earliest(sides[0].peering->next_deadline(), sides[1].peering->next_deadline());
    if (!wire.empty()) next = earliest(next, wire.begin()->first);
    for (int s = 0; s < 2; ++s) {
      if (next_churn[s] < churn_end) next = earliest(next, next_churn[s]);
    }
    if (!next || *next > end) break;
    now = std::max(now, *next);
    while (!wire.empty() && wire.begin()->first <= now) {
      auto node = wire.extract(wire.begin());
      const int to = node.mapped().first;
      sides[to].peering->on_datagram(sides[1 - to].addr, node.mapped().second, now);
      flush(to);
    }
    for (int s = 0; s < 2; ++s) {
      if (next_churn[s] <= now && next_churn[s] < churn_end) {
        churn(s);
        next_churn[s] = now + std::chrono::milliseconds(gap_ms(rng));
      }
      sides[s].peering->on_timers(now);
      flush(s);
    }
    if (now >= churn_end) {
      if (!agree()) {
        agreed_at = TimePoint::max();
      } else if (agreed_at == TimePoint::max()) {
        agreed_at = now;
      }
    }
  }
  ASSERT_GT(dropped, sent / 10) << "the link lost too little to test anything";
  ASSERT_TRUE(agree()) << "30 s after the churn the two sides still disagree (seed " << GetParam()
                       << "): A holds " << sides[0].peering->peer_filter_count(kB) << " of B's "
                       << sides[1].local.size() << ", B holds "
                       << sides[1].peering->peer_filter_count(kA) << " of A's "
                       << sides[0].local.size();
  // Within the refresh interval, and for good: no later datagram (a stale one, overtaken) undid it.
  EXPECT_LE(agreed_at - churn_end, 30s);
  // The digest did the mending: without it, a lost UNSUBSCRIBE would never be undone.
  EXPECT_GT(sides[0].counters.peer_interest_mismatches + sides[1].counters.peer_interest_mismatches,
            0u);
}

INSTANTIATE_TEST_SUITE_P(Seeds, InterestSim, ::testing::Range<std::uint64_t>(1, 41));

}  // namespace
}  // namespace mqtt_proxy::test
