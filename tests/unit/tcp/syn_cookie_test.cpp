#include "mqtt_proxy/tcp/syn_cookie.hpp"

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace mqtt_proxy::test {
namespace {

using namespace std::chrono_literals;
using wire::Seq;

const tcp::ConnKey kKey{*wire::Ipv4Address::parse("10.0.0.2"), 40000,
                        *wire::Ipv4Address::parse("10.0.0.1"), 1883};

TEST(SynCookies, ValidCookieRoundTripsWithItsMssRoundedDown) {
  const tcp::SynCookies c(test_secret(1));
  for (const std::uint32_t isn : {0u, 12345u, 0xffffffffu}) {
    const Seq cookie = c.make(kKey, Seq{isn}, 1460, t0());
    const auto mss = c.check(kKey, Seq{isn} + 1u, cookie + 1u, t0() + 5s);
    ASSERT_TRUE(mss) << isn;
    EXPECT_EQ(*mss, 1460);
  }
  const Seq odd = c.make(kKey, Seq{7}, 1399, t0());
  EXPECT_EQ(c.check(kKey, Seq{8}, odd + 1u, t0()), std::optional<std::uint16_t>(1360));
  const Seq tiny = c.make(kKey, Seq{7}, 100, t0());
  EXPECT_EQ(c.check(kKey, Seq{8}, tiny + 1u, t0()), std::optional<std::uint16_t>(536));
}

TEST(SynCookies, ForeignTupleIsnOrSecretIsRefused) {
  const tcp::SynCookies c(test_secret(1));
  const Seq cookie = c.make(kKey, Seq{1000}, 1460, t0());
  auto other = kKey;
  other.remote_port = 40001;
  EXPECT_FALSE(c.check(other, Seq{1001}, cookie + 1u, t0()));
  EXPECT_FALSE(c.check(kKey, Seq{1002}, cookie + 1u, t0()));
  EXPECT_FALSE(c.check(kKey, Seq{1001}, cookie + 2u, t0()));
  EXPECT_FALSE(tcp::SynCookies(test_secret(2)).check(kKey, Seq{1001}, cookie + 1u, t0()));
}

TEST(SynCookies, ExpireAfterTheNextTimeSlot) {
  const tcp::SynCookies c(test_secret(1));
  const auto secs =
      std::chrono::duration_cast<std::chrono::seconds>(t0().time_since_epoch()).count();
  const TimePoint start = TimePoint{} + std::chrono::seconds((secs / 64 + 1) * 64);  // a slot start
  const Seq cookie = c.make(kKey, Seq{1000}, 1460, start);
  EXPECT_TRUE(c.check(kKey, Seq{1001}, cookie + 1u, start + 127s));
  EXPECT_FALSE(c.check(kKey, Seq{1001}, cookie + 1u, start + 128s));
}

TEST(SynCookies, BlindGuessesAlmostNeverPass) {
  const tcp::SynCookies c(test_secret(3));
  int accepted = 0;
  for (std::uint32_t guess = 0; guess < 200000; ++guess) {
    if (c.check(kKey, Seq{1001}, Seq{guess * 21473u}, t0())) ++accepted;
  }
  // 24 hash bits checked: about 200000 * 2 slots of 32 / 2^24 ~ 0.001 expected.
  EXPECT_LE(accepted, 1);
}

}  // namespace
}  // namespace mqtt_proxy::test
