// The peer protocol's negotiated extension (docs/peering.md, "The extension"): control packets that
// travel as MQTT packets of type 15 with flags 0 (AUTH in MQTT 5, reserved in 3.1.1), which a
// plain peer ignores or counts as malformed without further effect.
//
//   f0 <remaining length> 'M' 'P' <version 1> <kind> <fields, big-endian>
//
//   HELLO    epoch:4 peer_epoch:4 features:4 window:4   I am here (epoch: random per start); the
//            epoch of yours I last saw (0: none); what I speak; the credit I grant you at first
//   DATA     epoch:4 peer_epoch:4 dseq:4 mseq:4 offset:8   precedes the PUBLISH packets of a
//            datagram: datagram and message sequence numbers, and the credit offset of the first
//            PUBLISH byte (each PUBLISH takes its wire size)
//   DATA5    (kind 9) the fields of DATA; the PUBLISH packets after it, up to the next DATA or
//            DATA5 header, are in the MQTT 5.0 form (properties after the topic): Data::v5
//   CREDIT   epoch:4 peer_epoch:4 limit:8 next_dseq:4 paused:1   you (peer_epoch) may send up
//            to `limit`; I have accounted for your datagrams before `next_dseq` (arrived or
//            counted lost); paused: my subscribers are slow but alive, more credit will come
//   BLOCKED  epoch:4 peer_epoch:4 offset:8   I (epoch) sent up to `offset` and have more
//   (kind 5 is AUTH, peer_auth.hpp: a datagram's signature, not a message)
//   DIGEST   epoch:4 peer_epoch:4 count:4 hash:8   the filters I subscribed to at you: how many,
//            and the sum of their filter_hash()es (with each heartbeat)
//   RESYNC   epoch:4 peer_epoch:4 nonce:4   what I hold for you disagrees with your DIGEST: send
//            me all your filters, in FILTERS parts naming `nonce`
//   FILTERS  epoch:4 peer_epoch:4 nonce:4 part:2 parts:2   part `part` of `parts` of the answer
//            to RESYNC `nonce`; the rest of its datagram is one SUBSCRIBE with that part's
//            filters (none in the one part of an empty set)
//
// Every epoch pair (sender's, receiver's) starts its own credit offsets at 0.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <variant>

#include "mqtt_proxy/util/bytes.hpp"

namespace mqtt_proxy::peering::ext {

inline constexpr std::uint8_t kFirstByte = 0xf0;
inline constexpr std::uint8_t kVersion = 1;

// Feature bits of HELLO.
inline constexpr std::uint32_t kFeatureCredit = 0x1;  // DATA headers, CREDIT and BLOCKED
inline constexpr std::uint32_t kFeatureBatch = 0x2;   // reads several packets per datagram
inline constexpr std::uint32_t kFeatureDigest = 0x4;  // DIGEST, RESYNC and FILTERS
// Reads DATA5: PUBLISHes with MQTT 5 properties in the 5.0 form.
inline constexpr std::uint32_t kFeatureProperties = 0x8;

struct Hello {
  std::uint32_t epoch = 0;
  std::uint32_t peer_epoch = 0;
  std::uint32_t features = 0;
  std::uint32_t window = 0;
  friend bool operator==(const Hello&, const Hello&) = default;
};
struct Data {
  std::uint32_t epoch = 0;
  std::uint32_t peer_epoch = 0;
  std::uint32_t dseq = 0;
  std::uint32_t mseq = 0;
  std::uint64_t offset = 0;
  bool v5 = false;  // DATA5: the PUBLISHes after it are in the MQTT 5.0 form
  friend bool operator==(const Data&, const Data&) = default;
};
struct Credit {
  std::uint32_t epoch = 0;
  std::uint32_t peer_epoch = 0;
  std::uint64_t limit = 0;
  std::uint32_t next_dseq = 0;
  bool paused = false;
  friend bool operator==(const Credit&, const Credit&) = default;
};
struct Blocked {
  std::uint32_t epoch = 0;
  std::uint32_t peer_epoch = 0;
  std::uint64_t offset = 0;
  friend bool operator==(const Blocked&, const Blocked&) = default;
};
struct Digest {
  std::uint32_t epoch = 0;
  std::uint32_t peer_epoch = 0;
  std::uint32_t count = 0;
  std::uint64_t hash = 0;
  friend bool operator==(const Digest&, const Digest&) = default;
};
struct Resync {
  std::uint32_t epoch = 0;
  std::uint32_t peer_epoch = 0;
  std::uint32_t nonce = 0;
  friend bool operator==(const Resync&, const Resync&) = default;
};
struct Filters {
  std::uint32_t epoch = 0;
  std::uint32_t peer_epoch = 0;
  std::uint32_t nonce = 0;
  std::uint16_t part = 0;
  std::uint16_t parts = 0;
  friend bool operator==(const Filters&, const Filters&) = default;
};
using Message = std::variant<Hello, Data, Credit, Blocked, Digest, Resync, Filters>;

// The whole packet, fixed header included.
void encode(Bytes& out, const Message& m);
inline constexpr std::size_t kDataSize = 2 + 4 + 24;     // a DATA (or DATA5) packet's wire size
inline constexpr std::size_t kFiltersSize = 2 + 4 + 16;  // a FILTERS packet's wire size

// A filter's share of a DIGEST's hash: SipHash-2-4 under a key fixed by the protocol (the hash
// detects a difference between two sets; it guards no secret). A set's hash is the sum of its
// filters' (mod 2^64), so it is kept up to date one filter at a time, in any order.
std::uint64_t filter_hash(std::string_view filter);

// The body of a type-15 packet (after the remaining length). nullopt: not ours (no magic, another
// version) or malformed.
std::optional<Message> decode(ByteSpan body);

}  // namespace mqtt_proxy::peering::ext
