#include "mqtt_proxy/tcp/syn_cookie.hpp"

#include <string_view>

namespace mqtt_proxy::tcp {

namespace {
constexpr std::uint32_t kSlotBits = 5;
constexpr std::uint32_t kSlotMask = (1u << kSlotBits) - 1;
constexpr std::uint32_t kHashMask = 0xffffff;

std::uint32_t slot_at(TimePoint now) {
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  return static_cast<std::uint32_t>(s / 64) & kSlotMask;
}
}  // namespace

SynCookies::SynCookies(const SipKey& secret) {
  // A key of its own, so a cookie reveals nothing about ISNs or the connection table's hashing.
  constexpr std::string_view kLabel = "mqtt_proxy syn cookie";
  const auto* label = reinterpret_cast<const std::byte*>(kLabel.data());
  const std::uint64_t a = siphash24(secret, ByteSpan(label, kLabel.size()));
  const std::uint64_t b = siphash24(secret, ByteSpan(label, kLabel.size() - 1));
  for (std::size_t i = 0; i < 8; ++i) {
    key_[i] = static_cast<std::uint8_t>(a >> (8 * i));
    key_[8 + i] = static_cast<std::uint8_t>(b >> (8 * i));
  }
}

std::uint32_t SynCookies::hash(const ConnKey& k, Seq client_isn, std::uint32_t slot,
                               std::uint32_t mss_index) const {
  std::array<std::byte, 20> in{};
  const auto kb = k.bytes();
  std::copy(kb.begin(), kb.end(), in.begin());
  store_be32(in, 12, client_isn.raw);
  store_be32(in, 16, (slot << 8) | mss_index);
  return static_cast<std::uint32_t>(siphash24(key_, in)) & kHashMask;
}

Seq SynCookies::make(const ConnKey& k, Seq client_isn, std::uint16_t mss, TimePoint now) const {
  std::uint32_t index = 0;
  for (std::uint32_t i = 0; i < kMssTable.size(); ++i) {
    if (kMssTable[i] <= mss) index = i;
  }
  const std::uint32_t slot = slot_at(now);
  return Seq{(slot << 27) | (index << 24) | hash(k, client_isn, slot, index)};
}

std::optional<std::uint16_t> SynCookies::check(const ConnKey& k, Seq seq, Seq ack,
                                               TimePoint now) const {
  const std::uint32_t cookie = (ack - 1u).raw;
  const std::uint32_t slot = cookie >> 27;
  const std::uint32_t index = (cookie >> 24) & 0x7;
  const std::uint32_t age = (slot_at(now) - slot) & kSlotMask;
  if (age > 1) return std::nullopt;
  if ((cookie & kHashMask) != hash(k, seq - 1u, slot, index)) return std::nullopt;
  return kMssTable[index];
}

}  // namespace mqtt_proxy::tcp
