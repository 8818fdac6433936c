// Capturing on `lo` (`-i lo`: HAProxy and the proxy on one host, docs/deployment.md) works only if
// the kernel accepts the segments the proxy injects there: their source and destination are local
// addresses (127.0.0.1, or the host's own), which lo drops as martians unless
// net.ipv4.conf.lo.route_localnet=1 (127/8 may be routed) and net.ipv4.conf.lo.accept_local=1
// (a packet may come from a local source). The proxy sets both while it runs and puts back what was
// there before, like its iptables rules.
//
// A proxy killed with SIGKILL cannot put them back, and the next one would see 1 and take that as
// the original. So the original values are kept in a state file per network namespace
// (/run/mqtt_proxy/lo-net-<inode of /proc/self/ns/net>), with the pids of the proxies that rely on
// them: the last live one to leave restores them and removes the file, a proxy that starts after a
// crash takes the recorded originals over, and `mqtt_proxy --cleanup` restores them when no owner
// runs any more. The file is locked (flock) while it is read and changed.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt_proxy/util/log.hpp"
#include "mqtt_proxy/util/result.hpp"

namespace mqtt_proxy::firewall {

// The two sysctls, by their file names under /proc/sys/net/ipv4/conf/lo/.
inline constexpr std::string_view kLoopbackSysctls[] = {"route_localnet", "accept_local"};

// The state file's content: one `NAME=VALUE` line per original value, and `owners=PID PID ...`.
struct LoopbackState {
  std::map<std::string, std::string> original;
  std::vector<std::int64_t> owners;
  bool operator==(const LoopbackState&) const = default;
};
std::string render_loopback_state(const LoopbackState& s);
// Nothing if a line is not `NAME=VALUE`, a pid is not a number, or a sysctl is missing.
std::optional<LoopbackState> parse_loopback_state(std::string_view text);

struct LoopbackPaths {
  std::string sysctl_dir = "/proc/sys/net/ipv4/conf/lo";
  std::string state_dir = "/run/mqtt_proxy";
  std::string netns;  // empty: the inode of /proc/self/ns/net
};

class LoopbackSysctls {
 public:
  // Records the originals (or takes over a dead proxy's record), adds this process as an owner and
  // sets both sysctls to 1.
  static Result<std::unique_ptr<LoopbackSysctls>> apply(log::Logger& log, LoopbackPaths paths = {});
  ~LoopbackSysctls();
  LoopbackSysctls(const LoopbackSysctls&) = delete;
  LoopbackSysctls& operator=(const LoopbackSysctls&) = delete;

  // Leaves the owners; the last live one restores the originals. Also done by the destructor.
  // False if the state could not be read or a value could not be written (logged).
  bool release();

 private:
  LoopbackSysctls(log::Logger& log, LoopbackPaths paths) : log_(log), paths_(std::move(paths)) {}
  log::Logger& log_;
  LoopbackPaths paths_;
  bool held_ = false;
};

// `--cleanup`: if no proxy that relied on lo's sysctls in this namespace runs any more, restores
// what they were and removes the record. True if something was restored.
Result<bool> restore_loopback_leftovers(log::Logger& log, LoopbackPaths paths = {});

}  // namespace mqtt_proxy::firewall
