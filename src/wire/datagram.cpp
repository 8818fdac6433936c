#include "mqtt_proxy/wire/datagram.hpp"

#include <algorithm>
#include <cassert>

#include "mqtt_proxy/wire/checksum.hpp"

namespace mqtt_proxy::wire {

std::optional<UdpView> UdpView::parse(ByteSpan b) {
  if (b.size() < kUdpHeaderLen) return std::nullopt;
  const std::size_t len = load_be16(b, udp_field::kLength);
  if (len < kUdpHeaderLen || len > b.size()) return std::nullopt;
  return UdpView{b.first(len)};
}

bool UdpView::checksum_ok(Ipv4Address src, Ipv4Address dst) const {
  if (load_be16(bytes_, udp_field::kChecksum) == 0) return true;
  const auto len = static_cast<std::uint16_t>(bytes_.size());
  return checksum_finish(checksum_add(pseudo_header_sum(src, dst, kIpProtoUdp, len), bytes_)) == 0;
}

std::size_t udp_frame_size(const UdpFrameSpec& s) {
  return kEthernetHeaderLen + kIpv4MinHeaderLen + kUdpHeaderLen + s.payload.size();
}

namespace {
void store_mac(MutableByteSpan out, std::size_t off, const MacAddress& m) {
  for (std::size_t i = 0; i < 6; ++i) store_u8(out, off + i, m.octets[i]);
}
}  // namespace

void emit_udp_frame(const UdpFrameSpec& s, MutableByteSpan out) {
  assert(out.size() == udp_frame_size(s));
  const auto udp_len = static_cast<std::uint16_t>(kUdpHeaderLen + s.payload.size());
  // DF clear: these datagrams are small, and a router may fragment them.
  auto udp = emit_ipv4_headers(
      Ipv4HeaderSpec{s.src_mac, s.dst_mac, s.src_ip, s.dst_ip, kIpProtoUdp, s.ip_id, s.ttl, false},
      udp_len, out);
  store_be16(udp, udp_field::kSrcPort, s.src_port);
  store_be16(udp, udp_field::kDstPort, s.dst_port);
  store_be16(udp, udp_field::kLength, udp_len);
  store_be16(udp, udp_field::kChecksum, 0);
  std::copy(s.payload.begin(), s.payload.end(), udp.begin() + kUdpHeaderLen);
  std::uint16_t sum = checksum_finish(
      checksum_add(pseudo_header_sum(s.src_ip, s.dst_ip, kIpProtoUdp, udp_len), udp));
  // RFC 768: a computed zero is sent as all ones (zero means "no checksum").
  if (sum == 0) sum = 0xffff;
  store_be16(udp, udp_field::kChecksum, sum);
}

std::optional<Arp> Arp::parse(ByteSpan b) {
  // Hardware type Ethernet (1), protocol IPv4, address lengths 6 and 4.
  if (b.size() < kArpIpv4Len || load_be16(b, 0) != 1 || load_be16(b, 2) != kEtherTypeIpv4 ||
      load_u8(b, 4) != 6 || load_u8(b, 5) != 4) {
    return std::nullopt;
  }
  Arp a;
  a.operation = load_be16(b, 6);
  a.sender_mac = MacAddress::from(b, 8);
  a.sender_ip = Ipv4Address{load_be32(b, 14)};
  a.target_mac = MacAddress::from(b, 18);
  a.target_ip = Ipv4Address{load_be32(b, 24)};
  return a;
}

void emit_arp_request(MacAddress mac, Ipv4Address ip, Ipv4Address target, MutableByteSpan out) {
  assert(out.size() == kArpFrameLen);
  store_mac(out, eth_field::kDst, MacAddress{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}});
  store_mac(out, eth_field::kSrc, mac);
  store_be16(out, eth_field::kEtherType, kEtherTypeArp);
  auto a = out.subspan(kEthernetHeaderLen);
  store_be16(a, 0, 1);
  store_be16(a, 2, kEtherTypeIpv4);
  store_u8(a, 4, 6);
  store_u8(a, 5, 4);
  store_be16(a, 6, 1);
  store_mac(a, 8, mac);
  store_be32(a, 14, ip.value);
  store_mac(a, 18, MacAddress{});
  store_be32(a, 24, target.value);
}

MacAddress multicast_mac(Ipv4Address group) {
  return MacAddress{{0x01, 0x00, 0x5e, static_cast<std::uint8_t>((group.value >> 16) & 0x7f),
                     static_cast<std::uint8_t>((group.value >> 8) & 0xff),
                     static_cast<std::uint8_t>(group.value & 0xff)}};
}

}  // namespace mqtt_proxy::wire
