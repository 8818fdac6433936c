#include "mqtt_proxy/auth/password_file.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <charconv>

namespace mqtt_proxy::auth {

namespace {

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const auto pos = s.find(sep);
    out.push_back(s.substr(0, pos));
    if (pos == std::string_view::npos) return out;
    s.remove_prefix(pos + 1);
  }
}

}  // namespace

std::optional<Bytes> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  Bytes out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int v[4];
    int pad = 0;
    for (int j = 0; j < 4; ++j) {
      const char c = text[i + static_cast<std::size_t>(j)];
      if (c == '=' && last && j >= 2) {
        v[j] = 0;
        ++pad;
        continue;
      }
      if (pad > 0) return std::nullopt;  // data after padding
      v[j] = base64_value(c);
      if (v[j] < 0) return std::nullopt;
    }
    const std::uint32_t n = static_cast<std::uint32_t>(v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3]);
    out.push_back(std::byte(static_cast<std::uint8_t>(n >> 16)));
    if (pad < 2) out.push_back(std::byte(static_cast<std::uint8_t>(n >> 8)));
    if (pad < 1) out.push_back(std::byte(static_cast<std::uint8_t>(n)));
  }
  return out;
}

bool equal_secrets(ByteSpan a, ByteSpan b) {
  return a.size() == b.size() && (a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0);
}

Result<PasswordFile> PasswordFile::parse(std::string_view text) {
  PasswordFile f;
  int line_no = 0;
  for (std::string_view line : split(text, '\n')) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    auto fail = [&](std::string_view why) -> Result<PasswordFile> {
      return Error{"line " + std::to_string(line_no) + ": " + std::string(why)};
    };
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return fail("expected user:hash");
    const std::string user(line.substr(0, colon));
    const auto fields = split(line.substr(colon + 1), '$');
    Entry e;
    std::string_view salt, hash;
    if (fields.size() == 5 && fields[0].empty() && fields[1] == "7") {
      const auto it = fields[2];
      const auto r = std::from_chars(it.data(), it.data() + it.size(), e.iterations);
      if (r.ec != std::errc{} || r.ptr != it.data() + it.size() || e.iterations < 1) {
        return fail("bad iteration count");
      }
      salt = fields[3];
      hash = fields[4];
    } else if (fields.size() == 4 && fields[0].empty() && fields[1] == "6") {
      e.pbkdf2 = false;
      salt = fields[2];
      hash = fields[3];
    } else {
      return fail(
          "hash is neither $7$ (PBKDF2-SHA512) nor $6$ (SHA-512) as mosquitto_passwd writes");
    }
    auto s = base64_decode(salt);
    auto h = base64_decode(hash);
    if (!s || s->empty()) return fail("salt is not base64");
    if (!h || h->size() != SHA512_DIGEST_LENGTH) return fail("hash is not 64 bytes of base64");
    e.salt = std::move(*s);
    e.hash = std::move(*h);
    if (!f.entries_.emplace(user, std::move(e)).second) return fail("user listed twice: " + user);
  }
  return f;
}

bool PasswordFile::check(std::string_view user, ByteSpan password) const {
  const auto it = entries_.find(std::string(user));
  if (it == entries_.end()) return false;
  const Entry& e = it->second;
  unsigned char digest[SHA512_DIGEST_LENGTH];
  const auto* pw = reinterpret_cast<const char*>(password.data());
  const auto* salt = reinterpret_cast<const unsigned char*>(e.salt.data());
  if (e.pbkdf2) {
    if (PKCS5_PBKDF2_HMAC(pw, static_cast<int>(password.size()), salt,
                          static_cast<int>(e.salt.size()), e.iterations, EVP_sha512(),
                          sizeof(digest), digest) != 1) {
      return false;
    }
  } else {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    const bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha512(), nullptr) == 1 &&
                    EVP_DigestUpdate(ctx, password.data(), password.size()) == 1 &&
                    EVP_DigestUpdate(ctx, e.salt.data(), e.salt.size()) == 1 &&
                    EVP_DigestFinal_ex(ctx, digest, &len) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) return false;
  }
  return CRYPTO_memcmp(digest, e.hash.data(), sizeof(digest)) == 0;
}

}  // namespace mqtt_proxy::auth
