// SYN cookies: when the half-open table is full, the SYN-ACK's sequence number carries the state a
// SYN-RECEIVED entry would have held, so a SYN flood cannot crowd out real clients.
//
// Layout of the ISN (after the idea in Bernstein's SYN cookies and Linux's syncookies.c):
//   bits 31..27  time slot, 64 s each, modulo 32
//   bits 26..24  index of the client's MSS in kMssTable (rounded down)
//   bits 23..0   keyed hash of 4-tuple, client ISN, time slot and MSS index
// A cookie is valid in its own slot and the next one, so for 64 to 128 s.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "mqtt_proxy/tcp/conn_key.hpp"
#include "mqtt_proxy/util/siphash.hpp"
#include "mqtt_proxy/util/time.hpp"
#include "mqtt_proxy/wire/seq.hpp"

namespace mqtt_proxy::tcp {

// Sequence numbers are the wire's type: the TCP header carries them, this layer does the
// arithmetic.
using wire::in_range;
using wire::Seq;

class SynCookies {
 public:
  static constexpr std::array<std::uint16_t, 8> kMssTable{536,  1200, 1300, 1360,
                                                          1400, 1440, 1460, 8960};

  explicit SynCookies(const SipKey& secret);

  // The ISN for a SYN-ACK answering a SYN from `k` with sequence `client_isn` and MSS `mss`.
  Seq make(const ConnKey& k, Seq client_isn, std::uint16_t mss, TimePoint now) const;
  // For a bare ACK from `k`: the MSS its cookie encodes if `ack` - 1 is a cookie we issued
  // recently for client ISN `seq` - 1, else nothing.
  std::optional<std::uint16_t> check(const ConnKey& k, Seq seq, Seq ack, TimePoint now) const;

 private:
  std::uint32_t hash(const ConnKey& k, Seq client_isn, std::uint32_t slot,
                     std::uint32_t mss_index) const;

  SipKey key_;
};

}  // namespace mqtt_proxy::tcp
