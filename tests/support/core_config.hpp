// The proxy core that the core tests, the benchmarks and the fuzz targets run.
#pragma once

#include <string>

#include "mqtt_proxy/core/proxy_core.hpp"
#include "test_network.hpp"
#include "test_util.hpp"

namespace mqtt_proxy::test {

enum class Login {
  Required,  // a client must log in as kUsername / kPassword
  Anyone,    // every CONNECT is accepted
};

// One interface (kProxyMac, kProxyIp, MTU 1500) and one peer (kPeerIp); everything else default.
inline core::CoreConfig test_core_config(Login login = Login::Required) {
  core::CoreConfig cfg;
  cfg.interfaces.push_back(core::InterfaceInfo{"eth0", kProxyMac, {kProxyIp}, 1500});
  cfg.peering.peers = {kPeerIp};
  if (login == Login::Required) {
    cfg.broker.username = std::string(kUsername);
    cfg.broker.password = std::string(kPassword);
  }
  return cfg;
}

}  // namespace mqtt_proxy::test
