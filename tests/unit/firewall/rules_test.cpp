#include "mqtt_proxy/firewall/rules.hpp"

#include <gtest/gtest.h>

#include "mqtt_proxy/firewall/firewall_guard.hpp"

namespace mqtt_proxy::firewall {
namespace {

TEST(FirewallRules, TheRuleKeepsTheKernelAwayFromLocalMqttOnlyAndNamesItsOwner) {
  const std::vector<std::string> expected = {
      "-i",       "h1-eth0",    "-p",    "tcp", "--dport", "1883",      "-m",
      "addrtype", "--dst-type", "LOCAL", "-m",  "comment", "--comment", "mqtt_proxy pid=4242",
      "-j",       "DROP"};
  EXPECT_EQ(drop_rule("h1-eth0", 1883, 4242), expected);
}

TEST(FirewallRules, SplitsAListingLineAsIptablesQuotesIt) {
  const auto args = split_rule_line(
      R"(-A PREROUTING -i h1-eth0 -m comment --comment "a \"quoted\" one" -j DROP)");
  ASSERT_TRUE(args);
  const std::vector<std::string> expected = {"-A", "PREROUTING", "-i",        "h1-eth0",
                                             "-m", "comment",    "--comment", "a \"quoted\" one",
                                             "-j", "DROP"};
  EXPECT_EQ(*args, expected);
}

TEST(FirewallRules, AnOpenQuoteIsNoLine) {
  EXPECT_FALSE(split_rule_line("-A PREROUTING --comment \"open"));
  EXPECT_EQ(split_rule_line("")->size(), 0u);
  EXPECT_EQ(split_rule_line("  -P  PREROUTING ACCEPT ")->size(), 3u);
}

// What `iptables -t raw -S PREROUTING` printed (iptables 1.8.9, nf_tables) with our rules, an older
// version's, and rules that only look like ours.
constexpr std::string_view kListing =
    "-P PREROUTING ACCEPT\n"
    "-A PREROUTING -i h1-eth0 -p tcp -m tcp --dport 1883 -m addrtype --dst-type LOCAL -m comment "
    "--comment \"mqtt_proxy pid=12\" -j DROP\n"
    "-A PREROUTING -i h1-eth1 -p tcp -m tcp --dport 1884 -m addrtype --dst-type LOCAL -m comment "
    "--comment mqtt_proxy -j DROP\n"
    "-A PREROUTING -i h1-eth0 -p tcp -m tcp --dport 1883 -j DROP\n"
    "-A PREROUTING -i h1-eth0 -p tcp -m tcp --dport 1883 -m comment --comment \"mqtt_proxy_other\" "
    "-j DROP\n"
    "-A PREROUTING -i h1-eth0 -p tcp -m tcp --dport 1883 -m comment --comment \"mqtt_proxy pid=x\" "
    "-j DROP\n"
    "-A OUTPUT -i h1-eth0 -p tcp -m tcp --dport 1883 -m comment --comment \"mqtt_proxy pid=13\" "
    "-j DROP";

TEST(FirewallRules, FindsOurRulesAndTheirOwnersInAListing) {
  const auto rules = tagged_rules(kListing);
  ASSERT_EQ(rules.size(), 2u);
  EXPECT_EQ(rules[0].iface, "h1-eth0");
  EXPECT_EQ(rules[0].port, 1883);
  EXPECT_EQ(rules[0].owner, 12);
  const std::vector<std::string> spec = {
      "-i", "h1-eth0",  "-p",         "tcp",   "-m", "tcp",     "--dport",   "1883",
      "-m", "addrtype", "--dst-type", "LOCAL", "-m", "comment", "--comment", "mqtt_proxy pid=12",
      "-j", "DROP"};
  EXPECT_EQ(rules[0].spec, spec);  // what `iptables -D PREROUTING` takes to delete it
  EXPECT_EQ(rules[1].iface, "h1-eth1");
  EXPECT_EQ(rules[1].port, 1884);
  EXPECT_FALSE(rules[1].owner);  // an older version's rule
}

TEST(FirewallRules, ARuleWeBuildIsFoundAgainInItsListing) {
  std::string line = "-A PREROUTING";
  for (const auto& a : drop_rule("s1-eth3", 8883, 99)) {
    line += ' ';
    line += a.find(' ') == std::string::npos ? a : '"' + a + '"';
  }
  const auto rules = tagged_rules(line);
  ASSERT_EQ(rules.size(), 1u);
  EXPECT_EQ(rules[0].iface, "s1-eth3");
  EXPECT_EQ(rules[0].port, 8883);
  EXPECT_EQ(rules[0].owner, 99);
  EXPECT_EQ(rules[0].spec, drop_rule("s1-eth3", 8883, 99));
}

TEST(FirewallRules, RunProgramReportsExitStatusStderrAndStdout) {
  std::string err;
  std::string out;
  EXPECT_EQ(run_program({"sh", "-c", "echo oops >&2; exit 3"}, err), 3);
  EXPECT_EQ(err, "oops");
  EXPECT_EQ(run_program({"/nonexistent/program"}, err), 127);
  // Both streams larger than a pipe's buffer: neither may block the other.
  EXPECT_EQ(run_program({"sh", "-c",
                         "head -c 200000 /dev/zero | tr '\\0' e >&2; "
                         "head -c 300000 /dev/zero | tr '\\0' o; echo; exit 0"},
                        err, &out),
            0);
  EXPECT_EQ(err.size(), 4096u);  // kept to its cap
  EXPECT_EQ(out.size(), 300001u);
}

}  // namespace
}  // namespace mqtt_proxy::firewall
