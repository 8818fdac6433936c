// Keeps the kernel's TCP away from the MQTT port on the captured interfaces, so it does not answer
// our clients with RSTs: `iptables -t raw -A PREROUTING -i IF -p tcp --dport PORT -m addrtype
// --dst-type LOCAL -j DROP`. The raw table is consulted after capture, so libpcap still sees every
// segment, and the proxy's own frames (sent through AF_PACKET) never cross netfilter.
//
// The guard removes exactly the rules it added when it is destroyed or at remove_all(). A proxy
// killed with SIGKILL (or crashed) cannot, so the next one takes its rules over: it adds its own
// rule first (the port is never unguarded) and then deletes every rule of the same interface and
// port whose owner no longer runs (rules.hpp). `mqtt_proxy --cleanup` deletes those leftovers
// without starting a proxy.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mqtt_proxy/firewall/rules.hpp"
#include "mqtt_proxy/util/log.hpp"
#include "mqtt_proxy/util/result.hpp"

namespace mqtt_proxy::firewall {

class FirewallGuard {
 public:
  static Result<std::unique_ptr<FirewallGuard>> install(const std::vector<std::string>& ifaces,
                                                        std::uint16_t port, log::Logger& log);
  ~FirewallGuard();
  FirewallGuard(const FirewallGuard&) = delete;
  FirewallGuard& operator=(const FirewallGuard&) = delete;

  std::size_t rules_added() const { return added_.size(); }
  std::size_t leftovers_removed() const { return leftovers_removed_; }
  // Removes the rules now (also done by the destructor). Returns false if any removal failed.
  bool remove_all();

 private:
  explicit FirewallGuard(log::Logger& log) : log_(log) {}
  log::Logger& log_;
  std::vector<std::vector<std::string>> added_;
  std::size_t leftovers_removed_ = 0;
};

struct LeftoverCount {
  std::size_t removed = 0;
  std::size_t failed = 0;  // iptables -D failed (logged)
};

// Deletes the rules of these interfaces (none: of any interface) and port left by proxies that no
// longer run, and nothing else.
Result<LeftoverCount> remove_leftovers(const std::vector<std::string>& ifaces, std::uint16_t port,
                                       log::Logger& log);

// Whether the process `pid` runs and is a proxy (has our program name): what the owner of a rule
// or of lo's sysctls must be for them to stay. Our own pid is not (a previous life in another PID
// namespace); when in doubt (no /proc), it is.
bool proxy_runs(std::int64_t pid);

// Runs a program with arguments (no shell), stdin from /dev/null. Returns its exit status, or -1 if
// it could not be started; its stderr (up to 4 KiB) is returned in `err_output`, its stdout in
// `std_output` if given (else it goes to /dev/null).
int run_program(const std::vector<std::string>& argv, std::string& err_output,
                std::string* std_output = nullptr);

}  // namespace mqtt_proxy::firewall
