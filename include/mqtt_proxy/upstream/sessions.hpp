// Upstream mode's connection table: one Relay per client connection, between the proxy's own TCP
// (through the BrokerHost interface the broker uses too) and a kernel connection to the broker per
// client that a Link (the event loop's sockets) owns. Pure like the relay: no I/O, and time only
// as passed in (docs/upstream.md).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mqtt_proxy/broker/broker.hpp"
#include "mqtt_proxy/ingress/admission.hpp"
#include "mqtt_proxy/metrics/counters.hpp"
#include "mqtt_proxy/upstream/relay.hpp"
#include "mqtt_proxy/util/deadline_queue.hpp"
#include "mqtt_proxy/util/log.hpp"
#include "mqtt_proxy/util/time.hpp"

namespace mqtt_proxy::upstream {

// What a Link reports about the broker side, and asks of it; Sessions implements it. `id` is the
// client connection's.
class LinkEvents {
 public:
  virtual ~LinkEvents() = default;
  // The connection (and its TLS handshake) is up.
  virtual void on_connected(std::uint64_t id, TimePoint now) = 0;
  // Dialling, TLS or the connection failed, or the broker closed it (after the bytes it sent
  // before, which the link gave to on_upstream_data first). One line, for the log.
  virtual void on_failed(std::uint64_t id, std::string_view why, TimePoint now) = 0;
  // Bytes the broker sent. All are taken; the link reads only while wants_read(id).
  virtual void on_upstream_data(std::uint64_t id, ByteSpan data, TimePoint now) = 0;
  // Bytes to send to the broker (null: none, ever again). The link erases what it wrote from the
  // front, then calls on_sent().
  virtual Bytes* outgoing(std::uint64_t id) = 0;
  virtual void on_sent(std::uint64_t id, TimePoint now) = 0;
  // Whether the link may read from the broker now (the client's queue has room).
  virtual bool wants_read(std::uint64_t id) const = 0;
  // The session ended: the link sends what outgoing() still holds, closes the connection, and
  // calls on_closed().
  virtual bool finished(std::uint64_t id) const = 0;
  virtual void on_closed(std::uint64_t id) = 0;
};

// The broker-side connections, as the event loop keeps them. Calls record what to do and return;
// the loop acts on them after the core's turn (never from inside a Sessions call).
class Link {
 public:
  virtual ~Link() = default;
  // Connect to the broker for `id`; the answer is LinkEvents::on_connected or on_failed.
  virtual void dial(std::uint64_t id) = 0;
  // Something changed for `id`: outgoing() has bytes, wants_read() or finished() changed.
  virtual void touch(std::uint64_t id) = 0;
};

struct SessionsConfig {
  Config relay;  // limits and hooks, shared by every relay
  // From the transport being ready (TCP, or the WebSocket Upgrade) to a complete CONNECT, as the
  // broker's connect_timeout.
  Duration connect_timeout = std::chrono::seconds(10);
  // From the CONNECT accepted to the broker's connection (and TLS handshake) up.
  Duration dial_timeout = std::chrono::seconds(10);
  // An incomplete client packet longer than this moves out of the caller's receive buffer into
  // the session, as the broker's max_unread_frame: at most half that buffer, so it never fills.
  std::size_t max_unread_frame = 16 * 1024;
};

class Sessions final : public LinkEvents {
 public:
  // `clients` is the proxy's own TCP (ProxyCore), `link` the broker side.
  Sessions(SessionsConfig cfg, broker::BrokerHost& clients, Link& link, log::Logger& log,
           metrics::Counters& counters);
  ~Sessions() override;

  // The client side, called where the broker would be (ProxyCore).
  void on_open(std::uint64_t id, const ingress::ClientOrigin& origin, TimePoint now);
  // The client's in-order bytes; returns how many were used (the rest stays unread, and is
  // offered again once resumed()).
  std::size_t on_data(std::uint64_t id, ByteSpan data, TimePoint now);
  void on_lost(std::uint64_t id, std::string_view why, TimePoint now);
  // Whether the client's unread bytes (`unread`: some wait in the caller's buffer; or a packet
  // the session holds) wait for a queue to drain or for the CONNACK, not for the rest of a
  // packet. A FIN or WebSocket Close behind them waits too; when true, the client is resumed()
  // once they may go on.
  bool hold(std::uint64_t id, bool unread);
  // The client's TCP acknowledged data: what the relay holds for it may go on.
  void on_client_progress(std::uint64_t id, TimePoint now);
  // Clients whose unread bytes may go on now; the caller offers them again and clears this.
  std::vector<std::uint64_t>& resumed() { return resumed_; }
  // Shutdown: every client is closed, every broker connection with it.
  void close_all(std::string_view why, TimePoint now);
  void on_timers(TimePoint now);
  std::optional<TimePoint> next_deadline() const;
  // Sessions not yet released by the link.
  std::size_t size() const { return sessions_.size(); }
  // Clients whose broker accepted them, now.
  std::size_t connected_count() const;
  const hooks::HookChain* hooks() const { return cfg_.relay.hooks.get(); }

  // LinkEvents
  void on_connected(std::uint64_t id, TimePoint now) override;
  void on_failed(std::uint64_t id, std::string_view why, TimePoint now) override;
  void on_upstream_data(std::uint64_t id, ByteSpan data, TimePoint now) override;
  Bytes* outgoing(std::uint64_t id) override;
  void on_sent(std::uint64_t id, TimePoint now) override;
  bool wants_read(std::uint64_t id) const override;
  bool finished(std::uint64_t id) const override;
  void on_closed(std::uint64_t id) override;

 private:
  struct Session;

  Session* find(std::uint64_t id) const;
  // After any call into a relay: its output moved on, a held packet offered, a dial asked for,
  // the client resumed, its end acted on.
  void settle(Session& s, TimePoint now);
  bool held_back(const Session& s, bool unread) const;
  // The packet held in Session::from_client, once whole, to the relay.
  void offer_held(Session& s);
  // The broker's bytes that waited (the client's queue was full) go to the relay.
  void feed_upstream(Session& s, TimePoint now);
  void move_to_client(Session& s);
  void end(Session& s, std::string_view why);
  void forget(std::uint64_t id);

  SessionsConfig cfg_;
  broker::BrokerHost& clients_;
  Link& link_;
  log::Logger& log_;
  metrics::Counters& counters_;
  std::unordered_map<std::uint64_t, std::unique_ptr<Session>> sessions_;
  std::vector<std::uint64_t> resumed_;
  DeadlineQueue<std::uint64_t> timers_;  // CONNECT and dial deadlines, by connection id
};

}  // namespace mqtt_proxy::upstream
