// Authentication of the peer protocol (docs/peering.md, "Authentication"). With a shared key,
// every datagram between two proxies ends with an AUTH packet of the extension:
//
//   f0 20 'M' 'P' 01 05 to_epoch:4 seq:8 mac:16
//
// mac: the first 16 bytes of HMAC-SHA256(key, "mqtt_proxy peer auth 1" | source address |
// destination address | every byte of the datagram before the mac), as HMAC-SHA-256-128 of
// RFC 4868. The addresses bind a datagram to the pair it was sent between, so it cannot be
// replayed to another proxy or from another address; to_epoch (the receiver's run, as the sender
// knows it; 0 only on a datagram of nothing but HELLOs, before the sender knows it) binds it to
// one run of the receiver; seq, from a counter the sender starts at its wall clock in
// nanoseconds, lets the receiver refuse a copy (ReplayWindow).
//
// Pure: no I/O and no clock. OpenSSL computes the HMAC.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "mqtt_proxy/util/bytes.hpp"
#include "mqtt_proxy/wire/address.hpp"

namespace mqtt_proxy::peering::auth {

inline constexpr std::uint8_t kKindAuth = 5;  // the extension kind (extension.hpp has 1-4)
inline constexpr std::size_t kMacSize = 16;
inline constexpr std::size_t kTagSize = 2 + 4 + 4 + 8 + kMacSize;  // the AUTH packet on the wire

struct Endpoints {
  wire::Ipv4Address src;
  wire::Ipv4Address dst;
};

struct Opened {
  std::size_t payload_size = 0;  // the datagram's bytes before its AUTH packet
  std::uint32_t to_epoch = 0;
  std::uint64_t seq = 0;
};
enum class OpenError { NoTag, BadMac };

// The keys, each set up once for HMAC (OpenSSL's EVP_MAC), so a datagram costs the hash of its
// bytes, not a key schedule and an algorithm lookup. The first key signs; every key verifies.
class Keyring {
 public:
  explicit Keyring(std::vector<Bytes> keys);
  ~Keyring();
  Keyring(const Keyring&) = delete;
  Keyring& operator=(const Keyring&) = delete;
  bool empty() const { return keys_.empty(); }
  // Whether OpenSSL set every key up (HMAC-SHA256 available). If not, nothing verifies and what
  // is signed carries a MAC of zeros: it fails closed.
  bool usable() const;

  // Appends the AUTH packet, signed with the first key.
  void seal(Bytes& datagram, Endpoints ends, std::uint32_t to_epoch, std::uint64_t seq) const;
  // Checks the datagram's trailing AUTH packet against each key in turn (two while a new key is
  // rolled out). MACs are compared in time that does not depend on where they differ.
  std::optional<Opened> open(ByteSpan datagram, Endpoints ends, OpenError& error) const;

 private:
  struct Key;
  std::vector<Key> keys_;
  bool mac(const Key& key, Endpoints ends, ByteSpan signed_part,
           unsigned char (&out)[kMacSize]) const;
};

// The sequence numbers seen from one peer: the highest, and which of the 63 before it (RFC 4303
// section 3.4.3's sliding window). A number below the window, or one seen, is refused.
class ReplayWindow {
 public:
  static constexpr std::uint64_t kSize = 64;
  bool accept(std::uint64_t seq);

 private:
  bool any_ = false;
  std::uint64_t top_ = 0;
  std::uint64_t seen_ = 0;  // bit k: top_ - k was seen
};

}  // namespace mqtt_proxy::peering::auth
