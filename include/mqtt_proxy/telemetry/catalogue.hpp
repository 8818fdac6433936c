// Which exported family and label each field of metrics::Counters becomes (docs/metrics.md).
//
// Where Mosquitto's metric table (the Pro exporters) has the figure, the family carries Mosquitto's
// name and meaning, so dashboards and alerts written for Mosquitto work unchanged; every other
// counter is mqtt_proxy_<field>. Family names here are the bare names: the Prometheus renderer adds
// `_total` to a counter's family (prometheus.hpp says why), the InfluxDB one does not.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "mqtt_proxy/metrics/counters.hpp"

namespace mqtt_proxy::telemetry {

enum class MetricType { kCounter, kGauge, kSummary };

struct CatalogueEntry {
  std::string_view counter;  // the metrics::Counters field
  std::string_view family;   // the bare family name
  MetricType type = MetricType::kCounter;
  std::string_view label_name;  // empty: the family has no label
  std::string_view label_value;
  std::string_view help;  // Mosquitto's description, or the counter's own help text
};

// One entry per Counters field, in the order of counters.hpp.
std::span<const CatalogueEntry> catalogue();

// The entry of a Counters field, or nullptr for a name that is not one.
const CatalogueEntry* find_entry(std::string_view counter);

// A family that is the sum of others (Mosquitto has them; we keep only the parts).
struct DerivedFamily {
  std::string_view family;
  MetricType type = MetricType::kCounter;
  std::string_view help;
  std::span<const std::string_view> parts;  // Counters fields, summed
};
std::span<const DerivedFamily> derived_families();

// The family named so (bare name), or nullptr.
const DerivedFamily* find_derived(std::string_view family);
// Its value: the sum of its parts in `c`.
std::uint64_t derived_value(const DerivedFamily& d, const metrics::Counters& c);

}  // namespace mqtt_proxy::telemetry
