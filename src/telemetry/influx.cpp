#include "mqtt_proxy/telemetry/influx.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>

namespace mqtt_proxy::telemetry {

namespace {

std::string escape(std::string_view v, std::string_view specials) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    if (c == '\n' || c == '\r') {
      out += "\\ ";  // no escape for a newline in 1.x: an (escaped) space keeps the line whole
      continue;
    }
    if (specials.find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> percent_decode(std::string_view s, std::string_view what) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    const int hi = i + 1 < s.size() ? hex_value(s[i + 1]) : -1;
    const int lo = i + 2 < s.size() ? hex_value(s[i + 2]) : -1;
    if (hi < 0 || lo < 0) return Error{fmt::format("bad %-escape in the {} of the URL", what)};
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::string percent_encode(std::string_view s) {
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      out += c;
    } else {
      fmt::format_to(std::back_inserter(out), "%{:02X}", u);
    }
  }
  return out;
}

bool valid_host(std::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  return std::all_of(h.begin(), h.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.';
  });
}

// A field value, or nothing for what InfluxDB cannot store (NaN, infinities).
std::optional<std::string> field_value(const std::variant<std::uint64_t, double>& v) {
  if (const auto* u = std::get_if<std::uint64_t>(&v)) {
    // 1.x integers are signed 64-bit: a larger one (RLIM_INFINITY) would fail the whole write.
    if (*u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return fmt::format("{}", static_cast<double>(*u));
    }
    return fmt::format("{}i", *u);
  }
  const double d = std::get<double>(v);
  if (!std::isfinite(d)) return std::nullopt;
  return fmt::format("{}", d);
}

}  // namespace

std::string escape_measurement(std::string_view v) {
  return escape(v, ", ");
}
std::string escape_key(std::string_view v) {
  return escape(v, ",= ");
}

Result<InfluxTarget> parse_influx_url(std::string_view url) {
  constexpr std::string_view kHttp = "http://";
  if (url.starts_with("https://")) {
    return Error{
        "--influxdb: https is not supported: civetweb's client does not verify the server's "
        "certificate; use http on a trusted network, or a local TLS relay"};
  }
  if (!url.starts_with(kHttp)) {
    return Error{fmt::format("--influxdb: '{}' is not an http://HOST[:PORT][/DATABASE] URL", url)};
  }
  std::string_view rest = url.substr(kHttp.size());
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return Error{"--influxdb: the URL has a query or fragment; give the database as its path"};
  }
  const std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  const std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash + 1);

  InfluxTarget t;
  if (const std::size_t at = authority.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    const std::size_t colon = userinfo.find(':');
    auto user = percent_decode(userinfo.substr(0, colon), "username");
    if (!user) return Error{"--influxdb: " + user.error()};
    if (user->empty()) return Error{"--influxdb: the URL has an empty username"};
    t.username = std::move(*user);
    if (colon != std::string_view::npos) {
      auto pass = percent_decode(userinfo.substr(colon + 1), "password");
      if (!pass) return Error{"--influxdb: " + pass.error()};
      t.password = std::move(*pass);
    }
  }
  if (authority.starts_with('[')) {
    return Error{"--influxdb: IPv6 addresses are not supported (civetweb is built without IPv6)"};
  }
  const std::size_t colon = authority.rfind(':');
  const std::string_view host = authority.substr(0, colon);
  if (!valid_host(host)) {
    return Error{fmt::format("--influxdb: '{}' is not a host name or IPv4 address", host)};
  }
  t.host = host;
  if (colon != std::string_view::npos) {
    const std::string_view port = authority.substr(colon + 1);
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc{} || end != port.data() + port.size() || value == 0 ||
        value > 65535) {
      return Error{fmt::format("--influxdb: '{}' is not a port (1-65535)", port)};
    }
    t.port = static_cast<std::uint16_t>(value);
  }
  std::string_view db = path;
  if (db.ends_with('/')) db.remove_suffix(1);
  if (db.find('/') != std::string_view::npos) {
    return Error{fmt::format("--influxdb: '/{}' is not one database name", path)};
  }
  auto decoded = percent_decode(db, "database");
  if (!decoded) return Error{"--influxdb: " + decoded.error()};
  t.database = std::move(*decoded);
  return t;
}

Status check_target(const InfluxTarget& t) {
  if (t.host.empty()) return Error{"InfluxDB: no host"};
  if (t.database.empty()) {
    return Error{"InfluxDB: no database (give it as the URL's path, http://HOST:PORT/DATABASE)"};
  }
  if (t.measurement.empty()) return Error{"InfluxDB: empty measurement"};
  return {};
}

std::string influx_write_path(const InfluxTarget& t) {
  std::string p = "/write?db=" + percent_encode(t.database);
  if (!t.username.empty())
    p += "&u=" + percent_encode(t.username) + "&p=" + percent_encode(t.password);
  p += "&precision=ns";
  return p;
}

std::string render_influx(std::span<const Sample> samples, const InfluxTarget& t,
                          std::int64_t unix_ns) {
  // Tag set (sorted by key, as InfluxDB prefers) -> fields, in the order of the samples.
  std::map<std::string, std::string> lines;
  std::vector<const std::string*> order;
  for (const Sample& s : samples) {
    const auto value = field_value(s.value);
    if (!value) continue;
    std::vector<Label> labels = s.labels;
    if (!t.hostlabel.empty()) labels.push_back({"host", t.hostlabel});
    std::sort(labels.begin(), labels.end(),
              [](const Label& a, const Label& b) { return a.name < b.name; });
    std::string tags;
    for (const Label& l : labels) {
      if (l.value.empty()) continue;  // an empty tag value is invalid line protocol
      tags += ',' + escape_key(l.name) + '=' + escape_key(l.value);
    }
    auto [it, fresh] = lines.try_emplace(tags);
    if (fresh) {
      order.push_back(&it->first);
    } else {
      it->second += ',';
    }
    it->second += escape_key(s.family + s.suffix) + '=' + *value;
  }
  const std::string measurement = escape_measurement(t.measurement);
  std::string out;
  for (const std::string* tags : order) {
    fmt::format_to(std::back_inserter(out), "{}{} {} {}\n", measurement, *tags, lines[*tags],
                   unix_ns);
  }
  return out;
}

std::string render_influx(const Snapshot& s, const InfluxTarget& t, std::int64_t unix_ns) {
  const auto samples = collect_samples(s);
  return render_influx(samples, t, unix_ns);
}

}  // namespace mqtt_proxy::telemetry
