#include "mqtt_proxy/tcp/conn_key.hpp"

namespace mqtt_proxy::tcp {

std::array<std::byte, 12> ConnKey::bytes() const {
  std::array<std::byte, 12> b{};
  store_be32(b, 0, remote_ip.value);
  store_be16(b, 4, remote_port);
  store_be32(b, 6, local_ip.value);
  store_be16(b, 10, local_port);
  return b;
}

std::size_t ConnKeyHash::operator()(const ConnKey& k) const noexcept {
  const auto b = k.bytes();
  return static_cast<std::size_t>(siphash24(key, b));
}

}  // namespace mqtt_proxy::tcp
