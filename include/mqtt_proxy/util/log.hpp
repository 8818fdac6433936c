// Leveled logging through a sink the application provides. Core modules only format and hand the
// line over; the application's sink adds the wall-clock timestamp and writes it, so the core reads
// no clock.
#pragma once

#include <fmt/format.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace mqtt_proxy::log {

enum class Level { Trace, Debug, Info, Warn, Error, Off };

std::string_view level_name(Level l);
std::optional<Level> parse_level(std::string_view s);

class Logger {
 public:
  using Sink = std::function<void(Level, std::string_view component, std::string_view message)>;

  Logger() = default;
  Logger(Level level, Sink sink) : level_(level), sink_(std::move(sink)) {}

  bool enabled(Level l) const { return sink_ && l >= level_; }
  Level level() const { return level_; }
  void set_level(Level l) { level_ = l; }

  template <typename... Args>
  void write(Level l, std::string_view component, fmt::format_string<Args...> f, Args&&... args) {
    if (!enabled(l)) return;
    const std::string line = fmt::format(f, std::forward<Args>(args)...);
    sink_(l, component, line);
  }
  template <typename... Args>
  void trace(std::string_view c, fmt::format_string<Args...> f, Args&&... a) {
    write(Level::Trace, c, f, std::forward<Args>(a)...);
  }
  template <typename... Args>
  void debug(std::string_view c, fmt::format_string<Args...> f, Args&&... a) {
    write(Level::Debug, c, f, std::forward<Args>(a)...);
  }
  template <typename... Args>
  void info(std::string_view c, fmt::format_string<Args...> f, Args&&... a) {
    write(Level::Info, c, f, std::forward<Args>(a)...);
  }
  template <typename... Args>
  void warn(std::string_view c, fmt::format_string<Args...> f, Args&&... a) {
    write(Level::Warn, c, f, std::forward<Args>(a)...);
  }
  template <typename... Args>
  void error(std::string_view c, fmt::format_string<Args...> f, Args&&... a) {
    write(Level::Error, c, f, std::forward<Args>(a)...);
  }

 private:
  Level level_ = Level::Off;
  Sink sink_;
};

// A logger that drops everything; the default for components built in tests.
Logger& null_logger();

// Network bytes in a log line: printable ASCII as it is, the rest (and '"', '\\') as \xNN, at most
// 40 bytes and then "...", so a reason quoting them is always one readable line.
std::string escaped(std::string_view s);

}  // namespace mqtt_proxy::log
