// The process: opens capture, injection, the peer socket and the firewall rules, then runs the one
// event loop that owns them and drives the core.
#pragma once

#include "mqtt_proxy/app/options.hpp"

namespace mqtt_proxy::app {

// Returns the process exit status.
int run_proxy(const Options& opt);

}  // namespace mqtt_proxy::app
