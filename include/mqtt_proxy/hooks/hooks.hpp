// Inspection hooks: mProxy's Event interface (AuthConnect, AuthPublish, AuthSubscribe and the
// notifications), for C++ code linked into the proxy and, through PluginHooks (plugin_loader.hpp),
// for shared objects built against the C ABI of mqtt_proxy/plugin.h.
//
// The broker, and the relay in upstream mode, call a HookChain: every hook in the order given,
// the first refusal ending the call. Each call is timed with the clock the chain was given (the
// event loop's; tests pass a virtual one), and one that takes longer than the budget is logged
// and counted, since a hook runs in the event loop and holds up every client while it runs.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt_proxy/util/log.hpp"
#include "mqtt_proxy/util/time.hpp"
#include "mqtt_proxy/wire/address.hpp"

namespace mqtt_proxy::hooks {

enum class Transport : std::uint8_t { Tcp, WebSocket };

// Who a hook is about: fixed once the client's CONNECT is accepted.
struct Client {
  std::uint64_t connection = 0;  // unique for the proxy's lifetime
  std::string client_id;
  std::string username;               // empty: none
  wire::ClientAddress address;        // the TCP peer, or the client a PROXY header named
  std::string address_text;           // its IP address as text, made once for the C ABI
  std::uint8_t protocol_version = 4;  // 3 (MQTT 3.1), 4 (3.1.1), 5
  Transport transport = Transport::Tcp;
  bool tls = false;    // a load balancer in front terminated TLS (PROXY v2)
  std::string tls_cn;  // the verified client certificate's CN it reported
};

// A value a hook may replace: the original is only viewed, so the common case, no change, copies
// nothing; a replacement is kept here until the call's caller has used it.
class Field {
 public:
  Field() = default;
  explicit Field(std::string_view original) : view_(original) {}
  std::string_view get() const { return value_ ? std::string_view(*value_) : view_; }
  // `v` may be a part of the current value (a second plugin trimming what the first set):
  // assign() copies from an overlapping range correctly, emplace() would free it first.
  void set(std::string_view v) {
    if (value_) {
      value_->assign(v.data(), v.size());
    } else {
      value_.emplace(v);
    }
  }
  bool changed() const { return value_.has_value(); }

 private:
  std::string_view view_;
  std::optional<std::string> value_;
};

// A hook's answer: kOk, or an MQTT 5 reason code (0x80 and above) that the client is told,
// translated for a 3.1/3.1.1 client (see connack_code()). Anything else that is not kOk refuses
// too, as 0x80 (Unspecified error): a hook that means "no" with 1 or true is not read as "yes".
using Reason = std::uint8_t;
inline constexpr Reason kOk = 0x00;
inline constexpr Reason kNotAuthorized = 0x87;

// The CONNACK return code a 3.1/3.1.1 client gets for a hook's v5 reason code.
std::uint8_t connack_code(Reason r);

// What the CONNECT carries that auth_connect may change. A hook that sets the password of a
// CONNECT without one gives it one (and likewise the username).
struct Credentials {
  Field client_id;
  Field username;
  Field password;
  bool has_username = false;
  bool has_password = false;
};

class Hooks {
 public:
  virtual ~Hooks() = default;
  virtual std::string_view name() const = 0;

  virtual Reason auth_connect(const Client&, Credentials&) { return kOk; }
  // A client's PUBLISH, or its will at CONNECT (a refused will is dropped, the CONNECT accepted).
  virtual Reason auth_publish(const Client&, Field& /*topic*/, Field& /*payload*/,
                              std::uint8_t /*qos*/, bool /*retain*/) {
    return kOk;
  }
  // One filter of a SUBSCRIBE.
  virtual Reason auth_subscribe(const Client&, Field& /*filter*/, std::uint8_t /*qos*/) {
    return kOk;
  }
  // A message about to be delivered to this subscriber (Mosquitto's read access). Called only if
  // reads() says the hook has it: it runs for every delivery.
  virtual bool reads() const { return false; }
  virtual Reason auth_read(const Client&, std::string_view /*topic*/) { return kOk; }

  virtual void on_connect(const Client&) {}
  virtual void on_publish(const Client&, std::string_view /*topic*/, std::string_view /*payload*/) {
  }
  virtual void on_subscribe(const Client&, std::span<const std::string> /*filters*/) {}
  virtual void on_unsubscribe(const Client&, std::span<const std::string> /*filters*/) {}
  virtual void on_disconnect(const Client&) {}
};

// What a chain did, per hook, for the metrics.
struct HookStats {
  std::string name;
  std::uint64_t calls = 0;
  std::uint64_t refusals = 0;
  std::uint64_t slow = 0;  // calls over the budget
  Duration time{};         // spent in it, all calls
  Duration longest{};
};

class HookChain {
 public:
  using Clock = std::function<TimePoint()>;
  HookChain(std::vector<std::unique_ptr<Hooks>> hooks, Duration budget, Clock clock,
            log::Logger& log);

  bool empty() const { return hooks_.empty(); }
  // Whether any hook checks deliveries (auth_read): the broker skips the calls otherwise.
  bool reads() const { return reads_; }

  // Each returns kOk, or the first refusal (and which hook gave it, in `by`).
  Reason auth_connect(const Client& c, Credentials& cred, std::string_view* by = nullptr);
  Reason auth_publish(const Client& c, Field& topic, Field& payload, std::uint8_t qos, bool retain,
                      std::string_view* by = nullptr);
  Reason auth_subscribe(const Client& c, Field& filter, std::uint8_t qos,
                        std::string_view* by = nullptr);
  Reason auth_read(const Client& c, std::string_view topic);

  void on_connect(const Client& c);
  void on_publish(const Client& c, std::string_view topic, std::string_view payload);
  void on_subscribe(const Client& c, std::span<const std::string> filters);
  void on_unsubscribe(const Client& c, std::span<const std::string> filters);
  void on_disconnect(const Client& c);

  const std::vector<HookStats>& stats() const { return stats_; }
  Duration budget() const { return budget_; }

 private:
  // Runs `call` on every hook (those with `only_reads` when set), timed; stops at the first
  // refusal, which it returns.
  template <typename Call>
  Reason run(std::string_view what, Call&& call, std::string_view* by, bool only_reads = false);
  void timed_end(std::size_t i, std::string_view what, TimePoint start);

  std::vector<std::unique_ptr<Hooks>> hooks_;
  std::vector<HookStats> stats_;
  Duration budget_;
  Clock clock_;
  log::Logger& log_;
  bool reads_ = false;
};

}  // namespace mqtt_proxy::hooks
