// The delay element's pure part on virtual time: the table, the release order, the bound, and the
// parsers of the command line and of the IPv4 header.
#include "mqtt_proxy/delay/delay_line.hpp"

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace mqtt_proxy::test {
namespace {

using delay::DelayLine;
using delay::DelayTable;

const wire::Ipv4Address kH2{0xC0A80166};  // 192.168.1.102
const wire::Ipv4Address kH3{0xC0A80167};  // 192.168.1.103
const wire::Ipv4Address kH4{0xC0A80168};  // 192.168.1.104

DelayTable table_h3_10ms_h4_1s() {
  DelayTable t(milliseconds(2));
  EXPECT_TRUE(t.add(kH3, milliseconds(10)));
  EXPECT_TRUE(t.add(kH4, seconds(1)));
  return t;
}

std::vector<std::uint32_t> due(DelayLine& line, TimePoint now) {
  std::vector<std::uint32_t> out;
  line.release_due(now, out);
  return out;
}

TEST(DelayTable, LooksUpByDestinationWithDefault) {
  const auto t = table_h3_10ms_h4_1s();
  EXPECT_EQ(t.delay_for(kH3), milliseconds(10));
  EXPECT_EQ(t.delay_for(kH4), seconds(1));
  EXPECT_EQ(t.delay_for(kH2), milliseconds(2));
  EXPECT_EQ(t.size(), 2u);
}

TEST(DelayTable, KeepsTheFirstOfTwoEntries) {
  DelayTable t;
  EXPECT_TRUE(t.add(kH3, milliseconds(1)));
  EXPECT_FALSE(t.add(kH3, milliseconds(5)));
  EXPECT_EQ(t.delay_for(kH3), milliseconds(1));
  EXPECT_EQ(t.delay_for(kH2), Duration::zero());
}

TEST(DelayLine, HoldsEachPacketForItsDestinationsDelay) {
  DelayLine line(table_h3_10ms_h4_1s(), 100);
  const auto t = t0();
  EXPECT_TRUE(line.push(1, kH4, t));
  EXPECT_TRUE(line.push(2, kH3, t));
  EXPECT_TRUE(line.push(3, kH2, t));
  EXPECT_EQ(line.next_release(), t + milliseconds(2));
  EXPECT_TRUE(due(line, t + milliseconds(2) - microseconds(1)).empty());
  EXPECT_EQ(due(line, t + milliseconds(2)), (std::vector<std::uint32_t>{3}));
  EXPECT_EQ(line.next_release(), t + milliseconds(10));
  EXPECT_TRUE(due(line, t + milliseconds(9)).empty());
  EXPECT_EQ(due(line, t + milliseconds(10)), (std::vector<std::uint32_t>{2}));
  EXPECT_TRUE(due(line, t + milliseconds(999)).empty());
  EXPECT_EQ(due(line, t + seconds(1)), (std::vector<std::uint32_t>{1}));
  EXPECT_EQ(line.next_release(), std::nullopt);
  EXPECT_EQ(line.held(), 0u);
}

TEST(DelayLine, LateWakeupReleasesEverythingDueInReleaseOrder) {
  DelayLine line(table_h3_10ms_h4_1s(), 100);
  const auto t = t0();
  line.push(10, kH4, t);                      // due at 1 s
  line.push(11, kH3, t + milliseconds(1));    // 11 ms
  line.push(12, kH2, t + milliseconds(5));    // 7 ms
  line.push(13, kH3, t + milliseconds(500));  // 510 ms
  EXPECT_EQ(due(line, t + seconds(2)), (std::vector<std::uint32_t>{12, 11, 13, 10}));
  EXPECT_EQ(line.stats().released, 4u);
  // Late by 1993, 1989, 1490 and 1000 ms.
  EXPECT_EQ(line.stats().late_max, milliseconds(1993));
  EXPECT_EQ(line.stats().late_total, milliseconds(1993 + 1989 + 1490 + 1000));
}

TEST(DelayLine, EqualReleaseTimesGoInArrivalOrder) {
  // 7 and 3 arrive 8 ms apart with delays 8 ms apart (h3 10 ms at t, h2 2 ms at t + 8 ms): the
  // same release time, so first come, first served; and a flow to one destination keeps its
  // order whatever the ids.
  DelayLine line(table_h3_10ms_h4_1s(), 1000);
  const auto t = t0();
  line.push(7, kH3, t);
  line.push(3, kH2, t + milliseconds(8));
  line.push(5, kH3, t + milliseconds(8));
  line.push(1, kH3, t + milliseconds(8));
  for (std::uint32_t id = 100; id < 200; ++id) line.push(id, kH4, t + milliseconds(9));
  std::vector<std::uint32_t> want{7, 3};
  EXPECT_EQ(due(line, t + milliseconds(10)), want);
  EXPECT_EQ(due(line, t + milliseconds(18)), (std::vector<std::uint32_t>{5, 1}));
  want.clear();
  for (std::uint32_t id = 100; id < 200; ++id) want.push_back(id);
  EXPECT_EQ(due(line, t + seconds(2)), want);
}

TEST(DelayLine, ZeroDelayIsDueAtOnce) {
  DelayLine line(DelayTable{}, 10);
  const auto t = t0();
  line.push(1, kH3, t);
  EXPECT_EQ(line.next_release(), t);
  EXPECT_EQ(due(line, t), (std::vector<std::uint32_t>{1}));
}

TEST(DelayLine, PushForTakesTheDelayGivenAndClampsIt) {
  DelayLine line(DelayTable{}, 10);
  const auto t = t0();
  line.push_for(1, milliseconds(30), t);
  line.push_for(2, -milliseconds(30), t);  // never before its arrival
  line.push_for(3, std::chrono::hours(5), t);
  EXPECT_EQ(due(line, t), (std::vector<std::uint32_t>{2}));
  EXPECT_EQ(due(line, t + milliseconds(30)), (std::vector<std::uint32_t>{1}));
  EXPECT_EQ(line.next_release(), t + delay::kMaxDelay);
}

TEST(DelayLine, BeyondTheBoundPacketsAreRefusedAndCounted) {
  DelayLine line(table_h3_10ms_h4_1s(), 3);
  const auto t = t0();
  EXPECT_TRUE(line.push(1, kH3, t));
  EXPECT_TRUE(line.push(2, kH3, t));
  EXPECT_TRUE(line.push(3, kH3, t));
  EXPECT_FALSE(line.push(4, kH2, t));  // due sooner, but the line is full: still refused
  EXPECT_FALSE(line.push(5, kH3, t));
  EXPECT_EQ(line.held(), 3u);
  EXPECT_EQ(line.stats().overflowed, 2u);
  EXPECT_EQ(line.stats().packets, 5u);
  EXPECT_EQ(due(line, t + milliseconds(10)), (std::vector<std::uint32_t>{1, 2, 3}));
  EXPECT_TRUE(line.push(6, kH3, t + milliseconds(10)));  // room again
  EXPECT_EQ(line.stats().max_held, 3u);
}

TEST(DelayLine, ReleaseAllEmptiesInReleaseOrder) {
  DelayLine line(table_h3_10ms_h4_1s(), 100);
  const auto t = t0();
  line.push(1, kH4, t);
  line.push(2, kH3, t);
  line.push(3, kH2, t);
  line.push(4, kH3, t);
  std::vector<std::uint32_t> out;
  line.release_all(out);
  EXPECT_EQ(out, (std::vector<std::uint32_t>{3, 2, 4, 1}));
  EXPECT_EQ(line.held(), 0u);
  EXPECT_EQ(line.stats().released, 4u);
  EXPECT_EQ(line.stats().flushed, 4u);
  EXPECT_EQ(line.stats().late_total, Duration::zero());
  EXPECT_EQ(line.stats().max_held, 4u);
}

TEST(DelayLine, CountsMaxHeldOverTime) {
  DelayLine line(DelayTable(milliseconds(10)), 100);
  auto t = t0();
  // One packet a millisecond with 10 ms delay: 10 held in steady state, never 11.
  for (std::uint32_t id = 0; id < 100; ++id, t += milliseconds(1)) {
    due(line, t);
    line.push(id, kH2, t);
  }
  EXPECT_EQ(line.stats().max_held, 10u);  // each tick releases the one due before it pushes
  EXPECT_EQ(line.held(), 10u);
}

TEST(ParseDelayMs, AcceptsWholeAndFractionalMilliseconds) {
  EXPECT_EQ(*delay::parse_delay_ms("0"), Duration::zero());
  EXPECT_EQ(*delay::parse_delay_ms("10"), milliseconds(10));
  EXPECT_EQ(*delay::parse_delay_ms("2.5"), microseconds(2500));
  EXPECT_EQ(*delay::parse_delay_ms("0.1"), microseconds(100));
  EXPECT_EQ(*delay::parse_delay_ms("0.000001"), std::chrono::nanoseconds(1));
  EXPECT_EQ(*delay::parse_delay_ms("007"), milliseconds(7));
  EXPECT_EQ(*delay::parse_delay_ms("3600000"), delay::kMaxDelay);
}

TEST(ParseDelayMs, RefusesWithAClearMessage) {
  for (const char* bad : {"", "-1", "+1", "1e3", "1.", ".5", "1..2", "abc", "10ms", " 10", "1,5",
                          "0x10", "inf", "nan"}) {
    const auto r = delay::parse_delay_ms(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().find("is not a delay in milliseconds"), std::string::npos) << r.error();
  }
  const auto fine = delay::parse_delay_ms("1.0000001");
  ASSERT_FALSE(fine);
  EXPECT_NE(fine.error().find("more than 6 decimals"), std::string::npos) << fine.error();
  for (const char* big : {"3600000.000001", "3600001", "99999999999999999999999"}) {
    const auto r = delay::parse_delay_ms(big);
    ASSERT_FALSE(r) << big;
    EXPECT_NE(r.error().find("more than the maximum of 3600000 ms"), std::string::npos)
        << r.error();
  }
}

TEST(ParseDelayMs, EscapesControlBytesInTheMessage) {
  const auto r = delay::parse_delay_ms(std::string_view("1\r\n\"x", 5));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "\"1\\x0d\\x0a\\x22x\" is not a delay in milliseconds (such as 10 or 2.5)");
  const auto longer = delay::parse_delay_ms(std::string(200, '7') + "x");
  ASSERT_FALSE(longer);
  EXPECT_LT(longer.error().size(), 140u);
}

TEST(ParseDelayEntry, ReadsIpEqualsMs) {
  const auto e = delay::parse_delay_entry("192.168.1.103=12.5");
  ASSERT_TRUE(e) << e.error();
  EXPECT_EQ(e->dst, kH3);
  EXPECT_EQ(e->delay, microseconds(12500));
}

TEST(ParseDelayEntry, SaysWhatIsWrong) {
  const auto no_eq = delay::parse_delay_entry("192.168.1.103");
  ASSERT_FALSE(no_eq);
  EXPECT_EQ(no_eq.error(), "\"192.168.1.103\": expected IP=MS, such as 192.168.1.103=10");
  const auto bad_ip = delay::parse_delay_entry("h3=10");
  ASSERT_FALSE(bad_ip);
  EXPECT_EQ(bad_ip.error(), "\"h3=10\": \"h3\" is not an IPv4 address");
  const auto bad_ms = delay::parse_delay_entry("192.168.1.103=ten");
  ASSERT_FALSE(bad_ms);
  EXPECT_EQ(bad_ms.error(),
            "\"192.168.1.103=ten\": \"ten\" is not a delay in milliseconds (such as 10 or 2.5)");
  EXPECT_FALSE(delay::parse_delay_entry("192.168.1.103=1=2"));
  EXPECT_FALSE(delay::parse_delay_entry("=10"));
  EXPECT_FALSE(delay::parse_delay_entry("192.168.1.256=10"));
}

TEST(ParseDelayTable, BuildsTheTableAndRefusesDuplicates) {
  const auto t =
      delay::parse_delay_table({"192.168.1.103=10", "192.168.1.104=1000"}, milliseconds(1));
  ASSERT_TRUE(t) << t.error();
  EXPECT_EQ(t->delay_for(kH3), milliseconds(10));
  EXPECT_EQ(t->delay_for(kH4), seconds(1));
  EXPECT_EQ(t->delay_for(kH2), milliseconds(1));
  const auto dup = delay::parse_delay_table({"192.168.1.103=10", "192.168.1.103=20"}, {});
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error(), "\"192.168.1.103=20\": 192.168.1.103 is given twice");
  const auto bad = delay::parse_delay_table({"192.168.1.103=10", "x"}, {});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), "\"x\": expected IP=MS, such as 192.168.1.103=10");
  EXPECT_FALSE(delay::parse_delay_table({}, delay::kMaxDelay + std::chrono::nanoseconds(1)));
  EXPECT_TRUE(delay::parse_delay_table({}, delay::kMaxDelay));
}

// An ICMP echo request from 192.168.1.101 to 192.168.1.103, as ping sends it (header only).
const char* const kIcmpHeader = "45 00 00 54 1c 46 40 00 40 01 9a f9 c0 a8 01 65 c0 a8 01 67";

TEST(Ipv4Destination, ReadsTheDestinationOfAHeader) {
  const auto h = bytes(kIcmpHeader);
  EXPECT_EQ(delay::ipv4_destination(h), kH3);
  // Cut after the header, as the element copies it: still read.
  auto with_payload = h;
  with_payload.resize(60);
  EXPECT_EQ(delay::ipv4_destination(with_payload), kH3);
}

TEST(Ipv4Destination, ReadsTheSourceToo) {
  EXPECT_EQ(delay::ipv4_source(bytes(kIcmpHeader)), (wire::Ipv4Address{0xC0A80165}));
  auto v6 = bytes(kIcmpHeader);
  v6[0] = std::byte{0x65};
  EXPECT_FALSE(delay::ipv4_source(v6));  // the same checks
}

TEST(Ipv4Destination, ChecksVersionAndLengths) {
  const auto h = bytes(kIcmpHeader);
  EXPECT_FALSE(delay::ipv4_destination(ByteSpan(h).first(19)));  // shorter than a header
  EXPECT_FALSE(delay::ipv4_destination({}));
  auto v6 = h;
  v6[0] = std::byte{0x65};
  EXPECT_FALSE(delay::ipv4_destination(v6));
  auto short_ihl = h;
  short_ihl[0] = std::byte{0x44};
  EXPECT_FALSE(delay::ipv4_destination(short_ihl));
  auto options = h;
  options[0] = std::byte{0x46};  // 24-byte header, only 20 given
  EXPECT_FALSE(delay::ipv4_destination(options));
  options.resize(24);
  EXPECT_EQ(delay::ipv4_destination(options), kH3);
  auto tiny_total = h;
  tiny_total[2] = std::byte{0};
  tiny_total[3] = std::byte{19};  // total length below the header's
  EXPECT_FALSE(delay::ipv4_destination(tiny_total));
}

}  // namespace
}  // namespace mqtt_proxy::test
