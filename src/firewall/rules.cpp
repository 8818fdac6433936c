#include "mqtt_proxy/firewall/rules.hpp"

#include <charconv>

namespace mqtt_proxy::firewall {

namespace {
std::optional<std::int64_t> parse_number(std::string_view s) {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v <= 0) return std::nullopt;
  return v;
}

// The value after `name` in an argument list, if present.
const std::string* value_of(const std::vector<std::string>& args, std::string_view name) {
  for (std::size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == name) return &args[i + 1];
  }
  return nullptr;
}
}  // namespace

std::vector<std::string> drop_rule(const std::string& iface, std::uint16_t port, std::int64_t pid) {
  return {"-i",         iface,
          "-p",         "tcp",
          "--dport",    std::to_string(port),
          "-m",         "addrtype",
          "--dst-type", "LOCAL",
          "-m",         "comment",
          "--comment",  std::string(kCommentTag) + " pid=" + std::to_string(pid),
          "-j",         "DROP"};
}

std::optional<std::vector<std::string>> split_rule_line(std::string_view line) {
  std::vector<std::string> out;
  std::string cur;
  bool in_word = false;
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '\\' && i + 1 < line.size()) {
        cur += line[++i];
      } else if (c == '"') {
        quoted = false;
      } else {
        cur += c;
      }
    } else if (c == '"') {
      quoted = true;
      in_word = true;
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (in_word) out.push_back(std::move(cur));
      cur.clear();
      in_word = false;
    } else {
      cur += c;
      in_word = true;
    }
  }
  if (quoted) return std::nullopt;
  if (in_word) out.push_back(std::move(cur));
  return out;
}

std::vector<TaggedRule> tagged_rules(std::string_view listing) {
  std::vector<TaggedRule> found;
  while (!listing.empty()) {
    const std::size_t nl = listing.find('\n');
    const std::string_view line = listing.substr(0, nl);
    listing = nl == std::string_view::npos ? std::string_view() : listing.substr(nl + 1);
    auto args = split_rule_line(line);
    if (!args || args->size() < 2 || (*args)[0] != "-A" || (*args)[1] != "PREROUTING") continue;
    args->erase(args->begin(), args->begin() + 2);
    const std::string* comment = value_of(*args, "--comment");
    const std::string* iface = value_of(*args, "-i");
    const std::string* dport = value_of(*args, "--dport");
    if (!comment || !iface || !dport) continue;
    const std::string_view c(*comment);
    if (c.substr(0, kCommentTag.size()) != kCommentTag) continue;
    TaggedRule r;
    const std::string_view rest = c.substr(kCommentTag.size());
    if (rest.empty()) {
      // an older version's rule
    } else if (rest.substr(0, 5) == " pid=" && parse_number(rest.substr(5))) {
      r.owner = parse_number(rest.substr(5));
    } else {
      continue;  // someone else's comment that merely starts like ours
    }
    const auto port = parse_number(*dport);
    if (!port || *port > 65535) continue;
    r.port = static_cast<std::uint16_t>(*port);
    r.iface = *iface;
    r.spec = std::move(*args);
    found.push_back(std::move(r));
  }
  return found;
}

}  // namespace mqtt_proxy::firewall
