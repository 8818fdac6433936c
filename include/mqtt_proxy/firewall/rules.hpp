// The iptables rules the proxy installs, as data: building one, and finding ours in the output of
// `iptables -t raw -S PREROUTING`. Pure, so the parsing is tested on byte strings; FirewallGuard
// runs iptables.
//
// Each rule carries the comment "mqtt_proxy pid=N", N being the installing process. A proxy that
// finds a rule of its interface and port whose owner is gone (killed, crashed) knows it is a
// leftover it may take over; a rule whose owner still runs belongs to another instance and is left
// alone. Rules of older versions carry the bare comment "mqtt_proxy" and count as leftovers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mqtt_proxy::firewall {

inline constexpr std::string_view kCommentTag = "mqtt_proxy";

// The rule for one interface, as iptables arguments after the table and chain.
std::vector<std::string> drop_rule(const std::string& iface, std::uint16_t port, std::int64_t pid);

// One rule of ours found in a listing.
struct TaggedRule {
  std::vector<std::string> spec;  // the arguments after "-A PREROUTING", to delete it with -D
  std::string iface;
  std::uint16_t port = 0;
  std::optional<std::int64_t> owner;  // none: an older version's rule, no owner recorded
};

// Splits one line of `iptables -S` into arguments: blanks separate them, double quotes group them,
// and a backslash escapes the next character inside quotes (how iptables quotes a comment).
// Nothing if a quote is left open.
std::optional<std::vector<std::string>> split_rule_line(std::string_view line);

// The rules of chain PREROUTING in an `iptables -S` listing whose comment is ours; every other line
// is ignored.
std::vector<TaggedRule> tagged_rules(std::string_view listing);

}  // namespace mqtt_proxy::firewall
