// The server side of WebSocket against RFC 6455 (and MQTT 5.0 section 6): one test per rule of the
// handshake and of the frame codec, each acceptance and each refusal, and the same bytes out
// however the input is cut and however little room the caller has.
#include "mqtt_proxy/ws/websocket.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "test_util.hpp"

namespace mqtt_proxy::test {
namespace {

using ws::Config;
using ws::ServerConnection;
using State = ws::ServerConnection::State;
using namespace std::string_view_literals;

constexpr std::string_view kKey = "dGhlIHNhbXBsZSBub25jZQ==";  // RFC 6455 1.3
constexpr std::string_view kAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
constexpr std::array<std::uint8_t, 4> kMaskKey{0x37, 0xfa, 0x21, 0x3d};  // RFC 6455 5.7

// A request as Paho Python sends it, with `extra` header lines (each ending in CRLF) in the middle
// and the lines named in `drop` left out.
std::string request(std::string_view extra = "", std::vector<std::string_view> drop = {},
                    std::string_view line = "GET /mqtt HTTP/1.1") {
  const std::vector<std::pair<std::string_view, std::string>> fields{
      {"Host", "Host: broker.example:8080\r\n"},
      {"Upgrade", "Upgrade: websocket\r\n"},
      {"Connection", "Connection: Upgrade\r\n"},
      {"Key", "Sec-WebSocket-Key: " + std::string(kKey) + "\r\n"},
      {"Version", "Sec-WebSocket-Version: 13\r\n"},
      {"Protocol", "Sec-WebSocket-Protocol: mqtt\r\n"},
  };
  std::string r = std::string(line) + "\r\n";
  for (const auto& [name, text] : fields) {
    if (std::find(drop.begin(), drop.end(), name) == drop.end()) r += text;
  }
  r += extra;
  r += "\r\n";
  return r;
}

// A client frame: `first` is FIN|RSV|opcode, the payload masked with `key`, the length in the
// shortest form unless `len_form` (126 or 127) asks for a longer one; `masked` false sends the
// payload as it is without a key.
Bytes frame(std::uint8_t first, ByteSpan payload, bool masked = true, int len_form = 0,
            std::array<std::uint8_t, 4> key = kMaskKey) {
  Bytes f{std::byte{first}};
  const std::uint8_t m = masked ? 0x80 : 0x00;
  const std::uint64_t n = payload.size();
  const int form = len_form != 0 ? len_form : n < 126 ? 0 : n <= 0xffff ? 126 : 127;
  if (form == 0) {
    f.push_back(std::byte(m | n));
  } else if (form == 126) {
    f.push_back(std::byte(m | 126));
    for (int s = 8; s >= 0; s -= 8) f.push_back(std::byte((n >> s) & 0xff));
  } else {
    f.push_back(std::byte(m | 127));
    for (int s = 56; s >= 0; s -= 8) f.push_back(std::byte((n >> s) & 0xff));
  }
  if (masked) {
    for (const auto k : key) f.push_back(std::byte{k});
  }
  for (std::size_t i = 0; i < payload.size(); ++i) {
    f.push_back(masked ? payload[i] ^ std::byte{key[i % 4]} : payload[i]);
  }
  return f;
}
Bytes frame(std::uint8_t first, std::string_view payload, bool masked = true, int len_form = 0) {
  return frame(first, as_bytes(payload), masked, len_form);
}

// A frame header alone, for lengths whose payload is never sent.
Bytes header64(std::uint8_t first, std::uint64_t len) {
  Bytes f{std::byte{first}, std::byte{0x80 | 127}};
  for (int s = 56; s >= 0; s -= 8) f.push_back(std::byte((len >> s) & 0xff));
  for (const auto k : kMaskKey) f.push_back(std::byte{k});
  return f;
}

Bytes close_payload(std::uint16_t code, std::string_view reason = "") {
  Bytes b{std::byte(code >> 8), std::byte(code & 0xff)};
  append(b, as_bytes(reason));
  return b;
}

// What the server sends for a Close with `code`.
Bytes server_close(std::uint16_t code) {
  return Bytes{std::byte{0x88}, std::byte{0x02}, std::byte(code >> 8), std::byte(code & 0xff)};
}

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) append(out, p);
  return out;
}

struct Result {
  Bytes app;
  Bytes out;
  State state = State::Handshake;
  std::string error;
  friend bool operator==(const Result&, const Result&) = default;
};

// Feeds `in` in pieces of the sizes `cuts` gives (cycled; empty: all at once), with at most
// `room` application bytes per call, re-offering what a call did not take, as the proxy would from
// its TCP receive buffer. Checks feed()'s promises on every call.
Result run(ServerConnection& c, const Bytes& in, const std::vector<std::size_t>& cuts = {},
           std::size_t room = SIZE_MAX) {
  Result r;
  std::size_t pos = 0;
  std::size_t k = 0;
  while (pos < in.size()) {
    const std::size_t piece = cuts.empty() ? in.size() - pos : cuts[k++ % cuts.size()];
    ByteSpan offered = ByteSpan{in}.subspan(pos, std::min(piece, in.size() - pos));
    while (!offered.empty()) {
      const std::size_t before = r.app.size();
      const std::size_t n = c.feed(offered, room, r.app, r.out);
      EXPECT_LE(n, offered.size());
      EXPECT_LE(r.app.size() - before, room);
      if (n < offered.size()) {
        // Only backpressure stops it short: room used up, at a data payload.
        EXPECT_EQ(r.app.size() - before, room);
        EXPECT_TRUE(c.state() == State::Open);
      }
      if (n == 0) {
        ADD_FAILURE() << "feed() took nothing with room " << room;
        return r;
      }
      offered = offered.subspan(n);
      pos += n;
    }
  }
  r.state = c.state();
  r.error = std::string(c.error());
  return r;
}

Result run(const Bytes& in, const Config& cfg = {}) {
  ServerConnection c{cfg};
  return run(c, in);
}

// The status line and whole head of an HTTP response.
std::string head(const Result& r) {
  return str(r.out);
}

// An HTTP refusal: its status, Connection: close, no body, and the connection Closed.
void expect_refused(const std::string& req, int status, const Config& cfg = {}) {
  ServerConnection c{cfg};
  const auto r = run(c, text(req));
  EXPECT_EQ(c.http_status(), status) << c.error();
  EXPECT_TRUE(head(r).starts_with("HTTP/1.1 " + std::to_string(status) + " ")) << head(r);
  // Connection: close (with Upgrade too in a 426)
  const std::size_t conn = head(r).find("\r\nConnection: ");
  ASSERT_NE(conn, std::string::npos) << head(r);
  const std::string line = head(r).substr(conn + 2, head(r).find("\r\n", conn + 2) - conn - 2);
  EXPECT_TRUE(line == "Connection: close" || line == "Connection: Upgrade, close") << line;
  EXPECT_NE(head(r).find("Content-Length: 0\r\n"), std::string::npos);
  EXPECT_TRUE(head(r).ends_with("\r\n\r\n"));
  EXPECT_EQ(r.state, State::Closed);
  EXPECT_TRUE(r.error.starts_with("HTTP " + std::to_string(status))) << r.error;
}

void expect_accepted(const std::string& req, const Config& cfg = {}) {
  ServerConnection c{cfg};
  const auto r = run(c, text(req));
  EXPECT_EQ(c.http_status(), 101) << c.error();
  EXPECT_EQ(r.state, State::Open);
}

// A connection past its handshake; what the 101 was is dropped from `out`.
struct Open {
  explicit Open(Config cfg = {}) : c(std::move(cfg)) {
    Bytes app, out;
    c.feed(text(request()), SIZE_MAX, app, out);
    EXPECT_EQ(c.state(), State::Open);
  }
  Result feed(const Bytes& in, std::size_t room = SIZE_MAX) { return run(c, in, {}, room); }
  ServerConnection c;
};

// The Close the server sends after `in`, and its state.
void expect_failed(const Bytes& in, std::uint16_t code, const Config& cfg = {}) {
  Open o{cfg};
  const auto r = o.feed(in);
  EXPECT_EQ(r.out, server_close(code)) << r.error;
  EXPECT_EQ(r.state, State::Closed);
  EXPECT_EQ(o.c.close_code_sent(), code);
  EXPECT_TRUE(r.error.starts_with("close " + std::to_string(code))) << r.error;
}

// ---- the opening handshake (RFC 6455 4.2) ----

TEST(WebSocketHandshake, AcceptKeyIsTheRfcExample) {
  EXPECT_EQ(ws::accept_key(kKey), kAccept);
}

TEST(WebSocketHandshake, Answers101WithAcceptAndSubprotocol) {
  ServerConnection c{Config{}};
  const auto r = run(c, text(request("X-Forwarded-For: 198.51.100.7\r\nUser-Agent: paho\r\n"
                                     "Origin: http://example.com\r\n")));
  EXPECT_EQ(str(r.out),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "Sec-WebSocket-Protocol: mqtt\r\n\r\n");
  EXPECT_EQ(r.state, State::Open);
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(c.http_status(), 101);
  const auto& q = c.request();
  EXPECT_EQ(q.method, "GET");
  EXPECT_EQ(q.path, "/mqtt");
  EXPECT_EQ(q.host, "broker.example:8080");
  EXPECT_EQ(q.forwarded_for, "198.51.100.7");
  EXPECT_EQ(q.user_agent, "paho");
  EXPECT_EQ(q.origin, "http://example.com");
  EXPECT_EQ(q.subprotocol, "mqtt");
}

TEST(WebSocketHandshake, JoinsForwardedForLines) {
  ServerConnection c{Config{}};
  run(c, text(request("X-Forwarded-For: 203.0.113.1\r\nx-forwarded-for:198.51.100.7 \r\n")));
  EXPECT_EQ(c.request().forwarded_for, "203.0.113.1, 198.51.100.7");
}

TEST(WebSocketHandshake, RefusesAMethodOtherThanGetWith405) {
  expect_refused(request("", {}, "POST /mqtt HTTP/1.1"), 405);
  const auto r = run(text(request("", {}, "HEAD /mqtt HTTP/1.1")));
  EXPECT_NE(head(r).find("\r\nAllow: GET\r\n"), std::string::npos);
}

TEST(WebSocketHandshake, IgnoresTheQueryString) {
  ServerConnection c{Config{}};
  run(c, text(request("", {}, "GET /mqtt?client=a&x=/y HTTP/1.1")));
  EXPECT_EQ(c.http_status(), 101);
  EXPECT_EQ(c.request().target, "/mqtt?client=a&x=/y");
  EXPECT_EQ(c.request().path, "/mqtt");
}

TEST(WebSocketHandshake, RefusesAnotherPathWith404) {
  expect_refused(request("", {}, "GET / HTTP/1.1"), 404);
  expect_refused(request("", {}, "GET /mqtt/ HTTP/1.1"), 404);
  expect_refused(request("", {}, "GET /MQTT HTTP/1.1"), 404);
  expect_refused(request("", {}, "GET /%6dqtt HTTP/1.1"), 404);  // no percent-decoding
  Config cfg;
  cfg.path = "/ws";
  expect_accepted(request("", {}, "GET /ws HTTP/1.1"), cfg);
}

TEST(WebSocketHandshake, RefusesATargetThatIsNotAnAbsolutePath) {
  expect_refused(request("", {}, "GET http://broker.example/mqtt HTTP/1.1"), 400);
  expect_refused(request("", {}, "GET * HTTP/1.1"), 400);
}

TEST(WebSocketHandshake, NeedsHttp11OrLater) {
  expect_refused(request("", {}, "GET /mqtt HTTP/1.0"), 505);
  expect_refused(request("", {}, "GET /mqtt HTTP/2.0"), 505);
  expect_accepted(request("", {}, "GET /mqtt HTTP/1.2"));
  expect_refused(request("", {}, "GET /mqtt HTTP/1.11"), 400);
  expect_refused(request("", {}, "GET /mqtt http/1.1"), 400);
  expect_refused(request("", {}, "GET  /mqtt HTTP/1.1"), 400);  // two spaces
  expect_refused(request("", {}, "GET /mqtt"), 400);
}

TEST(WebSocketHandshake, NeedsExactlyOneHost) {
  expect_refused(request("", {"Host"}), 400);
  expect_refused(request("Host: other\r\n"), 400);
  expect_refused(request("Host:\r\n", {"Host"}), 400);
}

TEST(WebSocketHandshake, NeedsUpgradeWebsocketInAnyCase) {
  expect_refused(request("", {"Upgrade"}), 400);
  expect_refused(request("Upgrade: h2c\r\n", {"Upgrade"}), 400);
  expect_accepted(request("Upgrade: WebSocket\r\n", {"Upgrade"}));
  expect_accepted(request("upgrade:websocket\r\n", {"Upgrade"}));
}

TEST(WebSocketHandshake, NeedsTheUpgradeTokenInConnection) {
  expect_refused(request("", {"Connection"}), 400);
  expect_refused(request("Connection: keep-alive\r\n", {"Connection"}), 400);
  expect_refused(request("Connection: Upgraded\r\n", {"Connection"}), 400);
  expect_accepted(request("Connection: keep-alive, Upgrade\r\n", {"Connection"}));  // Firefox
  expect_accepted(request("Connection: upgrade\r\n", {"Connection"}));
  expect_accepted(request("Connection: keep-alive\r\nConnection: ,UPGRADE,\r\n", {"Connection"}));
}

TEST(WebSocketHandshake, AnswersAnotherVersionWith426) {
  expect_refused(request("Sec-WebSocket-Version: 8\r\n", {"Version"}), 426);
  const auto r = run(text(request("Sec-WebSocket-Version: 8\r\n", {"Version"})));
  EXPECT_NE(head(r).find("\r\nSec-WebSocket-Version: 13\r\n"), std::string::npos);
  EXPECT_NE(head(r).find("\r\nUpgrade: websocket\r\n"), std::string::npos);
  expect_refused(request("", {"Version"}), 400);
}

TEST(WebSocketHandshake, NeedsAKeyOf16BytesInBase64) {
  expect_refused(request("", {"Key"}), 400);
  expect_refused(request("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n", {"Key"}), 400);
  expect_refused(request("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n", {"Key"}), 400);
  expect_refused(request("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZXh4\r\n", {"Key"}), 400);  // 18
  expect_refused(request("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j*Q==\r\n", {"Key"}), 400);
  expect_refused(request("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==AAAA\r\n", {"Key"}), 400);
  expect_accepted(request("Sec-WebSocket-Key:   x3JJHMbDL1EzLkh9GBhXDw==  \r\n", {"Key"}));
}

TEST(WebSocketHandshake, RefusesABareLf) {
  std::string req = request();
  req.replace(req.find("\r\nUpgrade"), 2, "\n");
  expect_refused(req, 400);
  ServerConnection c{Config{}};
  run(c, text(req));
  EXPECT_NE(c.error().find("bare LF"), std::string::npos) << c.error();
  expect_refused("GET /mqtt HTTP/1.1\n\n", 400);
}

TEST(WebSocketHandshake, RefusesABareCr) {
  std::string req = request();
  req.replace(req.find("\r\nUpgrade"), 2, "\r");
  expect_refused(req, 400);
}

TEST(WebSocketHandshake, RefusesObsoleteLineFolding) {
  expect_refused(request("User-Agent: a\r\n  folded\r\n"), 400);
  expect_refused(request("User-Agent: a\r\n\tfolded\r\n"), 400);
}

TEST(WebSocketHandshake, RefusesMalformedHeaderLines) {
  expect_refused(request("User-Agent : a\r\n"), 400);  // RFC 9112 5.1
  expect_refused(request("no colon\r\n"), 400);
  expect_refused(request(": empty name\r\n"), 400);
  expect_refused(request(std::string("User-Agent: a\0b\r\n", 17)), 400);
  expect_refused(request("User-Agent: a\x7f\r\n"), 400);
  expect_accepted(request("User-Agent: caf\xc3\xa9\tx\r\n"));  // obs-text and HTAB are fine
}

TEST(WebSocketHandshake, RefusesALeadingEmptyLine) {
  expect_refused("\r\n" + request(), 400);
}

TEST(WebSocketHandshake, RefusesAHeadLongerThanTheLimitWith431) {
  const std::string req = request();
  Config cfg;
  cfg.max_header_bytes = req.size();
  expect_accepted(req, cfg);
  cfg.max_header_bytes = req.size() - 1;
  expect_refused(req, 431, cfg);
  // Without an end: refused once the limit is passed, not waited on.
  ServerConnection c{Config{}};
  Bytes app, out;
  const Bytes endless(10000, std::byte{'a'});
  EXPECT_EQ(c.feed(endless, SIZE_MAX, app, out), endless.size());
  EXPECT_EQ(c.http_status(), 431);
  EXPECT_EQ(c.state(), State::Closed);
}

TEST(WebSocketHandshake, RefusesDuplicateCriticalHeaders) {
  expect_refused(request("Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"), 400);
  expect_refused(request("Sec-WebSocket-Version: 13\r\n"), 400);
  expect_refused(request("Upgrade: websocket\r\n"), 400);
  expect_refused(request("HOST: broker.example:8080\r\n"), 400);
}

TEST(WebSocketHandshake, RefusesARequestBody) {
  expect_refused(request("Content-Length: 5\r\n"), 400);
  expect_refused(request("Transfer-Encoding: chunked\r\n"), 400);
  expect_accepted(request("Content-Length: 0\r\n"));
}

TEST(WebSocketHandshake, PicksTheClientsFirstSupportedSubprotocol) {
  const auto chosen = [](std::string_view protocols) {
    ServerConnection c{Config{}};
    run(c, text(request(protocols, {"Protocol"})));
    EXPECT_EQ(c.http_status(), 101) << c.error();
    return c.request().subprotocol;
  };
  EXPECT_EQ(chosen("Sec-WebSocket-Protocol: mqtt\r\n"), "mqtt");
  EXPECT_EQ(chosen("Sec-WebSocket-Protocol: mqttv3.1\r\n"), "mqttv3.1");  // old Paho JS
  EXPECT_EQ(chosen("Sec-WebSocket-Protocol: wamp, mqttv3.1, mqtt\r\n"), "mqttv3.1");
  EXPECT_EQ(chosen("Sec-WebSocket-Protocol: wamp\r\nSec-WebSocket-Protocol: mqtt\r\n"), "mqtt");
  const auto r = run(text(request("Sec-WebSocket-Protocol: wamp, mqttv3.1\r\n", {"Protocol"})));
  EXPECT_NE(head(r).find("\r\nSec-WebSocket-Protocol: mqttv3.1\r\n"), std::string::npos);
}

TEST(WebSocketHandshake, RefusesASubprotocolListWithoutMqtt) {
  expect_refused(request("Sec-WebSocket-Protocol: wamp, soap\r\n", {"Protocol"}), 400);
  expect_refused(request("Sec-WebSocket-Protocol: MQTT\r\n", {"Protocol"}), 400);
  expect_refused(request("Sec-WebSocket-Protocol:\r\n", {"Protocol"}), 400);
}

TEST(WebSocketHandshake, AcceptsNoSubprotocolWithoutEchoingOne) {
  ServerConnection c{Config{}};
  const auto r = run(c, text(request("", {"Protocol"})));
  EXPECT_EQ(c.http_status(), 101);
  EXPECT_EQ(head(r).find("Sec-WebSocket-Protocol"), std::string::npos);
  EXPECT_EQ(c.request().subprotocol, "");
}

TEST(WebSocketHandshake, ReadsFramesThatFollowTheHeadInTheSameSegment) {
  const auto r = run(cat({text(request()), frame(0x82, "\x10\x02\x00\x04"sv)}));
  EXPECT_EQ(r.app, bytes("10 02 00 04"));
  EXPECT_EQ(r.state, State::Open);
}

TEST(WebSocketHandshake, DiscardsWhatFollowsARefusal) {
  ServerConnection c{Config{}};
  Bytes app, out;
  const Bytes in = cat({text(request("", {}, "GET /x HTTP/1.1")), frame(0x82, "abc")});
  EXPECT_EQ(c.feed(in, SIZE_MAX, app, out), in.size());
  EXPECT_TRUE(app.empty());
  const std::size_t sent = out.size();
  EXPECT_EQ(c.feed(in, SIZE_MAX, app, out), in.size());
  EXPECT_EQ(out.size(), sent);
  EXPECT_TRUE(app.empty());
}

// ---- frames (RFC 6455 5) ----

TEST(WebSocketFrames, DeliversAMaskedBinaryFrame) {
  Open o;
  const auto r = o.feed(frame(0x82, "hello"));
  EXPECT_EQ(str(r.app), "hello");
  EXPECT_TRUE(r.out.empty());
  EXPECT_EQ(r.error, "");
}

TEST(WebSocketFrames, RefusesAnUnmaskedFrameWith1002) {
  expect_failed(frame(0x82, "hello", false), 1002);
}

TEST(WebSocketFrames, RefusesRsvBitsWith1002) {
  expect_failed(frame(0xc2, "x"), 1002);  // RSV1: permessage-deflate was not negotiated
  expect_failed(frame(0xa2, "x"), 1002);
  expect_failed(frame(0x92, "x"), 1002);
}

TEST(WebSocketFrames, RefusesReservedOpcodesWith1002) {
  for (const std::uint8_t op : std::array<std::uint8_t, 4>{0x3, 0x7, 0xb, 0xf}) {
    expect_failed(frame(static_cast<std::uint8_t>(0x80 | op), "x"), 1002);
  }
}

TEST(WebSocketFrames, RefusesAFragmentedControlFrameWith1002) {
  expect_failed(frame(0x09, "ping"), 1002);
  expect_failed(frame(0x08, ""), 1002);
}

TEST(WebSocketFrames, RefusesAControlPayloadOver125BytesWith1002) {
  expect_failed(frame(0x89, std::string(126, 'p')), 1002);
  Open o;
  const auto r = o.feed(frame(0x89, std::string(125, 'p')));
  EXPECT_EQ(r.out.size(), 2u + 125u);
}

TEST(WebSocketFrames, ReadsThe16And64BitLengths) {
  Open o;
  const std::string mid(300, 'm');
  const std::string big(70000, 'b');
  EXPECT_EQ(str(o.feed(frame(0x82, mid)).app), mid);
  EXPECT_EQ(str(o.feed(frame(0x82, big)).app), big);
  EXPECT_EQ(o.c.state(), State::Open);
}

TEST(WebSocketFrames, RefusesNonMinimalLengthsWith1002) {
  expect_failed(frame(0x82, "short", true, 126), 1002);
  expect_failed(frame(0x82, "short", true, 127), 1002);
  expect_failed(frame(0x82, std::string(300, 'm'), true, 127), 1002);
  // The boundaries: 126 in 16 bits and 65536 in 64 are minimal.
  Open o;
  EXPECT_EQ(o.feed(frame(0x82, std::string(126, 'x'), true, 126)).app.size(), 126u);
  EXPECT_EQ(o.feed(frame(0x82, std::string(65536, 'x'), true, 127)).app.size(), 65536u);
}

TEST(WebSocketFrames, RefusesA64BitLengthWithItsMsbSetWith1002) {
  Config cfg;
  cfg.max_frame_payload = SIZE_MAX;
  cfg.max_message = SIZE_MAX;
  expect_failed(header64(0x82, std::uint64_t{1} << 63), 1002, cfg);
}

TEST(WebSocketFrames, RefusesAFrameOverTheLimitWith1009BeforeItsPayload) {
  Config cfg;
  cfg.max_frame_payload = 1000;
  Open ok{cfg};
  EXPECT_EQ(ok.feed(frame(0x82, std::string(1000, 'x'))).app.size(), 1000u);
  // The header alone is enough to refuse it.
  expect_failed(header64(0x82, 1u << 20), 1009, cfg);
  Bytes f = frame(0x82, std::string(1001, 'x'));
  f.resize(8);  // 2 + 2 + the mask key
  expect_failed(f, 1009, cfg);
}

TEST(WebSocketFrames, ReassemblesAFragmentedMessageWithControlFramesBetween) {
  Open o;
  const auto r = o.feed(cat({frame(0x02, "ab"), frame(0x89, "hi"), frame(0x00, "cd"),
                             frame(0x8a, "unsolicited"), frame(0x80, "ef")}));
  EXPECT_EQ(str(r.app), "abcdef");
  EXPECT_EQ(r.out, bytes("8a 02 68 69"));
  EXPECT_EQ(r.state, State::Open);
  // The message is over: a new one may begin.
  EXPECT_EQ(str(o.feed(frame(0x82, "g")).app), "g");
}

TEST(WebSocketFrames, RefusesADataFrameInsideAFragmentedMessageWith1002) {
  expect_failed(cat({frame(0x02, "ab"), frame(0x82, "cd")}), 1002);
  expect_failed(cat({frame(0x02, "ab"), frame(0x02, "cd")}), 1002);
}

TEST(WebSocketFrames, RefusesAContinuationWithNoMessageOpenWith1002) {
  expect_failed(frame(0x80, "cd"), 1002);
  expect_failed(cat({frame(0x82, "ab"), frame(0x00, "cd")}), 1002);
}

TEST(WebSocketFrames, RefusesAMessageOverTheLimitWith1009) {
  Config cfg;
  cfg.max_message = 10;
  Open ok{cfg};
  EXPECT_EQ(str(ok.feed(cat({frame(0x02, "abcde"), frame(0x80, "fghij")})).app), "abcdefghij");
  expect_failed(cat({frame(0x02, "abcde"), frame(0x00, "fghij"), frame(0x80, "k")}), 1009, cfg);
  expect_failed(frame(0x82, "abcdefghijk"), 1009, cfg);
}

TEST(WebSocketFrames, ClosesOnATextFrameWith1003) {
  expect_failed(frame(0x81, "{\"mqtt\":1}"), 1003);
  Open o;
  EXPECT_TRUE(o.feed(frame(0x81, "text")).app.empty());
}

TEST(WebSocketFrames, AnswersAPingWithAnUnmaskedPongOfTheSamePayload) {
  Open o;
  EXPECT_EQ(o.feed(frame(0x89, "Hello")).out, bytes("8a 05 48 65 6c 6c 6f"));  // RFC 6455 5.7
  EXPECT_EQ(o.feed(frame(0x89, "")).out, bytes("8a 00"));
}

TEST(WebSocketFrames, PingsGoUnansweredWhileTheCallerHoldsPongsBack) {
  Open o;
  o.c.answer_pings(false);
  auto r = o.feed(cat({frame(0x89, "one"), frame(0x82, "ab"), frame(0x89, "two")}));
  EXPECT_TRUE(r.out.empty());
  EXPECT_EQ(str(r.app), "ab");
  EXPECT_EQ(r.state, State::Open);
  o.c.answer_pings(true);
  EXPECT_EQ(o.feed(frame(0x89, "three")).out, bytes("8a 05 74 68 72 65 65"));
}

TEST(WebSocketFrames, IgnoresAPong) {
  Open o;
  const auto r = o.feed(frame(0x8a, "x"));
  EXPECT_TRUE(r.out.empty());
  EXPECT_TRUE(r.app.empty());
  EXPECT_EQ(r.state, State::Open);
}

TEST(WebSocketClose, EchoesTheClientsStatusCode) {
  Open o;
  const auto r = o.feed(frame(0x88, close_payload(1001, "going")));
  EXPECT_EQ(r.out, server_close(1001));
  EXPECT_EQ(r.state, State::Closed);
  EXPECT_EQ(o.c.close_code_received(), 1001);
  EXPECT_EQ(o.c.close_code_sent(), 1001);
  EXPECT_EQ(r.error, "client closed: 1001 \"going\"");
}

TEST(WebSocketClose, Answers1010WhichOnlyAClientMaySendWith1000) {
  Open o;
  const auto r = o.feed(frame(0x88, close_payload(1010, "")));
  EXPECT_EQ(r.out, server_close(1000));
  EXPECT_EQ(o.c.close_code_received(), 1010);
  Open p;
  Bytes out;
  p.c.close(1005, "", out);  // never on the wire
  EXPECT_EQ(out, server_close(1000));
}

TEST(WebSocketClose, AnswersACloseWithoutBodyWith1000) {
  Open o;
  const auto r = o.feed(frame(0x88, ""));
  EXPECT_EQ(r.out, server_close(1000));
  EXPECT_EQ(r.state, State::Closed);
  EXPECT_EQ(o.c.close_code_received(), 0);
}

TEST(WebSocketClose, RefusesAOneBytePayloadWith1002) {
  expect_failed(frame(0x88, "\x03"), 1002);
}

TEST(WebSocketClose, RefusesStatusCodesThatMayNotBeSentWith1002) {
  for (const std::uint16_t code : std::array<std::uint16_t, 11>{0, 999, 1004, 1005, 1006, 1015,
                                                                1016, 2000, 2999, 5000, 65535}) {
    SCOPED_TRACE(code);
    expect_failed(frame(0x88, close_payload(code)), 1002);
  }
  for (const std::uint16_t code :
       std::array<std::uint16_t, 9>{1000, 1002, 1003, 1007, 1011, 1012, 1014, 3000, 4999}) {
    SCOPED_TRACE(code);
    Open o;
    EXPECT_EQ(o.feed(frame(0x88, close_payload(code))).out, server_close(code));
  }
}

TEST(WebSocketClose, RefusesAReasonThatIsNotUtf8With1007) {
  expect_failed(frame(0x88, close_payload(1000, "\xff")), 1007);
  expect_failed(frame(0x88, close_payload(1000, "\xc0\xaf")), 1007);      // overlong '/'
  expect_failed(frame(0x88, close_payload(1000, "\xed\xa0\x80")), 1007);  // a surrogate
  expect_failed(frame(0x88, close_payload(1000, "\xe2\x82")), 1007);      // cut short
  Open o;
  EXPECT_EQ(o.feed(frame(0x88, close_payload(1000, "\xce\xba\xe1\xbd\xb9\xf0\x9f\x98\x80"))).out,
            server_close(1000));
}

TEST(WebSocketClose, DiscardsEverythingAfterClosed) {
  Open o;
  o.feed(frame(0x88, close_payload(1000)));
  Bytes app, out;
  const Bytes more = cat({frame(0x82, "late"), frame(0x89, "p")});
  EXPECT_EQ(o.c.feed(more, SIZE_MAX, app, out), more.size());
  EXPECT_TRUE(app.empty());
  EXPECT_TRUE(out.empty());
}

TEST(WebSocketClose, ServerCloseWaitsForTheClientsAndDropsDataMeanwhile) {
  Open o;
  Bytes out;
  o.c.close(1000, "bye", out);
  EXPECT_EQ(out, cat({bytes("88 05 03 e8"), text("bye")}));
  EXPECT_EQ(o.c.state(), State::Closing);
  const auto r = o.feed(cat({frame(0x82, "late"), frame(0x89, "p")}));
  EXPECT_TRUE(r.app.empty());
  EXPECT_TRUE(r.out.empty());  // no pong after our Close (5.5.1)
  EXPECT_EQ(r.state, State::Closing);
  const auto end = o.feed(frame(0x88, close_payload(1000)));
  EXPECT_TRUE(end.out.empty());
  EXPECT_EQ(end.state, State::Closed);
  EXPECT_EQ(o.c.close_code_received(), 1000);
}

TEST(WebSocketClose, ServerCloseThenAProtocolErrorSendsNothingMore) {
  Open o;
  Bytes out;
  o.c.close(1001, "", out);
  const auto r = o.feed(frame(0x82, "x", false));
  EXPECT_TRUE(r.out.empty());
  EXPECT_EQ(r.state, State::Closed);
  EXPECT_EQ(o.c.close_code_sent(), 1001);
}

TEST(WebSocketClose, ServerCloseCutsALongReasonAtACharacter) {
  Open o;
  Bytes out;
  std::string reason(122, 'r');
  reason += "\xc3\xa9\xc3\xa9";  // the first é straddles byte 123
  o.c.close(1011, reason, out);
  ASSERT_EQ(out.size(), 2u + 2u + 122u);
  EXPECT_EQ(out[1], std::byte{124});
}

TEST(WebSocketClose, ServerCloseBeforeTheHandshakeSendsNothing) {
  ServerConnection c{Config{}};
  Bytes out;
  c.close(1000, "shutdown", out);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(c.state(), State::Closed);
  EXPECT_NE(c.error(), "");
}

TEST(WebSocketWrap, EncodesEachLengthFormUnmasked) {
  const auto header = [](std::size_t n) {
    Bytes out;
    ServerConnection::wrap(Bytes(n, std::byte{0x30}), out);
    EXPECT_EQ(out.size() - n, n < 126 ? 2u : n <= 0xffff ? 4u : 10u);
    return to_hex(ByteSpan{out}.first(out.size() - n));
  };
  EXPECT_EQ(header(0), to_hex(bytes("82 00")));
  EXPECT_EQ(header(125), to_hex(bytes("82 7d")));
  EXPECT_EQ(header(126), to_hex(bytes("82 7e 00 7e")));
  EXPECT_EQ(header(65535), to_hex(bytes("82 7e ff ff")));
  EXPECT_EQ(header(65536), to_hex(bytes("82 7f 00 00 00 00 00 01 00 00")));
  Bytes out;
  ServerConnection::wrap(bytes("20 02 00 00"), out);
  EXPECT_EQ(out, bytes("82 04 20 02 00 00"));
}

// ---- streaming and backpressure ----

TEST(WebSocketStream, UnmasksAPayloadDeliveredInPieces) {
  Open o;
  const std::string payload = "0123456789abcdefghij";
  const Bytes f = frame(0x82, payload);
  Bytes app, out;
  ByteSpan in{f};
  // The room runs out mid-payload: the rest stays with the caller and is offered again.
  std::size_t n = o.c.feed(in, 3, app, out);
  EXPECT_EQ(n, 6u + 3u);
  EXPECT_EQ(str(app), "012");
  in = in.subspan(n);
  n = o.c.feed(in.first(5), 100, app, out);  // a piece of TCP that ends mid-payload
  EXPECT_EQ(n, 5u);
  in = in.subspan(n);
  n = o.c.feed(in, 0, app, out);
  EXPECT_EQ(n, 0u);
  n = o.c.feed(in, 100, app, out);
  EXPECT_EQ(n, in.size());
  EXPECT_EQ(str(app), payload);
}

TEST(WebSocketStream, ReadsControlFramesWithNoRoom) {
  Open o;
  Bytes app, out;
  const Bytes in = cat({frame(0x89, "p"), frame(0x82, "data")});
  EXPECT_EQ(o.c.feed(in, 0, app, out), in.size() - 4);  // stops at the first payload byte
  EXPECT_EQ(out, bytes("8a 01 70"));
  EXPECT_TRUE(app.empty());
  // An empty data frame needs no room either.
  Open empty;
  EXPECT_EQ(empty.c.feed(frame(0x82, ""), 0, app, out), 6u);
}

// A session's worth of client bytes: the upgrade, MQTT in frames of each length form, a fragmented
// message with a ping inside, a pong, and a Close.
Bytes session() {
  return cat({text(request()), frame(0x82, "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"sv),
              frame(0x02, std::string(200, 'a')), frame(0x89, "keepalive"),
              frame(0x00, std::string(70000, 'b')), frame(0x8a, ""), frame(0x80, "end"),
              frame(0x82, ""), frame(0x88, close_payload(1000, "bye")), frame(0x82, "after")});
}

void expect_same_however_cut(const Bytes& in) {
  ServerConnection whole_conn{Config{}};
  const Result whole = run(whole_conn, in);
  for (const std::size_t room : {SIZE_MAX, std::size_t{1}, std::size_t{7}, std::size_t{4096}}) {
    SCOPED_TRACE(room);
    {
      ServerConnection c{Config{}};
      EXPECT_EQ(run(c, in, {}, room), whole);
    }
    {
      ServerConnection c{Config{}};
      EXPECT_EQ(run(c, in, {1}, room), whole);
    }
    for (unsigned seed = 1; seed <= 20; ++seed) {
      SCOPED_TRACE(seed);
      std::mt19937 rng(seed);
      std::uniform_int_distribution<std::size_t> len(1, 300);
      std::vector<std::size_t> cuts(64);
      for (auto& c : cuts) c = len(rng);
      ServerConnection c{Config{}};
      EXPECT_EQ(run(c, in, cuts, room), whole);
    }
  }
}

TEST(WebSocketStream, GivesTheSameBytesHoweverTheInputIsCut) {
  const Bytes in = session();
  ServerConnection c{Config{}};
  const Result whole = run(c, in);
  EXPECT_EQ(whole.app.size(), 14u + 200u + 70000u + 3u);
  EXPECT_EQ(whole.state, State::Closed);
  EXPECT_EQ(whole.error, "client closed: 1000 \"bye\"");
  expect_same_however_cut(in);
}

TEST(WebSocketStream, FailsAtTheSameByteHoweverTheInputIsCut) {
  // A frame too large for the default limit, after some data; then a refused handshake.
  expect_same_however_cut(cat({text(request()), frame(0x82, "ok"), header64(0x82, 1ull << 40)}));
  expect_same_however_cut(
      cat({text(request("Connection: x\r\n", {"Connection"})), frame(0x82, "never")}));
  std::string lf = request();
  lf.replace(lf.find("\r\nHost"), 2, "\n");
  expect_same_however_cut(text(lf));
}

}  // namespace
}  // namespace mqtt_proxy::test
