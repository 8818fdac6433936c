#include "mqtt_proxy/inject/packet_injector.hpp"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace mqtt_proxy::inject {

PacketInjector::~PacketInjector() {
  for (auto& i : ifaces_) {
    if (i.fd >= 0) ::close(i.fd);
  }
}

bool PacketInjector::add_interface(int ifindex, std::string& error) {
  // Protocol 0: the socket receives nothing, so the kernel queues no copies of traffic to it.
  const int fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::string("AF_PACKET socket: ") + std::strerror(errno);
    return false;
  }
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = ifindex;
  sll.sll_protocol = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) < 0) {
    error = std::string("AF_PACKET bind: ") + std::strerror(errno);
    ::close(fd);
    return false;
  }
  ifaces_.push_back(Iface{fd, ifindex});
  return true;
}

void PacketInjector::send(const core::FrameBatch& batch) {
  constexpr std::size_t kMaxBatch = 64;
  const auto& entries = batch.entries();
  std::size_t i = 0;
  while (i < entries.size()) {
    // A run of frames for the same interface goes out in one sendmmsg().
    const std::size_t iface = entries[i].iface;
    std::array<mmsghdr, kMaxBatch> msgs{};
    std::array<iovec, kMaxBatch> iovs{};
    std::array<sockaddr_ll, kMaxBatch> addrs{};
    std::size_t n = 0;
    while (i + n < entries.size() && n < kMaxBatch && entries[i + n].iface == iface) {
      const auto frame = batch.frame(entries[i + n]);
      iovs[n].iov_base = const_cast<std::byte*>(frame.data());
      iovs[n].iov_len = frame.size();
      addrs[n].sll_family = AF_PACKET;
      addrs[n].sll_ifindex = iface < ifaces_.size() ? ifaces_[iface].ifindex : 0;
      addrs[n].sll_protocol = htons(ETH_P_IP);
      msgs[n].msg_hdr.msg_iov = &iovs[n];
      msgs[n].msg_hdr.msg_iovlen = 1;
      msgs[n].msg_hdr.msg_name = &addrs[n];
      msgs[n].msg_hdr.msg_namelen = sizeof(sockaddr_ll);
      ++n;
    }
    if (iface >= ifaces_.size()) {
      stats_.frames_failed += n;
      i += n;
      continue;
    }
    std::size_t done = 0;
    while (done < n) {
      ++stats_.send_calls;
      const int rc =
          ::sendmmsg(ifaces_[iface].fd, msgs.data() + done, static_cast<unsigned>(n - done), 0);
      if (rc <= 0) {
        if (rc < 0 && errno == EINTR) continue;
        last_error_ = rc < 0 ? std::strerror(errno) : "sendmmsg sent nothing";
        ++stats_.frames_failed;  // skip the frame that failed; the rest may still go
        ++done;
        continue;
      }
      stats_.frames_sent += static_cast<std::uint64_t>(rc);
      done += static_cast<std::size_t>(rc);
    }
    i += n;
  }
}

}  // namespace mqtt_proxy::inject
