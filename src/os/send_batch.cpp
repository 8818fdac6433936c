#include "mqtt_proxy/os/send_batch.hpp"

#include <cerrno>
#include <cstring>

namespace mqtt_proxy::os {

BatchResult send_batch(int fd, mmsghdr* msgs, std::size_t n, std::string& last_error) {
  BatchResult r;
  std::size_t done = 0;
  while (done < n) {
    ++r.calls;
    const int rc = ::sendmmsg(fd, msgs + done, static_cast<unsigned>(n - done), 0);
    if (rc <= 0) {
      if (rc < 0 && errno == EINTR) continue;
      // EAGAIN (buffer full), an ICMP error reported on the socket, a frame the device refuses:
      // that message is lost, the ones after it may still go.
      last_error = rc < 0 ? std::strerror(errno) : "sendmmsg sent nothing";
      ++r.failed;
      ++done;
      continue;
    }
    r.sent += static_cast<std::size_t>(rc);
    done += static_cast<std::size_t>(rc);
  }
  return r;
}

}  // namespace mqtt_proxy::os
