// The exporters' pure half: the catalogue, the Prometheus text format, the InfluxDB line protocol
// and its URL, the /proc parsers.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <sstream>
#include <string>

#include "mqtt_proxy/telemetry/catalogue.hpp"
#include "mqtt_proxy/telemetry/influx.hpp"
#include "mqtt_proxy/telemetry/process_stats.hpp"
#include "mqtt_proxy/telemetry/prometheus.hpp"
#include "mqtt_proxy/telemetry/snapshot.hpp"

namespace mqtt_proxy::telemetry {
namespace {

// Every field a distinct nonzero value, so a sample shows which field it came from.
metrics::Counters numbered_counters() {
  metrics::Counters c;
  std::uint64_t v = 0;
#define MQTT_PROXY_TEST_SET(name, kind, help) c.name = ++v * 1000;
  MQTT_PROXY_COUNTERS(MQTT_PROXY_TEST_SET)
#undef MQTT_PROXY_TEST_SET
  return c;
}

// The samples of an exposition: "name{labels}" -> value text, with a count of repeats.
struct Parsed {
  std::map<std::string, std::string> values;
  std::map<std::string, int> seen;
  std::map<std::string, std::string> types;  // family -> type
};

Parsed parse(const std::string& text) {
  Parsed p;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("# TYPE ")) {
      const auto rest = line.substr(7);
      const auto sp = rest.find(' ');
      p.types[rest.substr(0, sp)] = rest.substr(sp + 1);
      continue;
    }
    if (line.starts_with("#")) continue;
    const auto sp = line.rfind(' ');
    const std::string key = line.substr(0, sp);
    p.values[key] = line.substr(sp + 1);
    ++p.seen[key];
  }
  return p;
}

std::string sample_key(const CatalogueEntry& e) {
  std::string k = exposed_name(e.family, e.type);
  if (!e.label_name.empty()) {
    k += "{" + std::string(e.label_name) + "=\"" + std::string(e.label_value) + "\"}";
  }
  return k;
}

TEST(TelemetryCatalogue, EveryCounterHasExactlyOneEntryAndEveryEntryOneSample) {
  std::set<std::string> keys;
  std::size_t fields = 0;
  metrics::Counters{}.for_each(
      [&](std::string_view name, metrics::Kind kind, std::string_view, std::uint64_t) {
        ++fields;
        const CatalogueEntry* e = find_entry(name);
        ASSERT_NE(e, nullptr) << name;
        EXPECT_EQ(e->type == MetricType::kCounter, kind == metrics::Kind::kCounter) << name;
        EXPECT_FALSE(e->help.empty()) << name;
        EXPECT_TRUE(keys.insert(sample_key(*e)).second) << "two counters export " << sample_key(*e);
      });
  EXPECT_EQ(catalogue().size(), fields);
}

TEST(TelemetryCatalogue, MosquittosNamesWhereItsTableHasTheFigure) {
  const std::map<std::string_view, std::string_view> expected{
      {"mqtt_publish_received", "mosquitto_mqtt_publish_received"},
      {"mqtt_disconnects", "mosquitto_mqtt_disconnect_received"},
      {"mqtt_keepalive_expired", "mosquitto_clients_expired"},
      {"mqtt_clients_online", "mosquitto_clients_online"},
      {"mqtt_sessions_offline", "mosquitto_clients_offline"},
      {"mqtt_retained_topics", "mosquitto_retained_messages"},
      {"mqtt_subscriptions_active", "mosquitto_subscriptions"},
      {"mqtt_bytes_received", "mosquitto_bytes_received"},
      {"mqtt_payload_bytes_sent", "mosquitto_pub_bytes_sent"},
      {"mqtt_queued_bytes", "mosquitto_out_packet_bytes"},
      {"mqtt_retained_bytes", "mosquitto_message_store_bytes"},
      {"tcp_connections_accepted", "mosquitto_socket_connections"},
      {"mqtt_auth_fail", "mosquitto_basic_auth_fail"},
      {"mqtt_pingresp_sent", "mosquitto_mqtt_pingresp_sent"},
      {"mqtt_publish_dropped_slow", "mosquitto_mqtt_publish_dropped"},
      {"mqtt_publish_dropped_too_large", "mosquitto_mqtt_publish_dropped"},
      {"tcp_retransmits", "mqtt_proxy_tcp_retransmits"},
      {"capture_if_dropped", "mqtt_proxy_capture_if_dropped"},
  };
  for (const auto& [counter, family] : expected) {
    const CatalogueEntry* e = find_entry(counter);
    ASSERT_NE(e, nullptr) << counter;
    EXPECT_EQ(e->family, family) << counter;
  }
  EXPECT_EQ(find_entry("mqtt_publish_dropped_too_large")->label_value, "too_large");
  EXPECT_EQ(find_entry("nonexistent"), nullptr);
}

TEST(TelemetryCatalogue, DerivedFamiliesSumKnownCounters) {
  for (const DerivedFamily& d : derived_families()) {
    EXPECT_FALSE(d.parts.empty()) << d.family;
    for (const auto part : d.parts)
      EXPECT_NE(find_entry(part), nullptr) << d.family << ": " << part;
  }
}

TEST(TelemetryPrometheus, EveryCounterAppearsExactlyOnceWithItsValue) {
  Snapshot s;
  s.counters = numbered_counters();
  s.version = "0.1.0";
  const Parsed p = parse(render_prometheus(s));
  s.counters.for_each([&](std::string_view name, metrics::Kind, std::string_view, std::uint64_t v) {
    const std::string key = sample_key(*find_entry(name));
    EXPECT_EQ(p.seen.count(key) ? p.seen.at(key) : 0, 1) << key;
    EXPECT_EQ(p.values.count(key) ? p.values.at(key) : "", std::to_string(v)) << key;
  });
  for (const auto& [key, n] : p.seen) EXPECT_EQ(n, 1) << key;
}

TEST(TelemetryPrometheus, RendersHelpTypeAndEscapesExactly) {
  const std::vector<Sample> samples{
      {"b_level", "a gauge", MetricType::kGauge, {}, std::uint64_t{2}, ""},
      {"a_things",
       "back\\slash\nand \"quotes\"",
       MetricType::kCounter,
       {{"l", "x\"y\\z\nw"}},
       std::uint64_t{5},
       ""},
      {"a_things",
       "back\\slash\nand \"quotes\"",
       MetricType::kCounter,
       {{"l", "2"}, {"m", ""}},
       std::uint64_t{18446744073709551615u},
       ""},
      {"c_ratio", "a double", MetricType::kGauge, {}, 0.25, ""},
  };
  EXPECT_EQ(render_text(samples),
            "# HELP a_things_total back\\\\slash\\nand \"quotes\"\n"
            "# TYPE a_things_total counter\n"
            "a_things_total{l=\"x\\\"y\\\\z\\nw\"} 5\n"
            "a_things_total{l=\"2\",m=\"\"} 18446744073709551615\n"
            "# HELP b_level a gauge\n"
            "# TYPE b_level gauge\n"
            "b_level 2\n"
            "# HELP c_ratio a double\n"
            "# TYPE c_ratio gauge\n"
            "c_ratio 0.25\n");
}

TEST(TelemetryPrometheus, SpecialValuesAreSpelledAsPrometheusReadsThem) {
  EXPECT_EQ(format_value(std::nan("")), "NaN");
  EXPECT_EQ(format_value(1.0 / 0.0), "+Inf");
  EXPECT_EQ(format_value(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(format_value(1.5), "1.5");
  EXPECT_EQ(format_value(std::uint64_t{42}), "42");
}

TEST(TelemetryPrometheus, RttSummaryHasQuantilesSumAndCount) {
  Snapshot s;
  s.rtt_seconds = {0.5, 0.25, 1.0, 0.125};
  const std::string text = render_prometheus(s);
  EXPECT_NE(text.find("# TYPE mqtt_proxy_tcp_rtt_seconds summary\n"
                      "mqtt_proxy_tcp_rtt_seconds{quantile=\"0.5\"} 0.25\n"
                      "mqtt_proxy_tcp_rtt_seconds{quantile=\"0.9\"} 1\n"
                      "mqtt_proxy_tcp_rtt_seconds{quantile=\"0.99\"} 1\n"
                      "mqtt_proxy_tcp_rtt_seconds_sum 1.875\n"
                      "mqtt_proxy_tcp_rtt_seconds_count 4\n"),
            std::string::npos)
      << text;
  s.rtt_seconds.clear();
  const Parsed p = parse(render_prometheus(s));
  EXPECT_EQ(p.values.at("mqtt_proxy_tcp_rtt_seconds{quantile=\"0.5\"}"), "NaN");
  EXPECT_EQ(p.values.at("mqtt_proxy_tcp_rtt_seconds_count"), "0");
}

TEST(TelemetryPrometheus, DerivedPeerProcessAndBuildInfoFamilies) {
  Snapshot s;
  s.counters.mqtt_publish_received = 3;
  s.counters.mqtt_connect_received = 2;
  s.counters.mqtt_disconnects = 1;
  s.counters.mqtt_connack_sent = 2;
  s.counters.mqtt_clients_online = 4;
  s.counters.mqtt_sessions_offline = 5;
  PeerFigures peer;
  peer.peer = "10.0.0.2";
  peer.state = PeerFigures::State::kUp;
  peer.filters = 3;
  peer.datagrams_in = 7;
  peer.datagrams_lost = 1;
  s.peers.push_back(peer);
  s.interfaces.push_back({"h1-eth0", 4, 5, 6});
  s.hooks.push_back({"acl_file", 40, 3, 2, 0.25, 0.125});
  s.process = ProcessStats{1.5, 4096, 8192, 18446744073709551615u, 9, 1024, 1700000000.25};
  s.version = "0.1.0";
  const Parsed p = parse(render_prometheus(s));
  EXPECT_EQ(p.values.at("mosquitto_mqtt_packets_received_total"), "6");
  EXPECT_EQ(p.values.at("mosquitto_mqtt_packets_sent_total"), "2");
  EXPECT_EQ(p.values.at("mosquitto_sessions"), "9");
  EXPECT_EQ(p.types.at("mosquitto_sessions"), "gauge");
  EXPECT_EQ(p.values.at("mqtt_proxy_per_peer_up{peer=\"10.0.0.2\"}"), "1");
  EXPECT_EQ(p.values.at("mqtt_proxy_per_peer_state{peer=\"10.0.0.2\",state=\"down\"}"), "0");
  EXPECT_EQ(p.values.at("mqtt_proxy_per_peer_state{peer=\"10.0.0.2\",state=\"up\"}"), "1");
  EXPECT_EQ(p.values.at("mqtt_proxy_per_peer_datagrams_in_total{peer=\"10.0.0.2\"}"), "7");
  EXPECT_EQ(p.values.at("mqtt_proxy_per_peer_datagrams_lost_total{peer=\"10.0.0.2\"}"), "1");
  EXPECT_EQ(p.values.at("mqtt_proxy_per_peer_filters{peer=\"10.0.0.2\"}"), "3");
  EXPECT_EQ(p.values.at("mqtt_proxy_hook_calls_total{plugin=\"acl_file\"}"), "40");
  EXPECT_EQ(p.values.at("mqtt_proxy_hook_refusals_total{plugin=\"acl_file\"}"), "3");
  EXPECT_EQ(p.values.at("mqtt_proxy_hook_slow_total{plugin=\"acl_file\"}"), "2");
  EXPECT_EQ(p.values.at("mqtt_proxy_hook_seconds_total{plugin=\"acl_file\"}"), "0.25");
  EXPECT_EQ(p.values.at("mqtt_proxy_hook_longest_seconds{plugin=\"acl_file\"}"), "0.125");
  EXPECT_EQ(p.types.at("mqtt_proxy_hook_slow_total"), "counter");
  EXPECT_EQ(p.values.at("mqtt_proxy_per_interface_capture_dropped_total{interface=\"h1-eth0\"}"),
            "4");
  EXPECT_EQ(p.values.at("mqtt_proxy_per_interface_capture_if_dropped_total{interface=\"h1-eth0\"}"),
            "5");
  EXPECT_EQ(p.values.at("mqtt_proxy_per_interface_capture_truncated_total{interface=\"h1-eth0\"}"),
            "6");
  EXPECT_EQ(p.values.at("process_cpu_seconds_total"), "1.5");
  EXPECT_EQ(p.types.at("process_cpu_seconds_total"), "counter");
  EXPECT_EQ(p.values.at("process_virtual_memory_max_bytes"), "18446744073709551615");
  EXPECT_EQ(p.values.at("process_start_time_seconds"), "1700000000.25");
  EXPECT_EQ(p.values.at("mqtt_proxy_build_info{version=\"0.1.0\"}"), "1");
}

TEST(TelemetryInflux, LinesPerLabelSetWithEscaping) {
  const std::vector<Sample> samples{
      {"a_count", "", MetricType::kCounter, {}, std::uint64_t{5}, ""},
      {"b_level", "", MetricType::kGauge, {}, 0.5, ""},
      {"per_peer", "", MetricType::kGauge, {{"peer", "10.0.0.2"}}, std::uint64_t{1}, ""},
      {"odd key", "", MetricType::kGauge, {{"t,a=g", "v a,l=ue"}}, std::uint64_t{2}, ""},
      {"skipped", "", MetricType::kGauge, {}, std::nan(""), ""},
      {"huge", "", MetricType::kGauge, {}, std::uint64_t{18446744073709551615u}, ""},
      {"s", "", MetricType::kSummary, {}, 1.5, "_sum"},
  };
  InfluxTarget t;
  t.measurement = "my meas,urement";
  t.hostlabel = "h 1";
  EXPECT_EQ(render_influx(samples, t, 1700000000000000000),
            "my\\ meas\\,urement,host=h\\ 1 a_count=5i,b_level=0.5,huge=1.8446744073709552e+19,"
            "s_sum=1.5 1700000000000000000\n"
            "my\\ meas\\,urement,host=h\\ 1,peer=10.0.0.2 per_peer=1i 1700000000000000000\n"
            "my\\ meas\\,urement,host=h\\ 1,t\\,a\\=g=v\\ a\\,l\\=ue odd\\ key=2i "
            "1700000000000000000\n");
}

TEST(TelemetryInflux, EscapingRules) {
  EXPECT_EQ(escape_measurement("a,b c=d"), "a\\,b\\ c=d");
  EXPECT_EQ(escape_key("a,b c=d"), "a\\,b\\ c\\=d");
  EXPECT_EQ(escape_key("two\nlines"), "two\\ lines");
}

TEST(TelemetryInflux, SnapshotRendersMosquittoNamesWithoutTotal) {
  Snapshot s;
  s.counters.mqtt_publish_received = 42;
  s.version = "0.1.0";
  InfluxTarget t;
  t.hostlabel = "broker1";
  const std::string text = render_influx(s, t, 1);
  EXPECT_NE(text.find("mqtt_proxy,host=broker1 "), std::string::npos);
  EXPECT_NE(text.find(",mosquitto_mqtt_publish_received=42i,"), std::string::npos);
  EXPECT_NE(text.find("mqtt_proxy,host=broker1,reason=slow mosquitto_mqtt_publish_dropped=0i 1\n"),
            std::string::npos);
  EXPECT_EQ(text.find("_total"), std::string::npos);
}

TEST(TelemetryInfluxUrl, ParsesHostPortDatabaseAndCredentials) {
  auto t = parse_influx_url("http://influx.example.com:8087/edge_data");
  ASSERT_TRUE(t) << t.error();
  EXPECT_EQ(t->host, "influx.example.com");
  EXPECT_EQ(t->port, 8087);
  EXPECT_EQ(t->database, "edge_data");
  EXPECT_TRUE(t->username.empty());

  t = parse_influx_url("http://me:p%40ss%3Aword@10.0.0.5/my%20db");
  ASSERT_TRUE(t) << t.error();
  EXPECT_EQ(t->host, "10.0.0.5");
  EXPECT_EQ(t->port, 8086);
  EXPECT_EQ(t->username, "me");
  EXPECT_EQ(t->password, "p@ss:word");
  EXPECT_EQ(t->database, "my db");
  EXPECT_TRUE(check_target(*t));
  EXPECT_EQ(influx_write_path(*t), "/write?db=my%20db&u=me&p=p%40ss%3Aword&precision=ns");

  t = parse_influx_url("http://10.0.0.5:8086");  // the database given separately
  ASSERT_TRUE(t) << t.error();
  EXPECT_TRUE(t->database.empty());
  EXPECT_FALSE(check_target(*t));
  t->database = "d";
  EXPECT_EQ(influx_write_path(*t), "/write?db=d&precision=ns");
  EXPECT_TRUE(parse_influx_url("http://h/db/"));
}

TEST(TelemetryInfluxUrl, RefusesWhatItCannotServeWithAReason) {
  const std::vector<std::pair<std::string_view, std::string_view>> bad{
      {"https://h:8086/db", "https is not supported"},
      {"ftp://h/db", "not an http://"},
      {"h:8086/db", "not an http://"},
      {"http://", "not a host name"},
      {"http://:8086/db", "not a host name"},
      {"http://h_x/db", "not a host name"},
      {"http://[::1]:8086/db", "IPv6"},
      {"http://h:0/db", "not a port"},
      {"http://h:65536/db", "not a port"},
      {"http://h:80x/db", "not a port"},
      {"http://h:/db", "not a port"},
      {"http://h/db/more", "not one database"},
      {"http://h/db?u=x", "query"},
      {"http://h/d%zz", "bad %-escape in the database"},
      {"http://h/d%4", "bad %-escape"},
      {"http://:pw@h/db", "empty username"},
  };
  for (const auto& [url, reason] : bad) {
    const auto t = parse_influx_url(url);
    ASSERT_FALSE(t) << url;
    EXPECT_NE(t.error().find(reason), std::string::npos) << url << ": " << t.error();
  }
}

TEST(TelemetryProcess, ParsesProcStatPastACommandWithParentheses) {
  const std::string line =
      "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5000 "
      "123456789 321 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
  const auto st = parse_proc_stat(line);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->utime_ticks, 250u);
  EXPECT_EQ(st->stime_ticks, 50u);
  EXPECT_EQ(st->starttime_ticks, 5000u);
  EXPECT_EQ(st->vsize_bytes, 123456789u);
  EXPECT_EQ(st->rss_pages, 321u);
  EXPECT_FALSE(parse_proc_stat("1234 (x) S 1 2 3"));
  EXPECT_FALSE(parse_proc_stat("garbage"));
  EXPECT_EQ(parse_boot_time("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n"),
            std::optional<std::uint64_t>(1700000000u));
  EXPECT_FALSE(parse_boot_time("cpu 1\n"));
}

TEST(TelemetryProcess, ReadsThisProcess) {
  const auto p = read_process_stats();
  ASSERT_TRUE(p) << p.error();
  EXPECT_GT(p->resident_memory_bytes, 0u);
  EXPECT_GE(p->virtual_memory_bytes, p->resident_memory_bytes);
  EXPECT_GE(p->open_fds, 3u);
  EXPECT_GT(p->max_fds, 0u);
  EXPECT_GT(p->start_time_seconds, 1.5e9);
}

}  // namespace
}  // namespace mqtt_proxy::telemetry
