// The process: opens capture, injection, the peer socket and the firewall rules, then runs the one
// event loop that owns them and drives the core.
#pragma once

#include "mqtt_proxy/app/options.hpp"

namespace mqtt_proxy::app {

// Returns the process exit status.
int run_proxy(const Options& opt);

// --cleanup: removes the firewall rules left by proxies that no longer run; the exit status.
int run_cleanup(const Options& opt);

}  // namespace mqtt_proxy::app
