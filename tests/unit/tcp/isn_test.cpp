// The ISN generator (RFC 6528 3): ISN = M + F(4-tuple, secret), M a clock that ticks every 4 us.
#include "mqtt_proxy/tcp/isn.hpp"

#include <gtest/gtest.h>

#include <utility>

#include "test_util.hpp"

namespace mqtt_proxy::test {
namespace {

using namespace std::chrono_literals;
using wire::Seq;

const tcp::ConnKey kKey{*wire::Ipv4Address::parse("10.0.0.2"), 40000,
                        *wire::Ipv4Address::parse("10.0.0.1"), 1883};

TEST(IsnGenerator, AdvancesWithTheFourMicrosecondClockForOneFourTuple) {
  const tcp::IsnGenerator g(test_secret(1));
  const Seq isn = g.generate(kKey, t0());        // t0() is a whole number of ticks
  EXPECT_EQ(g.generate(kKey, t0() + 3us), isn);  // within the same tick
  EXPECT_EQ(g.generate(kKey, t0() + 4us) - isn, 1u);
  EXPECT_EQ(g.generate(kKey, t0() + 7us) - isn, 1u);
  EXPECT_EQ(g.generate(kKey, t0() + 8us) - isn, 2u);
  EXPECT_EQ(g.generate(kKey, t0() + 1ms) - isn, 250u);
  EXPECT_EQ(g.generate(kKey, t0() + 1s) - isn, 250'000u);
}

TEST(IsnGenerator, IsTheSameForTheSameSecretFourTupleAndTime) {
  const tcp::IsnGenerator a(test_secret(1));
  const tcp::IsnGenerator b(test_secret(1));
  EXPECT_EQ(a.generate(kKey, t0()), b.generate(kKey, t0()));
  EXPECT_EQ(a.generate(kKey, t0() + 5s), a.generate(kKey, t0() + 5s));
}

TEST(IsnGenerator, DiffersBetweenFourTuples) {
  const tcp::IsnGenerator g(test_secret(1));
  const Seq isn = g.generate(kKey, t0());
  auto other = [&](auto change) {
    tcp::ConnKey k = kKey;
    change(k);
    return g.generate(k, t0());
  };
  EXPECT_NE(other([](tcp::ConnKey& k) { k.remote_ip = *wire::Ipv4Address::parse("10.0.0.3"); }),
            isn);
  EXPECT_NE(other([](tcp::ConnKey& k) { k.remote_port = 40001; }), isn);
  EXPECT_NE(other([](tcp::ConnKey& k) { k.local_ip = *wire::Ipv4Address::parse("10.0.0.4"); }),
            isn);
  EXPECT_NE(other([](tcp::ConnKey& k) { k.local_port = 1884; }), isn);
  // Swapping the two ends is another connection too.
  EXPECT_NE(other([](tcp::ConnKey& k) {
              std::swap(k.remote_ip, k.local_ip);
              std::swap(k.remote_port, k.local_port);
            }),
            isn);
}

TEST(IsnGenerator, DiffersBetweenSecrets) {
  const Seq isn = tcp::IsnGenerator(test_secret(1)).generate(kKey, t0());
  EXPECT_NE(tcp::IsnGenerator(test_secret(2)).generate(kKey, t0()), isn);
  SipKey one_bit = test_secret(1);
  one_bit[15] ^= 0x80;
  EXPECT_NE(tcp::IsnGenerator(one_bit).generate(kKey, t0()), isn);
}

TEST(IsnGenerator, WrapsModulo2To32) {
  const tcp::IsnGenerator g(test_secret(1));
  const Seq isn = g.generate(kKey, t0());
  // 2^32 ticks of 4 us (about 4.8 hours) bring the ISN back to where it was.
  constexpr auto kPeriod = std::chrono::microseconds(4 * (std::int64_t{1} << 32));
  EXPECT_EQ(g.generate(kKey, t0() + kPeriod), isn);
  EXPECT_EQ(g.generate(kKey, t0() + kPeriod - 4us), isn - 1u);
  EXPECT_EQ(g.generate(kKey, t0() + kPeriod + 4us), isn + 1u);
  // Wherever the keyed offset puts the ISN, it crosses 2^32 and carries on from 0.
  const Duration to_wrap =
      std::chrono::microseconds(4 * (std::int64_t{1} << 32) - 4 * std::int64_t{isn.raw});
  EXPECT_EQ(g.generate(kKey, t0() + to_wrap - 4us).raw, 0xffffffffu);
  EXPECT_EQ(g.generate(kKey, t0() + to_wrap).raw, 0u);
}

}  // namespace
}  // namespace mqtt_proxy::test
