#include "mqtt_proxy/wire/frame.hpp"

#include <algorithm>
#include <cassert>

#include "mqtt_proxy/wire/checksum.hpp"

namespace mqtt_proxy::wire {

std::optional<Ipv4View> Ipv4View::parse(ByteSpan b) {
  if (b.size() < kIpv4MinHeaderLen) return std::nullopt;
  const auto vihl = load_u8(b, ipv4_field::kVersionIhl);
  if ((vihl >> 4) != 4) return std::nullopt;
  const std::size_t hlen = std::size_t(vihl & 0x0f) * 4;
  if (hlen < kIpv4MinHeaderLen || hlen > b.size()) return std::nullopt;
  const std::size_t total = load_be16(b, ipv4_field::kTotalLength);
  if (total == 0) return Ipv4View{b, hlen};
  if (total < hlen || total > b.size()) return std::nullopt;
  return Ipv4View{b.first(total), hlen};  // drops Ethernet padding
}

bool Ipv4View::header_checksum_ok() const {
  return checksum_finish(checksum_add(0, bytes_.first(header_len_))) == 0;
}

TcpOptions TcpOptions::parse(ByteSpan o) {
  TcpOptions out;
  std::size_t i = 0;
  while (i < o.size()) {
    const auto kind = load_u8(o, i);
    if (kind == 0) break;  // end of option list
    if (kind == 1) {       // NOP
      ++i;
      continue;
    }
    if (i + 1 >= o.size()) {
      out.malformed = true;
      break;
    }
    const std::size_t len = load_u8(o, i + 1);
    if (len < 2 || i + len > o.size()) {  // a length below 2 would never advance
      out.malformed = true;
      break;
    }
    switch (kind) {
      case 2:
        if (len == 4) out.mss = load_be16(o, i + 2);
        break;
      case 3:
        if (len == 3) out.window_scale = load_u8(o, i + 2);
        break;
      case 4:
        if (len == 2) out.sack_permitted = true;
        break;
      case 8:
        if (len == 10) {
          out.timestamp_value = load_be32(o, i + 2);
          out.timestamp_echo = load_be32(o, i + 6);
        }
        break;
      default:
        break;
    }
    i += len;
  }
  return out;
}

bool TcpView::checksum_ok(Ipv4Address src, Ipv4Address dst) const {
  if (bytes_.size() > 0xffff) return false;
  const auto len = static_cast<std::uint16_t>(bytes_.size());
  return checksum_finish(checksum_add(pseudo_header_sum(src, dst, kIpProtoTcp, len), bytes_)) == 0;
}

namespace {
std::size_t tcp_options_len(const TcpFrameSpec& s) {
  std::size_t n = 0;
  if (s.mss) n += 4;
  if (s.window_scale) n += 4;  // NOP + window scale
  return n;
}
}  // namespace

MutableByteSpan emit_ipv4_headers(const Ipv4HeaderSpec& h, std::size_t payload_len,
                                  MutableByteSpan out) {
  assert(out.size() == kEthernetHeaderLen + kIpv4MinHeaderLen + payload_len);
  for (std::size_t i = 0; i < 6; ++i) {
    store_u8(out, eth_field::kDst + i, h.dst_mac.octets[i]);
    store_u8(out, eth_field::kSrc + i, h.src_mac.octets[i]);
  }
  store_be16(out, eth_field::kEtherType, kEtherTypeIpv4);
  auto ip = out.subspan(kEthernetHeaderLen);
  store_u8(ip, ipv4_field::kVersionIhl, 0x45);
  store_u8(ip, ipv4_field::kTos, 0);
  store_be16(ip, ipv4_field::kTotalLength,
             static_cast<std::uint16_t>(kIpv4MinHeaderLen + payload_len));
  store_be16(ip, ipv4_field::kId, h.ip_id);
  store_be16(ip, ipv4_field::kFlagsFragment, h.dont_fragment ? 0x4000 : 0);
  store_u8(ip, ipv4_field::kTtl, h.ttl);
  store_u8(ip, ipv4_field::kProtocol, h.protocol);
  store_be16(ip, ipv4_field::kChecksum, 0);
  store_be32(ip, ipv4_field::kSrc, h.src_ip.value);
  store_be32(ip, ipv4_field::kDst, h.dst_ip.value);
  store_be16(ip, ipv4_field::kChecksum,
             checksum_finish(checksum_add(0, ip.first(kIpv4MinHeaderLen))));
  return ip.subspan(kIpv4MinHeaderLen, payload_len);
}

std::size_t tcp_frame_size(const TcpFrameSpec& s) {
  return kEthernetHeaderLen + kIpv4MinHeaderLen + kTcpMinHeaderLen + tcp_options_len(s) +
         s.payload.size();
}

void emit_tcp_frame(const TcpFrameSpec& s, MutableByteSpan out) {
  assert(out.size() == tcp_frame_size(s));
  // IPv4: DF set (we segment to the path MTU ourselves), TTL 64.
  const std::size_t opt_len = tcp_options_len(s);
  const std::size_t tcp_len = kTcpMinHeaderLen + opt_len + s.payload.size();
  auto tcp = emit_ipv4_headers(
      Ipv4HeaderSpec{s.src_mac, s.dst_mac, s.src_ip, s.dst_ip, kIpProtoTcp, s.ip_id, 64, true},
      tcp_len, out);

  // TCP
  store_be16(tcp, tcp_field::kSrcPort, s.src_port);
  store_be16(tcp, tcp_field::kDstPort, s.dst_port);
  store_be32(tcp, tcp_field::kSeq, s.seq.raw);
  store_be32(tcp, tcp_field::kAck, s.ack.raw);
  store_u8(tcp, tcp_field::kDataOffset,
           static_cast<std::uint8_t>(((kTcpMinHeaderLen + opt_len) / 4) << 4));
  store_u8(tcp, tcp_field::kFlags, s.flags);
  store_be16(tcp, tcp_field::kWindow, s.window);
  store_be16(tcp, tcp_field::kChecksum, 0);
  store_be16(tcp, tcp_field::kUrgent, 0);
  std::size_t o = kTcpMinHeaderLen;
  if (s.mss) {
    store_u8(tcp, o, 2);
    store_u8(tcp, o + 1, 4);
    store_be16(tcp, o + 2, *s.mss);
    o += 4;
  }
  if (s.window_scale) {
    store_u8(tcp, o, 1);
    store_u8(tcp, o + 1, 3);
    store_u8(tcp, o + 2, 3);
    store_u8(tcp, o + 3, *s.window_scale);
    o += 4;
  }
  std::copy(s.payload.begin(), s.payload.end(), tcp.begin() + static_cast<std::ptrdiff_t>(o));
  const std::uint32_t sum = checksum_add(
      pseudo_header_sum(s.src_ip, s.dst_ip, kIpProtoTcp, static_cast<std::uint16_t>(tcp_len)), tcp);
  store_be16(tcp, tcp_field::kChecksum, checksum_finish(sum));
}

}  // namespace mqtt_proxy::wire
