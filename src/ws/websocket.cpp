// The WebSocket connection, server side. Read first: RFC 6455 5.2 (the frame), 5.3 (masking), 5.4
// (fragmentation), 5.5 (control frames), 7.1.7 and 7.4 (failing and closing, status codes); MQTT
// 5.0 section 6 (binary frames only; a frame may hold any part of the packet stream).
//
// The input is read one state at a time: the request head (http_upgrade.cpp), then frame headers
// byte by byte, each check as soon as the byte it needs is in, then payloads in runs. A data
// payload is unmasked straight into the caller's buffer and never kept, so the frame and message
// limits bound what a client may announce, not memory. Stopping only at a payload byte for want
// of room, and checking nothing that depends on where a call began, makes the bytes produced the
// same however the input was cut.
#include "mqtt_proxy/ws/websocket.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <utility>

#include "http_upgrade.hpp"
#include "mqtt_proxy/util/log.hpp"

namespace mqtt_proxy::ws {

namespace {

// Section 5.2.
constexpr std::uint8_t kFin = 0x80;
constexpr std::uint8_t kRsv = 0x70;
constexpr std::uint8_t kMask = 0x80;
constexpr std::uint8_t kOpContinuation = 0x0;
constexpr std::uint8_t kOpText = 0x1;
constexpr std::uint8_t kOpBinary = 0x2;
constexpr std::uint8_t kOpClose = 0x8;
constexpr std::uint8_t kOpPing = 0x9;
constexpr std::uint8_t kOpPong = 0xa;
constexpr std::size_t kMaskLen = 4;
constexpr std::uint8_t kLen16 = 126;
constexpr std::uint8_t kLen64 = 127;

bool is_control(std::uint8_t opcode) {
  return (opcode & 0x8) != 0;
}

// Section 7.4: the codes a Close may carry on the wire. 1004 is reserved, 1005, 1006 and 1015
// are never sent, 1016-2999 are unassigned, 3000-4999 are for libraries and applications; 1012-
// 1014 were registered with IANA after the RFC (service restart, try again later, bad gateway).
// 1010: the client ends the connection because the server did not offer an extension it needs.
constexpr std::uint16_t kMandatoryExtension = 1010;

bool valid_close_code(std::uint16_t code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

// Sections 5.2 and 5.5: a frame header, unmasked and with the shortest length encoding.
void frame_header(std::uint8_t first, std::size_t len, Bytes& out) {
  out.push_back(std::byte{first});
  if (len < kLen16) {
    out.push_back(std::byte(len));
  } else if (len <= 0xffff) {
    out.push_back(std::byte{kLen16});
    out.push_back(std::byte(len >> 8));
    out.push_back(std::byte(len & 0xff));
  } else {
    out.push_back(std::byte{kLen64});
    const auto v = static_cast<std::uint64_t>(len);
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(std::byte((v >> shift) & 0xff));
  }
}

}  // namespace

std::string_view state_name(ServerConnection::State s) {
  switch (s) {
    case ServerConnection::State::Handshake:
      return "HANDSHAKE";
    case ServerConnection::State::Open:
      return "OPEN";
    case ServerConnection::State::Closing:
      return "CLOSING";
    case ServerConnection::State::Closed:
      return "CLOSED";
  }
  return "?";
}

ServerConnection::ServerConnection(Config cfg) : cfg_(std::move(cfg)) {}

std::size_t ServerConnection::feed(ByteSpan in, std::size_t app_room, Bytes& app, Bytes& out) {
  std::size_t pos = 0;
  std::size_t room = app_room;
  while (pos < in.size()) {
    switch (state_) {
      case State::Closed:
        return in.size();  // section 7.1.7: nothing after a failure or a Close is read
      case State::Handshake:
        pos += feed_head(in.subspan(pos), out);
        continue;
      case State::Open:
      case State::Closing:
        break;
    }
    if (!in_payload_) {
      header_byte(load_u8(in, pos++), out);
      continue;
    }
    std::size_t n = static_cast<std::size_t>(
        std::min<std::uint64_t>(payload_len_ - payload_done_, in.size() - pos));
    const bool control = is_control(opcode_);
    const bool deliver = !control && state_ == State::Open;
    if (deliver) {
      n = std::min(n, room);
      if (n == 0) return pos;  // backpressure: the rest stays with the caller
      room -= n;
    }
    // Section 5.3: byte i of the payload is XORed with byte i mod 4 of the key, counting from the
    // payload's start, whichever call it arrives in.
    for (std::size_t i = 0; i < n; ++i) {
      const auto b =
          static_cast<std::uint8_t>(load_u8(in, pos + i) ^ mask_[(payload_done_ + i) % kMaskLen]);
      if (control) {
        control_.push_back(static_cast<char>(b));
      } else if (deliver) {
        app.push_back(std::byte{b});
      }
      // Closing: data after our Close is read to find the client's Close, and dropped.
    }
    payload_done_ += n;
    pos += n;
    if (payload_done_ == payload_len_) frame_done(out);
  }
  return pos;
}

std::size_t ServerConnection::feed_head(ByteSpan in, Bytes& out) {
  for (std::size_t i = 0; i < in.size(); ++i) {
    const auto c = static_cast<char>(load_u8(in, i));
    if (head_.size() == cfg_.max_header_bytes) {
      refuse_head(431, fmt::format("request head longer than {} bytes", cfg_.max_header_bytes),
                  out);
      return i;
    }
    // RFC 9112 2.2 lets a server take a bare LF as a line end; this one does not, nor a bare CR
    // (which it must refuse or read as a space): every WebSocket client sends CRLF, and a proxy in
    // front that ends lines elsewhere would see other headers than we do.
    const char prev = head_.empty() ? '\0' : head_.back();
    if ((c == '\n' && prev != '\r') || (prev == '\r' && c != '\n')) {
      refuse_head(400,
                  fmt::format("a bare {} at byte {} of the request head", c == '\n' ? "LF" : "CR",
                              c == '\n' ? head_.size() : head_.size() - 1),
                  out);
      return i;
    }
    // No ASCII control but HTAB belongs anywhere in a head (RFC 9110 5.5, 9112 3): refused at
    // once, so that binary bytes (an MQTT client on the wrong port) get their 400 now rather
    // than after the handshake timeout.
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t' && c != '\r' && c != '\n') || u == 0x7f) {
      refuse_head(
          400, fmt::format("control byte 0x{:02x} at byte {} of the request head", u, head_.size()),
          out);
      return i;
    }
    head_.push_back(c);
    if (c == '\n' && head_.size() >= 4 &&
        std::string_view(head_).substr(head_.size() - 4) == "\r\n\r\n") {
      answer_head(out);
      return i + 1;  // what follows is frames (RFC 6455 4.2.2: the client may send at once)
    }
  }
  return in.size();
}

void ServerConnection::refuse_head(int status, std::string reason, Bytes& out) {
  const auto a = detail::refuse(status, std::move(reason));
  append(out, as_bytes(a.response));
  http_status_ = a.status;
  error_ = fmt::format("HTTP {}: {}", a.status, a.reason);
  state_ = State::Closed;
}

void ServerConnection::answer_head(Bytes& out) {
  const auto a = detail::answer_upgrade(head_, cfg_, request_);
  append(out, as_bytes(a.response));
  http_status_ = a.status;
  head_.clear();
  head_.shrink_to_fit();
  if (a.status == 101) {
    state_ = State::Open;
  } else {
    error_ = fmt::format("HTTP {}: {}", a.status, a.reason);
    state_ = State::Closed;
  }
}

void ServerConnection::header_byte(std::uint8_t b, Bytes& out) {
  hdr_[hdr_have_++] = b;
  if (hdr_have_ == 1) {
    fin_ = (b & kFin) != 0;
    opcode_ = b & 0x0f;
    // Section 5.2: "MUST be 0 unless an extension is negotiated"; none is.
    if ((b & kRsv) != 0) {
      return fail(close_code::kProtocolError,
                  fmt::format("RSV bits 0x{:x} set without an extension", (b & kRsv) >> 4), out);
    }
    if (opcode_ != kOpContinuation && opcode_ != kOpText && opcode_ != kOpBinary &&
        opcode_ != kOpClose && opcode_ != kOpPing && opcode_ != kOpPong) {
      return fail(close_code::kProtocolError, fmt::format("reserved opcode 0x{:x}", opcode_), out);
    }
    // Section 5.5: "All control frames ... MUST NOT be fragmented."
    if (is_control(opcode_) && !fin_) {
      return fail(close_code::kProtocolError,
                  fmt::format("control frame 0x{:x} without FIN", opcode_), out);
    }
    // Section 5.4: a message is one data frame and its continuations, control frames between.
    if (opcode_ == kOpContinuation && !message_open_) {
      return fail(close_code::kProtocolError, "continuation frame with no message open", out);
    }
    if ((opcode_ == kOpText || opcode_ == kOpBinary) && message_open_) {
      return fail(close_code::kProtocolError,
                  "data frame before the fragmented message's last frame", out);
    }
    // MQTT 5.0 6.0: "MQTT Control Packets MUST be sent in WebSocket binary data frames. If any
    // other type of data frame is received the recipient MUST close the Network Connection";
    // RFC 6455 7.4.1 names 1003 for a type of data it cannot accept.
    if (opcode_ == kOpText) {
      return fail(close_code::kUnsupportedData, "text frame (MQTT needs binary frames)", out);
    }
    return;
  }
  if (hdr_have_ == 2) {
    // Section 5.1: "The server MUST close the connection upon receiving a frame that is not
    // masked", with 1002 (5.1: status code 1002 as in 7.4.1).
    if ((b & kMask) == 0) return fail(close_code::kProtocolError, "frame not masked", out);
    const std::uint8_t len7 = b & 0x7f;
    if (is_control(opcode_) && len7 > kMaxControlPayload) {
      return fail(close_code::kProtocolError,
                  fmt::format("control frame 0x{:x} with a payload over 125 bytes", opcode_), out);
    }
    const std::size_t ext = len7 == kLen16 ? 2 : len7 == kLen64 ? 8 : 0;
    hdr_need_ = 2 + ext + kMaskLen;
    if (ext != 0) return;
    payload_len_ = len7;
  } else if (hdr_have_ == 4 && (hdr_[1] & 0x7f) == kLen16) {
    payload_len_ = (std::uint64_t{hdr_[2]} << 8) | hdr_[3];
    // Section 5.2: "the minimal number of bytes MUST be used to encode the length"; a length
    // that could have been shorter is refused, as Autobahn's cases expect.
    if (payload_len_ < kLen16) {
      return fail(close_code::kProtocolError,
                  fmt::format("length {} in the 16-bit form", payload_len_), out);
    }
  } else if (hdr_have_ == 10 && (hdr_[1] & 0x7f) == kLen64) {
    std::uint64_t v = 0;
    for (std::size_t i = 2; i < 10; ++i) v = (v << 8) | hdr_[i];
    // Section 5.2: "the most significant bit MUST be 0".
    if ((v >> 63) != 0)
      return fail(close_code::kProtocolError, "64-bit length with its MSB set", out);
    if (v <= 0xffff) {
      return fail(close_code::kProtocolError, fmt::format("length {} in the 64-bit form", v), out);
    }
    payload_len_ = v;
  } else {
    if (hdr_have_ == hdr_need_) frame_header_done(out);
    return;
  }
  // The length is known: refuse it now, before its payload is waited for.
  if (!is_control(opcode_)) {
    if (payload_len_ > cfg_.max_frame_payload) {
      return fail(close_code::kMessageTooBig,
                  fmt::format("frame payload of {} bytes, more than {}", payload_len_,
                              cfg_.max_frame_payload),
                  out);
    }
    const std::uint64_t so_far = opcode_ == kOpContinuation ? message_len_ : 0;
    if (payload_len_ > cfg_.max_message - std::min<std::uint64_t>(so_far, cfg_.max_message)) {
      return fail(close_code::kMessageTooBig,
                  fmt::format("message of more than {} bytes", cfg_.max_message), out);
    }
  }
  if (hdr_have_ == hdr_need_) frame_header_done(out);
}

void ServerConnection::frame_header_done(Bytes& out) {
  std::copy_n(hdr_.begin() + static_cast<std::ptrdiff_t>(hdr_need_ - kMaskLen), kMaskLen,
              mask_.begin());
  payload_done_ = 0;
  control_.clear();
  if (!is_control(opcode_)) {
    message_len_ = (opcode_ == kOpContinuation ? message_len_ : 0) + payload_len_;
    message_open_ = !fin_;
  }
  in_payload_ = true;
  if (payload_len_ == 0) frame_done(out);
}

void ServerConnection::frame_done(Bytes& out) {
  in_payload_ = false;
  hdr_have_ = 0;
  hdr_need_ = 2;
  if (is_control(opcode_)) control_frame_done(out);
}

void ServerConnection::control_frame_done(Bytes& out) {
  switch (opcode_) {
    case kOpPing:
      // Section 5.5.2: a Pong "with identical Application data"; none after our Close (5.5.1),
      // nor while the caller holds them back.
      if (state_ == State::Open && answer_pings_) {
        frame_header(kFin | kOpPong, control_.size(), out);
        append(out, as_bytes(control_));
      }
      return;
    case kOpPong:
      return;  // section 5.5.3: unsolicited pongs are allowed, and need no answer
    case kOpClose:
      break;
    default:
      assert(false && "not a control opcode");
      return;
  }
  // Section 5.5.1: no body, or a 2-byte status code and a UTF-8 reason.
  std::uint16_t code = 0;
  std::string_view reason;
  if (control_.size() == 1) {
    return fail(close_code::kProtocolError, "Close with a 1-byte payload", out);
  }
  if (control_.size() >= 2) {
    code = load_be16(as_bytes(control_), 0);
    if (!valid_close_code(code)) {
      return fail(close_code::kProtocolError, fmt::format("Close with status code {}", code), out);
    }
    reason = std::string_view(control_).substr(2);
    if (!detail::valid_utf8(reason)) {
      return fail(close_code::kInvalidPayload, "Close reason is not UTF-8", out);
    }
  }
  close_received_ = code;
  const std::string said = code == 0 ? std::string("no status code")
                                     : fmt::format("{} \"{}\"", code, log::escaped(reason));
  if (state_ == State::Open) {
    // Section 5.5.1: the answer "typically echos the status code it received"; 1010 (an
    // extension the client needed) is a client's code only (7.4.1), answered with 1000.
    send_close(code == 0 || code == kMandatoryExtension ? close_code::kNormal : code, "", out);
    error_ = fmt::format("client closed: {}", said);
  } else {
    error_ += fmt::format("; client answered {}", said);
  }
  state_ = State::Closed;
}

void ServerConnection::fail(std::uint16_t code, std::string reason, Bytes& out) {
  failed_ = true;
  if (state_ == State::Open) {
    send_close(code, "", out);
    error_ = fmt::format("close {}: {}", code, reason);
  } else {
    error_ += fmt::format("; then {} ({})", reason, code);
  }
  state_ = State::Closed;
}

void ServerConnection::send_close(std::uint16_t code, std::string_view reason, Bytes& out) {
  frame_header(kFin | kOpClose, 2 + reason.size(), out);
  out.push_back(std::byte(code >> 8));
  out.push_back(std::byte(code & 0xff));
  append(out, as_bytes(reason));
  close_sent_ = code;
}

void ServerConnection::wrap(ByteSpan app, Bytes& out) {
  frame_header(kFin | kOpBinary, app.size(), out);
  append(out, app);
}

void ServerConnection::close(std::uint16_t code, std::string_view reason, Bytes& out) {
  // A code that may not go on the wire (1005, 1006, or 1010, a client's) is sent as 1000.
  if (!valid_close_code(code) || code == kMandatoryExtension) code = close_code::kNormal;
  switch (state_) {
    case State::Handshake:
      error_ = fmt::format("closed before the handshake: {}", log::escaped(reason));
      state_ = State::Closed;
      return;
    case State::Open:
      break;
    case State::Closing:
    case State::Closed:
      return;
  }
  // Section 5.5: 125 bytes of payload, 2 of them the code; cut where a character begins.
  std::size_t cut = std::min(reason.size(), kMaxControlPayload - 2);
  while (cut > 0 && cut < reason.size() &&
         (static_cast<unsigned char>(reason[cut]) & 0xc0) == 0x80) {
    --cut;
  }
  std::string_view sent = reason.substr(0, cut);
  if (!detail::valid_utf8(sent)) sent = {};
  send_close(code, sent, out);
  error_ = fmt::format("server closed: {} \"{}\"", code, log::escaped(reason));
  state_ = State::Closing;
}

}  // namespace mqtt_proxy::ws
