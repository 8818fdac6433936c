// The InfluxDB 1.x line protocol for the figures of a snapshot, and the target it is pushed to
// (`--influxdb URL`), as Mosquitto's InfluxDB exporter does. Pure: InfluxPusher
// (http_exporter.hpp) does the HTTP.
//
// Layout: one line per label set, with one field per family named by the family's bare name
// (Mosquitto's names, no `_total`): the unlabelled figures share one line,
//   mqtt_proxy,host=h1 mosquitto_clients_online=3i,mosquitto_mqtt_publish_received=42i,... <ns>
// and each labelled one has its labels as tags,
//   mqtt_proxy,host=h1,peer=10.0.0.2 mqtt_proxy_per_peer_up=1i,... <ns>
// so `SELECT mosquitto_mqtt_publish_received FROM mqtt_proxy` reads a figure directly.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "mqtt_proxy/telemetry/prometheus.hpp"
#include "mqtt_proxy/telemetry/snapshot.hpp"
#include "mqtt_proxy/util/result.hpp"

namespace mqtt_proxy::telemetry {

struct InfluxTarget {
  std::string host;
  std::uint16_t port = 8086;
  std::string database;
  std::string username;  // empty: no authentication
  std::string password;
  std::string measurement = "mqtt_proxy";
  std::string hostlabel;  // the `host` tag; empty: no tag (the app puts the hostname here)
};

// `http://[USER[:PASSWORD]@]HOST[:PORT][/DATABASE]`, with %XX escapes in the user, password and
// database. HOST is a name or an IPv4 address; the port defaults to 8086. https, IPv6 literals and
// query strings are refused with a message saying why.
Result<InfluxTarget> parse_influx_url(std::string_view url);

// A target is usable once it has a host and a database (which may come from its own option).
Status check_target(const InfluxTarget& t);

// The request target of the write: `/write?db=..&u=..&p=..&precision=ns`, percent-encoded.
std::string influx_write_path(const InfluxTarget& t);

// Line-protocol escaping (1.x): a measurement escapes comma and space; tag keys, tag values and
// field keys escape comma, equals sign and space. A newline cannot be escaped in 1.x: it becomes
// an escaped space.
std::string escape_measurement(std::string_view v);
std::string escape_key(std::string_view v);

std::string render_influx(std::span<const Sample> samples, const InfluxTarget& t,
                          std::int64_t unix_ns);
std::string render_influx(const Snapshot& s, const InfluxTarget& t, std::int64_t unix_ns);

}  // namespace mqtt_proxy::telemetry
