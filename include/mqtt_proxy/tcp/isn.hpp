// Initial sequence numbers per RFC 6528: ISN = M + F(4-tuple, secret), M a 4-microsecond clock. The
// clock value comes in as an argument; the secret comes from the application's random source.
#pragma once

#include "mqtt_proxy/tcp/conn_key.hpp"
#include "mqtt_proxy/tcp/seq.hpp"
#include "mqtt_proxy/util/siphash.hpp"
#include "mqtt_proxy/util/time.hpp"

namespace mqtt_proxy::tcp {

class IsnGenerator {
 public:
  explicit IsnGenerator(const SipKey& secret) : secret_(secret) {}
  Seq generate(const ConnKey& k, TimePoint now) const;

 private:
  SipKey secret_;
};

}  // namespace mqtt_proxy::tcp
