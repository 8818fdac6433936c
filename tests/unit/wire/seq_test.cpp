#include "mqtt_proxy/wire/seq.hpp"

#include <gtest/gtest.h>

namespace mqtt_proxy::wire {
namespace {

TEST(Seq, ComparesAcrossTheWrap) {
  const Seq a{0xfffffff0u};
  const Seq b = a + 0x20;  // 0x10 after the wrap
  EXPECT_EQ(b.raw, 0x10u);
  EXPECT_TRUE(a < b);
  EXPECT_TRUE(b > a);
  EXPECT_FALSE(b < a);
  EXPECT_EQ(b - a, 0x20u);
  EXPECT_TRUE(a <= a);
  EXPECT_TRUE(a >= a);
}

TEST(Seq, RangeCheckWraps) {
  const Seq lo{0xffffff00u};
  const Seq hi = lo + 0x200;
  EXPECT_TRUE(in_range(Seq{0xffffffffu}, lo, hi));
  EXPECT_TRUE(in_range(Seq{0x50u}, lo, hi));
  EXPECT_FALSE(in_range(hi, lo, hi));
  EXPECT_FALSE(in_range(lo - 1, lo, hi));
}

TEST(Seq, HalfSpaceIsTheLimitOfOrdering) {
  const Seq a{5};
  EXPECT_TRUE(a < a + 0x7fffffffu);
  EXPECT_TRUE(a + 0x80000001u < a);  // beyond half the space the order flips (RFC 1982)
}

}  // namespace
}  // namespace mqtt_proxy::wire
