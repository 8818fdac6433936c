// The PROXY protocol parser against HAProxy's doc/proxy-protocol.txt: one test per rule (each
// accepted form, each refusal), a catalogue of malformed headers, and the same result however the
// bytes are cut.
#include "mqtt_proxy/ingress/proxy_protocol.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace mqtt_proxy::test {
namespace {

using ingress::Command;
using ingress::Done;
using ingress::Error;
using ingress::Family;
using ingress::Mode;
using ingress::NeedMore;
using ingress::ParseResult;
using ingress::ProxyProtocolConfig;
using ingress::Transport;
using wire::Ipv4Address;

const std::string kSig = "0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a";

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) append(out, p);
  return out;
}

Bytes be16(std::size_t v) {
  return {std::byte(v >> 8), std::byte(v & 0xff)};
}

// A v2 header: the signature, the two nibble bytes and the length of `body`.
Bytes v2(std::uint8_t ver_cmd, std::uint8_t fam, const Bytes& body) {
  return cat({bytes(kSig), {std::byte{ver_cmd}, std::byte{fam}}, be16(body.size()), body});
}

Bytes tlv(std::uint8_t type, const Bytes& value) {
  return cat({{std::byte{type}}, be16(value.size()), value});
}
Bytes tlv(std::uint8_t type, std::string_view value) {
  return tlv(type, text(value));
}

// 192.168.0.1:56324 -> 192.168.0.11:1883
Bytes inet_block() {
  return bytes("c0 a8 00 01 c0 a8 00 0b dc 04 07 5b");
}

ParseResult parse(const Bytes& b, Mode mode = Mode::Any, const ProxyProtocolConfig& c = {}) {
  return ingress::parse(b, mode, c);
}

// Feeds the bytes one at a time, as a connection delivering one byte per segment would, and
// returns the first answer that is not NeedMore (or the last NeedMore). Checks on the way that
// NeedMore always asks for more than it has, and that no answer waits past the bound.
ParseResult feed_bytewise(const Bytes& b, Mode mode = Mode::Any,
                          const ProxyProtocolConfig& c = {}) {
  const std::size_t bound = ingress::max_header_len(mode, c);
  ParseResult r = NeedMore{};
  for (std::size_t k = 0; k <= b.size(); ++k) {
    r = ingress::parse(ByteSpan{b}.first(k), mode, c);
    const auto* more = std::get_if<NeedMore>(&r);
    if (!more) return r;
    EXPECT_GT(more->at_least, k);
    EXPECT_LT(k, bound) << "NeedMore past the bound";
  }
  return r;
}

const Done& done(const ParseResult& r) {
  static const Done kNone{};
  const auto* d = std::get_if<Done>(&r);
  EXPECT_TRUE(d) << (std::holds_alternative<Error>(r) ? std::get<Error>(r).reason : "NeedMore");
  return d ? *d : kNone;
}

std::string reason(const ParseResult& r) {
  const auto* e = std::get_if<Error>(&r);
  EXPECT_TRUE(e) << "expected an Error";
  return e ? e->reason : "";
}

// An Error, from the whole buffer and byte by byte alike.
std::string rejected(const Bytes& b, Mode mode = Mode::Any, const ProxyProtocolConfig& c = {}) {
  const auto whole = parse(b, mode, c);
  EXPECT_EQ(feed_bytewise(b, mode, c), whole);
  return reason(whole);
}

Done accepted(const Bytes& b, Mode mode = Mode::Any, const ProxyProtocolConfig& c = {}) {
  const auto whole = parse(b, mode, c);
  EXPECT_EQ(feed_bytewise(b, mode, c), whole);
  return done(whole);
}

// ---- v1 (section 2.1) ----

TEST(ProxyProtocolV1, AcceptsTcp4AsTheSpecificationsExample) {
  const auto b = text("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n");
  const auto d = accepted(b, Mode::V1);
  EXPECT_EQ(d.header_len, 47u);
  EXPECT_EQ(d.header.version, 1);
  EXPECT_EQ(d.header.command, Command::Proxy);
  EXPECT_EQ(d.header.family, Family::Inet);
  EXPECT_EQ(d.header.transport, Transport::Stream);
  EXPECT_EQ(d.header.source.ipv4, Ipv4Address{0xc0a80001});
  EXPECT_EQ(d.header.destination.ipv4, Ipv4Address{0xc0a8000b});
  EXPECT_EQ(d.header.source.port, 56324);
  EXPECT_EQ(d.header.destination.port, 443);
  EXPECT_TRUE(d.header.carries_addresses());
}

TEST(ProxyProtocolV1, AcceptsTheLongestTcp4LineAndTheSmallestValues) {
  const auto longest = text("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n");
  EXPECT_EQ(accepted(longest).header_len, 56u);  // the spec's count
  const auto d = accepted(text("PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n"));
  EXPECT_EQ(d.header.source.ipv4, Ipv4Address{0});
  EXPECT_EQ(d.header.source.port, 0);
}

TEST(ProxyProtocolV1, AcceptsTcp6InFullCompressedAndIpv4MappedForms) {
  const auto full = text(
      "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "65535 65535\r\n");
  const auto d = accepted(full, Mode::V1);
  EXPECT_EQ(d.header_len, 104u);  // the spec's count
  EXPECT_EQ(d.header.family, Family::Inet6);
  ingress::Ipv6Address ones;
  ones.fill(0xff);
  EXPECT_EQ(d.header.source.ipv6, ones);
  const auto c = accepted(text("PROXY TCP6 2001:DB8::1 ::ffff:192.0.2.1 1 1883\r\n"));
  EXPECT_EQ(c.header.source.ipv6,
            (ingress::Ipv6Address{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}));
  EXPECT_EQ(c.header.destination.ipv6,
            (ingress::Ipv6Address{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1}));
  EXPECT_EQ(c.header.destination.port, 1883);
}

TEST(ProxyProtocolV1, AcceptsUnknownShortAndIgnoresWhatFollowsIt) {
  const auto d = accepted(text("PROXY UNKNOWN\r\n"), Mode::V1);
  EXPECT_EQ(d.header_len, 15u);
  EXPECT_EQ(d.header.family, Family::Unspec);
  EXPECT_FALSE(d.header.carries_addresses());
  // The worst case of the spec, 107 bytes; anything before the CRLF is ignored, even nonsense.
  const auto worst = text(
      "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:"
      "ffff 65535 65535\r\n");
  ASSERT_EQ(worst.size(), 107u);
  EXPECT_EQ(accepted(worst).header_len, 107u);
  EXPECT_EQ(accepted(text("PROXY UNKNOWN what  ever 0x12 \r\n")).header.family, Family::Unspec);
}

TEST(ProxyProtocolV1, WaitsForTheCrlfAndSaysHowMuchAtLeast) {
  const auto r = parse(text("PROXY TCP4 1.2.3.4"), Mode::V1);
  ASSERT_TRUE(std::holds_alternative<NeedMore>(r));
  EXPECT_EQ(std::get<NeedMore>(r).at_least, 19u);
  EXPECT_EQ(std::get<NeedMore>(parse(text("PRO"), Mode::V1)).at_least, ingress::kV1MinLen);
  EXPECT_EQ(std::get<NeedMore>(parse(Bytes{}, Mode::V1)).at_least, ingress::kV1MinLen);
  // A CR as the last byte: its LF may be next.
  EXPECT_TRUE(std::holds_alternative<NeedMore>(parse(text("PROXY UNKNOWN\r"), Mode::V1)));
}

TEST(ProxyProtocolV1, RefusesALineWithoutCrlfAsSoonAs107BytesArrived) {
  const Bytes line = text("PROXY UNKNOWN " + std::string(200, 'x'));
  EXPECT_TRUE(std::holds_alternative<NeedMore>(parse(Bytes(line.begin(), line.begin() + 106))));
  EXPECT_EQ(reason(parse(Bytes(line.begin(), line.begin() + 107))),
            "v1: no CRLF within the first 107 bytes");
  EXPECT_EQ(rejected(line), "v1: no CRLF within the first 107 bytes");
  // 108 bytes with the CRLF: one too many, although the CRLF is there.
  const Bytes over = text("PROXY UNKNOWN " + std::string(92, 'x') + "\r\n");
  ASSERT_EQ(over.size(), 108u);
  EXPECT_EQ(rejected(over), "v1: no CRLF within the first 107 bytes");
}

TEST(ProxyProtocolV1, RefusesALoneCrOrLf) {
  EXPECT_EQ(rejected(text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n")), "v1: LF without CR at byte 30");
  EXPECT_EQ(rejected(text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX")), "v1: CR without LF at byte 30");
  EXPECT_EQ(rejected(text("PROXY UNKNOWN a\nb\r\n")), "v1: LF without CR at byte 15");
}

TEST(ProxyProtocolV1, RefusesAnythingButThePrefix) {
  EXPECT_EQ(rejected(text("PROXZ TCP4\r\n"), Mode::V1),
            "v1: byte 4 is 0x5a, where \"PROXY \" was expected");
  EXPECT_EQ(rejected(text("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), Mode::V1),
            "v1: byte 0 is 0x70, where \"PROXY \" was expected");
  // Fails on the first byte that cannot be a header, without waiting for a line.
  EXPECT_EQ(reason(parse(text("G"), Mode::V1)),
            "v1: byte 0 is 0x47, where \"PROXY \" was expected");
  EXPECT_EQ(rejected(text("PROXY\r\n"), Mode::V1),
            "v1: byte 5 is 0x0d, where \"PROXY \" was expected");
  EXPECT_FALSE(rejected(v2(0x21, 0x11, inet_block()), Mode::V1).empty());
}

TEST(ProxyProtocolV1, RefusesProtocolsOtherThanTcp4Tcp6Unknown) {
  EXPECT_EQ(rejected(text("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n")),
            "v1: protocol \"TCP5\" is none of TCP4, TCP6 and UNKNOWN");
  EXPECT_FALSE(rejected(text("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n")).empty());
  EXPECT_FALSE(rejected(text("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n")).empty());
  EXPECT_FALSE(rejected(text("PROXY UNKNOWNX\r\n")).empty());
  EXPECT_EQ(rejected(text("PROXY TCP4\r\n")), "v1: TCP4 without addresses and ports");
}

TEST(ProxyProtocolV1, RefusesAnythingButSingleSpaces) {
  const std::string empty = "v1: an empty field (two spaces in a row, or one at the end)";
  EXPECT_EQ(rejected(text("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n")), empty);
  EXPECT_EQ(rejected(text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n")), empty);
  EXPECT_EQ(rejected(text("PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n")), empty);
  EXPECT_FALSE(rejected(text("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n")).empty());
  EXPECT_FALSE(rejected(text("PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n")).empty());
}

TEST(ProxyProtocolV1, RefusesTheWrongNumberOfFields) {
  EXPECT_EQ(rejected(text("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n")),
            "v1: 3 field(s) after TCP4; it takes source and destination address, source and "
            "destination port");
  EXPECT_EQ(rejected(text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n")),
            "v1: more than 4 fields after TCP4");
}

TEST(ProxyProtocolV1, RefusesIpv4WithLeadingZerosOrOutOfRange) {
  EXPECT_EQ(rejected(text("PROXY TCP4 192.168.0.01 1.2.3.4 1 2\r\n")),
            "v1: source address \"192.168.0.01\" is not dotted-decimal IPv4");
  EXPECT_EQ(rejected(text("PROXY TCP4 1.2.3.4 256.0.0.1 1 2\r\n")),
            "v1: destination address \"256.0.0.1\" is not dotted-decimal IPv4");
  EXPECT_FALSE(rejected(text("PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n")).empty());
  EXPECT_FALSE(rejected(text("PROXY TCP4 1.2.3.4.5 1.2.3.4 1 2\r\n")).empty());
  EXPECT_FALSE(rejected(text("PROXY TCP4 0x7f.0.0.1 1.2.3.4 1 2\r\n")).empty());
  EXPECT_FALSE(rejected(text("PROXY TCP4 1..2.3 1.2.3.4 1 2\r\n")).empty());
}

TEST(ProxyProtocolV1, RefusesAnAddressOfTheOtherFamily) {
  EXPECT_FALSE(rejected(text("PROXY TCP4 ::1 ::1 1 2\r\n")).empty());
  EXPECT_EQ(rejected(text("PROXY TCP6 1.2.3.4 ::1 1 2\r\n")),
            "v1: source address \"1.2.3.4\" is not IPv6");
  EXPECT_FALSE(rejected(text("PROXY TCP6 ::1 [::1] 1 2\r\n")).empty());
  EXPECT_FALSE(rejected(text("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n")).empty());
}

TEST(ProxyProtocolV1, RefusesPortsWithLeadingZerosSignsOrOutOfRange) {
  const auto bad = [](std::string_view port) {
    return rejected(text("PROXY TCP4 1.2.3.4 5.6.7.8 " + std::string(port) + " 1883\r\n"));
  };
  EXPECT_EQ(bad("65536"),
            "v1: source port \"65536\" is not a decimal 0-65535 without leading zeros");
  EXPECT_FALSE(bad("080").empty());
  EXPECT_FALSE(bad("00").empty());
  EXPECT_FALSE(bad("+80").empty());
  EXPECT_FALSE(bad("-1").empty());
  EXPECT_FALSE(bad("99999999999").empty());
  EXPECT_FALSE(bad("8O").empty());
  EXPECT_EQ(rejected(text("PROXY TCP4 1.2.3.4 5.6.7.8 1 0x50\r\n")),
            "v1: destination port \"0x50\" is not a decimal 0-65535 without leading zeros");
}

TEST(ProxyProtocolV1, EscapesNetworkBytesInTheReason) {
  EXPECT_EQ(rejected(text("PROXY T\x01\"P4 1.2.3.4 5.6.7.8 1 2\r\n")),
            "v1: protocol \"T\\x01\\x22P4\" is none of TCP4, TCP6 and UNKNOWN");
}

// ---- IPv6 text (RFC 4291 2.2), against glibc's inet_pton ----

TEST(ProxyProtocolIpv6, AgreesWithInetPton) {
  const std::vector<std::string> cases = {
      "::", "::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1:2:3:4:5:6::8",
      "2001:db8::ff00:42:8329", "2001:0db8:0000:0000:0000:ff00:0042:8329", "FFFF::ABCD",
      "::ffff:192.0.2.1", "::192.0.2.1", "1:2:3:4:5:6:1.2.3.4", "1::1.2.3.4",
      // refused
      "", ":", ":::", "1:", ":1", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7",
      "12345::", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "g::1", "::ffff:192.0.2.01", "::1.2.3",
      "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3.4:5", "::1.2.3.4.5", "1.2.3.4", " ::1", "::1 ", "[::1]",
      "fe80::1%1", "::ffff:1a.2.3.4", "0x1::", "1:::2"};
  for (const auto& s : cases) {
    std::array<std::uint8_t, 16> want{};
    const bool ok = inet_pton(AF_INET6, s.c_str(), want.data()) == 1;
    const auto got = ingress::parse_ipv6(s);
    EXPECT_EQ(got.has_value(), ok) << '"' << s << '"';
    if (got && ok) {
      EXPECT_EQ(*got, want) << '"' << s << '"';
    }
  }
}

// ---- CRC-32C (RFC 4960 appendix B; the vectors of RFC 3720 B.4) ----

TEST(ProxyProtocolCrc32c, MatchesTheStandardVectors) {
  EXPECT_EQ(ingress::crc32c(as_bytes("123456789")), 0xe3069283u);
  EXPECT_EQ(ingress::crc32c(Bytes(32, std::byte{0})), 0x8a9136aau);
  EXPECT_EQ(ingress::crc32c(Bytes(32, std::byte{0xff})), 0x62a8ab43u);
  Bytes up;
  Bytes down;
  for (int i = 0; i < 32; ++i) {
    up.push_back(std::byte(i));
    down.push_back(std::byte(31 - i));
  }
  EXPECT_EQ(ingress::crc32c(up), 0x46dd794eu);
  EXPECT_EQ(ingress::crc32c(down), 0x113fdb5cu);
  EXPECT_EQ(ingress::crc32c(Bytes{}), 0u);
}

// ---- v2 (section 2.2) ----

TEST(ProxyProtocolV2, AcceptsTcpOverIpv4) {
  auto b = v2(0x21, 0x11, inet_block());
  append(b, text("\x10\x0c"));  // the CONNECT that follows is not the header's
  const auto d = accepted(b, Mode::V2);
  EXPECT_EQ(d.header_len, 28u);
  EXPECT_EQ(d.header.version, 2);
  EXPECT_EQ(d.header.command, Command::Proxy);
  EXPECT_EQ(d.header.family, Family::Inet);
  EXPECT_EQ(d.header.transport, Transport::Stream);
  EXPECT_EQ(d.header.source.ipv4, Ipv4Address{0xc0a80001});
  EXPECT_EQ(d.header.destination.ipv4, Ipv4Address{0xc0a8000b});
  EXPECT_EQ(d.header.source.port, 56324);
  EXPECT_EQ(d.header.destination.port, 1883);
  EXPECT_TRUE(d.header.carries_addresses());
  EXPECT_FALSE(d.header.ssl.present);
}

TEST(ProxyProtocolV2, AcceptsUdpOverIpv4AndBothOverIpv6) {
  EXPECT_EQ(accepted(v2(0x21, 0x12, inet_block())).header.transport, Transport::Dgram);
  const auto block6 = bytes(
      "20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01 "
      "20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 02 c3 50 07 5b");
  for (const std::uint8_t fam : std::initializer_list<std::uint8_t>{0x21, 0x22}) {
    const auto d = accepted(v2(0x21, fam, block6));
    EXPECT_EQ(d.header_len, 52u);
    EXPECT_EQ(d.header.family, Family::Inet6);
    EXPECT_EQ(d.header.source.ipv6[1], 0x01);
    EXPECT_EQ(d.header.source.ipv6[15], 0x01);
    EXPECT_EQ(d.header.destination.ipv6[15], 0x02);
    EXPECT_EQ(d.header.source.port, 50000);
    EXPECT_EQ(d.header.destination.port, 1883);
  }
}

TEST(ProxyProtocolV2, AcceptsUnixAddressesOf108BytesEach) {
  Bytes src = text("/run/haproxy/client.sock");
  src.resize(108);
  Bytes dst = text(std::string("\0abstract", 9));
  dst.resize(108);
  const auto d = accepted(v2(0x21, 0x31, cat({src, dst})));
  EXPECT_EQ(d.header_len, 16u + 216u);
  EXPECT_EQ(d.header.family, Family::Unix);
  EXPECT_EQ(d.header.source.unix_path, "/run/haproxy/client.sock");
  EXPECT_EQ(d.header.destination.unix_path, std::string("\0abstract", 9));
  EXPECT_EQ(accepted(v2(0x21, 0x32, cat({src, dst}))).header.transport, Transport::Dgram);
}

TEST(ProxyProtocolV2, AcceptsLocalAndIgnoresItsAddressBlock) {
  // HAProxy's health check: LOCAL, AF_UNSPEC, no address.
  const auto d = accepted(v2(0x20, 0x00, {}));
  EXPECT_EQ(d.header_len, 16u);
  EXPECT_EQ(d.header.command, Command::Local);
  EXPECT_FALSE(d.header.carries_addresses());
  // "must not assume zero is presented for LOCAL connections": the length is still skipped, and
  // neither the addresses nor anything after them is read.
  const auto l = accepted(v2(0x20, 0x11, cat({inet_block(), text("\x99garbage")})));
  EXPECT_EQ(l.header_len, 16u + 12u + 8u);
  EXPECT_EQ(l.header.source.ipv4, Ipv4Address{0});
  EXPECT_FALSE(l.header.carries_addresses());
  // The family is ignored, so a LOCAL header need not hold its addresses.
  EXPECT_EQ(accepted(v2(0x20, 0x21, {})).header_len, 16u);
}

TEST(ProxyProtocolV2, AcceptsUnspecWithoutAddressesAndReadsItsTlvs) {
  const auto d = accepted(v2(0x21, 0x00, tlv(ingress::pp2_type::kAuthority, "broker.example")));
  EXPECT_EQ(d.header.family, Family::Unspec);
  EXPECT_FALSE(d.header.carries_addresses());
  EXPECT_EQ(d.header.authority, "broker.example");
  // A known family with an unspecified transport: addresses as sent, but not to be used.
  const auto t = accepted(v2(0x21, 0x10, inet_block()));
  EXPECT_EQ(t.header.source.ipv4, Ipv4Address{0xc0a80001});
  EXPECT_FALSE(t.header.carries_addresses());
}

TEST(ProxyProtocolV2, WaitsForTheFixedPartThenForExactlyItsLength) {
  const auto b = v2(0x21, 0x11, inet_block());
  for (std::size_t k = 0; k < 16; ++k) {
    EXPECT_EQ(
        std::get<NeedMore>(parse(Bytes(b.begin(), b.begin() + static_cast<long>(k)), Mode::V2))
            .at_least,
        16u);
  }
  for (std::size_t k = 16; k < 28; ++k) {
    EXPECT_EQ(
        std::get<NeedMore>(parse(Bytes(b.begin(), b.begin() + static_cast<long>(k)))).at_least,
        28u);
  }
}

TEST(ProxyProtocolV2, RefusesAnythingButTheSignature) {
  Bytes b = v2(0x21, 0x11, inet_block());
  b[4] = std::byte{0x01};
  EXPECT_EQ(rejected(b, Mode::V2), "v2: byte 4 is 0x01, not the v2 signature's 0x00");
  // Fails at the first wrong byte, without waiting for 16.
  EXPECT_EQ(reason(parse(text("\r\n\r\n\x01"), Mode::V2)),
            "v2: byte 4 is 0x01, not the v2 signature's 0x00");
  EXPECT_FALSE(rejected(text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), Mode::V2).empty());
}

TEST(ProxyProtocolV2, RefusesVersionsOtherThan2) {
  EXPECT_EQ(rejected(v2(0x11, 0x11, inet_block())), "v2: version 1, not 2");
  EXPECT_EQ(rejected(v2(0x31, 0x11, inet_block())), "v2: version 3, not 2");
  EXPECT_EQ(rejected(v2(0x01, 0x11, inet_block())), "v2: version 0, not 2");
}

TEST(ProxyProtocolV2, RefusesCommandsOtherThanLocalAndProxy) {
  for (std::uint8_t cmd = 2; cmd <= 0x0f; ++cmd) {
    EXPECT_EQ(rejected(v2(static_cast<std::uint8_t>(0x20 | cmd), 0x11, inet_block())),
              "v2: command " + std::to_string(cmd) + " is neither LOCAL (0) nor PROXY (1)");
  }
}

TEST(ProxyProtocolV2, RefusesUnassignedFamiliesAndTransports) {
  EXPECT_EQ(rejected(v2(0x21, 0x41, inet_block())), "v2: address family 4 is not 0-3");
  EXPECT_EQ(rejected(v2(0x21, 0xf1, inet_block())), "v2: address family 15 is not 0-3");
  EXPECT_EQ(rejected(v2(0x21, 0x13, inet_block())), "v2: transport 3 is not 0-2");
  EXPECT_EQ(rejected(v2(0x20, 0x03, {})), "v2: transport 3 is not 0-2");  // LOCAL too
}

TEST(ProxyProtocolV2, RefusesALengthShorterThanTheAddressBlock) {
  EXPECT_EQ(rejected(v2(0x21, 0x11, bytes("c0 a8 00 01 c0 a8 00 0b dc 04 07"))),
            "v2: length 11 is less than the 12 bytes of AF_INET addresses");
  EXPECT_EQ(rejected(v2(0x21, 0x21, Bytes(35))),
            "v2: length 35 is less than the 36 bytes of AF_INET6 addresses");
  EXPECT_EQ(rejected(v2(0x21, 0x31, Bytes(215))),
            "v2: length 215 is less than the 216 bytes of AF_UNIX addresses");
  // Refused when the 16 fixed bytes are in, before the address bytes are.
  const Bytes short6 = v2(0x21, 0x21, Bytes(35));
  EXPECT_FALSE(reason(parse(Bytes(short6.begin(), short6.begin() + 16))).empty());
}

TEST(ProxyProtocolV2, RefusesAHeaderOverTheLimitBeforeItsBytesArrive) {
  const Bytes body = cat({inet_block(), tlv(ingress::pp2_type::kNoop, Bytes(4096 - 16 - 12 - 3))});
  EXPECT_EQ(accepted(v2(0x21, 0x11, body)).header_len, 4096u);
  const Bytes over = v2(0x21, 0x11, cat({body, Bytes{std::byte{0}}}));
  EXPECT_EQ(reason(parse(Bytes(over.begin(), over.begin() + 16))),
            "v2: header of 4097 bytes, more than the limit of 4096");
  // The limit is the caller's; the largest the format allows passes with a limit above it.
  const ProxyProtocolConfig small{.max_v2_len = 64};
  EXPECT_EQ(rejected(v2(0x21, 0x11, cat({inet_block(), tlv(0x04, Bytes(34))})), Mode::V2, small),
            "v2: header of 65 bytes, more than the limit of 64");
  const ProxyProtocolConfig big{.max_v2_len = 1 << 20};
  const Bytes largest = v2(0x21, 0x11, cat({inet_block(), tlv(0x04, Bytes(0xffff - 12 - 3))}));
  EXPECT_EQ(accepted(largest, Mode::V2, big).header_len, ingress::kV2MaxLen);
  EXPECT_EQ(ingress::max_header_len(Mode::V2, big), ingress::kV2MaxLen);
  EXPECT_EQ(ingress::max_header_len(Mode::Any), ingress::kV2DefaultMaxLen);
  EXPECT_EQ(ingress::max_header_len(Mode::V1), ingress::kV1MaxLen);
}

// ---- v2 TLVs (sections 2.2.1-2.2.8) ----

TEST(ProxyProtocolTlv, ReadsAlpnAuthorityUniqueIdAndNetns) {
  const auto d = accepted(v2(0x21, 0x11,
                             cat({inet_block(), tlv(0x01, "mqtt"), tlv(0x02, "broker.example"),
                                  tlv(0x05, Bytes(128, std::byte{0xab})), tlv(0x30, "blue")})));
  EXPECT_EQ(d.header.alpn, "mqtt");
  EXPECT_EQ(d.header.authority, "broker.example");
  EXPECT_EQ(d.header.unique_id, std::string(128, '\xab'));
  EXPECT_EQ(d.header.netns, "blue");
}

TEST(ProxyProtocolTlv, RefusesAUniqueIdOver128Bytes) {
  EXPECT_EQ(rejected(v2(0x21, 0x11, cat({inet_block(), tlv(0x05, Bytes(129))}))),
            "v2: unique ID of 129 bytes, more than 128");
}

TEST(ProxyProtocolTlv, RefusesAnAuthorityWithANul) {
  EXPECT_EQ(rejected(v2(0x21, 0x11, cat({inet_block(), tlv(0x02, std::string("a\0b", 3))}))),
            "v2: authority \"a\\x00b\" contains a NUL");
}

TEST(ProxyProtocolTlv, SkipsUnknownCustomExperimentalAndNoopTypes) {
  const auto d = accepted(v2(0x21, 0x11,
                             cat({inet_block(), tlv(0x04, ""), tlv(0x04, Bytes(7)),
                                  tlv(0xe0, "custom"), tlv(0xf0, "experiment"), tlv(0x99, ""),
                                  tlv(0x22, "not top-level"), tlv(0x01, "mqtt")})));
  EXPECT_EQ(d.header.alpn, "mqtt");
  EXPECT_TRUE(d.header.ssl.cn.empty());
}

TEST(ProxyProtocolTlv, RefusesATlvThatRunsPastTheEnd) {
  Bytes t = tlv(0x01, "mqtt");
  t[2] = std::byte{5};  // says 5, has 4
  EXPECT_EQ(rejected(v2(0x21, 0x11, cat({inet_block(), t}))),
            "v2: TLV 0x01 of 5 bytes runs 1 byte(s) past the end");
  EXPECT_EQ(rejected(v2(0x21, 0x11, cat({inet_block(), bytes("01 00")}))),
            "v2: 2 byte(s) at the end, too few for a TLV header");
  EXPECT_EQ(rejected(v2(0x21, 0x11, cat({inet_block(), bytes("e0")}))),
            "v2: 1 byte(s) at the end, too few for a TLV header");
}

TEST(ProxyProtocolTlv, RefusesARegisteredTypeTwice) {
  EXPECT_EQ(rejected(v2(0x21, 0x11, cat({inet_block(), tlv(0x01, "a"), tlv(0x01, "b")}))),
            "v2: TLV 0x01 appears twice");
}

// Builds a header with a CRC32C TLV after the addresses, its checksum computed as 2.2.3 says.
Bytes with_crc(const Bytes& before, const Bytes& after) {
  Bytes h = v2(0x21, 0x11, cat({inet_block(), before, tlv(0x03, Bytes(4)), after}));
  const std::uint32_t crc = ingress::crc32c(h);
  store_be32(h, 16 + 12 + before.size() + 3, crc);
  return h;
}

TEST(ProxyProtocolTlv, VerifiesTheCrc32cOverTheWholeHeader) {
  const auto d = accepted(with_crc(tlv(0x01, "mqtt"), tlv(0x02, "broker.example")));
  EXPECT_TRUE(d.header.crc32c_checked);
  EXPECT_EQ(d.header.authority, "broker.example");
  EXPECT_FALSE(accepted(v2(0x21, 0x11, inet_block())).header.crc32c_checked);
  // One bit anywhere in the header, before or after the checksum, or in the checksum itself.
  for (const std::size_t at :
       {std::size_t{17}, std::size_t{32}, std::size_t{38}, std::size_t{50}}) {
    Bytes h = with_crc(tlv(0x01, "mqtt"), tlv(0x02, "broker.example"));
    h[at] ^= std::byte{0x01};
    EXPECT_NE(reason(parse(h)).find("v2: CRC32C is 0x"), std::string::npos) << at;
  }
}

TEST(ProxyProtocolTlv, RefusesACrc32cThatIsNot4Bytes) {
  EXPECT_EQ(rejected(v2(0x21, 0x11, cat({inet_block(), tlv(0x03, Bytes(3))}))),
            "v2: CRC32C TLV of 3 bytes, not 4");
}

Bytes ssl_tlv(std::uint8_t client, std::uint32_t verify, const Bytes& subs) {
  Bytes v{std::byte{client}, std::byte(verify >> 24), std::byte((verify >> 16) & 0xff),
          std::byte((verify >> 8) & 0xff), std::byte(verify & 0xff)};
  return tlv(0x20, cat({v, subs}));
}

TEST(ProxyProtocolTlv, ReadsTheSslTlvAndEverySubType) {
  const auto d = accepted(v2(
      0x21, 0x11,
      cat({inet_block(),
           ssl_tlv(0x01, 0x12345678,
                   cat({tlv(0x21, "TLSv1.2"), tlv(0x23, "ECDHE-RSA-AES128-GCM-SHA256"),
                        tlv(0x24, "RSA-SHA256"), tlv(0x25, "RSA2048"), tlv(0x2f, "unknown")}))})));
  const auto& ssl = d.header.ssl;
  EXPECT_TRUE(ssl.present);
  EXPECT_EQ(ssl.client, 0x01);
  EXPECT_EQ(ssl.verify, 0x12345678u);
  EXPECT_EQ(ssl.version, "TLSv1.2");
  EXPECT_EQ(ssl.cipher, "ECDHE-RSA-AES128-GCM-SHA256");
  EXPECT_EQ(ssl.sig_alg, "RSA-SHA256");
  EXPECT_EQ(ssl.key_alg, "RSA2048");
  EXPECT_TRUE(ssl.cn.empty());
  EXPECT_FALSE(ssl.verified_client_certificate());  // TLS, but no certificate
}

TEST(ProxyProtocolTlv, SaysWhenAVerifiedClientCertificateWasPresented) {
  const auto with = [](std::uint8_t client, std::uint32_t verify) {
    return accepted(v2(0x21, 0x11, cat({inet_block(), ssl_tlv(client, verify, {})})))
        .header.ssl.verified_client_certificate();
  };
  EXPECT_TRUE(with(0x03, 0));    // on this connection
  EXPECT_TRUE(with(0x05, 0));    // in the resumed session
  EXPECT_FALSE(with(0x03, 20));  // X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
  EXPECT_FALSE(with(0x01, 0));   // HAProxy's verify is 0 without a certificate too
}

TEST(ProxyProtocolTlv, RefusesAMalformedSslTlv) {
  EXPECT_EQ(rejected(v2(0x21, 0x11, cat({inet_block(), tlv(0x20, Bytes(4))}))),
            "v2: SSL TLV of 4 byte(s) is shorter than its client and verify fields");
  Bytes sub = tlv(0x22, "client1");
  sub[2] = std::byte{8};
  EXPECT_EQ(rejected(v2(0x21, 0x11, cat({inet_block(), ssl_tlv(0x07, 0, sub)}))),
            "v2: SSL sub-TLV 0x22 of 8 bytes runs 1 byte(s) past the end");
  EXPECT_EQ(rejected(v2(
                0x21, 0x11,
                cat({inet_block(), ssl_tlv(0x07, 0, cat({tlv(0x22, "a"), tlv(0x22, "admin")}))}))),
            "v2: SSL sub-TLV 0x22 appears twice");
  EXPECT_EQ(rejected(v2(0x21, 0x11,
                        cat({inet_block(), ssl_tlv(0x07, 0, tlv(0x22, std::string("ad\0x", 4)))}))),
            "v2: SSL CN \"ad\\x00x\" contains a NUL");
  EXPECT_EQ(rejected(v2(0x21, 0x11, cat({inet_block(), ssl_tlv(0x07, 0, {}), ssl_tlv(0, 0, {})}))),
            "v2: TLV 0x20 appears twice");
}

// What HAProxy sends with `send-proxy-v2-ssl-cn` for a client with a verified certificate over
// TLS 1.3, laid out by hand from sections 2.2 and 2.2.6: TCP over IPv4 from 10.0.0.5:51234 to
// 10.0.0.1:1883, then PP2_TYPE_SSL (client PP2_CLIENT_SSL | CERT_CONN | CERT_SESS, verify 0) with
// its VERSION and CN sub-TLVs.
TEST(ProxyProtocolTlv, ReadsHaproxySendProxyV2SslCn) {
  const Bytes b = bytes(
      "0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a"  // signature
      "21 11 00 28"                          // v2 PROXY, TCP over IPv4, 40 bytes follow
      "0a 00 00 05 0a 00 00 01 c8 22 07 5b"  // 10.0.0.5 10.0.0.1 51234 1883
      "20 00 19 07 00 00 00 00"              // SSL, 25 bytes: client 0x07, verify 0
      "21 00 07 54 4c 53 76 31 2e 33"        // VERSION "TLSv1.3"
      "22 00 07 63 6c 69 65 6e 74 31"        // CN "client1"
      "10 0c 00 04 4d 51 54 54");            // the client's CONNECT begins
  const auto d = accepted(b);
  EXPECT_EQ(d.header_len, 56u);
  EXPECT_EQ(d.header.source.ipv4, Ipv4Address{0x0a000005});
  EXPECT_EQ(d.header.source.port, 51234);
  EXPECT_EQ(d.header.destination.port, 1883);
  EXPECT_TRUE(d.header.ssl.present);
  EXPECT_EQ(d.header.ssl.client, 0x07);
  EXPECT_EQ(d.header.ssl.verify, 0u);
  EXPECT_EQ(d.header.ssl.version, "TLSv1.3");
  EXPECT_EQ(d.header.ssl.cn, "client1");
  EXPECT_TRUE(d.header.ssl.verified_client_certificate());
  EXPECT_EQ(accepted(b, Mode::V2), d);
}

// ---- Mode::Any ----

TEST(ProxyProtocolAny, TellsTheVersionsApartByTheFirstByte) {
  EXPECT_EQ(accepted(text("PROXY UNKNOWN\r\n")).header.version, 1);
  EXPECT_EQ(accepted(v2(0x20, 0x00, {})).header.version, 2);
  EXPECT_EQ(std::get<NeedMore>(parse(Bytes{})).at_least, ingress::kV1MinLen);
  EXPECT_EQ(std::get<NeedMore>(parse(bytes("0d"))).at_least, ingress::kV2HeaderLen);
  // A client that speaks MQTT straight away (a CONNECT) or TLS is refused on its first byte.
  EXPECT_EQ(reason(parse(bytes("10"))),
            "first byte 0x10 begins neither a v1 (\"PROXY \") nor a v2 header");
  EXPECT_FALSE(reason(parse(bytes("16 03 01"))).empty());
}

// ---- every malformed header: an Error with a reason, the same byte by byte, within the bound ----

TEST(ProxyProtocolCatalogue, EveryMalformedHeaderIsAnErrorWithinTheBound) {
  const Bytes ssl_short_sub = cat({inet_block(), ssl_tlv(0x07, 0, bytes("22 00"))});
  const std::vector<std::pair<std::string, Bytes>> catalogue = {
      {"http", text("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
      {"mqtt connect", bytes("10 0c 00 04 4d 51 54 54 04 02 00 3c 00 00")},
      {"tls client hello", bytes("16 03 01 00 a5 01 00 00 a1 03 03")},
      {"empty v1 line", text("PROXY \r\n")},
      {"lowercase unknown", text("PROXY unknown\r\n")},
      {"v1 no crlf", text(std::string("PROXY TCP4 ") + std::string(150, '1'))},
      {"v1 bare lf", text("PROXY UNKNOWN\n")},
      {"v1 crcr", text("PROXY UNKNOWN\r\r\n")},
      {"v1 nul in line", text(std::string("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n", 33))},
      {"v1 tcp4 ipv6", text("PROXY TCP4 ::1 ::1 1 2\r\n")},
      {"v1 tcp6 short", text("PROXY TCP6 1:2:3 ::1 1 2\r\n")},
      {"v1 port 65536", text("PROXY TCP4 1.2.3.4 5.6.7.8 65536 1\r\n")},
      {"v1 negative port", text("PROXY TCP4 1.2.3.4 5.6.7.8 -1 1\r\n")},
      {"v1 octal", text("PROXY TCP4 010.0.0.1 5.6.7.8 1 1\r\n")},
      {"v1 five fields", text("PROXY TCP4 1.2.3.4 5.6.7.8 1 1 1\r\n")},
      {"v1 tab", text("PROXY\tTCP4 1.2.3.4 5.6.7.8 1 1\r\n")},
      {"v2 bad signature",
       cat({bytes("0d 0a 0d 0a 00 0d 0a 51 55 49 54 0b 21 11 00 0c"), inet_block()})},
      {"v2 version 1", v2(0x11, 0x11, inet_block())},
      {"v2 version f", v2(0xf1, 0x11, inet_block())},
      {"v2 command 2", v2(0x22, 0x11, inet_block())},
      {"v2 family 4", v2(0x21, 0x41, inet_block())},
      {"v2 transport 3", v2(0x21, 0x13, inet_block())},
      {"v2 inet short", v2(0x21, 0x11, Bytes(11))},
      {"v2 inet6 short", v2(0x21, 0x21, Bytes(12))},
      {"v2 unix short", v2(0x21, 0x31, Bytes(36))},
      {"v2 length 65535", cat({bytes(kSig), bytes("21 11 ff ff"), inet_block()})},
      {"v2 tlv past end", v2(0x21, 0x11, cat({inet_block(), bytes("01 00 05 6d 71")}))},
      {"v2 tlv header cut", v2(0x21, 0x11, cat({inet_block(), bytes("20 00")}))},
      {"v2 tlv max length", v2(0x21, 0x11, cat({inet_block(), bytes("30 ff ff")}))},
      {"v2 crc wrong", v2(0x21, 0x11, cat({inet_block(), tlv(0x03, Bytes(4))}))},
      {"v2 crc 5 bytes", v2(0x21, 0x11, cat({inet_block(), tlv(0x03, Bytes(5))}))},
      {"v2 crc twice", with_crc(tlv(0x03, Bytes(4)), {})},
      {"v2 unique id 129", v2(0x21, 0x11, cat({inet_block(), tlv(0x05, Bytes(129))}))},
      {"v2 authority nul", v2(0x21, 0x11, cat({inet_block(), tlv(0x02, Bytes(1))}))},
      {"v2 ssl empty", v2(0x21, 0x11, cat({inet_block(), tlv(0x20, Bytes{})}))},
      {"v2 ssl sub cut", v2(0x21, 0x11, ssl_short_sub)},
      {"v2 ssl cn nul", v2(0x21, 0x11, cat({inet_block(), ssl_tlv(7, 0, tlv(0x22, Bytes(2)))}))},
      {"v2 ssl version twice",
       v2(0x21, 0x11, cat({inet_block(), ssl_tlv(7, 0, cat({tlv(0x21, "a"), tlv(0x21, "b")}))}))},
      {"v2 alpn twice", v2(0x21, 0x11, cat({inet_block(), tlv(0x01, "a"), tlv(0x01, "a")}))},
      {"v2 netns twice", v2(0x21, 0x11, cat({inet_block(), tlv(0x30, "a"), tlv(0x30, "a")}))},
      {"v2 unspec garbage", v2(0x21, 0x00, text("\x01\x02"))},
  };
  for (const auto& [name, b] : catalogue) {
    for (const Mode mode : {Mode::Any, Mode::V1, Mode::V2}) {
      SCOPED_TRACE(name + " mode " + std::to_string(static_cast<int>(mode)));
      const auto whole = parse(b, mode);
      ASSERT_TRUE(std::holds_alternative<Error>(whole));
      EXPECT_FALSE(std::get<Error>(whole).reason.empty());
      EXPECT_EQ(feed_bytewise(b, mode), whole);
    }
  }
}

// ---- any cut: the same result as the whole buffer, for every accepted header ----

TEST(ProxyProtocolCuts, ByteAtATimeEqualsWholeForEveryValidHeader) {
  Bytes unix_block(216);
  unix_block[0] = std::byte{'/'};
  const std::vector<Bytes> valid = {
      text("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"),
      text("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"),
      text("PROXY TCP6 ::1 2001:db8::2 1 65535\r\n"),
      text("PROXY TCP6 ::ffff:10.0.0.1 ::ffff:10.0.0.2 1 2\r\n"),
      text("PROXY UNKNOWN\r\n"),
      text("PROXY UNKNOWN 1 2 3\r\n"),
      v2(0x20, 0x00, {}),
      v2(0x20, 0x11, inet_block()),
      v2(0x21, 0x11, inet_block()),
      v2(0x21, 0x12, inet_block()),
      v2(0x21, 0x21, Bytes(36)),
      v2(0x21, 0x31, unix_block),
      v2(0x21, 0x00, tlv(0x04, "")),
      with_crc(tlv(0x01, "mqtt"), ssl_tlv(7, 0, cat({tlv(0x21, "TLSv1.3"), tlv(0x22, "c1")}))),
      v2(0x21, 0x11, cat({inet_block(), tlv(0x05, Bytes(128)), tlv(0x30, "ns"), tlv(0xee, "x")})),
  };
  for (const auto& b : valid) {
    SCOPED_TRACE(to_hex(b));
    const auto whole = parse(b);
    ASSERT_TRUE(std::holds_alternative<Done>(whole)) << reason(whole);
    EXPECT_EQ(std::get<Done>(whole).header_len, b.size());
    EXPECT_EQ(feed_bytewise(b), whole);
    // The application's bytes after it change nothing.
    EXPECT_EQ(parse(cat({b, bytes("10 0c 00 04 4d 51 54 54")})), whole);
    // Its own version's mode gives the same.
    const Mode own = std::get<Done>(whole).header.version == 1 ? Mode::V1 : Mode::V2;
    EXPECT_EQ(parse(b, own), whole);
  }
}

}  // namespace
}  // namespace mqtt_proxy::test
