#include "mqtt_proxy/mqtt/topic.hpp"

#include <algorithm>
#include <cstdint>

namespace mqtt_proxy::mqtt {

Utf8Status check_utf8(std::string_view s) {
  bool has_null = false;
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c == 0) has_null = true;
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    std::uint32_t min;
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
      min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
      min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
      min = 0x10000;
    } else {
      return Utf8Status::Invalid;
    }
    if (i + len > n) return Utf8Status::Invalid;
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return Utf8Status::Invalid;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return Utf8Status::Invalid;
    i += len;
  }
  return has_null ? Utf8Status::ContainsNull : Utf8Status::Ok;
}

bool is_mqtt_string(std::string_view s) {
  return s.size() <= 0xffff && check_utf8(s) == Utf8Status::Ok;
}

bool is_valid_topic_name(std::string_view topic) {
  return !topic.empty() && topic.find_first_of("+#") == std::string_view::npos;
}

bool is_valid_topic_filter(std::string_view filter) {
  if (filter.empty()) return false;
  std::size_t level_start = 0;
  for (std::size_t i = 0; i <= filter.size(); ++i) {
    if (i < filter.size() && filter[i] != '/') continue;
    const std::string_view level = filter.substr(level_start, i - level_start);
    if (level.find_first_of("+#") != std::string_view::npos) {
      if (level.size() != 1) return false;                      // "a+" or "a#"
      if (level[0] == '#' && i != filter.size()) return false;  // '#' not last
    }
    level_start = i + 1;
  }
  return true;
}

bool topic_matches(std::string_view filter, std::string_view topic) {
  if (!topic.empty() && topic[0] == '$' && !filter.empty() &&
      (filter[0] == '+' || filter[0] == '#'))
    return false;
  std::size_t f = 0;
  std::size_t t = 0;
  for (;;) {
    const std::size_t f_end = std::min(filter.find('/', f), filter.size());
    const std::string_view f_level = filter.substr(f, f_end - f);
    if (f_level == "#") return true;  // also matches the parent level: "a/#" matches "a"
    const std::size_t t_end = std::min(topic.find('/', t), topic.size());
    const std::string_view t_level = topic.substr(t, t_end - t);
    if (f_level != "+" && f_level != t_level) return false;
    const bool f_last = f_end == filter.size();
    const bool t_last = t_end == topic.size();
    if (f_last && t_last) return true;
    if (t_last) {
      // The topic is exhausted: only a trailing "/#" can still match.
      return filter.substr(f_end) == "/#";
    }
    if (f_last) return false;
    f = f_end + 1;
    t = t_end + 1;
  }
}

}  // namespace mqtt_proxy::mqtt
