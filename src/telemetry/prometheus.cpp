#include "mqtt_proxy/telemetry/prometheus.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace mqtt_proxy::telemetry {

namespace {

std::string_view type_name(MetricType t) {
  switch (t) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kSummary:
      return "summary";
  }
  return "untyped";
}

}  // namespace

std::string exposed_name(std::string_view family, MetricType type) {
  std::string name(family);
  if (type == MetricType::kCounter) name += "_total";
  return name;
}

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string format_value(const std::variant<std::uint64_t, double>& v) {
  if (const auto* u = std::get_if<std::uint64_t>(&v)) return fmt::format("{}", *u);
  const double d = std::get<double>(v);
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", d);
}

std::string render_text(std::span<const Sample> samples) {
  // Sort indices, not samples: stable, so a family's samples keep the order they came in.
  std::vector<std::size_t> order(samples.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::vector<std::string> names;
  names.reserve(samples.size());
  for (const auto& s : samples) names.push_back(exposed_name(s.family, s.type));
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return names[a] < names[b]; });

  std::string out;
  const std::string* current = nullptr;
  for (const std::size_t i : order) {
    const Sample& s = samples[i];
    const std::string& name = names[i];
    if (current == nullptr || *current != name) {
      current = &name;
      fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name,
                     escape_help(s.help), name, type_name(s.type));
    }
    out += name;
    out += s.suffix;
    if (!s.labels.empty()) {
      out += '{';
      for (std::size_t l = 0; l < s.labels.size(); ++l) {
        if (l > 0) out += ',';
        fmt::format_to(std::back_inserter(out), "{}=\"{}\"", s.labels[l].name,
                       escape_label_value(s.labels[l].value));
      }
      out += '}';
    }
    out += ' ';
    out += format_value(s.value);
    out += '\n';
  }
  return out;
}

}  // namespace mqtt_proxy::telemetry
