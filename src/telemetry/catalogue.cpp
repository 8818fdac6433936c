#include "mqtt_proxy/telemetry/catalogue.hpp"

#include <algorithm>
#include <array>
#include <deque>
#include <string>
#include <vector>

namespace mqtt_proxy::telemetry {

namespace {

struct Override {
  std::string_view counter;
  std::string_view family;
  std::string_view label_name;
  std::string_view label_value;
  std::string_view help;  // Mosquitto's description where the family is Mosquitto's
};

// Mosquitto's names and descriptions (the metric table of its Prometheus and InfluxDB exporters),
// then our own families that group counters by a label.
constexpr std::array kOverrides{
    Override{"mqtt_clients_online", "mosquitto_clients_online", "", "",
             "Current online client count"},
    Override{"mqtt_sessions_offline", "mosquitto_clients_offline", "", "",
             "Current offline client count"},
    Override{"mqtt_keepalive_expired", "mosquitto_clients_expired", "", "",
             "Total clients expired due to keepalive"},
    Override{"mqtt_shared_subscriptions_active", "mosquitto_shared_subscriptions", "", "",
             "Current shared subscription count"},
    Override{"mqtt_subscriptions_active", "mosquitto_subscriptions", "", "",
             "Current subscription count"},
    Override{"mqtt_retained_topics", "mosquitto_retained_messages", "", "",
             "Current retained message count"},
    Override{"mqtt_bytes_received", "mosquitto_bytes_received", "", "",
             "Total bytes received (MQTT packets from local clients)"},
    Override{"mqtt_bytes_sent", "mosquitto_bytes_sent", "", "",
             "Total bytes sent (MQTT packets queued to local clients)"},
    Override{"mqtt_payload_bytes_received", "mosquitto_pub_bytes_received", "", "",
             "Total PUBLISH payload bytes received"},
    Override{"mqtt_payload_bytes_sent", "mosquitto_pub_bytes_sent", "", "",
             "Total PUBLISH payload bytes sent"},
    Override{"mqtt_retained_bytes", "mosquitto_message_store_bytes", "", "",
             "Current stored message bytes (the retained messages: nothing else is stored)"},
    Override{"mqtt_queued_bytes", "mosquitto_out_packet_bytes", "", "",
             "Current queued outgoing packet bytes"},
    Override{"tcp_connections_accepted", "mosquitto_socket_connections", "", "",
             "Total incoming connections"},
    Override{"mqtt_connect_received", "mosquitto_mqtt_connect_received", "", "",
             "MQTT CONNECT received"},
    Override{"mqtt_connack_sent", "mosquitto_mqtt_connack_sent", "", "", "MQTT CONNACK sent"},
    Override{"mqtt_publish_received", "mosquitto_mqtt_publish_received", "", "",
             "MQTT PUBLISH received"},
    Override{"mqtt_publish_sent", "mosquitto_mqtt_publish_sent", "", "", "MQTT PUBLISH sent"},
    Override{"mqtt_publish_dropped_slow", "mosquitto_mqtt_publish_dropped", "reason", "slow",
             "MQTT PUBLISH dropped"},
    Override{"mqtt_publish_dropped_too_large", "mosquitto_mqtt_publish_dropped", "reason",
             "too_large", "MQTT PUBLISH dropped"},
    Override{"mqtt_publish_dropped_queue_full", "mosquitto_mqtt_publish_dropped", "reason",
             "queue_full", "MQTT PUBLISH dropped"},
    Override{"mqtt_publish_dropped_expired", "mosquitto_mqtt_publish_dropped", "reason", "expired",
             "MQTT PUBLISH dropped"},
    Override{"mqtt_puback_received", "mosquitto_mqtt_puback_received", "", "",
             "MQTT PUBACK received"},
    Override{"mqtt_puback_sent", "mosquitto_mqtt_puback_sent", "", "", "MQTT PUBACK sent"},
    Override{"mqtt_pubrec_received", "mosquitto_mqtt_pubrec_received", "", "",
             "MQTT PUBREC received"},
    Override{"mqtt_pubrec_sent", "mosquitto_mqtt_pubrec_sent", "", "", "MQTT PUBREC sent"},
    Override{"mqtt_pubrel_received", "mosquitto_mqtt_pubrel_received", "", "",
             "MQTT PUBREL received"},
    Override{"mqtt_pubrel_sent", "mosquitto_mqtt_pubrel_sent", "", "", "MQTT PUBREL sent"},
    Override{"mqtt_pubcomp_received", "mosquitto_mqtt_pubcomp_received", "", "",
             "MQTT PUBCOMP received"},
    Override{"mqtt_pubcomp_sent", "mosquitto_mqtt_pubcomp_sent", "", "", "MQTT PUBCOMP sent"},
    Override{"mqtt_subscribe_received", "mosquitto_mqtt_subscribe_received", "", "",
             "MQTT SUBSCRIBE received"},
    Override{"mqtt_suback_sent", "mosquitto_mqtt_suback_sent", "", "", "MQTT SUBACK sent"},
    Override{"mqtt_unsubscribe_received", "mosquitto_mqtt_unsubscribe_received", "", "",
             "MQTT UNSUBSCRIBE received"},
    Override{"mqtt_unsuback_sent", "mosquitto_mqtt_unsuback_sent", "", "", "MQTT UNSUBACK sent"},
    Override{"mqtt_pingreq_received", "mosquitto_mqtt_pingreq_received", "", "",
             "MQTT PINGREQ received"},
    Override{"mqtt_pingresp_sent", "mosquitto_mqtt_pingresp_sent", "", "", "MQTT PINGRESP sent"},
    Override{"mqtt_disconnects", "mosquitto_mqtt_disconnect_received", "", "",
             "MQTT DISCONNECT received"},
    Override{"mqtt_disconnect_sent", "mosquitto_mqtt_disconnect_sent", "", "",
             "MQTT DISCONNECT sent"},
    Override{"mqtt_auth_received", "mosquitto_mqtt_auth_received", "", "", "MQTT AUTH received"},
    Override{"mqtt_auth_success", "mosquitto_basic_auth_success", "", "",
             "Successful username/password authentication attempts"},
    Override{"mqtt_auth_fail", "mosquitto_basic_auth_fail", "", "",
             "Failed username/password authentication attempts"},
    // promtool reads `_us` as microseconds ("abbreviated units"): a name that says the same.
    Override{"frames_not_for_us", "mqtt_proxy_frames_not_ours", "", "",
             "frames for another host, port or protocol"},
    // The PROXY protocol's outcomes: one family for headers taken, one for connections refused,
    // so `sum()` of each reads naturally.
    Override{"proxy_protocol_headers", "mqtt_proxy_proxy_protocol_headers", "command", "proxy",
             "PROXY protocol headers accepted, by command (proxy: an address; local: a health "
             "check)"},
    Override{"proxy_protocol_local", "mqtt_proxy_proxy_protocol_headers", "command", "local",
             "PROXY protocol headers accepted, by command (proxy: an address; local: a health "
             "check)"},
    Override{"proxy_protocol_invalid", "mqtt_proxy_proxy_protocol_rejected", "reason", "invalid",
             "connections closed by the PROXY protocol check, by reason"},
    Override{"proxy_protocol_timeouts", "mqtt_proxy_proxy_protocol_rejected", "reason", "timeout",
             "connections closed by the PROXY protocol check, by reason"},
    Override{"proxy_protocol_untrusted", "mqtt_proxy_proxy_protocol_rejected", "reason",
             "untrusted", "connections closed by the PROXY protocol check, by reason"},
    Override{"proxy_protocol_insecure", "mqtt_proxy_proxy_protocol_rejected", "reason", "insecure",
             "connections closed by the PROXY protocol check, by reason"},
};

constexpr std::array<std::string_view, 11> kPacketsReceived{
    "mqtt_connect_received",   "mqtt_publish_received",     "mqtt_puback_received",
    "mqtt_pubrec_received",    "mqtt_pubrel_received",      "mqtt_pubcomp_received",
    "mqtt_subscribe_received", "mqtt_unsubscribe_received", "mqtt_pingreq_received",
    "mqtt_disconnects",        "mqtt_auth_received"};
constexpr std::array<std::string_view, 10> kPacketsSent{
    "mqtt_connack_sent",  "mqtt_publish_sent",   "mqtt_puback_sent", "mqtt_pubrec_sent",
    "mqtt_pubrel_sent",   "mqtt_pubcomp_sent",   "mqtt_suback_sent", "mqtt_unsuback_sent",
    "mqtt_pingresp_sent", "mqtt_disconnect_sent"};
constexpr std::array<std::string_view, 2> kSessions{"mqtt_clients_online", "mqtt_sessions_offline"};

constexpr std::array kDerived{
    DerivedFamily{"mosquitto_mqtt_packets_received", MetricType::kCounter,
                  "Total MQTT packets received (derived: the sum of the per-type counters)",
                  kPacketsReceived},
    DerivedFamily{"mosquitto_mqtt_packets_sent", MetricType::kCounter,
                  "Total MQTT packets sent (derived: the sum of the per-type counters)",
                  kPacketsSent},
    DerivedFamily{"mosquitto_sessions", MetricType::kGauge,
                  "Current client sessions, includes offline clients (derived: online + offline)",
                  kSessions},
};

struct Built {
  std::deque<std::string> names;  // storage for the default family names; deque: stable addresses
  std::vector<CatalogueEntry> entries;
};

const Built& built() {
  static const Built b = [] {
    Built out;
    metrics::Counters{}.for_each(
        [&](std::string_view name, metrics::Kind kind, std::string_view help, std::uint64_t) {
          CatalogueEntry e;
          e.counter = name;
          e.type = kind == metrics::Kind::kCounter ? MetricType::kCounter : MetricType::kGauge;
          const auto* o = std::find_if(kOverrides.begin(), kOverrides.end(),
                                       [&](const Override& x) { return x.counter == name; });
          if (o != kOverrides.end()) {
            e.family = o->family;
            e.label_name = o->label_name;
            e.label_value = o->label_value;
            e.help = o->help;
          } else {
            e.family = out.names.emplace_back("mqtt_proxy_" + std::string(name));
            e.help = help;
          }
          out.entries.push_back(e);
        });
    return out;
  }();
  return b;
}

}  // namespace

std::span<const CatalogueEntry> catalogue() {
  return built().entries;
}

const CatalogueEntry* find_entry(std::string_view counter) {
  const auto& e = built().entries;
  const auto it = std::find_if(e.begin(), e.end(),
                               [&](const CatalogueEntry& x) { return x.counter == counter; });
  return it == e.end() ? nullptr : &*it;
}

std::span<const DerivedFamily> derived_families() {
  return kDerived;
}

const DerivedFamily* find_derived(std::string_view family) {
  const auto* it = std::find_if(kDerived.begin(), kDerived.end(),
                                [&](const DerivedFamily& d) { return d.family == family; });
  return it == kDerived.end() ? nullptr : it;
}

std::uint64_t derived_value(const DerivedFamily& d, const metrics::Counters& c) {
  std::uint64_t sum = 0;
  c.for_each([&](std::string_view name, metrics::Kind, std::string_view, std::uint64_t v) {
    if (std::find(d.parts.begin(), d.parts.end(), name) != d.parts.end()) sum += v;
  });
  return sum;
}

}  // namespace mqtt_proxy::telemetry
