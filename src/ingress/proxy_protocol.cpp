// The PROXY protocol parser. Read first: HAProxy's doc/proxy-protocol.txt, sections 2.1 (v1), 2.2
// (v2) and 2.2.1-2.2.7 (the TLVs); RFC 4960 appendix B (CRC-32C); RFC 4291 2.2 (IPv6 text).
//
// Every check runs as soon as the bytes it needs have arrived, in the order of those bytes, and
// depends on nothing after them. That is what makes the result independent of how the stream was
// cut: the first call that sees a fault reports the same fault, with the same reason, as a call
// with the whole stream would.
#include "mqtt_proxy/ingress/proxy_protocol.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bitset>

#include "mqtt_proxy/util/log.hpp"

namespace mqtt_proxy::ingress {

std::string_view command_name(Command c) {
  switch (c) {
    case Command::Local:
      return "LOCAL";
    case Command::Proxy:
      return "PROXY";
  }
  return "?";
}

std::string_view family_name(Family f) {
  switch (f) {
    case Family::Unspec:
      return "AF_UNSPEC";
    case Family::Inet:
      return "AF_INET";
    case Family::Inet6:
      return "AF_INET6";
    case Family::Unix:
      return "AF_UNIX";
  }
  return "?";
}

std::string_view transport_name(Transport t) {
  switch (t) {
    case Transport::Unspec:
      return "UNSPEC";
    case Transport::Stream:
      return "STREAM";
    case Transport::Dgram:
      return "DGRAM";
  }
  return "?";
}

namespace {

using log::escaped;

constexpr std::array<std::uint8_t, 12> kV2Signature{0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                                    0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
constexpr std::string_view kV1Prefix = "PROXY ";
constexpr std::size_t kTlvHeaderLen = 3;      // type:1 length:2
constexpr std::size_t kSslFixedLen = 5;       // client:1 verify:4
constexpr std::size_t kUnixAddressLen = 108;  // sizeof(sun_path) on Linux, as the spec fixes it

constexpr std::array<std::uint32_t, 256> make_crc32c_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) != 0 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr auto kCrc32cTable = make_crc32c_table();

// The register before the final inversion: lets a checksum run over pieces.
std::uint32_t crc32c_update(std::uint32_t crc, ByteSpan b) {
  for (const std::byte x : b) {
    crc = kCrc32cTable[(crc ^ std::to_integer<std::uint32_t>(x)) & 0xff] ^ (crc >> 8);
  }
  return crc;
}

Error fail(std::string reason) {
  return Error{std::move(reason)};
}

// ---- v1 (section 2.1) ----

// Decimal 0..65535 with no sign and no leading zero (the spec: none "in front of numbers in order
// to avoid any possible confusion with octal numbers").
std::optional<std::uint16_t> parse_port(std::string_view s) {
  if (s.empty() || s.size() > 5) return std::nullopt;
  if (s.size() > 1 && s[0] == '0') return std::nullopt;
  std::uint32_t v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (v > 0xffff) return std::nullopt;
  return static_cast<std::uint16_t>(v);
}

// `line`: the header without its CRLF; `total`: the header's length with it.
ParseResult parse_v1_line(std::string_view line, std::size_t total) {
  const std::string_view rest = line.substr(kV1Prefix.size());
  const std::size_t sp = rest.find(' ');
  const std::string_view proto = rest.substr(0, sp);
  ProxyHeader h;
  h.version = 1;
  h.command = Command::Proxy;
  // "the receiver must ignore anything presented before the CRLF": the addresses are not used.
  if (proto == "UNKNOWN") return Done{total, h};
  if (proto != "TCP4" && proto != "TCP6") {
    return fail(
        fmt::format("v1: protocol \"{}\" is none of TCP4, TCP6 and UNKNOWN", escaped(proto)));
  }
  const bool v6 = proto == "TCP6";
  if (sp == std::string_view::npos) {
    return fail(fmt::format("v1: {} without addresses and ports", proto));
  }
  // Exactly one space between fields: an empty field is two spaces in a row, or a space at an
  // end.
  std::array<std::string_view, 4> f;
  std::size_t count = 0;
  std::string_view fields = rest.substr(sp + 1);
  for (;;) {
    const std::size_t next = fields.find(' ');
    const std::string_view field = fields.substr(0, next);
    if (field.empty()) return fail("v1: an empty field (two spaces in a row, or one at the end)");
    if (count == f.size()) return fail(fmt::format("v1: more than 4 fields after {}", proto));
    f[count++] = field;
    if (next == std::string_view::npos) break;
    fields = fields.substr(next + 1);
  }
  if (count != f.size()) {
    return fail(
        fmt::format("v1: {} field(s) after {}; it takes source and destination address, "
                    "source and destination port",
                    count, proto));
  }
  constexpr std::array<std::string_view, 2> names{"source address", "destination address"};
  const std::array<Address*, 2> ends{&h.source, &h.destination};
  for (std::size_t i = 0; i < 2; ++i) {
    if (v6) {
      const auto a = parse_ipv6(f[i]);
      if (!a) return fail(fmt::format("v1: {} \"{}\" is not IPv6", names[i], escaped(f[i])));
      ends[i]->ipv6 = *a;
    } else {
      // Strict dotted decimal: 4 numbers 0-255, no leading zeros (wire::Ipv4Address::parse).
      const auto a = wire::Ipv4Address::parse(f[i]);
      if (!a) {
        return fail(
            fmt::format("v1: {} \"{}\" is not dotted-decimal IPv4", names[i], escaped(f[i])));
      }
      ends[i]->ipv4 = *a;
    }
  }
  constexpr std::array<std::string_view, 2> port_names{"source port", "destination port"};
  for (std::size_t i = 0; i < 2; ++i) {
    const auto p = parse_port(f[2 + i]);
    if (!p) {
      return fail(fmt::format("v1: {} \"{}\" is not a decimal 0-65535 without leading zeros",
                              port_names[i], escaped(f[2 + i])));
    }
    ends[i]->port = *p;
  }
  h.family = v6 ? Family::Inet6 : Family::Inet;
  h.transport = Transport::Stream;
  return Done{total, h};
}

ParseResult parse_v1(ByteSpan b) {
  // Nothing beyond the bound is looked at: a CRLF after it does not count.
  const std::string_view s = as_chars(b.first(std::min(b.size(), kV1MaxLen)));
  for (std::size_t i = 0; i < std::min(s.size(), kV1Prefix.size()); ++i) {
    if (s[i] != kV1Prefix[i]) {
      return fail(fmt::format("v1: byte {} is 0x{:02x}, where \"PROXY \" was expected", i,
                              static_cast<unsigned char>(s[i])));
    }
  }
  for (std::size_t i = kV1Prefix.size(); i < s.size(); ++i) {
    // "The receiver must not tolerate a single CR or LF character to end the line". Also refused
    // inside an UNKNOWN line's ignored part: a line reader elsewhere would end the line there.
    if (s[i] == '\n') return fail(fmt::format("v1: LF without CR at byte {}", i));
    if (s[i] != '\r') continue;
    if (i + 1 == s.size()) break;
    if (s[i + 1] != '\n') return fail(fmt::format("v1: CR without LF at byte {}", i));
    return parse_v1_line(s.substr(0, i), i + 2);
  }
  if (s.size() == kV1MaxLen) {
    return fail(fmt::format("v1: no CRLF within the first {} bytes", kV1MaxLen));
  }
  return NeedMore{std::max(s.size() + 1, kV1MinLen)};
}

// ---- v2 (section 2.2) ----

std::size_t address_block_len(Family f) {
  switch (f) {
    case Family::Unspec:
      return 0;
    case Family::Inet:
      return 2 * 4 + 2 * 2;
    case Family::Inet6:
      return 2 * 16 + 2 * 2;
    case Family::Unix:
      return 2 * kUnixAddressLen;
  }
  return 0;
}

std::string unix_path(ByteSpan b) {
  const std::string_view s = as_chars(b);
  const std::size_t from = !s.empty() && s[0] == '\0' ? 1 : 0;
  const std::size_t end = s.find('\0', from);
  return std::string(s.substr(0, end));
}

void read_addresses(ByteSpan block, Family f, ProxyHeader& h) {
  switch (f) {
    case Family::Unspec:
      return;
    case Family::Inet:
      h.source.ipv4 = wire::Ipv4Address{load_be32(block, 0)};
      h.destination.ipv4 = wire::Ipv4Address{load_be32(block, 4)};
      h.source.port = load_be16(block, 8);
      h.destination.port = load_be16(block, 10);
      return;
    case Family::Inet6:
      for (std::size_t i = 0; i < 16; ++i) {
        h.source.ipv6[i] = load_u8(block, i);
        h.destination.ipv6[i] = load_u8(block, 16 + i);
      }
      h.source.port = load_be16(block, 32);
      h.destination.port = load_be16(block, 34);
      return;
    case Family::Unix:
      h.source.unix_path = unix_path(block.subspan(0, kUnixAddressLen));
      h.destination.unix_path = unix_path(block.subspan(kUnixAddressLen, kUnixAddressLen));
      return;
  }
}

// Walks the type:1 length:2 value records of `b`, which must end exactly at a record's end.
// `on_tlv(type, value, offset of value in b)` returns an error to stop the walk.
template <typename OnTlv>
std::optional<Error> walk_tlvs(ByteSpan b, std::string_view what, OnTlv&& on_tlv) {
  std::size_t off = 0;
  while (off < b.size()) {
    if (b.size() - off < kTlvHeaderLen) {
      return fail(
          fmt::format("v2: {} byte(s) at the end, too few for a {} header", b.size() - off, what));
    }
    const std::uint8_t type = load_u8(b, off);
    const std::size_t len = load_be16(b, off + 1);
    if (len > b.size() - off - kTlvHeaderLen) {
      return fail(fmt::format("v2: {} 0x{:02x} of {} bytes runs {} byte(s) past the end", what,
                              type, len, len - (b.size() - off - kTlvHeaderLen)));
    }
    if (auto e = on_tlv(type, b.subspan(off + kTlvHeaderLen, len), off + kTlvHeaderLen)) return e;
    off += kTlvHeaderLen + len;
  }
  return std::nullopt;
}

// The registered types may each come once: two CNs (or two checksums) would leave the receiver to
// pick one, and a sender that repeats one is broken or hostile.
using SeenTypes = std::bitset<256>;
bool first_time(SeenTypes& seen, std::uint8_t type) {
  if (seen.test(type)) return false;
  seen.set(type);
  return true;
}

std::optional<Error> duplicate(std::string_view what, std::uint8_t type) {
  return fail(fmt::format("v2: {} 0x{:02x} appears twice", what, type));
}

std::optional<Error> no_nul(std::string_view value, std::string_view name) {
  if (value.find('\0') != std::string_view::npos) {
    return fail(fmt::format("v2: {} \"{}\" contains a NUL", name, escaped(value)));
  }
  return std::nullopt;
}

std::optional<Error> parse_ssl(ByteSpan v, SslInfo& ssl) {
  if (v.size() < kSslFixedLen) {
    return fail(fmt::format(
        "v2: SSL TLV of {} byte(s) is shorter than its client and verify fields", v.size()));
  }
  ssl.present = true;
  ssl.client = load_u8(v, 0);
  ssl.verify = load_be32(v, 1);
  SeenTypes seen;
  return walk_tlvs(
      v.subspan(kSslFixedLen), "SSL sub-TLV",
      [&](std::uint8_t type, ByteSpan value, std::size_t) -> std::optional<Error> {
        std::string* field = nullptr;
        switch (type) {
          case pp2_type::kSslVersion:
            field = &ssl.version;
            break;
          case pp2_type::kSslCn:
            field = &ssl.cn;
            break;
          case pp2_type::kSslCipher:
            field = &ssl.cipher;
            break;
          case pp2_type::kSslSigAlg:
            field = &ssl.sig_alg;
            break;
          case pp2_type::kSslKeyAlg:
            field = &ssl.key_alg;
            break;
          default:
            return std::optional<Error>{};  // unknown sub-types are skipped by their length
        }
        if (!first_time(seen, type)) return duplicate("SSL sub-TLV", type);
        // The CN may become a username: a NUL would cut it short in C code further on.
        if (type == pp2_type::kSslCn) {
          if (auto e = no_nul(as_chars(value), "SSL CN")) return e;
        }
        *field = std::string(as_chars(value));
        return std::optional<Error>{};
      });
}

// `h`: the whole header; `from`: where its TLVs start.
std::optional<Error> parse_tlvs(ByteSpan h, std::size_t from, ProxyHeader& out) {
  SeenTypes seen;
  return walk_tlvs(
      h.subspan(from), "TLV",
      [&](std::uint8_t type, ByteSpan value, std::size_t at) -> std::optional<Error> {
        const auto known = [&]() -> std::optional<Error> {
          if (!first_time(seen, type)) return duplicate("TLV", type);
          return std::nullopt;
        };
        switch (type) {
          case pp2_type::kAlpn:
            if (auto e = known()) return e;
            out.alpn = std::string(as_chars(value));
            break;
          case pp2_type::kAuthority:
            if (auto e = known()) return e;
            if (auto e = no_nul(as_chars(value), "authority")) return e;
            out.authority = std::string(as_chars(value));
            break;
          case pp2_type::kCrc32c: {
            if (auto e = known()) return e;
            if (value.size() != 4) {
              return fail(fmt::format("v2: CRC32C TLV of {} bytes, not 4", value.size()));
            }
            // 2.2.3: the checksum of the whole header with the checksum field as zeros.
            const std::size_t field = from + at;
            constexpr std::array<std::byte, 4> kZeros{};
            std::uint32_t crc = crc32c_update(0xffffffffu, h.first(field));
            crc = crc32c_update(crc, kZeros);
            crc = ~crc32c_update(crc, h.subspan(field + 4));
            const std::uint32_t sent = load_be32(value, 0);
            if (crc != sent) {
              return fail(
                  fmt::format("v2: CRC32C is 0x{:08x}, the header's is 0x{:08x}", sent, crc));
            }
            out.crc32c_checked = true;
            break;
          }
          case pp2_type::kNoop:
            break;  // padding; may repeat
          case pp2_type::kUniqueId:
            if (auto e = known()) return e;
            if (value.size() > kUniqueIdMaxLen) {
              return fail(fmt::format("v2: unique ID of {} bytes, more than {}", value.size(),
                                      kUniqueIdMaxLen));
            }
            out.unique_id = std::string(as_chars(value));
            break;
          case pp2_type::kSsl:
            if (auto e = known()) return e;
            if (auto e = parse_ssl(value, out.ssl)) return e;
            break;
          case pp2_type::kNetns:
            if (auto e = known()) return e;
            out.netns = std::string(as_chars(value));
            break;
          default:
            break;  // unknown, custom (0xe0-0xef) and experimental types: skipped by their length
        }
        return std::optional<Error>{};
      });
}

ParseResult parse_v2(ByteSpan b, std::size_t max_len) {
  for (std::size_t i = 0; i < std::min(b.size(), kV2Signature.size()); ++i) {
    if (load_u8(b, i) != kV2Signature[i]) {
      return fail(fmt::format("v2: byte {} is 0x{:02x}, not the v2 signature's 0x{:02x}", i,
                              load_u8(b, i), kV2Signature[i]));
    }
  }
  if (b.size() <= 12) return NeedMore{kV2HeaderLen};
  const std::uint8_t ver_cmd = load_u8(b, 12);
  // "it must always be sent as \x2 and the receiver must only accept this value".
  if ((ver_cmd >> 4) != 2) return fail(fmt::format("v2: version {}, not 2", ver_cmd >> 4));
  // "Receivers must drop connections presenting unexpected values here."
  if ((ver_cmd & 0x0f) > 1) {
    return fail(fmt::format("v2: command {} is neither LOCAL (0) nor PROXY (1)", ver_cmd & 0x0f));
  }
  const Command command = (ver_cmd & 0x0f) == 0 ? Command::Local : Command::Proxy;
  if (b.size() <= 13) return NeedMore{kV2HeaderLen};
  const std::uint8_t fam = load_u8(b, 13);
  // "other values are unspecified ... and must be rejected as invalid by receivers", for the
  // family and for the transport; checked for LOCAL too, whose family is otherwise ignored.
  if ((fam >> 4) > 3) return fail(fmt::format("v2: address family {} is not 0-3", fam >> 4));
  if ((fam & 0x0f) > 2) return fail(fmt::format("v2: transport {} is not 0-2", fam & 0x0f));
  const auto family = static_cast<Family>(fam >> 4);
  const auto transport = static_cast<Transport>(fam & 0x0f);
  if (b.size() < kV2HeaderLen) return NeedMore{kV2HeaderLen};
  const std::size_t len = load_be16(b, 14);
  const std::size_t total = kV2HeaderLen + len;
  if (total > max_len) {
    return fail(fmt::format("v2: header of {} bytes, more than the limit of {}", total, max_len));
  }
  const std::size_t block = address_block_len(family);
  // A LOCAL header's family is ignored, so its addresses need not be there.
  if (command == Command::Proxy && len < block) {
    return fail(fmt::format("v2: length {} is less than the {} bytes of {} addresses", len, block,
                            family_name(family)));
  }
  if (b.size() < total) return NeedMore{total};

  const ByteSpan h = b.first(total);
  ProxyHeader out;
  out.version = 2;
  out.command = command;
  out.family = family;
  out.transport = transport;
  // LOCAL: "the receiver ... must use the real connection endpoints and discard the protocol
  // block", so neither its addresses nor its TLVs are read.
  if (command == Command::Local) return Done{total, out};
  read_addresses(h.subspan(kV2HeaderLen, block), family, out);
  if (auto e = parse_tlvs(h, kV2HeaderLen + block, out)) return std::move(*e);
  return Done{total, std::move(out)};
}

}  // namespace

std::uint32_t crc32c(ByteSpan b) {
  return ~crc32c_update(0xffffffffu, b);
}

std::optional<Ipv6Address> parse_ipv6(std::string_view s) {
  const auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  Ipv6Address out{};
  std::size_t n = 0;               // bytes written
  std::optional<std::size_t> gap;  // where "::" stands, in bytes
  std::size_t i = 0;
  if (s.empty()) return std::nullopt;
  if (s[0] == ':') {
    if (s.size() < 2 || s[1] != ':') return std::nullopt;  // a single leading colon
    gap = 0;
    i = 2;
  }
  while (i < s.size()) {
    std::size_t j = i;
    unsigned v = 0;
    while (j < s.size() && j - i < 5 && hex(s[j]) >= 0) {
      v = v * 16 + static_cast<unsigned>(hex(s[j]));
      ++j;
    }
    if (j < s.size() && s[j] == '.') {
      // The group was the first number of an IPv4 tail, which ends the address.
      if (n + 4 > out.size()) return std::nullopt;
      const auto v4 = wire::Ipv4Address::parse(s.substr(i));
      if (!v4) return std::nullopt;
      for (std::size_t k = 0; k < 4; ++k) {
        out[n++] = static_cast<std::uint8_t>(v4->value >> (24 - 8 * k));
      }
      i = s.size();
      break;
    }
    if (j == i || j - i > 4 || n + 2 > out.size()) return std::nullopt;
    out[n++] = static_cast<std::uint8_t>(v >> 8);
    out[n++] = static_cast<std::uint8_t>(v & 0xff);
    if (j == s.size()) break;
    if (s[j] != ':') return std::nullopt;
    ++j;
    if (j < s.size() && s[j] == ':') {
      if (gap) return std::nullopt;  // a second "::"
      gap = n;
      ++j;
    } else if (j == s.size()) {
      return std::nullopt;  // a single trailing colon
    }
    i = j;
  }
  if (gap) {
    // "::" stands for at least one zero group (glibc refuses it among 8 groups).
    if (n == out.size()) return std::nullopt;
    const std::size_t tail = n - *gap;
    std::copy_backward(out.begin() + static_cast<std::ptrdiff_t>(*gap),
                       out.begin() + static_cast<std::ptrdiff_t>(n), out.end());
    std::fill(out.begin() + static_cast<std::ptrdiff_t>(*gap),
              out.end() - static_cast<std::ptrdiff_t>(tail), std::uint8_t{0});
  } else if (n != out.size()) {
    return std::nullopt;
  }
  return out;
}

std::size_t max_header_len(Mode mode, const ProxyProtocolConfig& config) {
  // v2 needs its 16 fixed bytes before it can refuse any length.
  const std::size_t v2 = std::max(kV2HeaderLen, std::min(config.max_v2_len, kV2MaxLen));
  switch (mode) {
    case Mode::V1:
      return kV1MaxLen;
    case Mode::V2:
      return v2;
    case Mode::Any:
      return std::max(kV1MaxLen, v2);
  }
  return kV2MaxLen;
}

ParseResult parse(ByteSpan received, Mode mode, const ProxyProtocolConfig& config) {
  switch (mode) {
    case Mode::V1:
      return parse_v1(received);
    case Mode::V2:
      return parse_v2(received, config.max_v2_len);
    case Mode::Any:
      break;
  }
  // Section 2.2 tells the versions apart by their first bytes; the first one is enough, as
  // 'P' and CR begin only one of them each.
  if (received.empty()) return NeedMore{kV1MinLen};
  const std::uint8_t first = load_u8(received, 0);
  if (first == static_cast<std::uint8_t>(kV1Prefix[0])) return parse_v1(received);
  if (first == kV2Signature[0]) return parse_v2(received, config.max_v2_len);
  return fail(
      fmt::format("first byte 0x{:02x} begins neither a v1 (\"PROXY \") nor a v2 header", first));
}

}  // namespace mqtt_proxy::ingress
