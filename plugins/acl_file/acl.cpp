// Mosquitto 2.0's acl_file (acl.hpp). Each rule cites the function of mosquitto's source it
// follows: src/security_default.c for the file and the check, src/security.c for the '$' topics.
#include "acl.hpp"

#include <algorithm>
#include <cstdio>

#include "mqtt_proxy/mqtt/topic.hpp"

namespace mqtt_proxy::acl_file {
namespace {

// isspace() in the C locale, which aclfile__parse() and misc__trimblanks() use.
bool is_c_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// misc__trimblanks(): leading and trailing isspace().
std::string_view trim_blanks(std::string_view s) {
  while (!s.empty() && is_c_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_c_space(s.back())) s.remove_suffix(1);
  return s;
}

// strtok_r(s, " ", ...): skips spaces (only ' ', not tabs), then the token runs to the next space,
// which is consumed. `rest` is what strtok_r(NULL, "", ...) would return next: the text after
// that one space, or nothing.
std::string_view next_token(std::string_view& rest) {
  const std::size_t start = rest.find_first_not_of(' ');
  if (start == std::string_view::npos) {
    rest = {};
    return {};
  }
  rest.remove_prefix(start);
  const std::size_t end = rest.find(' ');
  const std::string_view token = rest.substr(0, end);
  rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
  return token;
}

// mosquitto_sub_topic_check() of lib/util_topic.c: '+' alone in a level, '#' alone in the last
// level, at most 65535 bytes. The empty string passes (aclfile__parse never hands it one).
bool sub_topic_check(std::string_view s) {
  char prev = '\0';
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const char next = i + 1 < s.size() ? s[i + 1] : '\0';
    if (c == '+') {
      if ((prev != '\0' && prev != '/') || (next != '\0' && next != '/')) return false;
    } else if (c == '#') {
      if ((prev != '\0' && prev != '/') || next != '\0') return false;
    }
    prev = c;
  }
  return s.size() <= 65535;
}

// "%c" / "%u" occurrences, counted as add__acl_pattern() counts them (strstr, non-overlapping).
std::size_t count_of(std::string_view s, std::string_view what) {
  std::size_t n = 0;
  for (std::size_t at = s.find(what); at != std::string_view::npos; at = s.find(what, at + 2)) ++n;
  return n;
}

// A line of the file quoted for a one-line message: control bytes escaped, long lines cut.
std::string quoted(std::string_view s) {
  constexpr std::size_t kMax = 80;
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size() && i < kMax; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > kMax) out += "...";
  out += '"';
  return out;
}

std::string at_line(std::size_t line, std::string_view why) {
  return "line " + std::to_string(line) + ": " + std::string(why);
}

bool grants(Access have, Access wanted) {
  return (static_cast<unsigned>(have) & static_cast<unsigned>(wanted)) != 0;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// Deny entries go to the front of their list (add__acl, add__acl_pattern), so that the check,
// which returns at the first entry that decides, sees every deny before any grant.
void insert(std::vector<Entry>& list, Entry e) {
  if (e.access == Access::Deny) {
    list.insert(list.begin(), std::move(e));
  } else {
    list.push_back(std::move(e));
  }
}

}  // namespace

Result<Acl> Acl::parse(std::string_view text) {
  Acl acl;
  std::string user;  // the current `user` section; none before the first
  bool in_user = false;
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    // fgets() then strlen(): a NUL byte ends the line.
    line = line.substr(0, line.find('\0'));
    // Trailing isspace() is stripped; a comment is a '#' in the first column only, so an indented
    // "  # note" is the token "#", an invalid line, as in Mosquitto.
    while (!line.empty() && is_c_space(line.back())) line.remove_suffix(1);
    if (!line.empty() && line.front() == '#') continue;

    std::string_view rest = line;
    const std::string_view keyword = next_token(rest);
    if (keyword.empty()) continue;  // blank (or only spaces)
    if (keyword == "topic" || keyword == "pattern") {
      const bool pattern = keyword == "pattern";
      std::string_view access_s = next_token(rest);
      if (access_s.empty()) return Error{at_line(line_no, "empty topic")};
      std::string_view topic;
      if (!rest.empty()) {
        topic = trim_blanks(rest);
      } else {
        topic = access_s;  // "topic foo": the one word is the topic, readwrite
        access_s = {};
      }
      Entry e;
      if (access_s.empty() || access_s == "readwrite") {
        e.access = Access::ReadWrite;
      } else if (access_s == "read") {
        e.access = Access::Read;
      } else if (access_s == "write") {
        e.access = Access::Write;
      } else if (access_s == "deny") {
        e.access = Access::Deny;
      } else {
        return Error{at_line(line_no, "invalid topic access type " + quoted(access_s) +
                                          " (read, write, readwrite or deny)")};
      }
      if (!sub_topic_check(topic)) {
        return Error{at_line(line_no, "invalid ACL topic " + quoted(topic))};
      }
      e.topic = std::string(topic);
      if (pattern) {
        e.ccount = count_of(topic, "%c");
        e.ucount = count_of(topic, "%u");
        if (e.ccount == 0 && e.ucount == 0) {
          acl.warnings_.push_back(
              at_line(line_no, "ACL pattern " + quoted(topic) + " does not contain %c or %u"));
        }
        acl.add_pattern(std::move(e));
      } else {
        acl.add_topic(in_user ? &user : nullptr, std::move(e));
      }
    } else if (keyword == "user") {
      if (rest.empty()) return Error{at_line(line_no, "missing username")};
      user = std::string(trim_blanks(rest));  // may contain spaces: "user John Smith"
      in_user = true;
    } else {
      return Error{at_line(line_no, "invalid line " + quoted(line) +
                                        " (topic, pattern, user, or '#' in the first column)")};
    }
  }
  return acl;
}

void Acl::add_topic(const std::string* user, Entry e) {
  // add__acl(): one list per username, entries of a repeated `user` section merged into it; the
  // topics before any `user` line form the anonymous list.
  std::size_t index = kNone;
  if (user == nullptr) {
    index = anonymous_;
  } else if (const UserAcl* u = find_user(*user)) {
    index = static_cast<std::size_t>(u - users_.data());
  }
  if (index == kNone) {
    index = users_.size();
    users_.push_back(UserAcl{user ? *user : std::string(), {}});
    if (user == nullptr) {
      anonymous_ = index;
    } else {
      by_name_.emplace(*user, index);
    }
  }
  insert(users_[index].entries, std::move(e));
}

void Acl::add_pattern(Entry e) {
  insert(patterns_, std::move(e));
}

const UserAcl* Acl::find_user(std::string_view username) const {
  const auto it = by_name_.find(username);
  return it == by_name_.end() ? nullptr : &users_[it->second];
}

bool Acl::may_write(std::string_view client_id, std::string_view username,
                    std::string_view topic) const {
  return check(client_id, username, topic, Access::Write);
}

bool Acl::may_read(std::string_view client_id, std::string_view username,
                   std::string_view topic) const {
  return check(client_id, username, topic, Access::Read);
}

bool Acl::check(std::string_view client_id, std::string_view username, std::string_view topic,
                Access wanted) const {
  // acl__check_dollar() (security.c), before any ACL: no client writes to $SYS except a bridge's
  // state topic, and nobody publishes to or receives a topic under $share.
  if (starts_with(topic, "$SYS")) {
    if (wanted == Access::Write && !mqtt::topic_matches("$SYS/broker/connection/+/state", topic))
      return false;
  } else if (starts_with(topic, "$share")) {
    return false;
  }
  // mosquitto_topic_matches_sub() refuses a topic with wildcards (or an empty one): nothing
  // matches it, so the check ends in a denial.
  if (!mqtt::is_valid_topic_name(topic)) return false;

  // acl__find_acls(): an anonymous client gets the topics before the first `user` line; a client
  // with a username gets its section, or none.
  const UserAcl* list = nullptr;
  if (username.empty()) {
    if (anonymous_ != kNone) list = &users_[anonymous_];
  } else {
    list = find_user(username);
  }
  // mosquitto_acl_check_default(): the client's own list first, deny entries first within it.
  if (list != nullptr) {
    for (const Entry& e : list->entries) {
      // "If subscription starts with $, acl_root->topic must also start with $."
      if (topic.front() == '$' && e.topic.front() != '$') continue;
      if (!mqtt::topic_matches(e.topic, topic)) continue;
      if (e.access == Access::Deny) return false;
      if (grants(e.access, wanted)) return true;
    }
  }
  if (patterns_.empty()) return false;
  // With patterns in use, a username or client id containing '+' or '#' is denied outright (2.0
  // checks "+#"; 1.x also refused '/'): it would otherwise substitute a wildcard into a pattern.
  if (username.find_first_of("+#") != std::string_view::npos) return false;
  if (client_id.find_first_of("+#") != std::string_view::npos) return false;
  for (const Entry& p : patterns_) {
    if (p.ucount != 0 && username.empty()) continue;  // %u needs a username
    // Left to right, "%c" is the client id and "%u" the username; any other '%' is itself.
    scratch_.clear();
    for (std::size_t i = 0; i < p.topic.size(); ++i) {
      if (p.topic[i] == '%' && i + 1 < p.topic.size()) {
        if (p.topic[i + 1] == 'c') {
          scratch_ += client_id;
          ++i;
          continue;
        }
        if (p.topic[i + 1] == 'u' && !username.empty()) {
          scratch_ += username;
          ++i;
          continue;
        }
      }
      scratch_ += p.topic[i];
    }
    if (scratch_.empty() || !mqtt::topic_matches(scratch_, topic)) continue;
    if (p.access == Access::Deny) return false;
    if (grants(p.access, wanted)) return true;
  }
  return false;
}

}  // namespace mqtt_proxy::acl_file
