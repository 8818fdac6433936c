#include <gtest/gtest.h>

#include "mqtt_proxy/util/byte_queue.hpp"
#include "mqtt_proxy/util/deadline_queue.hpp"
#include "mqtt_proxy/util/siphash.hpp"
#include "test_util.hpp"

namespace mqtt_proxy::test {
namespace {

TEST(SipHash, MatchesReferenceVectors) {
  // From the SipHash paper's reference implementation: key 00..0f, messages 00..(n-1).
  SipKey key{};
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(i);
  Bytes msg;
  EXPECT_EQ(siphash24(key, msg), 0x726fdb47dd0e0e31ull);
  for (int i = 0; i < 15; ++i) msg.push_back(std::byte(i));
  EXPECT_EQ(siphash24(key, msg), 0xa129ca6149be45e5ull);
}

TEST(ByteQueue, PushPopAndView) {
  ByteQueue q;
  q.push(as_bytes("hello world"));
  EXPECT_EQ(str(q.view(6, 5)), "world");
  q.pop(6);
  EXPECT_EQ(str(q.all()), "world");
  q.push(as_bytes("!"));
  EXPECT_EQ(str(q.all()), "world!");
  q.pop(6);
  EXPECT_TRUE(q.empty());
}

TEST(ByteQueue, CompactsLargeDeadPrefix) {
  ByteQueue q;
  const std::string big(10000, 'x');
  q.push(as_bytes(big));
  q.pop(9000);
  q.push(as_bytes("yz"));
  EXPECT_EQ(q.size(), 1002u);
  EXPECT_EQ(str(q.view(1000, 2)), "yz");
}

TEST(DeadlineQueue, PopsDueEntriesInOrder) {
  DeadlineQueue<int> q;
  q.push(t0() + seconds(3), 3);
  q.push(t0() + seconds(1), 1);
  q.push(t0() + seconds(2), 2);
  EXPECT_EQ(*q.earliest(), t0() + seconds(1));
  std::vector<int> got;
  q.pop_due(t0() + seconds(2), [&](TimePoint, int id) { got.push_back(id); });
  EXPECT_EQ(got, (std::vector<int>{1, 2}));
  EXPECT_EQ(q.size(), 1u);
}

TEST(Hex, RoundTrips) {
  const auto b = from_hex("de ad\nbe ef");
  EXPECT_EQ(to_hex(b), "de ad be ef");
}

}  // namespace
}  // namespace mqtt_proxy::test
