// The process_* figures of the Prometheus client libraries, read from /proc and getrlimit (I/O:
// the loop calls it when it builds a Snapshot). Named and computed as client_golang's
// process collector does, so the usual dashboards work.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "mqtt_proxy/telemetry/snapshot.hpp"
#include "mqtt_proxy/util/result.hpp"

namespace mqtt_proxy::telemetry {

// The fields of /proc/self/stat we use (proc(5)), in the kernel's units.
struct ProcStat {
  std::uint64_t utime_ticks = 0;
  std::uint64_t stime_ticks = 0;
  std::uint64_t starttime_ticks = 0;  // after boot
  std::uint64_t vsize_bytes = 0;
  std::uint64_t rss_pages = 0;
};

// Parses the one line of /proc/<pid>/stat; the command name may hold spaces and parentheses, so
// the fields are counted from the last ')'.
std::optional<ProcStat> parse_proc_stat(std::string_view line);
// The `btime` line of /proc/stat: boot time, seconds since the epoch.
std::optional<std::uint64_t> parse_boot_time(std::string_view proc_stat);

Result<ProcessStats> read_process_stats();

}  // namespace mqtt_proxy::telemetry
