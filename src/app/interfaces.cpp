#include "mqtt_proxy/app/interfaces.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "mqtt_proxy/os/fd.hpp"

namespace mqtt_proxy::app {

Result<std::vector<SystemInterface>> list_interfaces() {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) < 0) return Error{std::string("getifaddrs: ") + std::strerror(errno)};
  std::map<std::string, SystemInterface> by_name;
  for (ifaddrs* a = list; a; a = a->ifa_next) {
    if (!a->ifa_name) continue;
    auto& i = by_name[a->ifa_name];
    i.name = a->ifa_name;
    i.up = (a->ifa_flags & IFF_UP) && (a->ifa_flags & IFF_RUNNING);
    i.loopback = a->ifa_flags & IFF_LOOPBACK;
    if (!a->ifa_addr) continue;
    if (a->ifa_addr->sa_family == AF_INET) {
      const auto* sin = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
      i.addresses.push_back(wire::Ipv4Address{ntohl(sin->sin_addr.s_addr)});
      unsigned prefix = 32;
      if (a->ifa_netmask) {
        const auto* mask = reinterpret_cast<const sockaddr_in*>(a->ifa_netmask);
        prefix = static_cast<unsigned>(__builtin_popcount(ntohl(mask->sin_addr.s_addr)));
      }
      i.prefix_lengths.push_back(prefix);
    } else if (a->ifa_addr->sa_family == AF_PACKET) {
      const auto* sll = reinterpret_cast<const sockaddr_ll*>(a->ifa_addr);
      if (sll->sll_halen == 6) {
        std::copy(sll->sll_addr, sll->sll_addr + 6, i.mac.octets.begin());
        i.ethernet = true;
      }
    }
  }
  ::freeifaddrs(list);

  const os::Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  std::vector<SystemInterface> out;
  for (auto& [name, i] : by_name) {
    i.ifindex = static_cast<int>(::if_nametoindex(name.c_str()));
    if (fd.valid()) {
      ifreq req{};
      std::strncpy(req.ifr_name, name.c_str(), IFNAMSIZ - 1);
      if (::ioctl(fd.get(), SIOCGIFMTU, &req) == 0 && req.ifr_mtu > 0) {
        i.mtu = static_cast<std::uint32_t>(req.ifr_mtu);
      }
    }
    if (i.loopback) i.ethernet = true;  // lo carries Ethernet headers with zero MACs
    out.push_back(std::move(i));
  }
  return out;
}

std::vector<std::string> enabled_offloads(const std::string& iface) {
  std::vector<std::string> on;
  const os::Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return on;
  // Each query answers a value; an offload is on when the bits in `mask` are set in it. LRO has no
  // query of its own, only a bit in the flags word.
  struct Query {
    std::uint32_t cmd;
    std::uint32_t mask;
    const char* name;
  };
  const Query queries[] = {
      {ETHTOOL_GTXCSUM, ~0u, "tx-checksumming"},
      {ETHTOOL_GTSO, ~0u, "tcp-segmentation-offload"},
      {ETHTOOL_GGSO, ~0u, "generic-segmentation-offload"},
      {ETHTOOL_GGRO, ~0u, "generic-receive-offload"},
      {ETHTOOL_GFLAGS, ETH_FLAG_LRO, "large-receive-offload"},
  };
  for (const auto& q : queries) {
    ethtool_value v{};
    v.cmd = q.cmd;
    ifreq req{};
    std::strncpy(req.ifr_name, iface.c_str(), IFNAMSIZ - 1);
    req.ifr_data = reinterpret_cast<char*>(&v);
    if (::ioctl(fd.get(), SIOCETHTOOL, &req) == 0 && (v.data & q.mask)) on.emplace_back(q.name);
  }
  return on;
}

}  // namespace mqtt_proxy::app
