// Mosquitto's acl_file, read and applied exactly as Mosquitto 2.0 does (docs/plugins.md). Read
// first: mosquitto's src/security_default.c (aclfile__parse, add__acl, add__acl_pattern,
// mosquitto_acl_check_default, acl__find_acls), src/security.c (mosquitto_acl_check,
// acl__check_dollar) and man/mosquitto.conf.5.xml (acl_file).
//
//   # a comment: '#' in the first column only
//   topic [read|write|readwrite|deny] <topic>     no access word: readwrite
//   user <username>                               the topic lines after it are that user's
//   pattern [read|write|readwrite|deny] <topic>   every client, %c = client id, %u = username
//
// Topic lines before the first `user` line are the anonymous clients' (no username); a client
// with a username but no `user` section has patterns only. Parsing and checking do no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt_proxy/util/result.hpp"

namespace mqtt_proxy::acl_file {

// Mosquitto's MOSQ_ACL_* bits; `deny` is MOSQ_ACL_NONE.
enum class Access : std::uint8_t { Deny = 0, Read = 1, Write = 2, ReadWrite = 3 };

struct Entry {
  std::string topic;  // a topic filter; a pattern's still has its %c and %u
  Access access = Access::ReadWrite;
  std::size_t ccount = 0;  // "%c" occurrences (a pattern's)
  std::size_t ucount = 0;  // "%u" occurrences
};

// One `user` section (or the anonymous one), deny entries first as add__acl() keeps them.
struct UserAcl {
  std::string username;
  std::vector<Entry> entries;
};

class Acl {
 public:
  // The file's text; on a bad line, the error is one line: "line N: why". Mosquitto refuses to
  // start on the same lines.
  static Result<Acl> parse(std::string_view text);

  // PUBLISH and wills (MOSQ_ACL_WRITE). An empty username is no username (anonymous).
  bool may_write(std::string_view client_id, std::string_view username,
                 std::string_view topic) const;
  // A message delivered to a subscriber (MOSQ_ACL_READ), retained ones included.
  bool may_read(std::string_view client_id, std::string_view username,
                std::string_view topic) const;
  // There is no SUBSCRIBE check: Mosquitto 2.0's acl_file check returns success for every
  // subscription ("FIXME - implement ACL subscription strings", security_default.c); what a
  // subscriber may receive is decided per message by may_read().

  // Lines Mosquitto accepts with a warning (a pattern without %c or %u), "line N: why".
  const std::vector<std::string>& warnings() const { return warnings_; }
  std::size_t user_count() const { return users_.size(); }
  std::size_t pattern_count() const { return patterns_.size(); }
  bool has_anonymous() const { return anonymous_ != kNone; }

 private:
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);

  bool check(std::string_view client_id, std::string_view username, std::string_view topic,
             Access wanted) const;
  const UserAcl* find_user(std::string_view username) const;
  void add_topic(const std::string* user, Entry e);
  void add_pattern(Entry e);

  std::vector<UserAcl> users_;  // in the file's order; anonymous_ indexes the one without a name
  std::size_t anonymous_ = kNone;
  // Username to its index in users_: a lookup per delivery checked (auth_read), so not a scan.
  std::map<std::string, std::size_t, std::less<>> by_name_;
  std::vector<Entry> patterns_;  // deny entries first
  std::vector<std::string> warnings_;
  mutable std::string scratch_;  // a pattern with %c/%u replaced; one thread calls (plugin.h)
};

}  // namespace mqtt_proxy::acl_file
