// The pure core of the proxy: captured frames and peer datagrams in, frames and datagrams out, all
// driven by the time the event loop passes in. It owns the connection table, the broker and
// peering.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "mqtt_proxy/broker/broker.hpp"
#include "mqtt_proxy/core/frame_batch.hpp"
#include "mqtt_proxy/flow/flow_control.hpp"
#include "mqtt_proxy/ingress/admission.hpp"
#include "mqtt_proxy/m2m/client.hpp"
#include "mqtt_proxy/metrics/counters.hpp"
#include "mqtt_proxy/peering/peering.hpp"
#include "mqtt_proxy/tcp/conn_key.hpp"
#include "mqtt_proxy/tcp/endpoint.hpp"
#include "mqtt_proxy/tcp/isn.hpp"
#include "mqtt_proxy/tcp/syn_cookie.hpp"
#include "mqtt_proxy/upstream/sessions.hpp"
#include "mqtt_proxy/util/deadline_queue.hpp"
#include "mqtt_proxy/util/log.hpp"
#include "mqtt_proxy/wire/frame.hpp"
#include "mqtt_proxy/ws/websocket.hpp"

namespace mqtt_proxy::core {

struct InterfaceInfo {
  std::string name;
  wire::MacAddress mac;
  std::vector<wire::Ipv4Address> addresses;
  std::uint32_t mtu = 1500;
};

struct CoreConfig {
  std::uint16_t tcp_port = 1883;
  std::vector<InterfaceInfo> interfaces;  // frames name their interface by index into this
  tcp::EndpointConfig tcp;                // local_mss is derived from each interface's MTU
  std::size_t max_connections = 100000;
  // Connections still in SYN-RECEIVED. Beyond this, SYNs are answered with SYN cookies and keep no
  // state, so a SYN flood cannot fill the table that established clients need.
  std::size_t max_half_open = 1024;
  // pcap cannot tell a checksum the NIC has yet to fill in from a corrupt one (offload), so by
  // default mismatches are counted, not dropped. Turn on where transmit offload is off on the
  // clients' links.
  bool verify_checksums = false;
  SipKey secret{};  // ISNs and connection-table hashing; from a random source
  broker::BrokerConfig broker;
  peering::PeeringConfig peering;
  flow::FlowConfig flow;
  // The PROXY protocol (--proxy-protocol): on when set. Every connection's first bytes are then a
  // header from a load balancer, read before the broker hears of the connection.
  std::optional<ingress::ProxyProtocolPolicy> proxy_protocol;
  // MQTT over WebSocket (RFC 6455, docs/websocket.md): connections to this port start with an
  // HTTP Upgrade (after the PROXY header, when that is on); 0: off. mProxy's default port.
  std::uint16_t ws_port = 8080;
  ws::Config ws;  // the path (--ws-path) and the header and frame limits
  // A WebSocket connection has this long to complete its Upgrade request. (A close we start needs
  // no timer: our FIN follows the Close frame, and TCP bounds the rest.)
  Duration ws_timeout = std::chrono::seconds(10);
  // Upstream mode (--upstream, docs/upstream.md): on when set. Each client's packets go through
  // the hooks to a broker of its own connection, not to the broker here; peering and
  // MQTT2MULTICAST are off. attach_upstream() gives it the broker side before start().
  std::optional<upstream::SessionsConfig> upstream;
  // MQTT2MULTICAST (-s): on when set, on interface `m2m_iface` (the one toward the controller).
  std::optional<m2m::ClientConfig> m2m;
  std::size_t m2m_iface = 0;
};

class ProxyCore final : private broker::BrokerHost {
 public:
  ProxyCore(CoreConfig cfg, log::Logger& log);
  ~ProxyCore() override;

  // Upstream mode: the event loop's connections to the broker. Returns what the link reports to.
  upstream::LinkEvents& attach_upstream(upstream::Link& link);
  const upstream::Sessions* upstream() const { return sessions_.get(); }

  void start(TimePoint now);
  void on_frame(std::size_t iface, ByteSpan frame, TimePoint now);
  void on_peer_datagram(wire::Ipv4Address src, ByteSpan data, TimePoint now);
  void on_timers(TimePoint now);
  // Hands received bytes to the broker, then lets every touched connection send: one ACK per
  // connection per batch, data coalesced into full segments.
  void flush(TimePoint now);
  std::optional<TimePoint> next_deadline() const;

  // Closes every client connection gracefully (FIN); the loop keeps running until they are gone or
  // a grace period ends.
  void shutdown(TimePoint now);

  FrameBatch& frames() { return frames_; }
  const std::vector<peering::Datagram>& datagrams() const { return peering_.outbox(); }
  void clear_datagrams() { peering_.clear_outbox(); }

  // The core's part of the counter list (frames, TCP, MQTT, peers), gauges read now.
  metrics::Counters counters() const;
  std::size_t connection_count() const { return conns_.size(); }
  // Connections not yet fully closed on our side (TIME-WAIT and CLOSED excluded).
  std::size_t open_connection_count() const;
  std::size_t half_open_count() const { return half_open_; }
  // The most bytes any connection has queued toward its client now (a gauge of memory held).
  std::size_t largest_send_queue() const;
  const broker::Broker& broker() const { return broker_; }
  // The broker's `$SYS` messages (Broker::publish_sys), sent on the next flush().
  void publish_sys(std::string_view topic, ByteSpan payload, TimePoint now) {
    broker_.publish_sys(topic, payload, now);
  }
  // The smoothed RTT of every established connection (for the metrics' RTT summary).
  std::vector<Duration> connection_rtts() const;
  const peering::Peering& peering() const { return peering_; }
  // Peer keys read again (SIGHUP): see Peering::set_keys.
  void set_peer_keys(std::vector<Bytes> keys) { peering_.set_keys(std::move(keys)); }
  const flow::FlowControl& flow() const { return flow_; }
  // MQTT2MULTICAST, when on: its state, and the group memberships the I/O is to apply.
  const m2m::Client* multicast() const { return m2m_.get(); }
  std::vector<m2m::Membership>* memberships() { return m2m_ ? &m2m_->memberships() : nullptr; }

  // Tests pin initial sequence numbers (for example near 2^32) through this.
  void set_isn_function(std::function<wire::Seq(const tcp::ConnKey&, TimePoint)> fn) {
    isn_fn_ = std::move(fn);
  }

 private:
  struct Connection;
  class ConnOutbox;

  // BrokerHost
  void send(broker::ClientHandle c, ByteSpan bytes) override;
  std::size_t queued_bytes(broker::ClientHandle c) const override;
  void close(broker::ClientHandle c) override;

  Connection* find(std::uint64_t id) const;
  void mark_dirty(Connection& c);
  void handle_events(Connection& c, TimePoint now);
  // Backpressure: reports every congested sink's level and progress to FlowControl, then lets the
  // sources it released go on (a client's unread bytes are offered to the broker again, a peer is
  // granted credit).
  void update_flow(TimePoint now);
  void resume_sources(TimePoint now);
  void reschedule(Connection& c);
  void erase(Connection& c);
  // A segment back to the sender of a captured one: addresses and ports swapped, nothing else set.
  wire::TcpFrameSpec reply_to(std::size_t iface, const wire::EthernetView& eth,
                              const wire::Ipv4View& ip, const wire::TcpView& tcp) const;
  void send_stateless_reset(std::size_t iface, const wire::EthernetView& eth,
                            const wire::Ipv4View& ip, const wire::TcpView& tcp);
  void send_cookie_synack(std::size_t iface, const wire::EthernetView& eth,
                          const wire::Ipv4View& ip, const wire::TcpView& tcp,
                          const tcp::ConnKey& key, TimePoint now);
  tcp::EndpointConfig endpoint_config(std::size_t iface) const;
  Connection& add_connection(tcp::Endpoint ep, const tcp::ConnKey& key, std::size_t iface,
                             const wire::EthernetView& eth);
  bool refuse_over_limit(const tcp::ConnKey& key);
  void emit_frame(std::size_t iface, const wire::TcpFrameSpec& spec);
  bool is_local_address(std::size_t iface, wire::Ipv4Address a) const;
  // A frame MQTT2MULTICAST takes (an ARP reply or REPLY from the controller, a multicast
  // datagram on the data port); false leaves it to the TCP path.
  bool on_m2m_frame(const wire::EthernetView& eth, TimePoint now);
  // The PROXY protocol: a new connection waits for its header (or is refused at once), and the
  // header, once complete, says whom the broker is serving.
  void await_proxy_header(Connection& c, TimePoint now);
  void read_proxy_header(Connection& c, TimePoint now);
  void refuse_connection(Connection& c, std::uint64_t& counter, std::string_view why);
  // The session of a client: with the broker here, or with its relay in upstream mode.
  void open_session(Connection& c, const ingress::ClientOrigin& origin, TimePoint now);
  std::size_t session_data(Connection& c, ByteSpan data, TimePoint now);
  void lose_session(Connection& c, std::string_view why, TimePoint now);
  // The session has the client's unread bytes wait (backpressure, or the upstream's CONNACK),
  // and the client's FIN behind them waits too (until the client is resumed).
  bool fin_waits(const Connection& c);
  // A client whose unread bytes may go on: offered again.
  void redeliver(std::uint64_t id, TimePoint now);
  // The transport after TCP (and the PROXY header): MQTT directly, or a WebSocket handshake first.
  void start_transport(Connection& c, const ingress::ClientOrigin& origin, TimePoint now);
  // WebSocket: the client's bytes through the frame codec to the broker, what the codec answers
  // (the 101, pongs, Close) to the client; the broker's bytes to the client as frames.
  void read_websocket(Connection& c, TimePoint now);
  // Sends `out` (if the connection still may) and empties it.
  void send_ws_output(Connection& c, Bytes& out);

  CoreConfig cfg_;
  log::Logger& log_;
  metrics::Counters counters_;
  flow::FlowControl flow_;
  peering::Peering peering_;
  // Before the broker, which holds a pointer to it.
  std::unique_ptr<m2m::Client> m2m_;
  broker::Broker broker_;
  std::unique_ptr<upstream::Sessions> sessions_;  // upstream mode, once attached
  tcp::IsnGenerator isn_;
  tcp::SynCookies cookies_;
  std::optional<TimePoint> last_cookie_sent_;
  std::size_t half_open_ = 0;
  std::uint64_t cookie_log_suppressed_ = 0;
  std::function<wire::Seq(const tcp::ConnKey&, TimePoint)> isn_fn_;
  std::unordered_map<tcp::ConnKey, std::uint64_t, tcp::ConnKeyHash> by_key_;
  std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> conns_;
  std::vector<std::uint64_t> dirty_;
  std::vector<flow::Id> watched_;  // scratch of update_flow()
  std::vector<flow::Id> resumed_;  // scratch of resume_sources()
  DeadlineQueue<std::uint64_t> timers_;
  DeadlineQueue<std::uint64_t> header_timers_;  // PROXY headers due, by connection id
  DeadlineQueue<std::uint64_t> ws_timers_;      // WebSocket handshakes and closes due
  Bytes ws_scratch_;                            // what a WebSocket codec call answers
  Bytes ws_tx_;                                 // the broker's bytes framed for a client
  FrameBatch frames_;
  std::uint64_t next_id_ = 1;
  std::uint16_t ip_id_ = 0;
  std::uint64_t limit_log_suppressed_ = 0;
};

}  // namespace mqtt_proxy::core
