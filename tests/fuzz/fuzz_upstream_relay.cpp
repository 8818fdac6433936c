// Fuzzes upstream::Relay, whose parsers read what a client and a broker send. Input layout: byte 0
// = flags (bit 0: a hook chain that rewrites and refuses; bit 1: a small queue limit; bit 2: the
// queues are drained only every other chunk, so backpressure is reached), then chunks of
// [tag][bytes]: tag bit 7 says whose bytes they are (0 the client's, 1 the broker's), bits 0-6 how
// many follow. Each side's bytes are offered as the caller would, what a call did not take kept and
// offered again with the next chunk; the dial succeeds as soon as it is asked for. Any broken
// invariant traps.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_target.hpp"
#include "mqtt_proxy/upstream/relay.hpp"

using namespace mqtt_proxy;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// Rewrites and refuses, so the relay's re-encoding paths and its own answers are reached.
class Meddler final : public hooks::Hooks {
 public:
  std::string_view name() const override { return "meddler"; }
  hooks::Reason auth_connect(const hooks::Client&, hooks::Credentials& cred) override {
    if (cred.client_id.get().size() % 3 == 1) cred.client_id.set("renamed");
    return cred.username.get() == "x" ? hooks::kNotAuthorized : hooks::kOk;
  }
  hooks::Reason auth_publish(const hooks::Client&, hooks::Field& topic, hooks::Field& payload,
                             std::uint8_t, bool) override {
    if (topic.get().starts_with("a")) topic.set("rewritten/" + std::string(topic.get()));
    if (payload.get().size() % 5 == 4) payload.set("[changed]");
    return topic.get().starts_with("s") ? hooks::kNotAuthorized : hooks::kOk;
  }
  hooks::Reason auth_subscribe(const hooks::Client&, hooks::Field& filter, std::uint8_t) override {
    if (filter.get().starts_with("m")) filter.set("mine/#");
    return filter.get().starts_with("s") ? hooks::kNotAuthorized : hooks::kOk;
  }
  bool reads() const override { return true; }
  hooks::Reason auth_read(const hooks::Client&, std::string_view topic) override {
    return topic.starts_with("h") ? hooks::kNotAuthorized : hooks::kOk;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t flags = data[0];
  upstream::Config cfg;
  cfg.max_packet_size = 64 * 1024;
  cfg.max_buffered = (flags & 2) ? 64 : 16 * 1024;
  if (flags & 1) {
    std::vector<std::unique_ptr<hooks::Hooks>> list;
    list.push_back(std::make_unique<Meddler>());
    cfg.hooks = std::make_shared<hooks::HookChain>(
        std::move(list), std::chrono::milliseconds(5), [] { return TimePoint{}; },
        log::null_logger());
  }
  metrics::Counters counters;
  upstream::Relay relay(cfg, hooks::Client{}, counters);
  Bytes from_client, from_broker;
  std::size_t pos = 1;
  std::size_t chunk = 0;
  while (pos < size) {
    const std::uint8_t tag = data[pos++];
    const std::size_t n = std::min<std::size_t>(tag & 0x7f, size - pos);
    Bytes& pending = (tag & 0x80) ? from_broker : from_client;
    for (std::size_t i = 0; i < n; ++i) pending.push_back(std::byte{data[pos + i]});
    pos += n;
    for (Bytes* side : {&from_client, &from_broker}) {
      const std::size_t used =
          side == &from_client ? relay.from_client(*side) : relay.from_upstream(*side);
      check(used <= side->size());
      if (relay.closed()) check(used == side->size());  // discarded once closed
      side->erase(side->begin(), side->begin() + static_cast<std::ptrdiff_t>(used));
      if (relay.wants_dial()) relay.upstream_connected();
    }
    // A queue passes its limit by what one call added at most: whole packets, each bounded.
    check(relay.to_client().size() <= cfg.max_buffered + 4 * cfg.max_packet_size);
    check(relay.to_upstream().size() <= cfg.max_buffered + 4 * cfg.max_packet_size);
    if (!(flags & 4) || ++chunk % 2 == 0) {
      relay.to_client().clear();
      relay.to_upstream().clear();
    }
  }
  relay.client_lost("end of input");
  check(relay.closed());
  check(!relay.error().empty());
  return 0;
}
