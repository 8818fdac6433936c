// Keeps the kernel's TCP away from the MQTT port on the captured interfaces, so it does not answer
// our clients with RSTs: `iptables -t raw -A PREROUTING -i IF -p tcp --dport PORT -m addrtype
// --dst-type LOCAL -j DROP`. The raw table is consulted after capture, so libpcap still sees every
// segment, and the proxy's own frames (sent through AF_PACKET) never cross netfilter. Rules are
// added only when absent and exactly those added are removed when the guard is destroyed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mqtt_proxy/util/log.hpp"
#include "mqtt_proxy/util/result.hpp"

namespace mqtt_proxy::firewall {

// The rule for one interface, as iptables arguments after the table and chain.
std::vector<std::string> drop_rule(const std::string& iface, std::uint16_t port);

class FirewallGuard {
 public:
  static Result<std::unique_ptr<FirewallGuard>> install(const std::vector<std::string>& ifaces,
                                                        std::uint16_t port, log::Logger& log);
  ~FirewallGuard();
  FirewallGuard(const FirewallGuard&) = delete;
  FirewallGuard& operator=(const FirewallGuard&) = delete;

  std::size_t rules_added() const { return added_.size(); }
  // Removes the rules now (also done by the destructor). Returns false if any removal failed.
  bool remove_all();

 private:
  explicit FirewallGuard(log::Logger& log) : log_(log) {}
  log::Logger& log_;
  std::vector<std::vector<std::string>> added_;
};

// Runs a program with arguments (no shell), stdin from /dev/null. Returns its exit status, or -1 if
// it could not be started; its stderr is returned in `err_output`.
int run_program(const std::vector<std::string>& argv, std::string& err_output);

}  // namespace mqtt_proxy::firewall
