// The server side of a WebSocket connection (RFC 6455) carrying MQTT (MQTT 3.1.1 and 5.0, section
// 6): the HTTP/1.1 Upgrade handshake, then the frame codec.
//
//   client: GET /mqtt HTTP/1.1 ... Sec-WebSocket-Key ... Sec-WebSocket-Protocol: mqtt CRLF CRLF
//   server: HTTP/1.1 101 Switching Protocols ... Sec-WebSocket-Accept ... CRLF CRLF
//   then frames: FIN,RSV1-3,opcode:1 | MASK,len7:1 | len16:2 or len64:8 | mask key:4 | payload
//
// ServerConnection::feed() is incremental: hand it the connection's bytes in order, cut anywhere,
// and it returns how many it took. The MQTT bytes it unmasks go to the caller in pieces as they
// arrive, never more per call than the caller has room for, so one frame of 16 MiB costs no buffer
// here (only the request head, at most Config::max_header_bytes, and a control frame's 125 bytes
// are kept). What it answers (the 101 or an error response, pongs, close frames) goes to `out`.
// Every check runs as soon as the bytes it needs are in, in the order of those bytes, so the bytes
// produced do not depend on how the stream was cut. Pure: no I/O, no clock; the caller times out a
// handshake or a close handshake that never ends.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "mqtt_proxy/util/bytes.hpp"

namespace mqtt_proxy::ws {

// Section 7.4.1: the status codes of a Close frame this module sends.
namespace close_code {
inline constexpr std::uint16_t kNormal = 1000;
inline constexpr std::uint16_t kGoingAway = 1001;
inline constexpr std::uint16_t kProtocolError = 1002;
inline constexpr std::uint16_t kUnsupportedData = 1003;  // a text frame: MQTT is binary only
inline constexpr std::uint16_t kInvalidPayload = 1007;   // a close reason that is not UTF-8
inline constexpr std::uint16_t kPolicyViolation = 1008;
inline constexpr std::uint16_t kMessageTooBig = 1009;
inline constexpr std::uint16_t kInternalError = 1011;
}  // namespace close_code

// Section 5.5: a control frame's payload, and so a Close frame's status code plus reason.
inline constexpr std::size_t kMaxControlPayload = 125;
// The broker's default largest MQTT packet (broker::Config::max_packet_size, 16 MiB), plus room
// for small packets a client sends in the same frame (MQTT 6.0: a frame may hold several packets,
// or part of one). The caller sets both limits from its own largest packet.
inline constexpr std::size_t kDefaultMaxFramePayload = 16 * 1024 * 1024 + 64 * 1024;

struct Config {
  // The request-target accepted: its path part, compared byte for byte (no percent-decoding, no
  // dot segments); the query string is ignored. Anything else is answered 404.
  std::string path = "/mqtt";
  // The whole request head, request line to the empty line that ends it included; 431 beyond.
  std::size_t max_header_bytes = 8192;
  // The largest payload of one frame (1009 beyond), and of the fragments of one message together.
  std::size_t max_frame_payload = kDefaultMaxFramePayload;
  std::size_t max_message = kDefaultMaxFramePayload;
};

// What the request said, for the log and for hooks; filled as far as the head was read, so a
// refused request names what it could. Bytes as sent (only ASCII controls are refused in a
// header); escape them before they go into a log line.
struct Request {
  std::string method;
  std::string target;  // the request-target, query included
  std::string path;    // its path part
  std::string host;
  std::string forwarded_for;  // X-Forwarded-For, several lines joined with ", "; empty if absent
  std::string user_agent;
  std::string origin;
  std::string
      subprotocol;  // the one chosen and echoed: "mqtt", "mqttv3.1", or empty (none offered)
};

// RFC 6455 4.2.2: base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")), the value of the
// 101's Sec-WebSocket-Accept for the client's Sec-WebSocket-Key (as sent, not decoded).
std::string accept_key(std::string_view sec_websocket_key);

// One server-side connection, from its first byte.
class ServerConnection {
 public:
  enum class State : std::uint8_t {
    Handshake,  // reading the request head
    Open,       // the 101 went out: frames both ways
    Closing,    // close() sent a Close; waiting for the client's (data read now is dropped)
    Closed,     // nothing more to send: close TCP once `out` has gone; input is discarded
  };

  explicit ServerConnection(Config cfg);

  // Consumes bytes from `in`, the next ones of the connection, and returns how many it took. The
  // MQTT bytes of binary frames are appended to `app`, at most `app_room` of them. It takes all of
  // `in` except when it stops at a data frame's payload with `app_room` used up: the rest stays
  // with the caller, to be offered again (and the client held back by TCP's window), once it has
  // room. With `app_room` 0 it still reads frame headers and control frames. Bytes to send are
  // appended to `out`: the 101 or an HTTP error response, pongs, Close frames.
  std::size_t feed(ByteSpan in, std::size_t app_room, Bytes& app, Bytes& out);

  // Wraps `app` (one MQTT packet, or several) as one binary frame, FIN set and unmasked (section
  // 5.1: a server never masks), appended to `out`. Only while state() is Open.
  static void wrap(ByteSpan app, Bytes& out);

  // Starts the close handshake (section 7.1.2) with `code`, one a server may send (1000-1003,
  // 1007-1009, 1011-1014, 3000-4999; any other is sent as 1000) and `reason` (cut to fit 123 bytes,
  // at a UTF-8 character boundary). Open -> Closing; before the handshake is answered -> Closed
  // with nothing sent; otherwise a no-op.
  void close(std::uint16_t code, std::string_view reason, Bytes& out);

  // Whether pings are answered (the default). The caller turns it off while what it has queued
  // toward the client is over a limit: control frames are read whatever the room, so a client
  // that pings faster than it reads would otherwise grow that queue without bound. The pings
  // read meanwhile go unanswered (section 5.5.3 lets pongs to earlier pings be skipped).
  void answer_pings(bool on) { answer_pings_ = on; }

  State state() const { return state_; }
  // Why the connection failed or closed, one line for the log (network bytes escaped); empty while
  // it is fine.
  std::string_view error() const { return error_; }
  // The status of the HTTP response sent: 101, or 400, 404, 405, 426, 431, 505; 0 before.
  int http_status() const { return http_status_; }
  // The status code of the Close frame sent, and of the one received; 0 for none.
  std::uint16_t close_code_sent() const { return close_sent_; }
  std::uint16_t close_code_received() const { return close_received_; }
  // The connection was failed for what the client sent (a frame or a Close this module refuses),
  // rather than closed by either side.
  bool failed() const { return failed_; }
  const Request& request() const { return request_; }

 private:
  std::size_t feed_head(ByteSpan in, Bytes& out);
  void answer_head(Bytes& out);
  // Answers a head refused before it was complete (a bare CR or LF, a control byte, 431).
  void refuse_head(int status, std::string reason, Bytes& out);
  // Reads one byte of a frame header; fails the connection on a header it must refuse.
  void header_byte(std::uint8_t b, Bytes& out);
  void frame_header_done(Bytes& out);
  void control_frame_done(Bytes& out);
  void frame_done(Bytes& out);
  // Section 7.1.7, "Fail the WebSocket Connection": a Close with `code` (unless one went out
  // already), then Closed.
  void fail(std::uint16_t code, std::string reason, Bytes& out);
  void send_close(std::uint16_t code, std::string_view reason, Bytes& out);

  Config cfg_;
  State state_ = State::Handshake;
  std::string error_;
  Request request_;
  int http_status_ = 0;
  std::uint16_t close_sent_ = 0;
  std::uint16_t close_received_ = 0;
  bool failed_ = false;
  bool answer_pings_ = true;

  // Handshake: the head so far; ends at the first CRLF CRLF.
  std::string head_;

  // The frame being read. Its header is at most 14 bytes: 2, an 8-byte length, a 4-byte mask.
  std::array<std::uint8_t, 14> hdr_{};
  std::size_t hdr_have_ = 0;
  std::size_t hdr_need_ = 2;
  bool in_payload_ = false;
  std::uint8_t opcode_ = 0;
  bool fin_ = false;
  std::uint64_t payload_len_ = 0;
  std::uint64_t payload_done_ = 0;  // also the offset into the mask key, mod 4
  std::array<std::uint8_t, 4> mask_{};
  std::string control_;  // a control frame's unmasked payload, at most 125 bytes
  // A fragmented message is open (its first frame had no FIN), and its length so far.
  bool message_open_ = false;
  std::uint64_t message_len_ = 0;
};

std::string_view state_name(ServerConnection::State s);

}  // namespace mqtt_proxy::ws
