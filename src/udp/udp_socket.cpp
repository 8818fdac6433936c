#include "mqtt_proxy/udp/udp_socket.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "mqtt_proxy/os/send_batch.hpp"

namespace mqtt_proxy::udp {

Status UdpSocket::open(std::uint16_t port, bool receives) {
  fd_ = os::Fd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd_.valid()) return Error{std::string("UDP socket: ") + std::strerror(errno)};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    return Error{"cannot bind UDP port " + std::to_string(port) + ": " + std::strerror(errno)};
  }
  // Only groups this socket joined reach it, not every group any socket on the host joined (the
  // Linux default): the peer socket must not take multicast PUBLISHes, which capture reads.
  const int zero = 0;
  (void)setsockopt(fd_.get(), IPPROTO_IP, IP_MULTICAST_ALL, &zero, sizeof(zero));
  if (!receives) return {};
  // A burst of PUBLISHes from a peer must not overflow the socket while the loop is busy. The
  // FORCE variants (root) pass net.core.rmem_max/wmem_max, which default to about 200 KiB.
  const int buf = 8 * 1024 * 1024;
  if (setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf)) < 0) {
    (void)setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
  }
  if (setsockopt(fd_.get(), SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf)) < 0) {
    (void)setsockopt(fd_.get(), SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
  }
  rx_buf_.assign(kBatch, Bytes(65536));
  rx_len_.assign(kBatch, 0);
  rx_src_.assign(kBatch, {});
  return {};
}

namespace {
bool set_membership(int fd, wire::Ipv4Address group, int ifindex, bool join) {
  ip_mreqn m{};
  m.imr_multiaddr.s_addr = htonl(group.value);
  m.imr_ifindex = ifindex;
  return setsockopt(fd, IPPROTO_IP, join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP, &m, sizeof(m)) ==
         0;
}
}  // namespace

Status GroupMemberships::join(wire::Ipv4Address group) {
  if (where_.contains(group.value)) return {};
  for (std::size_t i = 0;; ++i) {
    if (i == sockets_.size()) {
      os::Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (!fd.valid()) return Error{std::string("membership socket: ") + std::strerror(errno)};
      const int zero = 0;
      (void)setsockopt(fd.get(), IPPROTO_IP, IP_MULTICAST_ALL, &zero, sizeof(zero));
      sockets_.push_back(std::move(fd));
    }
    if (set_membership(sockets_[i].get(), group, ifindex_, true)) {
      where_.emplace(group.value, i);
      return {};
    }
    // ENOBUFS: this socket holds as many groups as the kernel allows one socket; the next.
    if (errno != ENOBUFS) {
      return Error{fmt::format("join group {}: {}", group, std::strerror(errno))};
    }
  }
}

Status GroupMemberships::leave(wire::Ipv4Address group) {
  auto it = where_.find(group.value);
  if (it == where_.end()) return {};
  const bool ok = set_membership(sockets_[it->second].get(), group, ifindex_, false);
  where_.erase(it);
  if (!ok) return Error{fmt::format("leave group {}: {}", group, std::strerror(errno))};
  return {};
}

int UdpSocket::receive_batch() {
  std::array<mmsghdr, kBatch> msgs{};
  std::array<iovec, kBatch> iovs{};
  std::array<sockaddr_in, kBatch> addrs{};
  for (std::size_t i = 0; i < kBatch; ++i) {
    iovs[i].iov_base = rx_buf_[i].data();
    iovs[i].iov_len = rx_buf_[i].size();
    msgs[i].msg_hdr.msg_iov = &iovs[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = &addrs[i];
    msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_in);
  }
  int n;
  do {
    n = ::recvmmsg(fd_.get(), msgs.data(), kBatch, 0, nullptr);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) last_error_ = std::strerror(errno);
    return 0;
  }
  for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) {
    // A datagram larger than the buffer arrives truncated (MSG_TRUNC); the codec then rejects it.
    rx_len_[i] = msgs[i].msg_len;
    rx_src_[i] = wire::Ipv4Address{ntohl(addrs[i].sin_addr.s_addr)};
  }
  return n;
}

std::size_t UdpSocket::send(const std::vector<peering::Datagram>& datagrams, std::uint16_t port) {
  std::size_t failed = 0;
  std::size_t i = 0;
  while (i < datagrams.size()) {
    const std::size_t n = std::min(kBatch, datagrams.size() - i);
    std::array<mmsghdr, kBatch> msgs{};
    std::array<iovec, kBatch> iovs{};
    std::array<sockaddr_in, kBatch> addrs{};
    for (std::size_t k = 0; k < n; ++k) {
      const auto& d = datagrams[i + k];
      iovs[k].iov_base = const_cast<std::byte*>(d.bytes.data());
      iovs[k].iov_len = d.bytes.size();
      addrs[k].sin_family = AF_INET;
      addrs[k].sin_port = htons(port);
      addrs[k].sin_addr.s_addr = htonl(d.dst.value);
      msgs[k].msg_hdr.msg_iov = &iovs[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
      msgs[k].msg_hdr.msg_name = &addrs[k];
      msgs[k].msg_hdr.msg_namelen = sizeof(sockaddr_in);
    }
    failed += os::send_batch(fd_.get(), msgs.data(), n, last_error_).failed;
    i += n;
  }
  return failed;
}

}  // namespace mqtt_proxy::udp
