// The network the core tests, the benchmarks and the fuzz targets put the proxy on: the proxy, its
// first client and its one peer, all in 192.168.1.0/24. Constants, so nothing runs to set them up.
#pragma once

#include "mqtt_proxy/wire/address.hpp"

namespace mqtt_proxy::test {

inline constexpr wire::MacAddress kProxyMac{{0x02, 0, 0, 0, 0, 0x01}};
inline constexpr wire::Ipv4Address kProxyIp{0xc0a80165};  // 192.168.1.101
inline constexpr wire::MacAddress kClientMac{{0x02, 0, 0, 0, 0, 0x02}};
inline constexpr wire::Ipv4Address kClientIp{0xc0a80166};  // 192.168.1.102
inline constexpr wire::Ipv4Address kPeerIp{0xc0a80168};    // 192.168.1.104

}  // namespace mqtt_proxy::test
