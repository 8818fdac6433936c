// Initial sequence numbers per RFC 6528: ISN = M + F(4-tuple, secret), M a 4-microsecond clock. The
// clock value comes in as an argument; the secret comes from the application's random source.
#pragma once

#include "mqtt_proxy/tcp/conn_key.hpp"
#include "mqtt_proxy/util/siphash.hpp"
#include "mqtt_proxy/util/time.hpp"
#include "mqtt_proxy/wire/seq.hpp"

namespace mqtt_proxy::tcp {

// Sequence numbers are the wire's type: the TCP header carries them, this layer does the
// arithmetic.
using wire::in_range;
using wire::Seq;

class IsnGenerator {
 public:
  explicit IsnGenerator(const SipKey& secret) : secret_(secret) {}
  Seq generate(const ConnKey& k, TimePoint now) const;

 private:
  SipKey secret_;
};

}  // namespace mqtt_proxy::tcp
