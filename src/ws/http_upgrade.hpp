// The pieces of the WebSocket module that websocket.cpp and http_upgrade.cpp share: the answer to a
// complete request head, and text helpers. Not part of the module's interface.
#pragma once

#include <string>
#include <string_view>

#include "mqtt_proxy/ws/websocket.hpp"

namespace mqtt_proxy::ws::detail {

struct UpgradeAnswer {
  int status = 0;        // 101, or the HTTP error sent
  std::string reason;    // why it was refused, for the log; empty for 101
  std::string response;  // the whole response head, to send as it is
};

// `head`: a complete request head, from its first byte to the CRLF CRLF that ends it, at most
// cfg.max_header_bytes long. Fills `req` as far as it reads.
UpgradeAnswer answer_upgrade(std::string_view head, const Config& cfg, Request& req);

// The response to a request refused before its head was complete (a bare CR or LF, 431).
UpgradeAnswer refuse(int status, std::string reason);

// RFC 3629: well-formed UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF).
bool valid_utf8(std::string_view s);

}  // namespace mqtt_proxy::ws::detail
