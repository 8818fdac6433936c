#include "mqtt_proxy/inject/packet_injector.hpp"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "mqtt_proxy/os/send_batch.hpp"

namespace mqtt_proxy::inject {

Status PacketInjector::add_interface(int ifindex) {
  // Protocol 0: the socket receives nothing, so the kernel queues no copies of traffic to it.
  os::Fd fd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Error{std::string("AF_PACKET socket: ") + std::strerror(errno)};
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = ifindex;
  sll.sll_protocol = 0;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) < 0) {
    return Error{std::string("AF_PACKET bind: ") + std::strerror(errno)};
  }
  ifaces_.push_back(Iface{std::move(fd), ifindex});
  return {};
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
      counters_.inject_frames_failed += n;
      i += n;
      continue;
    }
    const auto r = os::send_batch(ifaces_[iface].fd.get(), msgs.data(), n, last_error_);
    counters_.inject_send_calls += r.calls;
    counters_.inject_frames_sent += r.sent;
    counters_.inject_frames_failed += r.failed;  // TCP retransmits what was lost
    i += n;
  }
}

}  // namespace mqtt_proxy::inject
