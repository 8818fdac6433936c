// Non-owning views of captured frames: Ethernet II, IPv4 and TCP. parse() checks lengths once;
// accessors then read by offset and cannot fail. Nothing here trusts the bytes beyond what parse
// checked.
#pragma once

#include <cstdint>
#include <optional>

#include "mqtt_proxy/util/bytes.hpp"
#include "mqtt_proxy/wire/address.hpp"
#include "mqtt_proxy/wire/seq.hpp"

namespace mqtt_proxy::wire {

inline constexpr std::uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr std::uint8_t kIpProtoTcp = 6;
inline constexpr std::size_t kEthernetHeaderLen = 14;
inline constexpr std::size_t kIpv4MinHeaderLen = 20;
inline constexpr std::size_t kTcpMinHeaderLen = 20;

// Field offsets within each header (RFC 894, RFC 791 3.1, RFC 9293 3.1).
namespace eth_field {
inline constexpr std::size_t kDst = 0;
inline constexpr std::size_t kSrc = 6;
inline constexpr std::size_t kEtherType = 12;
}  // namespace eth_field
namespace ipv4_field {
inline constexpr std::size_t kVersionIhl = 0;
inline constexpr std::size_t kTos = 1;
inline constexpr std::size_t kTotalLength = 2;
inline constexpr std::size_t kId = 4;
inline constexpr std::size_t kFlagsFragment = 6;
inline constexpr std::size_t kTtl = 8;
inline constexpr std::size_t kProtocol = 9;
inline constexpr std::size_t kChecksum = 10;
inline constexpr std::size_t kSrc = 12;
inline constexpr std::size_t kDst = 16;
}  // namespace ipv4_field
namespace tcp_field {
inline constexpr std::size_t kSrcPort = 0;
inline constexpr std::size_t kDstPort = 2;
inline constexpr std::size_t kSeq = 4;
inline constexpr std::size_t kAck = 8;
inline constexpr std::size_t kDataOffset = 12;  // high nibble, in 32-bit words
inline constexpr std::size_t kFlags = 13;
inline constexpr std::size_t kWindow = 14;
inline constexpr std::size_t kChecksum = 16;
inline constexpr std::size_t kUrgent = 18;
}  // namespace tcp_field

class EthernetView {
 public:
  static std::optional<EthernetView> parse(ByteSpan b) {
    if (b.size() < kEthernetHeaderLen) return std::nullopt;
    return EthernetView{b};
  }
  MacAddress dst() const { return MacAddress::from(bytes_, eth_field::kDst); }
  MacAddress src() const { return MacAddress::from(bytes_, eth_field::kSrc); }
  std::uint16_t ether_type() const { return load_be16(bytes_, eth_field::kEtherType); }
  ByteSpan payload() const { return bytes_.subspan(kEthernetHeaderLen); }

 private:
  explicit EthernetView(ByteSpan b) : bytes_(b) {}
  ByteSpan bytes_;
};

class Ipv4View {
 public:
  // Accepts total length 0 (a TSO/GSO frame larger than 64 KiB) as "up to the end of the capture";
  // rejects a total length beyond the captured bytes (a truncated datagram must not look whole).
  static std::optional<Ipv4View> parse(ByteSpan b);

  std::size_t header_len() const { return header_len_; }
  std::uint8_t protocol() const { return load_u8(bytes_, ipv4_field::kProtocol); }
  std::uint8_t ttl() const { return load_u8(bytes_, ipv4_field::kTtl); }
  Ipv4Address src() const { return Ipv4Address{load_be32(bytes_, ipv4_field::kSrc)}; }
  Ipv4Address dst() const { return Ipv4Address{load_be32(bytes_, ipv4_field::kDst)}; }
  // More-fragments set or a non-zero offset: TCP inside must not be parsed from this piece alone.
  bool is_fragment() const { return (load_be16(bytes_, ipv4_field::kFlagsFragment) & 0x3fff) != 0; }
  bool header_checksum_ok() const;
  ByteSpan payload() const { return bytes_.subspan(header_len_); }

 private:
  Ipv4View(ByteSpan b, std::size_t h) : bytes_(b), header_len_(h) {}
  ByteSpan bytes_;
  std::size_t header_len_;
};

namespace tcp_flags {
inline constexpr std::uint8_t kFin = 0x01;
inline constexpr std::uint8_t kSyn = 0x02;
inline constexpr std::uint8_t kRst = 0x04;
inline constexpr std::uint8_t kPsh = 0x08;
inline constexpr std::uint8_t kAck = 0x10;
inline constexpr std::uint8_t kUrg = 0x20;
}  // namespace tcp_flags

// The options a server side cares about. `malformed` is set when parsing stopped early (a length
// below 2 or past the header); what was read before that point is kept.
struct TcpOptions {
  std::optional<std::uint16_t> mss;
  std::optional<std::uint8_t> window_scale;
  bool sack_permitted = false;
  std::optional<std::uint32_t> timestamp_value;
  std::optional<std::uint32_t> timestamp_echo;
  bool malformed = false;

  static TcpOptions parse(ByteSpan options);
};

class TcpView {
 public:
  static std::optional<TcpView> parse(ByteSpan b) {
    if (b.size() < kTcpMinHeaderLen) return std::nullopt;
    const auto hlen = std::size_t(load_u8(b, tcp_field::kDataOffset) >> 4) * 4;
    if (hlen < kTcpMinHeaderLen || hlen > b.size()) return std::nullopt;
    return TcpView{b, hlen};
  }
  std::uint16_t src_port() const { return load_be16(bytes_, tcp_field::kSrcPort); }
  std::uint16_t dst_port() const { return load_be16(bytes_, tcp_field::kDstPort); }
  Seq seq() const { return Seq{load_be32(bytes_, tcp_field::kSeq)}; }
  Seq ack() const { return Seq{load_be32(bytes_, tcp_field::kAck)}; }
  std::uint8_t flags() const { return load_u8(bytes_, tcp_field::kFlags); }
  bool has(std::uint8_t flag_mask) const { return (flags() & flag_mask) == flag_mask; }
  std::uint16_t window() const { return load_be16(bytes_, tcp_field::kWindow); }
  std::uint16_t checksum() const { return load_be16(bytes_, tcp_field::kChecksum); }
  std::size_t header_len() const { return header_len_; }
  ByteSpan options_bytes() const {
    return bytes_.subspan(kTcpMinHeaderLen, header_len_ - kTcpMinHeaderLen);
  }
  TcpOptions options() const { return TcpOptions::parse(options_bytes()); }
  ByteSpan payload() const { return bytes_.subspan(header_len_); }
  ByteSpan segment() const { return bytes_; }
  // Verifies the checksum over the pseudo-header and the whole segment.
  bool checksum_ok(Ipv4Address src, Ipv4Address dst) const;

 private:
  TcpView(ByteSpan b, std::size_t h) : bytes_(b), header_len_(h) {}
  ByteSpan bytes_;
  std::size_t header_len_;
};

// Everything needed to emit one Ethernet/IPv4/TCP frame with correct checksums.
struct TcpFrameSpec {
  MacAddress src_mac;
  MacAddress dst_mac;
  Ipv4Address src_ip;
  Ipv4Address dst_ip;
  std::uint16_t src_port = 0;
  std::uint16_t dst_port = 0;
  Seq seq;
  Seq ack;
  std::uint8_t flags = 0;
  std::uint16_t window = 0;
  std::uint16_t ip_id = 0;
  std::optional<std::uint16_t> mss;          // SYN-ACK only
  std::optional<std::uint8_t> window_scale;  // SYN-ACK only
  ByteSpan payload;
};

// The Ethernet II header and an IPv4 header without options (checksum filled) that every frame
// the proxy writes begins with; returns the IPv4 payload, `payload_len` bytes.
struct Ipv4HeaderSpec {
  MacAddress src_mac;
  MacAddress dst_mac;
  Ipv4Address src_ip;
  Ipv4Address dst_ip;
  std::uint8_t protocol = 0;
  std::uint16_t ip_id = 0;
  std::uint8_t ttl = 64;
  bool dont_fragment = true;
};
MutableByteSpan emit_ipv4_headers(const Ipv4HeaderSpec& h, std::size_t payload_len,
                                  MutableByteSpan out);

std::size_t tcp_frame_size(const TcpFrameSpec& s);
// Writes the frame into `out`, which must be exactly tcp_frame_size(s) bytes.
void emit_tcp_frame(const TcpFrameSpec& s, MutableByteSpan out);

}  // namespace mqtt_proxy::wire
