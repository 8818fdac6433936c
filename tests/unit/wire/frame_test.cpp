#include "mqtt_proxy/wire/frame.hpp"

#include <gtest/gtest.h>

#include "frame_views.hpp"
#include "mqtt_proxy/wire/checksum.hpp"
#include "test_util.hpp"

// libtins is an independent implementation of the wire formats. Without it the tests that compare
// against it still exist and show as skipped.
#ifdef MQTT_PROXY_HAVE_TINS
#include <tins/tins.h>
#endif

namespace mqtt_proxy::test {
namespace {

using namespace wire;

#ifndef MQTT_PROXY_HAVE_TINS
constexpr const char* kNoLibtins =
    "libtins was not found when the build was configured (install libtins-dev): the check against "
    "an independent implementation did not run";
#endif

// A SYN from 192.168.1.102:50000 to 192.168.1.101:1883 as Linux sends it (MSS, SACK-permitted,
// timestamps, window scale), cut from a capture.
constexpr std::string_view kSynFrame =
    "02 00 00 00 00 01 02 00 00 00 00 02 08 00"                    // Ethernet
    "45 00 00 3c 1c 46 40 00 40 06 9b 0a c0 a8 01 66 c0 a8 01 65"  // IPv4
    "c3 50 07 5b 00 00 03 e8 00 00 00 00 a0 02 fa f0 00 00 00 00"  // TCP, checksum zeroed below
    "02 04 05 b4 04 02 08 0a 00 01 02 03 00 00 00 00 01 03 03 07";

Bytes syn_frame_with_checksums() {
  Bytes f = bytes(kSynFrame);
  MutableByteSpan b{f};
  auto ip = b.subspan(14, 20);
  store_be16(ip, 10, 0);
  store_be16(ip, 10, checksum_finish(checksum_add(0, ip)));
  auto tcp = b.subspan(34);
  store_be16(tcp, 16, 0);
  const auto sum = checksum_add(
      pseudo_header_sum(*Ipv4Address::parse("192.168.1.102"), *Ipv4Address::parse("192.168.1.101"),
                        kIpProtoTcp, static_cast<std::uint16_t>(tcp.size())),
      tcp);
  store_be16(tcp, 16, checksum_finish(sum));
  return f;
}

TEST(Ipv4Address, ParsesAndFormats) {
  const auto a = Ipv4Address::parse("192.168.1.101");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->value, 0xc0a80165u);
  EXPECT_EQ(a->to_string(), "192.168.1.101");
  EXPECT_FALSE(Ipv4Address::parse("192.168.1"));
  EXPECT_FALSE(Ipv4Address::parse("192.168.1.256"));
  EXPECT_FALSE(Ipv4Address::parse("192.168.1.1x"));
  EXPECT_FALSE(Ipv4Address::parse("192.168.01.1"));
  EXPECT_FALSE(Ipv4Address::parse(""));
}

TEST(Checksum, Rfc1071Example) {
  // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
  const auto b = bytes("00 01 f2 03 f4 f5 f6 f7");
  EXPECT_EQ(checksum_add(0, b), 0x2ddf0u);
  EXPECT_EQ(checksum_finish(checksum_add(0, b)), static_cast<std::uint16_t>(~0xddf2u));
}

TEST(FrameViews, ParseSynWithOptions) {
  const auto f = syn_frame_with_checksums();
  const auto eth = EthernetView::parse(f);
  ASSERT_TRUE(eth);
  EXPECT_EQ(eth->ether_type(), kEtherTypeIpv4);
  EXPECT_EQ(eth->src().to_string(), "02:00:00:00:00:02");
  const auto ip = Ipv4View::parse(eth->payload());
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->src().to_string(), "192.168.1.102");
  EXPECT_EQ(ip->dst().to_string(), "192.168.1.101");
  EXPECT_TRUE(ip->header_checksum_ok());
  EXPECT_FALSE(ip->is_fragment());
  const auto tcp = TcpView::parse(ip->payload());
  ASSERT_TRUE(tcp);
  EXPECT_EQ(tcp->src_port(), 50000);
  EXPECT_EQ(tcp->dst_port(), 1883);
  EXPECT_EQ(tcp->seq().raw, 1000u);
  EXPECT_EQ(tcp->flags(), tcp_flags::kSyn);
  EXPECT_EQ(tcp->window(), 64240);
  EXPECT_TRUE(tcp->checksum_ok(ip->src(), ip->dst()));
  const auto o = tcp->options();
  EXPECT_FALSE(o.malformed);
  EXPECT_EQ(o.mss, 1460);
  EXPECT_TRUE(o.sack_permitted);
  EXPECT_EQ(o.timestamp_value, 0x00010203u);
  EXPECT_EQ(o.window_scale, 7);
  EXPECT_TRUE(tcp->payload().empty());
}

TEST(FrameViews, RejectsTruncatedAndBogusHeaders) {
  auto f = syn_frame_with_checksums();
  EXPECT_FALSE(EthernetView::parse(ByteSpan{f}.first(13)));
  const ByteSpan ip_bytes = ByteSpan{f}.subspan(14);
  EXPECT_FALSE(Ipv4View::parse(ip_bytes.first(19)));
  EXPECT_FALSE(Ipv4View::parse(ip_bytes.first(50)));  // total length 60 beyond what was captured
  Bytes bad_ihl(f.begin() + 14, f.end());
  bad_ihl[0] = std::byte{0x44};
  EXPECT_FALSE(Ipv4View::parse(bad_ihl));
  Bytes v6 = bad_ihl;
  v6[0] = std::byte{0x65};
  EXPECT_FALSE(Ipv4View::parse(v6));
  Bytes tcp_bad_offset(f.begin() + 34, f.end());
  tcp_bad_offset[12] = std::byte{0x40};  // data offset 4 words
  EXPECT_FALSE(TcpView::parse(tcp_bad_offset));
  tcp_bad_offset[12] = std::byte{0xf0};  // 60 bytes, beyond the 40 present
  EXPECT_FALSE(TcpView::parse(tcp_bad_offset));
}

TEST(FrameViews, Ipv4StripsEthernetPaddingAndFlagsFragments) {
  auto f = syn_frame_with_checksums();
  Bytes padded(f.begin() + 14, f.end());
  padded.resize(padded.size() + 6);
  const auto ip = Ipv4View::parse(padded);
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->payload().size(), 40u);
  padded[6] = std::byte{0x20};  // more fragments
  EXPECT_TRUE(Ipv4View::parse(padded)->is_fragment());
}

TEST(FrameViews, DetectsCorruptChecksum) {
  auto f = syn_frame_with_checksums();
  f[f.size() - 1] ^= std::byte{0x01};
  const auto v = parse_tcp_frame(f);
  ASSERT_TRUE(v);
  EXPECT_FALSE(v->tcp.checksum_ok(v->ip.src(), v->ip.dst()));
}

TEST(TcpOptions, MalformedLengthsStopParsingSafely) {
  EXPECT_TRUE(TcpOptions::parse(bytes("02 00 05 b4")).malformed);        // length 0
  EXPECT_TRUE(TcpOptions::parse(bytes("02 01 05 b4")).malformed);        // length 1
  EXPECT_TRUE(TcpOptions::parse(bytes("01 01 02 08 05 b4")).malformed);  // past the end
  EXPECT_TRUE(TcpOptions::parse(bytes("01 02")).malformed);              // kind without length
  const auto o = TcpOptions::parse(bytes("02 04 05 b4 00 02 00"));       // junk after EOL ignored
  EXPECT_FALSE(o.malformed);
  EXPECT_EQ(o.mss, 1460);
  EXPECT_FALSE(TcpOptions::parse(bytes("02 03 05 b4")).mss);  // wrong length for MSS: ignored
}

TcpFrameSpec sample_spec(ByteSpan payload) {
  TcpFrameSpec s;
  s.src_mac = MacAddress{{0x02, 0, 0, 0, 0, 0x01}};
  s.dst_mac = MacAddress{{0x02, 0, 0, 0, 0, 0x02}};
  s.src_ip = *Ipv4Address::parse("192.168.1.101");
  s.dst_ip = *Ipv4Address::parse("192.168.1.102");
  s.src_port = 1883;
  s.dst_port = 50000;
  s.seq = wire::Seq{0xfffffffeu};
  s.ack = wire::Seq{1001};
  s.flags = tcp_flags::kAck | tcp_flags::kPsh;
  s.window = 65535;
  s.ip_id = 7;
  s.payload = payload;
  return s;
}

TEST(FrameBuilder, EmittedFrameParsesBackWithValidChecksums) {
  const auto payload = text("\x30\x0b\x00\x06topic1hello");
  auto spec = sample_spec(payload);
  spec.flags = tcp_flags::kSyn | tcp_flags::kAck;
  spec.mss = 1460;
  Bytes f(tcp_frame_size(spec));
  emit_tcp_frame(spec, f);
  const auto eth = EthernetView::parse(f);
  EXPECT_EQ(eth->dst(), spec.dst_mac);
  const auto ip = Ipv4View::parse(eth->payload());
  ASSERT_TRUE(ip);
  EXPECT_TRUE(ip->header_checksum_ok());
  EXPECT_EQ(ip->ttl(), 64);
  const auto tcp = TcpView::parse(ip->payload());
  ASSERT_TRUE(tcp);
  EXPECT_TRUE(tcp->checksum_ok(ip->src(), ip->dst()));
  EXPECT_EQ(tcp->seq().raw, 0xfffffffeu);
  EXPECT_EQ(tcp->ack().raw, 1001u);
  EXPECT_EQ(tcp->options().mss, 1460);
  EXPECT_EQ(str(tcp->payload()), str(payload));
}

// libtins computes checksums and lays out headers independently of our code.
TEST(FrameBuilder, MatchesLibtinsByteForByte) {
#ifndef MQTT_PROXY_HAVE_TINS
  GTEST_SKIP() << kNoLibtins;
#else
  const auto payload = text("some MQTT bytes, odd length!");
  const auto spec = sample_spec(payload);
  Bytes ours(tcp_frame_size(spec));
  emit_tcp_frame(spec, ours);

  Tins::EthernetII eth(spec.dst_mac.to_string(), spec.src_mac.to_string());
  Tins::IP ip(spec.dst_ip.to_string(), spec.src_ip.to_string());
  ip.id(spec.ip_id);
  ip.ttl(64);
  ip.flags(Tins::IP::DONT_FRAGMENT);
  Tins::TCP tcp(spec.dst_port, spec.src_port);
  tcp.seq(spec.seq.raw);
  tcp.ack_seq(spec.ack.raw);
  tcp.flags(Tins::TCP::ACK | Tins::TCP::PSH);
  tcp.window(spec.window);
  const std::string p = str(payload);
  auto pkt =
      eth / ip / tcp /
      Tins::RawPDU(reinterpret_cast<const uint8_t*>(p.data()), static_cast<uint32_t>(p.size()));
  const auto theirs = pkt.serialize();
  ASSERT_EQ(theirs.size(), ours.size());
  EXPECT_EQ(to_hex(ours),
            to_hex(ByteSpan{reinterpret_cast<const std::byte*>(theirs.data()), theirs.size()}));
#endif
}

TEST(FrameViews, AgreeWithLibtinsOnAParsedSyn) {
#ifndef MQTT_PROXY_HAVE_TINS
  GTEST_SKIP() << kNoLibtins;
#else
  const auto f = syn_frame_with_checksums();
  Tins::EthernetII pkt(reinterpret_cast<const uint8_t*>(f.data()), static_cast<uint32_t>(f.size()));
  const auto& tcp = pkt.rfind_pdu<Tins::TCP>();
  const auto ours = parse_tcp_frame(f);
  ASSERT_TRUE(ours);
  EXPECT_EQ(ours->tcp.seq().raw, tcp.seq());
  EXPECT_EQ(ours->tcp.window(), tcp.window());
  EXPECT_EQ(ours->tcp.options().mss, tcp.mss());
  EXPECT_EQ(ours->tcp.options().window_scale, tcp.winscale());
#endif
}

}  // namespace
}  // namespace mqtt_proxy::test
