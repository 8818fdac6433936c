// From the command line to what the proxy runs with: the password file read, the interfaces
// chosen, the core's configuration filled in. Everything that can fail before a socket is opened.
#pragma once

#include <memory>
#include <vector>

#include "mqtt_proxy/app/interfaces.hpp"
#include "mqtt_proxy/app/options.hpp"
#include "mqtt_proxy/auth/password_file.hpp"
#include "mqtt_proxy/core/proxy_core.hpp"
#include "mqtt_proxy/util/result.hpp"

namespace mqtt_proxy::app {

struct ProxyConfig {
  std::vector<SystemInterface> interfaces;  // the ones to serve, in the core's index order
  std::shared_ptr<const auth::PasswordFile> password_file;
  core::CoreConfig core;
};

Result<ProxyConfig> build_config(const Options& opt);

// How clients authenticate, for the ready line ("anonymous", "required (-u, 3 users in FILE)").
std::string auth_mode(const Options& opt, const auth::PasswordFile* file);
// The ready line's note on the PROXY protocol: versions, trusted sources, TLS requirement.
std::string proxy_protocol_summary(const ingress::ProxyProtocolPolicy& p);

}  // namespace mqtt_proxy::app
