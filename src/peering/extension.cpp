#include "mqtt_proxy/peering/extension.hpp"

#include "mqtt_proxy/util/siphash.hpp"

namespace mqtt_proxy::peering::ext {

namespace {
// Kind 5 is AUTH (peer_auth.hpp), a trailer rather than a message: not decoded here.
enum Kind : std::uint8_t {
  kHello = 1,
  kData = 2,
  kCredit = 3,
  kBlocked = 4,
  kDigest = 6,
  kResync = 7,
  kFilters = 8,
  kData5 = 9  // a DATA whose PUBLISHes are in the 5.0 form: Data::v5
};
constexpr std::uint8_t kKinds[] = {kHello, kData, kCredit, kBlocked, kDigest, kResync, kFilters};
static_assert(std::size(kKinds) == std::variant_size_v<Message>);

void put32(Bytes& b, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(std::byte(static_cast<std::uint8_t>(v >> s)));
}
void put64(Bytes& b, std::uint64_t v) {
  put32(b, static_cast<std::uint32_t>(v >> 32));
  put32(b, static_cast<std::uint32_t>(v));
}
std::uint64_t load64(ByteSpan b, std::size_t off) {
  return (std::uint64_t{load_be32(b, off)} << 32) | load_be32(b, off + 4);
}

// Field bytes after the 4-byte prelude, per kind.
constexpr std::size_t field_size(std::uint8_t kind) {
  switch (kind) {
    case kHello:
      return 16;
    case kData:
    case kData5:
      return 24;
    case kCredit:
      return 21;
    case kBlocked:
      return 16;
    case kDigest:
      return 20;
    case kResync:
      return 12;
    case kFilters:
      return 16;
    default:
      return 0;
  }
}
}  // namespace

void encode(Bytes& out, const Message& m) {
  const auto* data = std::get_if<Data>(&m);
  const std::uint8_t kind = data && data->v5 ? std::uint8_t{kData5} : kKinds[m.index()];
  out.push_back(std::byte{kFirstByte});
  out.push_back(std::byte(static_cast<std::uint8_t>(4 + field_size(kind))));  // < 128: one byte
  out.push_back(std::byte{'M'});
  out.push_back(std::byte{'P'});
  out.push_back(std::byte{kVersion});
  out.push_back(std::byte{kind});
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        put32(out, v.epoch);
        put32(out, v.peer_epoch);
        if constexpr (std::is_same_v<T, Hello>) {
          put32(out, v.features);
          put32(out, v.window);
        } else if constexpr (std::is_same_v<T, Data>) {
          put32(out, v.dseq);
          put32(out, v.mseq);
          put64(out, v.offset);
        } else if constexpr (std::is_same_v<T, Credit>) {
          put64(out, v.limit);
          put32(out, v.next_dseq);
          out.push_back(std::byte{v.paused ? std::uint8_t{1} : std::uint8_t{0}});
        } else if constexpr (std::is_same_v<T, Blocked>) {
          put64(out, v.offset);
        } else if constexpr (std::is_same_v<T, Digest>) {
          put32(out, v.count);
          put64(out, v.hash);
        } else if constexpr (std::is_same_v<T, Resync>) {
          put32(out, v.nonce);
        } else {
          static_assert(std::is_same_v<T, Filters>);
          put32(out, v.nonce);
          put32(out, std::uint32_t{v.part} << 16 | v.parts);
        }
      },
      m);
}

std::optional<Message> decode(ByteSpan b) {
  if (b.size() < 4 || load_u8(b, 0) != 'M' || load_u8(b, 1) != 'P' || load_u8(b, 2) != kVersion) {
    return std::nullopt;
  }
  const std::uint8_t kind = load_u8(b, 3);
  const std::size_t n = field_size(kind);
  if (n == 0 || b.size() != 4 + n) return std::nullopt;
  const std::uint32_t epoch = load_be32(b, 4);
  const std::uint32_t peer_epoch = load_be32(b, 8);
  switch (kind) {
    case kHello:
      return Hello{epoch, peer_epoch, load_be32(b, 12), load_be32(b, 16)};
    case kData:
    case kData5:
      return Data{epoch,         peer_epoch,    load_be32(b, 12), load_be32(b, 16),
                  load64(b, 20), kind == kData5};
    case kCredit: {
      const std::uint8_t paused = load_u8(b, 24);
      if (paused > 1) return std::nullopt;
      return Credit{epoch, peer_epoch, load64(b, 12), load_be32(b, 20), paused == 1};
    }
    case kBlocked:
      return Blocked{epoch, peer_epoch, load64(b, 12)};
    case kDigest:
      return Digest{epoch, peer_epoch, load_be32(b, 12), load64(b, 16)};
    case kResync:
      return Resync{epoch, peer_epoch, load_be32(b, 12)};
    case kFilters: {
      const std::uint16_t part = load_be16(b, 16);
      const std::uint16_t parts = load_be16(b, 18);
      if (part >= parts) return std::nullopt;
      return Filters{epoch, peer_epoch, load_be32(b, 12), part, parts};
    }
    default:
      return std::nullopt;
  }
}

std::uint64_t filter_hash(std::string_view filter) {
  static constexpr SipKey kKey = {'m', 'q', 't', 't', '_', 'p', 'r', 'o',
                                  'x', 'y', ' ', 'f', 'i', 'l', 't', 'r'};
  return siphash24(kKey, as_bytes(filter));
}

}  // namespace mqtt_proxy::peering::ext
