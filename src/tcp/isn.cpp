#include "mqtt_proxy/tcp/isn.hpp"

namespace mqtt_proxy::tcp {

Seq IsnGenerator::generate(const ConnKey& k, TimePoint now) const {
  const auto ticks = static_cast<std::uint64_t>(now.time_since_epoch().count() / 4000);  // 4 us
  const auto b = k.bytes();
  return Seq{static_cast<std::uint32_t>(ticks + siphash24(secret_, b))};
}

}  // namespace mqtt_proxy::tcp
