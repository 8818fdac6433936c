#include "mqtt_proxy/auth/password_file.hpp"

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace mqtt_proxy::test {
namespace {

// Written by mosquitto_passwd 2.0.11 (-b -c pw alice secret1; -b pw bob 'p@ss:word').
constexpr std::string_view kMosquittoFile =
    "alice:$7$101$RiJEb9vV0/tONA5O$Z5El9L0Bn7hlRFq7TWkJ5TiyWPaZomxgk7OjmjX9Qpg0wIga5JzbGl6WBxzCTnY+"
    "PqfcpcB4CRO97229JI83QQ==\n"
    "bob:$7$101$i1HTZ7lIShdNQGhh$FQtE760zWTVHw5klel8UMs0LOtjfA129RMtRIcfgxau2zKTh3R/"
    "btPG4bsxj9VjB81/kYLC5+w0o4GbIceRTxg==\n";

// Mosquitto 1.x's salted SHA-512 ($6$: SHA-512 of password then salt), computed with Python's
// hashlib for password "legacy" and salt bytes 1..12.
constexpr std::string_view kLegacyLine =
    "carol:$6$AQIDBAUGBwgJCgsM$ZmINScnf4jTYNeH2ZDlcOt8ckLx5BKWeKCa5L8DKndBAdvK0U/"
    "l4AThKb9kq1/XPl28Dz+OZI6xzeqPXFzFnTA==";

auth::PasswordFile parse_ok(std::string_view text) {
  auto f = auth::PasswordFile::parse(text);
  EXPECT_TRUE(f) << f.error();
  return f ? std::move(*f) : auth::PasswordFile{};
}

std::string parse_error(std::string_view text) {
  const auto f = auth::PasswordFile::parse(text);
  EXPECT_FALSE(f);
  return f ? std::string() : f.error();
}

TEST(PasswordFile, AcceptsMosquittoPasswdHashes) {
  const auto f = parse_ok(kMosquittoFile);
  EXPECT_EQ(f.size(), 2u);
  EXPECT_TRUE(f.check("alice", as_bytes("secret1")));
  EXPECT_TRUE(f.check("bob", as_bytes("p@ss:word")));
  EXPECT_FALSE(f.check("alice", as_bytes("secret2")));
  EXPECT_FALSE(f.check("alice", as_bytes("")));
  EXPECT_FALSE(f.check("bob", as_bytes("secret1")));
  EXPECT_FALSE(f.check("mallory", as_bytes("secret1")));
}

TEST(PasswordFile, AcceptsLegacySha512CommentsBlankLinesAndCrLf) {
  const auto f = parse_ok("# users\n\n" + std::string(kLegacyLine) + "\r\n");
  EXPECT_TRUE(f.check("carol", as_bytes("legacy")));
  EXPECT_FALSE(f.check("carol", as_bytes("Legacy")));
}

TEST(PasswordFile, BadLinesNameTheLineAndTheProblem) {
  EXPECT_EQ(parse_error("alice:secret\n"),
            "line 1: hash is neither $7$ (PBKDF2-SHA512) nor $6$ (SHA-512) as mosquitto_passwd "
            "writes");
  EXPECT_EQ(parse_error("# c\nnocolon\n"), "line 2: expected user:hash");
  EXPECT_EQ(parse_error(":$6$AQID$AAAA\n"), "line 1: expected user:hash");
  EXPECT_EQ(parse_error("a:$7$x$AQID$AAAA\n"), "line 1: bad iteration count");
  EXPECT_EQ(parse_error("a:$7$0$AQID$AAAA\n"), "line 1: bad iteration count");
  EXPECT_EQ(parse_error("a:$6$A!ID$AAAA\n"), "line 1: salt is not base64");
  EXPECT_EQ(parse_error("a:$6$AQID$AAAA\n"), "line 1: hash is not 64 bytes of base64");
  EXPECT_EQ(parse_error(std::string(kLegacyLine) + "\n" + std::string(kLegacyLine)),
            "line 2: user listed twice: carol");
}

TEST(Base64, DecodesWithAndWithoutPaddingAndRefusesGarbage) {
  EXPECT_EQ(str(*auth::base64_decode("TWFu")), "Man");
  EXPECT_EQ(str(*auth::base64_decode("TWE=")), "Ma");
  EXPECT_EQ(str(*auth::base64_decode("TQ==")), "M");
  EXPECT_EQ(str(*auth::base64_decode("")), "");
  EXPECT_FALSE(auth::base64_decode("TQ="));
  EXPECT_FALSE(auth::base64_decode("T=Q="));
  EXPECT_FALSE(auth::base64_decode("TQ==TWFu"));
  EXPECT_FALSE(auth::base64_decode("TW-u"));
}

}  // namespace
}  // namespace mqtt_proxy::test
