// Upstream mode (--upstream HOST:PORT): the proxy in front of a real broker. Each client connection
// has a Relay and a TCP connection of its own to the broker, dialled once the hooks accepted the
// client's CONNECT; packets go both ways through the hooks (docs/upstream.md).
//
// A Relay does no I/O and reads no clock: it is fed bytes from either side and queues bytes for
// either side. The caller owns the sockets, dials when asked, and closes both once closed().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "mqtt_proxy/hooks/hooks.hpp"
#include "mqtt_proxy/metrics/counters.hpp"
#include "mqtt_proxy/mqtt/packet.hpp"
#include "mqtt_proxy/util/bytes.hpp"

namespace mqtt_proxy::upstream {

struct Config {
  // from_client() stops consuming, at a packet boundary, while to_upstream() holds more than
  // this, and from_upstream() while to_client() does. Each also stops while the other queue holds
  // more than twice this: the relay's own answers (a PUBACK for a refused PUBLISH) go that way.
  std::size_t max_buffered = 256 * 1024;
  // A larger packet from either side closes the relay.
  std::size_t max_packet_size = 16 * 1024 * 1024;
  // The topics v5 topic aliases stand for, per direction (what the sender set and what the
  // receiver was sent): a sender that sets more is a protocol error (Quota exceeded), since the
  // Topic Alias Maximum alone would let 65535 topics of 64 KiB each be kept.
  std::size_t max_alias_bytes = 1024 * 1024;
  // Inspection hooks and plugins (hooks.hpp); none when null or empty.
  std::shared_ptr<hooks::HookChain> hooks;
};

class Relay {
 public:
  enum class State : std::uint8_t {
    AwaitConnect,  // nothing from the client yet
    Dial,          // the hooks accepted its CONNECT, which waits in to_upstream(): dial
    Open,          // connected to the broker (its CONNACK may still be on its way)
    Closed,        // see error(); the caller sends what is queued, then closes both sides
  };

  // `client`: who the connection is from (connection, address, transport, TLS); the relay fills
  // in client_id, username and protocol_version from the CONNECT.
  Relay(Config cfg, hooks::Client client, metrics::Counters& counters);

  // In-order bytes from the client / the broker. Returns how many were used: only whole packets,
  // and none while a queue is over Config::max_buffered, before the broker's CONNACK (from the
  // client: anything but AUTH) or before upstream_connected() (from the broker). The caller keeps
  // the rest and offers it again, with what arrives next, after it drained a queue or fed the
  // other side. Once closed() everything offered is used (and discarded).
  std::size_t from_client(ByteSpan data);
  std::size_t from_upstream(ByteSpan data);

  // The connection to the broker is up: to_upstream() may be sent from now on.
  void upstream_connected();
  // The connection to the broker failed or ended. Before its CONNACK the client is told CONNACK
  // 3 (3.1/3.1.1) or 0x88 Server unavailable (5.0). Closes the relay.
  void upstream_failed(std::string_view reason);
  // The client's connection ended (FIN, RST, timeout). Closes the relay.
  void client_lost(std::string_view reason);

  // Bytes to send; the caller erases what it sent. Nothing goes to the broker before
  // upstream_connected().
  Bytes& to_client() { return to_client_; }
  Bytes& to_upstream() { return to_upstream_; }

  // A from_*() call would take nothing now because a queue is full (not for want of the rest of
  // a packet): the caller waits for that queue to drain before it offers the bytes again.
  bool client_blocked() const;
  bool upstream_blocked() const;

  State state() const { return state_; }
  bool wants_dial() const { return state_ == State::Dial; }
  // The broker's CONNACK accepted the client: its packets after CONNECT are read from now on.
  bool connacked() const { return connacked_; }
  bool closed() const { return state_ == State::Closed; }
  // Why it closed, one line.
  const std::string& error() const { return error_; }
  // What the hooks are told of the client.
  const hooks::Client& client() const { return who_; }

 private:
  // One direction's v5 topic aliases (3.3.2.3.4): what the sender set, and what the receiver
  // was sent, which differ once the relay drops a PUBLISH that set one or rewrites its topic.
  struct Aliases {
    std::uint16_t maximum = 0;  // the receiver's Topic Alias Maximum
    std::unordered_map<std::uint16_t, std::string> sender;
    std::unordered_map<std::uint16_t, std::string> receiver;
    std::size_t bytes = 0;  // of the topics in both maps
  };
  // Sets `alias` to `topic` in `map`, one of `a`'s; false once `a` holds over the budget.
  bool remember(Aliases& a, std::unordered_map<std::uint16_t, std::string>& map,
                std::uint16_t alias, std::string_view topic) const;

  bool hooked() const { return cfg_.hooks && !cfg_.hooks->empty(); }
  void client_frame(const mqtt::FrameView& f, ByteSpan wire);
  void client_connect(mqtt::Connect c, ByteSpan wire);
  void client_publish(const mqtt::Publish& p, ByteSpan wire);
  void client_subscribe(const mqtt::Subscribe& s, ByteSpan wire);
  void refuse_connect(std::uint8_t v3_code, std::uint8_t v5_code, std::string_view why);
  void refuse_publish(const mqtt::Publish& p, hooks::Reason r);
  void upstream_frame(const mqtt::FrameView& f, ByteSpan wire);
  void upstream_connack(const mqtt::FrameView& f, ByteSpan wire);
  void upstream_publish(const mqtt::FrameView& f, ByteSpan wire);
  void upstream_suback(const mqtt::FrameView& f, ByteSpan wire);
  // The topic `p` names, its alias resolved; nullopt (and the v5 reason) for a bad alias.
  std::optional<std::string_view> resolve(Aliases& a, const mqtt::Publish& p,
                                          std::uint8_t& reason) const;
  // Appends `p` with `topic` and `payload`: its own bytes when the wire form is unchanged.
  void forward_publish(Bytes& out, Aliases& a, const mqtt::Publish& p, ByteSpan wire,
                       std::string_view topic, ByteSpan payload, bool payload_changed);
  void client_error(std::string_view why, std::uint8_t v5_reason);
  void close(std::string why);

  Config cfg_;
  metrics::Counters& counters_;
  hooks::Client who_;
  State state_ = State::AwaitConnect;
  mqtt::ProtocolVersion version_ = mqtt::ProtocolVersion::V311;
  bool v5_ = false;
  bool connacked_ = false;  // the broker's CONNACK accepted the client (on_connect was called)
  std::string error_;
  Bytes to_client_;
  Bytes to_upstream_;
  Aliases up_;    // client -> broker
  Aliases down_;  // broker -> client, followed only when a hook reads()
  // QoS 2 packet ids whose PUBLISH the relay refused: their PUBREL is answered with PUBCOMP by
  // the relay. From the client (auth_publish), from the broker (auth_read).
  std::unordered_set<std::uint16_t> refused_from_client_;
  // QoS 2 PUBLISHes forwarded whose PUBREL has not: a resend goes on without the hooks.
  std::unordered_set<std::uint16_t> forwarded_qos2_;
  std::unordered_set<std::uint16_t> refused_from_upstream_;
  // SUBSCRIBEs forwarded without some of their filters, by packet id: the SUBACK code of each
  // filter the client sent, or kFromBroker for the next code of the broker's SUBACK.
  static constexpr std::uint16_t kFromBroker = 0x100;
  std::unordered_map<std::uint16_t, std::vector<std::uint16_t>> subacks_;
};

}  // namespace mqtt_proxy::upstream
