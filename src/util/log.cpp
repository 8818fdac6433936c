#include "mqtt_proxy/util/log.hpp"

namespace mqtt_proxy::log {

std::string_view level_name(Level l) {
  switch (l) {
    case Level::Trace:
      return "TRACE";
    case Level::Debug:
      return "DEBUG";
    case Level::Info:
      return "INFO";
    case Level::Warn:
      return "WARN";
    case Level::Error:
      return "ERROR";
    case Level::Off:
      return "OFF";
  }
  return "?";
}

std::optional<Level> parse_level(std::string_view s) {
  if (s == "trace") return Level::Trace;
  if (s == "debug") return Level::Debug;
  if (s == "info") return Level::Info;
  if (s == "warn" || s == "warning") return Level::Warn;
  if (s == "error") return Level::Error;
  if (s == "off") return Level::Off;
  return std::nullopt;
}

Logger& null_logger() {
  static Logger logger;
  return logger;
}

}  // namespace mqtt_proxy::log
