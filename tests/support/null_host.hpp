// A broker transport that goes nowhere, for the fuzz targets: what the broker sends is counted and
// dropped, and all of it stays "queued", as toward a client that never acknowledges anything, so
// the broker's queue limit is reached too. Closes are ignored.
#pragma once

#include <cstddef>

#include "mqtt_proxy/broker/broker.hpp"

namespace mqtt_proxy::test {

class NullHost : public broker::BrokerHost {
 public:
  void send(broker::ClientHandle, ByteSpan b) override { sent += b.size(); }
  std::size_t queued_bytes(broker::ClientHandle) const override { return sent; }
  void close(broker::ClientHandle) override {}

  std::size_t sent = 0;  // bytes, all clients together
};

}  // namespace mqtt_proxy::test
