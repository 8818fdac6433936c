// TCP sequence numbers: 32-bit serial arithmetic (RFC 1982), so every comparison survives
// wraparound. Never compare raw uint32_t sequence numbers.
#pragma once

#include <cstdint>

namespace mqtt_proxy::wire {

struct Seq {
  std::uint32_t raw = 0;

  friend bool operator==(Seq a, Seq b) { return a.raw == b.raw; }
  friend bool operator<(Seq a, Seq b) { return static_cast<std::int32_t>(a.raw - b.raw) < 0; }
  friend bool operator>(Seq a, Seq b) { return b < a; }
  friend bool operator<=(Seq a, Seq b) { return !(b < a); }
  friend bool operator>=(Seq a, Seq b) { return !(a < b); }
  friend Seq operator+(Seq a, std::uint32_t n) { return Seq{a.raw + n}; }
  friend Seq operator-(Seq a, std::uint32_t n) { return Seq{a.raw - n}; }
  // Distance from b to a; meaningful when a >= b.
  friend std::uint32_t operator-(Seq a, Seq b) { return a.raw - b.raw; }
  Seq& operator+=(std::uint32_t n) {
    raw += n;
    return *this;
  }
};

// lo <= s < hi, all modulo 2^32.
inline bool in_range(Seq s, Seq lo, Seq hi) {
  return lo <= s && s < hi;
}

}  // namespace mqtt_proxy::wire
