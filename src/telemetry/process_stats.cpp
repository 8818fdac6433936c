#include "mqtt_proxy/telemetry/process_stats.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

namespace mqtt_proxy::telemetry {

namespace {

std::optional<std::uint64_t> to_u64(std::string_view s) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<std::string> slurp(const char* path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

std::optional<ProcStat> parse_proc_stat(std::string_view line) {
  const std::size_t close = line.rfind(')');
  if (close == std::string_view::npos) return std::nullopt;
  std::vector<std::string_view> f;  // f[0] is field 3 (state) of proc(5)
  std::string_view rest = line.substr(close + 1);
  while (!rest.empty()) {
    const std::size_t start = rest.find_first_not_of(" \n");
    if (start == std::string_view::npos) break;
    rest.remove_prefix(start);
    const std::size_t end = rest.find_first_of(" \n");
    f.push_back(rest.substr(0, end));
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
  }
  if (f.size() < 22) return std::nullopt;
  const auto field = [&](std::size_t n) { return to_u64(f[n - 3]); };
  const auto utime = field(14);
  const auto stime = field(15);
  const auto start = field(22);
  const auto vsize = field(23);
  const auto rss = field(24);
  if (!utime || !stime || !start || !vsize || !rss) return std::nullopt;
  return ProcStat{*utime, *stime, *start, *vsize, *rss};
}

std::optional<std::uint64_t> parse_boot_time(std::string_view proc_stat) {
  std::size_t pos = 0;
  while (pos < proc_stat.size()) {
    const std::size_t nl = proc_stat.find('\n', pos);
    const std::string_view line =
        proc_stat.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    if (line.starts_with("btime ")) return to_u64(line.substr(6));
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  return std::nullopt;
}

Result<ProcessStats> read_process_stats() {
  const auto stat_text = slurp("/proc/self/stat");
  if (!stat_text) return Error{"cannot read /proc/self/stat"};
  const auto st = parse_proc_stat(*stat_text);
  if (!st) return Error{"cannot parse /proc/self/stat"};
  const auto system_text = slurp("/proc/stat");
  const auto btime = system_text ? parse_boot_time(*system_text) : std::nullopt;
  if (!btime) return Error{"cannot read btime from /proc/stat"};

  const long ticks = sysconf(_SC_CLK_TCK);
  const long page = sysconf(_SC_PAGESIZE);
  if (ticks <= 0 || page <= 0) return Error{"sysconf(_SC_CLK_TCK or _SC_PAGESIZE) failed"};
  const auto hz = static_cast<double>(ticks);

  ProcessStats p;
  p.cpu_seconds = static_cast<double>(st->utime_ticks + st->stime_ticks) / hz;
  p.resident_memory_bytes = st->rss_pages * static_cast<std::uint64_t>(page);
  p.virtual_memory_bytes = st->vsize_bytes;
  p.start_time_seconds =
      static_cast<double>(*btime) + static_cast<double>(st->starttime_ticks) / hz;

  rlimit as{};
  if (getrlimit(RLIMIT_AS, &as) == 0) p.virtual_memory_max_bytes = as.rlim_cur;
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) p.max_fds = nofile.rlim_cur;

  // Counts the iterator's own descriptor too, as client_golang does.
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    ++p.open_fds;
  }
  if (ec) return Error{"cannot list /proc/self/fd: " + ec.message()};
  return p;
}

}  // namespace mqtt_proxy::telemetry
