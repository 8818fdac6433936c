#include "mqtt_proxy/peering/peer_auth.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <array>
#include <cstring>
#include <string_view>

namespace mqtt_proxy::peering::auth {

namespace {
constexpr std::string_view kContext = "mqtt_proxy peer auth 1";
constexpr std::uint8_t kFirstByte = 0xf0;
constexpr std::uint8_t kRemaining = kTagSize - 2;
constexpr std::array<std::uint8_t, 6> kHeader = {kFirstByte, kRemaining, 'M', 'P', 1, kKindAuth};

void put_be(Bytes& out, std::uint64_t v, unsigned bytes) {
  for (unsigned i = bytes; i-- > 0;) out.push_back(static_cast<std::byte>(v >> (8 * i)));
}

std::uint64_t load_be64(ByteSpan in, std::size_t at) {
  return std::uint64_t{load_be32(in, at)} << 32 | load_be32(in, at + 4);
}

}  // namespace

// One key, with an HMAC context set up for it; each datagram works on a copy of the context.
struct Keyring::Key {
  EVP_MAC_CTX* ctx = nullptr;
};

Keyring::Keyring(std::vector<Bytes> keys) {
  EVP_MAC* hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                               OSSL_PARAM_END};
  for (const auto& k : keys) {
    Key key;
    key.ctx = hmac ? EVP_MAC_CTX_new(hmac) : nullptr;
    if (!key.ctx || !EVP_MAC_init(key.ctx, reinterpret_cast<const unsigned char*>(k.data()),
                                  k.size(), params)) {
      // Without HMAC-SHA256 (no provider) nothing can be signed or verified: fail closed, every
      // datagram of a signing peer is then rejected.
      EVP_MAC_CTX_free(key.ctx);
      key.ctx = nullptr;
    }
    keys_.push_back(key);
  }
  EVP_MAC_free(hmac);
}

bool Keyring::usable() const {
  for (const auto& k : keys_) {
    if (!k.ctx) return false;
  }
  return true;
}

Keyring::~Keyring() {
  for (auto& k : keys_) EVP_MAC_CTX_free(k.ctx);
}

// HMAC-SHA256 over the context string, both addresses and `signed_part`, truncated.
bool Keyring::mac(const Key& key, Endpoints ends, ByteSpan signed_part,
                  unsigned char (&out)[kMacSize]) const {
  if (!key.ctx) return false;
  unsigned char addrs[8];
  for (unsigned i = 0; i < 4; ++i) {
    addrs[i] = static_cast<unsigned char>(ends.src.value >> (24 - 8 * i));
    addrs[4 + i] = static_cast<unsigned char>(ends.dst.value >> (24 - 8 * i));
  }
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_dup(key.ctx);
  if (!ctx) return false;
  unsigned char full[EVP_MAX_MD_SIZE];
  std::size_t len = 0;
  const bool ok = EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(kContext.data()),
                                 kContext.size()) &&
                  EVP_MAC_update(ctx, addrs, sizeof(addrs)) &&
                  EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(signed_part.data()),
                                 signed_part.size()) &&
                  EVP_MAC_final(ctx, full, &len, sizeof(full)) && len >= kMacSize;
  EVP_MAC_CTX_free(ctx);
  if (ok) std::memcpy(out, full, kMacSize);
  return ok;
}

void Keyring::seal(Bytes& datagram, Endpoints ends, std::uint32_t to_epoch,
                   std::uint64_t seq) const {
  for (auto b : kHeader) datagram.push_back(static_cast<std::byte>(b));
  put_be(datagram, to_epoch, 4);
  put_be(datagram, seq, 8);
  unsigned char m[kMacSize] = {};
  // A key that cannot be used signs with zeros, which no peer verifies: fail closed.
  if (!keys_.empty()) mac(keys_.front(), ends, datagram, m);
  for (auto b : m) datagram.push_back(static_cast<std::byte>(b));
}

std::optional<Opened> Keyring::open(ByteSpan datagram, Endpoints ends, OpenError& error) const {
  error = OpenError::NoTag;
  if (datagram.size() < kTagSize) return std::nullopt;
  const std::size_t at = datagram.size() - kTagSize;
  for (std::size_t i = 0; i < kHeader.size(); ++i) {
    if (std::to_integer<std::uint8_t>(datagram[at + i]) != kHeader[i]) return std::nullopt;
  }
  error = OpenError::BadMac;
  const ByteSpan signed_part = datagram.first(datagram.size() - kMacSize);
  const ByteSpan got = datagram.last(kMacSize);
  for (const auto& key : keys_) {
    unsigned char want[kMacSize];
    if (!mac(key, ends, signed_part, want)) continue;
    if (CRYPTO_memcmp(want, got.data(), kMacSize) == 0) {
      return Opened{at, load_be32(datagram, at + 6), load_be64(datagram, at + 10)};
    }
  }
  return std::nullopt;
}

bool ReplayWindow::accept(std::uint64_t seq) {
  if (!any_ || seq > top_) {
    const std::uint64_t shift = any_ ? seq - top_ : kSize;
    seen_ = shift >= kSize ? 1 : (seen_ << shift) | 1;
    top_ = seq;
    any_ = true;
    return true;
  }
  const std::uint64_t back = top_ - seq;
  if (back >= kSize || (seen_ >> back & 1)) return false;
  seen_ |= std::uint64_t{1} << back;
  return true;
}

}  // namespace mqtt_proxy::peering::auth
