// UDP and ARP, for MQTT2MULTICAST (m2m/): views of captured UDP datagrams and ARP replies, and
// builders of the frames the proxy sends itself (a REQUEST to the controller, a multicast PUBLISH,
// an ARP who-has for the controller's address). The proxy writes these frames rather than using a
// kernel socket so that it chooses the Ethernet destination (broadcast where the original
// controller answers no ARP), the interface, the source address and the TTL.
#pragma once

#include <cstdint>
#include <optional>

#include "mqtt_proxy/util/bytes.hpp"
#include "mqtt_proxy/wire/address.hpp"
#include "mqtt_proxy/wire/frame.hpp"

namespace mqtt_proxy::wire {

inline constexpr std::uint16_t kEtherTypeArp = 0x0806;
inline constexpr std::uint8_t kIpProtoUdp = 17;
inline constexpr std::size_t kUdpHeaderLen = 8;
inline constexpr std::size_t kArpIpv4Len = 28;  // RFC 826 for Ethernet and IPv4

namespace udp_field {
inline constexpr std::size_t kSrcPort = 0;
inline constexpr std::size_t kDstPort = 2;
inline constexpr std::size_t kLength = 4;
inline constexpr std::size_t kChecksum = 6;
}  // namespace udp_field

class UdpView {
 public:
  // Checks that the length field covers the header and lies within the IP payload; the payload is
  // what the length field says (trailing padding is not part of it).
  static std::optional<UdpView> parse(ByteSpan b);
  std::uint16_t src_port() const { return load_be16(bytes_, udp_field::kSrcPort); }
  std::uint16_t dst_port() const { return load_be16(bytes_, udp_field::kDstPort); }
  ByteSpan payload() const { return bytes_.subspan(kUdpHeaderLen); }
  // A zero checksum field means none was computed (RFC 768), which is accepted.
  bool checksum_ok(Ipv4Address src, Ipv4Address dst) const;

 private:
  explicit UdpView(ByteSpan b) : bytes_(b) {}
  ByteSpan bytes_;
};

struct UdpFrameSpec {
  MacAddress src_mac;
  MacAddress dst_mac;
  Ipv4Address src_ip;
  Ipv4Address dst_ip;
  std::uint16_t src_port = 0;
  std::uint16_t dst_port = 0;
  std::uint8_t ttl = 64;
  std::uint16_t ip_id = 0;
  ByteSpan payload;
};

std::size_t udp_frame_size(const UdpFrameSpec& s);
// Writes the frame (IPv4 without options, DF clear, checksums filled) into `out`, which must be
// exactly udp_frame_size(s) bytes.
void emit_udp_frame(const UdpFrameSpec& s, MutableByteSpan out);

// An ARP packet for IPv4 over Ethernet, as found after the Ethernet header.
struct Arp {
  std::uint16_t operation = 0;  // 1 request, 2 reply
  MacAddress sender_mac;
  Ipv4Address sender_ip;
  MacAddress target_mac;
  Ipv4Address target_ip;

  static std::optional<Arp> parse(ByteSpan b);
};

inline constexpr std::size_t kArpFrameLen = kEthernetHeaderLen + kArpIpv4Len;
// A broadcast who-has for `target` from `mac`/`ip` into `out` (exactly kArpFrameLen bytes; the
// link pads it to the minimum frame).
void emit_arp_request(MacAddress mac, Ipv4Address ip, Ipv4Address target, MutableByteSpan out);

// The Ethernet address an IPv4 multicast group maps to (RFC 1112 6.4: 01:00:5e and the low 23
// bits of the group).
MacAddress multicast_mac(Ipv4Address group);
inline bool is_multicast(Ipv4Address a) {
  return (a.value >> 28) == 0xe;
}

}  // namespace mqtt_proxy::wire
