#include "mqtt_proxy/app/options.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <vector>

namespace mqtt_proxy::app {
namespace {

ParseOutcome parse(std::vector<const char*> args, Options& o, std::string& msg) {
  args.insert(args.begin(), "mqtt_proxy");
  return parse_options(static_cast<int>(args.size()), args.data(), o, msg);
}

// Each command line is refused with one line that starts as given.
void expect_one_line_errors(
    const std::vector<std::pair<std::vector<const char*>, std::string>>& cases) {
  for (const auto& [args, want] : cases) {
    Options o;
    std::string msg;
    EXPECT_EQ(parse(args, o, msg), ParseOutcome::Error) << want;
    EXPECT_TRUE(msg.starts_with(want)) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(Options, PrototypeLaunchLine) {
  Options o;
  std::string msg;
  ASSERT_EQ(
      parse({"-t", "1883", "-u", "jorge", "-p", "passwd", "-F", "192.168.1.104", "-U", "1883"}, o,
            msg),
      ParseOutcome::Run)
      << msg;
  EXPECT_EQ(o.tcp_port, 1883);
  EXPECT_EQ(o.udp_port, 1883);
  EXPECT_EQ(*o.username, "jorge");
  EXPECT_EQ(*o.password, "passwd");
  ASSERT_EQ(o.peers.size(), 1u);
  EXPECT_EQ(o.peers[0].to_string(), "192.168.1.104");
  EXPECT_TRUE(o.firewall);
}

TEST(Options, RepeatableForwardersAndInterfaces) {
  Options o;
  std::string msg;
  ASSERT_EQ(parse({"-F", "10.0.0.1", "--forwarder", "10.0.0.2", "-i", "eth0", "-i", "eth1",
                   "--no-firewall", "--log-level", "debug"},
                  o, msg),
            ParseOutcome::Run);
  EXPECT_EQ(o.peers.size(), 2u);
  EXPECT_EQ(o.ifaces, (std::vector<std::string>{"eth0", "eth1"}));
  EXPECT_FALSE(o.firewall);
  EXPECT_EQ(o.log_level, log::Level::Debug);
}

TEST(Options, PasswordFileAndAnonymousAccess) {
  Options o;
  std::string msg;
  ASSERT_EQ(parse({"--password-file", "/etc/mqtt/pw", "--allow-anonymous"}, o, msg),
            ParseOutcome::Run)
      << msg;
  EXPECT_EQ(o.password_file, "/etc/mqtt/pw");
  EXPECT_TRUE(o.allow_anonymous);
  Options d;
  ASSERT_EQ(parse({}, d, msg), ParseOutcome::Run) << msg;
  EXPECT_TRUE(d.password_file.empty());
  EXPECT_FALSE(d.allow_anonymous);
}

TEST(Options, BatchingIsAutomaticWithCapablePeersAndOnOrOffWhenAskedFor) {
  std::string msg;
  Options d;
  ASSERT_EQ(parse({}, d, msg), ParseOutcome::Run) << msg;
  EXPECT_EQ(d.peer_batch, peering::BatchPolicy::Auto);
  EXPECT_TRUE(d.peer_extension);
  Options bare;  // the earlier flag without a value still means on
  ASSERT_EQ(parse({"--peer-batch"}, bare, msg), ParseOutcome::Run) << msg;
  EXPECT_EQ(bare.peer_batch, peering::BatchPolicy::On);
  Options off;
  ASSERT_EQ(parse({"--peer-batch", "off", "--peer-extension", "off"}, off, msg), ParseOutcome::Run)
      << msg;
  EXPECT_EQ(off.peer_batch, peering::BatchPolicy::Off);
  EXPECT_FALSE(off.peer_extension);
}

TEST(Options, BackpressureIsTheDefaultOverloadPolicy) {
  std::string msg;
  Options d;
  ASSERT_EQ(parse({}, d, msg), ParseOutcome::Run) << msg;
  EXPECT_EQ(d.overload, flow::Policy::Backpressure);
  EXPECT_DOUBLE_EQ(d.slow_grace_seconds, 1.5);
  Options o;
  ASSERT_EQ(parse({"--overload", "drop", "--slow-grace", "0.5"}, o, msg), ParseOutcome::Run) << msg;
  EXPECT_EQ(o.overload, flow::Policy::Drop);
  EXPECT_DOUBLE_EQ(o.slow_grace_seconds, 0.5);
}

TEST(Options, BadValuesAreOneLineErrors) {
  const std::vector<std::vector<const char*>> bad = {{"-t", "0"},
                                                     {"-t", "70000"},
                                                     {"-U", "abc"},
                                                     {"-F", "300.1.1.1"},
                                                     {"-p", "secret"},
                                                     {"--log-level", "loud"},
                                                     {"--peer-batch", "sometimes"},
                                                     {"--overload", "panic"},
                                                     {"--slow-grace", "0"},
                                                     {"--peer-extension", "maybe"},
                                                     {"--bogus"},
                                                     {"--verify-checksums", "maybe"},
                                                     {"--max-connections", "0"},
                                                     {"-t"}};
  for (const auto& args : bad) {
    Options o;
    std::string msg;
    EXPECT_EQ(parse(args, o, msg), ParseOutcome::Error) << args[0];
    EXPECT_FALSE(msg.empty());
    EXPECT_EQ(msg.find('\n'), std::string::npos);
  }
}

TEST(Options, PeerKeysUnsignedPeersAndCleanup) {
  Options o;
  std::string msg;
  ASSERT_EQ(parse({"-F", "192.168.1.104", "-F", "192.168.1.103", "--peer-key-file", "/k",
                   "--peer-unsigned", "192.168.1.103"},
                  o, msg),
            ParseOutcome::Run)
      << msg;
  EXPECT_EQ(o.peer_key_file, "/k");
  ASSERT_EQ(o.unsigned_peers.size(), 1u);
  EXPECT_EQ(o.unsigned_peers[0], *wire::Ipv4Address::parse("192.168.1.103"));
  Options o2;
  EXPECT_EQ(
      parse({"-F", "192.168.1.104", "--peer-key-file", "/k", "--peer-unsigned", "192.168.1.105"},
            o2, msg),
      ParseOutcome::Error);
  EXPECT_NE(msg.find("is not a peer"), std::string::npos);
  Options o3;
  EXPECT_EQ(parse({"-F", "192.168.1.104", "--peer-unsigned", "192.168.1.104"}, o3, msg),
            ParseOutcome::Error);
  EXPECT_NE(msg.find("needs --peer-key-file"), std::string::npos);
  Options o4;
  EXPECT_EQ(parse({"--peer-key-file", "/k", "--peer-extension", "off"}, o4, msg),
            ParseOutcome::Error);
  Options o5;
  ASSERT_EQ(parse({"--cleanup", "-t", "1884", "-i", "h1-eth0"}, o5, msg), ParseOutcome::Run);
  EXPECT_TRUE(o5.cleanup);
  EXPECT_EQ(o5.tcp_port, 1884);
  EXPECT_FALSE(Options{}.cleanup);
  EXPECT_EQ(Options{}.peer_refresh_seconds, 30u);  // soft state by default
  EXPECT_EQ(Options{}.peer_expiry_refreshes, 3u);
}

TEST(Options, ProxyProtocol) {
  {
    Options o;
    std::string msg;
    ASSERT_EQ(parse({}, o, msg), ParseOutcome::Run);
    EXPECT_FALSE(o.proxy_protocol) << "off by default";
  }
  Options o;
  std::string msg;
  ASSERT_EQ(parse({"--proxy-protocol", "v2", "--proxy-protocol-from", "10.0.0.1",
                   "--proxy-protocol-from", "10.0.0.2", "--require-certificate",
                   "--use-identity-as-username", "--proxy-protocol-timeout", "2.5"},
                  o, msg),
            ParseOutcome::Run)
      << msg;
  EXPECT_EQ(o.proxy_protocol, ingress::Mode::V2);
  ASSERT_EQ(o.proxy_protocol_from.size(), 2u);
  EXPECT_EQ(o.proxy_protocol_from[1].to_string(), "10.0.0.2");
  EXPECT_TRUE(o.require_certificate);
  EXPECT_TRUE(o.use_identity_as_username);
  EXPECT_DOUBLE_EQ(o.proxy_protocol_timeout_seconds, 2.5);
  for (const auto& [mode, want] :
       {std::pair{"v1", ingress::Mode::V1}, {"any", ingress::Mode::Any}}) {
    Options m;
    ASSERT_EQ(parse({"--proxy-protocol", mode}, m, msg), ParseOutcome::Run) << msg;
    EXPECT_EQ(m.proxy_protocol, want);
  }
}

TEST(Options, ProxyProtocolMistakesAreOneLineErrors) {
  const std::vector<std::pair<std::vector<const char*>, std::string>> cases = {
      {{"--proxy-protocol", "v3"}, "--proxy-protocol must be off, v1, v2 or any, not v3"},
      {{"--proxy-protocol", "any", "--proxy-protocol-from", "haproxy"},
       "--proxy-protocol-from: not an IPv4 address: haproxy"},
      {{"--proxy-protocol-from", "10.0.0.1"}, "--proxy-protocol-from needs --proxy-protocol"},
      {{"--require-certificate"}, "--require-certificate needs --proxy-protocol"},
      {{"--use-identity-as-username"}, "--use-identity-as-username needs --proxy-protocol"},
      {{"--proxy-protocol", "off", "--proxy-protocol-require-tls"},
       "--proxy-protocol-require-tls needs --proxy-protocol"},
      {{"--proxy-protocol", "v1", "--proxy-protocol-require-tls"},
       "--proxy-protocol v1 cannot report TLS"},
      {{"--proxy-protocol", "v2", "--proxy-protocol-timeout", "0"},
       "--proxy-protocol-timeout must be between 0.1 and 3600 seconds"},
  };
  expect_one_line_errors(cases);
}

TEST(Options, MetricsInfluxAndSysTopics) {
  {
    Options o;
    std::string msg;
    ASSERT_EQ(parse({}, o, msg), ParseOutcome::Run);
    EXPECT_TRUE(o.metrics_listen.empty()) << "no endpoint by default";
    EXPECT_FALSE(o.influx);
    EXPECT_EQ(o.sys_interval_seconds, 10u) << "Mosquitto's sys_interval";
    EXPECT_EQ(o.metrics_interval_seconds, 10u);
  }
  Options o;
  std::string msg;
  ASSERT_EQ(parse({"--metrics", "10.0.0.1:9234", "--influxdb",
                   "http://writer:secret@10.0.0.2:8087/telemetry", "--influxdb-password", "p@ss",
                   "--metrics-interval", "5", "--sys-interval", "0"},
                  o, msg),
            ParseOutcome::Run)
      << msg;
  EXPECT_EQ(o.metrics_listen, "10.0.0.1:9234");
  ASSERT_TRUE(o.influx);
  EXPECT_EQ(o.influx->host, "10.0.0.2");
  EXPECT_EQ(o.influx->port, 8087);
  EXPECT_EQ(o.influx->database, "telemetry");
  EXPECT_EQ(o.influx->username, "writer");
  EXPECT_EQ(o.influx->password, "p@ss") << "the option replaces the URL's password";
  EXPECT_EQ(o.metrics_interval_seconds, 5u);
  EXPECT_EQ(o.sys_interval_seconds, 0u);
  Options db;
  ASSERT_EQ(parse({"--influxdb", "http://10.0.0.2", "--influxdb-database", "m"}, db, msg),
            ParseOutcome::Run)
      << msg;
  EXPECT_EQ(db.influx->database, "m");
}

TEST(Options, MetricsMistakesAreOneLineErrors) {
  const std::vector<std::pair<std::vector<const char*>, std::string>> cases = {
      {{"--metrics", "9234"}, "--metrics must be IPv4ADDR:PORT"},
      {{"--metrics", "localhost:9234"}, "--metrics must be IPv4ADDR:PORT"},
      {{"--metrics", "10.0.0.1:0"}, "--metrics must be IPv4ADDR:PORT"},
      {{"--metrics", "10.0.0.1:65536"}, "--metrics must be IPv4ADDR:PORT"},
      {{"--metrics", "10.0.0.1:9x"}, "--metrics must be IPv4ADDR:PORT"},
      {{"--influxdb", "https://10.0.0.2/db"}, "--influxdb: "},
      {{"--influxdb", "http://10.0.0.2"}, "--influxdb: "},  // no database anywhere
      {{"--influxdb-database", "m"}, "--influxdb-database needs --influxdb"},
      {{"--influxdb-password", "p"}, "--influxdb-password needs --influxdb"},
      {{"--metrics-interval", "0"}, "--metrics-interval must be 1..86400 seconds"},
      {{"--sys-interval", "86401"}, "--sys-interval must be 0..86400 seconds"},
  };
  expect_one_line_errors(cases);
}

TEST(Options, WebSocketIsOnAtMProxysPortUnlessTurnedOff) {
  Options o;
  std::string msg;
  ASSERT_EQ(parse({}, o, msg), ParseOutcome::Run) << msg;
  EXPECT_EQ(o.ws_port, 8080);
  EXPECT_EQ(o.ws_path, "/mqtt");
  Options off;
  ASSERT_EQ(parse({"--ws-port", "0", "--ws-path", "/ws/v1"}, off, msg), ParseOutcome::Run) << msg;
  EXPECT_EQ(off.ws_port, 0);
  EXPECT_EQ(off.ws_path, "/ws/v1");
  Options moved;
  ASSERT_EQ(parse({"-t", "8080", "--ws-port", "9001"}, moved, msg), ParseOutcome::Run) << msg;
  EXPECT_EQ(moved.tcp_port, 8080);
  EXPECT_EQ(moved.ws_port, 9001);
  expect_one_line_errors({
      {{"--ws-port", "70000"}, "--ws-port must be 0..65535"},
      {{"--ws-port", "1883"}, "--ws-port must differ from --tcpport"},
      {{"-t", "8080"}, "--ws-port must differ from --tcpport"},
      {{"--ws-path", "mqtt"}, "--ws-path must be a path"},
      {{"--ws-path", "/mqtt?x=1"}, "--ws-path must be a path"},
      {{"--ws-path", "/a b"}, "--ws-path must be a path"},
      {{"--metrics", "10.0.0.1:8080"}, "--metrics 10.0.0.1:8080: the port is --ws-port's"},
      {{"--metrics", "10.0.0.1:1883"}, "--metrics 10.0.0.1:1883: the port is --tcpport's"},
  });
}

TEST(Options, UpstreamModeNamesTheBrokerAndTurnsOffWhatItDoes) {
  Options o;
  std::string msg;
  ASSERT_EQ(parse({}, o, msg), ParseOutcome::Run) << msg;
  EXPECT_TRUE(o.upstream_host.empty());  // the broker here, by default
  Options plain;
  ASSERT_EQ(parse({"--upstream", "10.0.0.4"}, plain, msg), ParseOutcome::Run) << msg;
  EXPECT_EQ(plain.upstream_host, "10.0.0.4");
  EXPECT_EQ(plain.upstream_port, 1883);
  EXPECT_FALSE(plain.upstream_tls);
  Options tls;
  ASSERT_EQ(parse({"--upstream", "broker.example:8883", "--upstream-tls", "--upstream-cafile",
                   "/etc/ca.pem", "--plugin", "/x.so"},
                  tls, msg),
            ParseOutcome::Run)
      << msg;
  EXPECT_EQ(tls.upstream_host, "broker.example");
  EXPECT_EQ(tls.upstream_port, 8883);
  EXPECT_TRUE(tls.upstream_tls);
  EXPECT_EQ(tls.upstream_cafile, "/etc/ca.pem");
  Options v6;
  ASSERT_EQ(parse({"--upstream", "[fd00::4]:1884"}, v6, msg), ParseOutcome::Run) << msg;
  EXPECT_EQ(v6.upstream_host, "fd00::4");
  EXPECT_EQ(v6.upstream_port, 1884);
  expect_one_line_errors({
      {{"--upstream", "10.0.0.4:0"}, "--upstream must be HOST[:PORT]"},
      {{"--upstream", "10.0.0.4:70000"}, "--upstream must be HOST[:PORT]"},
      {{"--upstream", "10.0.0.4:"}, "--upstream must be HOST[:PORT]"},
      {{"--upstream", ":1883"}, "--upstream must be HOST[:PORT]"},
      {{"--upstream", "fd00::4"}, "--upstream must be HOST[:PORT]"},
      {{"--upstream", "[fd00::4"}, "--upstream must be HOST[:PORT]"},
      {{"--upstream", "user@host"}, "--upstream must be HOST[:PORT]"},
      {{"--upstream-tls"}, "--upstream-tls needs --upstream"},
      {{"--upstream-cafile", "ca.pem"}, "--upstream-cafile needs --upstream"},
      {{"--upstream", "h", "--upstream-cafile", "ca.pem"},
       "--upstream-cafile needs --upstream-tls"},
      {{"--upstream", "h", "-F", "10.0.0.2"}, "--forwarder (-F): UDP peering is off in upstream"},
      {{"--upstream", "h", "-s", "10.0.0.100"}, "--m2m-server (-s): MQTT2MULTICAST is off"},
      {{"--upstream", "h", "-u", "a", "-p", "b"}, "--username (-u): the broker's own credentials"},
      {{"--upstream", "h", "--password-file", "/p"}, "--password-file: the broker's own"},
  });
  std::string help;
  ASSERT_EQ(parse({"-h"}, o, help), ParseOutcome::Exit0);
  EXPECT_NE(help.find("UDP peering (-F)"), std::string::npos) << "--help says peering is off";
}

TEST(Options, HelpAndVersionExitZero) {
  Options o;
  std::string msg;
  EXPECT_EQ(parse({"-h"}, o, msg), ParseOutcome::Exit0);
  EXPECT_NE(msg.find("--forwarder"), std::string::npos);
  EXPECT_EQ(parse({"--version"}, o, msg), ParseOutcome::Exit0);
  EXPECT_NE(msg.find("mqtt_proxy"), std::string::npos);
}

// README's option table states the defaults for users; --help prints them from Options, where
// they are written once. Every default --help shows must open README's default column.
TEST(Options, ReadmeTableStatesTheDefaultsHelpPrints) {
  Options o;
  std::string help;
  ASSERT_EQ(parse({"--help"}, o, help), ParseOutcome::Exit0);
  std::map<std::string, std::string> help_default;  // long name -> default
  const std::regex help_row(R"(--([a-z-]+) \]? ?arg \(=([^)]*)\))");
  for (std::sregex_iterator it(help.begin(), help.end(), help_row), end; it != end; ++it) {
    help_default[(*it)[1]] = (*it)[2];
  }
  ASSERT_GT(help_default.size(), 10u);

  std::ifstream in(MQTT_PROXY_SOURCE_DIR "/README.md");
  ASSERT_TRUE(in) << "README.md not found";
  std::stringstream text;
  text << in.rdbuf();
  const std::string readme = text.str();
  const std::regex table_row(R"(\| (?:`-[a-zA-Z]`, )?`--([a-z-]+)` \|[^\n]*\| ([^|\n]*) \|\n)");
  std::map<std::string, std::string> readme_default;
  for (std::sregex_iterator it(readme.begin(), readme.end(), table_row), end; it != end; ++it) {
    readme_default[(*it)[1]] = (*it)[2];
  }
  for (const auto& [name, value] : help_default) {
    SCOPED_TRACE("--" + name);
    const auto it = readme_default.find(name);
    ASSERT_NE(it, readme_default.end()) << "README's option table lacks --" << name;
    EXPECT_TRUE(it->second.starts_with(value))
        << "README says " << it->second << ", --help says " << value;
  }
}

}  // namespace
}  // namespace mqtt_proxy::app
