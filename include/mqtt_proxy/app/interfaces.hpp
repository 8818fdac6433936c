// The host's network interfaces as the proxy needs them: name, index, MAC, IPv4 addresses, MTU, and
// which offloads are on (those make captured checksums partial and frames larger than the MTU).
#pragma once

#include <string>
#include <vector>

#include "mqtt_proxy/util/result.hpp"
#include "mqtt_proxy/wire/address.hpp"

namespace mqtt_proxy::app {

struct SystemInterface {
  std::string name;
  int ifindex = 0;
  wire::MacAddress mac;
  std::vector<wire::Ipv4Address> addresses;
  std::vector<unsigned> prefix_lengths;  // parallel to `addresses`
  std::uint32_t mtu = 1500;
  bool up = false;
  bool loopback = false;
  bool ethernet = false;  // has a link-layer (MAC) address
};

Result<std::vector<SystemInterface>> list_interfaces();

// Names of offloads that are on ("tx-checksumming", "tcp-segmentation-offload", ...), as far as the
// legacy ethtool ioctls tell.
std::vector<std::string> enabled_offloads(const std::string& iface);

}  // namespace mqtt_proxy::app
