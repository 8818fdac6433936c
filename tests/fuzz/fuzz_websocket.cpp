// Fuzzes the server side of WebSocket. Input layout: byte 0 = flags (bit 0: a valid upgrade
// request goes first, so the frames are reached at once; bit 1: small frame and message limits;
// bit 2: a small head limit; bit 3: each piece is offered with no room first), byte 1 = the
// caller's room for application bytes per call, byte 2 = how many cut sizes follow (0-15), then
// that many cut sizes (1-256 bytes), then the client's bytes. The stream is fed whole, then in the
// cuts with the room, re-offering what a call did not take as the proxy does from its TCP buffer;
// both must produce the same bytes and end the same. Any broken invariant traps.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_target.hpp"
#include "mqtt_proxy/ws/websocket.hpp"

using namespace mqtt_proxy;
using State = ws::ServerConnection::State;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

constexpr std::string_view kUpgrade =
    "GET /mqtt HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Protocol: mqtt\r\n\r\n";

struct Outcome {
  Bytes app, out;
  State state = State::Handshake;
  std::string error;
  int http_status = 0;
  std::uint16_t close_sent = 0, close_received = 0;
  bool operator==(const Outcome&) const = default;
};

void check_state(const ws::ServerConnection& c) {
  const bool fine = c.state() == State::Handshake || c.state() == State::Open;
  check(c.error().empty() == fine);
  check((c.http_status() == 0) == (c.state() == State::Handshake));
}

Outcome run(const ws::Config& cfg, ByteSpan in, const std::vector<std::size_t>& cuts,
            std::size_t room, bool probe_zero) {
  ws::ServerConnection c{cfg};
  Outcome o;
  std::size_t pos = 0;
  std::size_t k = 0;
  bool left_handshake = false;
  while (pos < in.size()) {
    const std::size_t piece = cuts.empty() ? in.size() - pos : cuts[k++ % cuts.size()];
    ByteSpan offered = in.subspan(pos, std::min(piece, in.size() - pos));
    if (probe_zero && !offered.empty()) {
      // A caller with no room yet: nothing of a payload is taken, the rest comes again below.
      const std::size_t app_before = o.app.size();
      const std::size_t n = c.feed(offered, 0, o.app, o.out);
      check(n <= offered.size() && o.app.size() == app_before);
      check_state(c);
      offered = offered.subspan(n);
      pos += n;
    }
    while (!offered.empty()) {
      const std::size_t app_before = o.app.size();
      const std::size_t out_before = o.out.size();
      const State before = c.state();
      const std::size_t n = c.feed(offered, room, o.app, o.out);
      check(n <= offered.size());
      check(o.app.size() - app_before <= room);
      // It stops short only for want of room, at a data payload of an open connection.
      if (n < offered.size()) check(o.app.size() - app_before == room && c.state() == State::Open);
      check(n > 0);  // room is at least 1: a call always makes progress
      // Nothing is answered before the head is complete; nothing is sent once Closed.
      if (c.state() == State::Handshake) check(o.out.size() == out_before);
      if (before == State::Closed) check(o.out.size() == out_before && o.app.size() == app_before);
      if (c.state() != State::Handshake) left_handshake = true;
      check(!left_handshake || c.state() != State::Handshake);
      check_state(c);
      offered = offered.subspan(n);
      pos += n;
    }
  }
  o.state = c.state();
  o.error = std::string(c.error());
  o.http_status = c.http_status();
  o.close_sent = c.close_code_sent();
  o.close_received = c.close_code_received();
  if (o.http_status == 101) check(as_chars(o.out).starts_with("HTTP/1.1 101 "));
  if (o.http_status > 101) check(as_chars(o.out).find("close\r\n") != std::string_view::npos);
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const std::uint8_t flags = data[0];
  constexpr std::array<std::size_t, 8> kRooms{1, 2, 3, 7, 125, 4096, 65536, SIZE_MAX};
  const std::size_t room = kRooms[data[1] % kRooms.size()];
  const std::size_t ncuts = std::min<std::size_t>(data[2] % 16, size - 3);
  std::vector<std::size_t> cuts;
  for (std::size_t i = 0; i < ncuts; ++i) cuts.push_back(std::size_t{data[3 + i]} + 1);
  Bytes stream;
  if ((flags & 1) != 0) append(stream, as_bytes(kUpgrade));
  append(stream, ByteSpan{reinterpret_cast<const std::byte*>(data + 3 + ncuts), size - 3 - ncuts});

  ws::Config cfg;
  if ((flags & 2) != 0) {
    cfg.max_frame_payload = 300;
    cfg.max_message = 1000;
  }
  if ((flags & 4) != 0) cfg.max_header_bytes = 200;

  const Outcome whole = run(cfg, stream, {}, SIZE_MAX, false);
  check(whole.app.size() <= stream.size());
  const Outcome cut = run(cfg, stream, cuts, room, (flags & 8) != 0);
  check(cut == whole);

  // A server's frame of the application bytes: the header in its shortest form, unmasked.
  Bytes framed;
  ws::ServerConnection::wrap(whole.app, framed);
  const std::size_t n = whole.app.size();
  check(framed.size() == n + (n < 126 ? 2 : n <= 0xffff ? 4 : 10));
  check(framed[0] == std::byte{0x82} && (load_u8(framed, 1) & 0x80) == 0);
  return 0;
}
