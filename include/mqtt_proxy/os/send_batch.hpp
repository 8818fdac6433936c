// sendmmsg() until every message of a batch is through: an interrupted call is repeated, a message
// the kernel refuses is skipped (counted by the caller), and the rest still go.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <string>

namespace mqtt_proxy::os {

struct BatchResult {
  std::size_t sent = 0;
  std::size_t failed = 0;
  std::size_t calls = 0;  // sendmmsg() calls made
};

// Sends msgs[0..n). On a failure `last_error` gets the reason.
BatchResult send_batch(int fd, mmsghdr* msgs, std::size_t n, std::string& last_error);

}  // namespace mqtt_proxy::os
