// The WebSocket opening handshake, server side. Read first: RFC 6455 4.2.1 (what the request must
// hold) and 4.2.2 (the answer); RFC 9112 2.2, 3 and 5 (message, request line and field syntax);
// RFC 9110 5.6 (lists, tokens) and 7.8 (Upgrade).
//
// The head is small, its grammar is a subset of HTTP/1.1's, and anything a WebSocket client does
// not send is refused rather than interpreted: a front end and this parser must never read one
// head two ways (request smuggling). So: CRLF only, no obs-fold, no body, one Host.
#include "http_upgrade.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstdint>
#include <optional>

#include "mqtt_proxy/util/log.hpp"

namespace mqtt_proxy::ws {

namespace {

using log::escaped;

constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";  // RFC 6455 1.3
// The subprotocols of MQTT over WebSocket: "mqtt" (MQTT 3.1.1 6.0 and 5.0 6.0; Paho Python,
// MQTT.js) and "mqttv3.1" (MQTT 3.1, which old Paho JavaScript still offers).
constexpr std::array<std::string_view, 2> kSubprotocols{"mqtt", "mqttv3.1"};

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}

// RFC 9110 5.6.2.
bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// RFC 9110 5.6.1: a comma-separated list whose empty elements are ignored. `f` gets each element,
// OWS trimmed, and returns false to stop.
template <typename F>
void for_each_element(std::string_view list, F&& f) {
  while (!list.empty()) {
    const std::size_t comma = std::min(list.find(','), list.size());
    const std::string_view e = trim_ows(list.substr(0, comma));
    if (!e.empty() && !f(e)) return;
    list.remove_prefix(std::min(comma + 1, list.size()));
  }
}

bool has_token(std::string_view list, std::string_view token) {
  bool found = false;
  for_each_element(list, [&](std::string_view e) {
    found = iequals(e, token);
    return !found;
  });
  return found;
}

std::string_view status_text(int status) {
  switch (status) {
    case 101:
      return "Switching Protocols";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 426:
      return "Upgrade Required";
    case 431:
      return "Request Header Fields Too Large";
    case 505:
      return "HTTP Version Not Supported";
    default:
      break;
  }
  return "Error";
}

// RFC 6455 4.2.2: "the |Sec-WebSocket-Key| ... when decoded, is 16 bytes in length": 24 base64
// characters, the last two the padding. EVP_DecodeBlock neither checks padding nor subtracts it
// from its count (it says 18 for these 16 bytes), so the form is checked first.
bool valid_key(std::string_view key) {
  constexpr std::size_t kLen = 24;
  if (key.size() != kLen || key.substr(22) != "==") return false;
  const auto b64 = [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
  };
  if (!std::all_of(key.begin(), key.begin() + 22, b64)) return false;
  std::array<unsigned char, 18> decoded{};
  return EVP_DecodeBlock(decoded.data(), reinterpret_cast<const unsigned char*>(key.data()),
                         static_cast<int>(kLen)) == 18;
}

struct Refusal {
  int status = 400;
  std::string reason;
};

// The fields the handshake reads; the rest of the head is ignored.
struct Fields {
  int host = 0, upgrade = 0, key = 0, version = 0, protocol = 0;
  std::string connection, upgrade_value, key_value, version_value, protocol_value;
  bool body = false;  // Content-Length other than 0, or Transfer-Encoding
  std::string body_field;
};

Refusal bad(std::string reason) {
  return Refusal{400, std::move(reason)};
}

void join(std::string& into, std::string_view value, std::string_view sep) {
  if (!into.empty()) into += sep;
  into += value;
}

// RFC 9112 3: method SP request-target SP HTTP-version, single spaces.
std::optional<Refusal> parse_request_line(std::string_view line, Request& req, int& minor) {
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return bad(
        fmt::format("request line \"{}\" is not METHOD SP TARGET SP HTTP/1.1", escaped(line)));
  }
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!is_token(method)) return bad(fmt::format("method \"{}\" is not a token", escaped(method)));
  req.method = std::string(method);
  // Origin form only (RFC 9112 3.2.1): a WebSocket client sends no other (RFC 6455 4.1).
  const bool visible = std::all_of(target.begin(), target.end(), [](char c) {
    return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
  });
  if (target.empty() || target[0] != '/' || !visible) {
    return bad(fmt::format("request-target \"{}\" is not an absolute path", escaped(target)));
  }
  req.target = std::string(target);
  req.path = std::string(target.substr(0, target.find('?')));
  // RFC 9112 2.3: "HTTP/" DIGIT "." DIGIT.
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !digit(version[5]) ||
      version[6] != '.' || !digit(version[7])) {
    return bad(fmt::format("\"{}\" is not an HTTP version", escaped(version)));
  }
  // RFC 6455 4.1: "the HTTP version MUST be at least 1.1"; 2 and 3 do not use this syntax.
  minor = version[5] == '1' ? version[7] - '0' : -1;
  return std::nullopt;
}

// RFC 9112 5: field-name ":" OWS field-value OWS.
std::optional<Refusal> parse_field(std::string_view line, Request& req, Fields& f) {
  if (line.empty()) return bad("an empty line inside the head");
  // RFC 9112 5.2: obs-fold may be refused with 400, and is.
  if (line[0] == ' ' || line[0] == '\t') {
    return bad(fmt::format("obsolete line folding: \"{}\"", escaped(line)));
  }
  const std::size_t colon = line.find(':');
  const std::string_view name = line.substr(0, colon);
  // RFC 9112 5.1: no whitespace between the name and the colon, and a server MUST refuse it.
  if (colon == std::string_view::npos || !is_token(name)) {
    return bad(fmt::format("header line \"{}\" is not NAME: VALUE", escaped(line)));
  }
  const std::string_view value = trim_ows(line.substr(colon + 1));
  // RFC 9110 5.5: no controls but HTAB in a value (a NUL would cut it short further on).
  for (const char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) {
      return bad(fmt::format("header {} holds the control byte 0x{:02x}", escaped(name), u));
    }
  }
  // The fields the handshake decides on may come once (RFC 9112 3.2 for Host, RFC 6455 11.3.1 and
  // 11.3.5 for the key and version); the lists may come on several lines (RFC 9110 5.3).
  const auto once = [&](int& count, std::string& into) -> std::optional<Refusal> {
    if (++count > 1) return bad(fmt::format("header {} appears more than once", escaped(name)));
    into = std::string(value);
    return std::nullopt;
  };
  if (iequals(name, "Host")) return once(f.host, req.host);
  if (iequals(name, "Upgrade")) return once(f.upgrade, f.upgrade_value);
  if (iequals(name, "Sec-WebSocket-Key")) return once(f.key, f.key_value);
  if (iequals(name, "Sec-WebSocket-Version")) return once(f.version, f.version_value);
  if (iequals(name, "Connection")) {
    join(f.connection, value, ",");
  } else if (iequals(name, "Sec-WebSocket-Protocol")) {
    ++f.protocol;
    join(f.protocol_value, value, ",");
  } else if (iequals(name, "X-Forwarded-For")) {
    join(req.forwarded_for, value, ", ");
  } else if (iequals(name, "User-Agent")) {
    if (req.user_agent.empty()) req.user_agent = std::string(value);
  } else if (iequals(name, "Origin")) {
    if (req.origin.empty()) req.origin = std::string(value);
  } else if ((iequals(name, "Content-Length") && value != "0") ||
             iequals(name, "Transfer-Encoding")) {
    // A body would be read as frames here and as a body by anyone else on the path.
    f.body = true;
    f.body_field = std::string(name);
  }
  return std::nullopt;
}

// The checks of RFC 6455 4.2.1 on a head that parsed, in the order a client needs them to find
// out what it got wrong: the resource first, then the upgrade.
std::optional<Refusal> check_upgrade(const Fields& f, int minor, const Config& cfg, Request& req) {
  if (minor < 1) {
    return Refusal{505, "HTTP version below 1.1 (RFC 6455 4.1 needs 1.1 or later)"};
  }
  if (req.method != "GET") {
    return Refusal{405, fmt::format("method {} is not GET", escaped(req.method))};
  }
  if (f.host == 0 || req.host.empty()) return bad("no Host header (RFC 9112 3.2)");
  if (f.body) return bad(fmt::format("a request body ({})", escaped(f.body_field)));
  if (req.path != cfg.path) {
    return Refusal{404,
                   fmt::format("path \"{}\" is not \"{}\"", escaped(req.path), escaped(cfg.path))};
  }
  if (!has_token(f.upgrade_value, "websocket")) {
    return bad(fmt::format("Upgrade \"{}\" does not name websocket", escaped(f.upgrade_value)));
  }
  if (!has_token(f.connection, "Upgrade")) {
    return bad(fmt::format("Connection \"{}\" has no Upgrade", escaped(f.connection)));
  }
  if (f.version == 0) return bad("no Sec-WebSocket-Version");
  if (f.version_value != "13") {
    return Refusal{426,
                   fmt::format("Sec-WebSocket-Version \"{}\" is not 13", escaped(f.version_value))};
  }
  if (f.key == 0) return bad("no Sec-WebSocket-Key");
  if (!valid_key(f.key_value)) {
    return bad(
        fmt::format("Sec-WebSocket-Key \"{}\" is not 16 bytes in base64", escaped(f.key_value)));
  }
  // RFC 6455 4.2.2: the server picks one of those offered, or none; it picks the client's first
  // choice that it speaks. Offering only others means the client cannot speak MQTT here, and it
  // would fail the connection on a 101 without one (4.1), so it is told now. No header at all is
  // a client that does not ask (mosquitto accepts those, and so does this).
  if (f.protocol > 0) {
    bool bad_element = false;
    for_each_element(f.protocol_value, [&](std::string_view e) {
      if (!is_token(e)) {
        bad_element = true;
        return false;
      }
      if (std::find(kSubprotocols.begin(), kSubprotocols.end(), e) != kSubprotocols.end()) {
        req.subprotocol = std::string(e);
        return false;
      }
      return true;
    });
    if (bad_element || req.subprotocol.empty()) {
      return bad(fmt::format("Sec-WebSocket-Protocol \"{}\" offers neither mqtt nor mqttv3.1",
                             escaped(f.protocol_value)));
    }
  }
  return std::nullopt;
}

}  // namespace

std::string accept_key(std::string_view key) {
  const std::string input = std::string(key) + std::string(kGuid);
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int len = 0;
  const int ok = EVP_Digest(input.data(), input.size(), digest.data(), &len, EVP_sha1(), nullptr);
  assert(ok == 1 && len == 20);
  (void)ok;
  // 20 bytes are 28 base64 characters (the last one padding); EVP_EncodeBlock adds a NUL.
  std::array<unsigned char, 29> b64{};
  const int n = EVP_EncodeBlock(b64.data(), digest.data(), static_cast<int>(len));
  return std::string(reinterpret_cast<const char*>(b64.data()), static_cast<std::size_t>(n));
}

namespace detail {

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    std::uint32_t min = 0;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if ((c & 0xe0) == 0xc0) {
      n = 1, cp = c & 0x1fu, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2, cp = c & 0x0fu, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3, cp = c & 0x07u, min = 0x10000;
    } else {
      return false;
    }
    if (s.size() - i - 1 < n) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

UpgradeAnswer refuse(int status, std::string reason) {
  UpgradeAnswer a;
  a.status = status;
  a.reason = std::move(reason);
  a.response = fmt::format("HTTP/1.1 {} {}\r\n", status, status_text(status));
  // RFC 9110 15.5.6 and 15.5.22; a 426 names the protocol (RFC 9110 7.8, with its connection
  // option) and RFC 6455 4.2.2 the version.
  if (status == 405) a.response += "Allow: GET\r\n";
  if (status == 426) {
    a.response +=
        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nConnection: Upgrade, close\r\n";
  } else {
    a.response += "Connection: close\r\n";
  }
  a.response += "Content-Length: 0\r\n\r\n";
  return a;
}

UpgradeAnswer answer_upgrade(std::string_view head, const Config& cfg, Request& req) {
  assert(head.size() >= 4 && head.substr(head.size() - 4) == "\r\n\r\n");
  std::string_view rest = head.substr(0, head.size() - 2);  // each line keeps its CRLF
  Fields f;
  int minor = -1;
  bool first = true;
  while (!rest.empty()) {
    const std::size_t end = rest.find("\r\n");
    const std::string_view line = rest.substr(0, end);
    rest.remove_prefix(end + 2);
    // Already refused while the head was read; checked again for a head given here whole.
    if (line.find_first_of("\r\n") != std::string_view::npos) {
      return refuse(400, "a bare CR or LF in the request head");
    }
    std::optional<Refusal> r;
    if (first) {
      // RFC 9112 2.2 lets a server skip empty lines before the request line; clients send none.
      r = line.empty() ? bad("an empty line before the request line")
                       : parse_request_line(line, req, minor);
      first = false;
    } else {
      r = parse_field(line, req, f);
    }
    if (r) return refuse(r->status, std::move(r->reason));
  }
  if (auto r = check_upgrade(f, minor, cfg, req)) return refuse(r->status, std::move(r->reason));

  UpgradeAnswer a;
  a.status = 101;
  a.response = fmt::format(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: {}\r\n",
      accept_key(f.key_value));
  if (!req.subprotocol.empty()) {
    a.response += fmt::format("Sec-WebSocket-Protocol: {}\r\n", req.subprotocol);
  }
  a.response += "\r\n";
  return a;
}

}  // namespace detail

}  // namespace mqtt_proxy::ws
