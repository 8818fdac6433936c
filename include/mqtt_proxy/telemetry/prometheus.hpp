// The Prometheus text exposition format, version 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/).
//
// Counter families are written with the suffix `_total` (`# TYPE x_total counter`, sample
// `x_total`): the OpenMetrics rule that every official Prometheus client library applies, and
// what `promtool check metrics` asks of a counter. A Sample carries the bare family name
// (Mosquitto's `mosquitto_mqtt_publish_received`), and only this renderer adds the suffix, so the
// InfluxDB fields keep Mosquitto's names.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "mqtt_proxy/telemetry/catalogue.hpp"

namespace mqtt_proxy::telemetry {

struct Label {
  std::string name;
  std::string value;
  friend bool operator==(const Label&, const Label&) = default;
};

// One sample. A summary is several: one per quantile (labels include `quantile`, suffix empty),
// then suffix "_sum" and suffix "_count".
struct Sample {
  std::string family;  // bare: no `_total`
  std::string help;
  MetricType type = MetricType::kGauge;
  std::vector<Label> labels;
  std::variant<std::uint64_t, double> value = std::uint64_t{0};  // integers stay exact past 2^53
  std::string suffix;
};

// The exposition of `samples`: families sorted by name (so the output does not depend on the
// order of collection), `# HELP` and `# TYPE` once per family, the samples of a family together
// in the order given.
std::string render_text(std::span<const Sample> samples);

// The name a family is exposed under: `_total` appended for counters.
std::string exposed_name(std::string_view family, MetricType type);

// Escaping of the text format: a label value escapes backslash, double quote and newline; HELP
// text escapes backslash and newline only.
std::string escape_label_value(std::string_view v);
std::string escape_help(std::string_view v);
// A sample value: integers in decimal, doubles shortest round-trip, NaN and +Inf/-Inf spelled as
// Go's ParseFloat reads them.
std::string format_value(const std::variant<std::uint64_t, double>& v);

}  // namespace mqtt_proxy::telemetry
