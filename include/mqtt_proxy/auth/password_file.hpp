// Mosquitto's password file, so researchers can reuse mosquitto_passwd: one "user:hash" per line,
// the hash either "$7$<iterations>$<salt>$<hash>" (PBKDF2-HMAC-SHA512, Mosquitto 2.0's default) or
// "$6$<salt>$<hash>" (SHA-512 of password then salt, Mosquitto 1.x), salt and hash in base64.
// Blank lines and lines starting with '#' are skipped. Parsing and checking do no I/O.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "mqtt_proxy/util/bytes.hpp"
#include "mqtt_proxy/util/result.hpp"

namespace mqtt_proxy::auth {

// Whether two secrets are equal, in time that depends on their length only (OpenSSL's
// CRYPTO_memcmp), so a client cannot find a password byte by byte from response times.
bool equal_secrets(ByteSpan a, ByteSpan b);

class PasswordFile {
 public:
  // The file's text; on a bad line, nothing and `error` names the line and what is wrong with it.
  static Result<PasswordFile> parse(std::string_view text);

  // Whether `user` is listed and `password` matches its hash (compared in constant time).
  bool check(std::string_view user, ByteSpan password) const;
  // Whether `user` is listed (for identities that need no password: a verified certificate's CN).
  bool has_user(std::string_view user) const { return entries_.contains(std::string(user)); }
  std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    bool pbkdf2 = true;  // else salted SHA-512
    int iterations = 0;
    Bytes salt;
    Bytes hash;
  };
  std::unordered_map<std::string, Entry> entries_;
};

// Standard base64 with padding; nothing on any invalid character or length.
std::optional<Bytes> base64_decode(std::string_view text);

}  // namespace mqtt_proxy::auth
