// The broker toward local clients: sessions over byte streams, authentication, subscriptions and
// local fan-out, with peering for everything that crosses proxies. It does no I/O: bytes for
// clients go to a BrokerHost that only queues them, datagrams for peers go to Peering's outbox.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "mqtt_proxy/auth/password_file.hpp"
#include "mqtt_proxy/broker/outbound.hpp"
#include "mqtt_proxy/broker/retained_store.hpp"
#include "mqtt_proxy/flow/flow_control.hpp"
#include "mqtt_proxy/hooks/hooks.hpp"
#include "mqtt_proxy/ingress/admission.hpp"
#include "mqtt_proxy/m2m/client.hpp"
#include "mqtt_proxy/metrics/counters.hpp"
#include "mqtt_proxy/mqtt/codec.hpp"
#include "mqtt_proxy/mqtt/topic_tree.hpp"
#include "mqtt_proxy/peering/peering.hpp"
#include "mqtt_proxy/util/deadline_queue.hpp"
#include "mqtt_proxy/util/log.hpp"
#include "mqtt_proxy/util/time.hpp"

namespace mqtt_proxy::broker {

using ClientHandle = std::uint64_t;

// What the broker needs from the transport. Implementations queue; they never call back into the
// broker.
class BrokerHost {
 public:
  virtual ~BrokerHost() = default;
  virtual void send(ClientHandle c, ByteSpan bytes) = 0;
  // Bytes queued toward the client and not yet acknowledged.
  virtual std::size_t queued_bytes(ClientHandle c) const = 0;
  // Close the connection once queued bytes are out (a FIN after them).
  virtual void close(ClientHandle c) = 0;
};

struct BrokerConfig {
  // Credentials: a client is accepted when it matches `username`/`password`, or a password-file
  // entry. With neither configured every client is accepted (the brief's default); with either,
  // a CONNECT without a username is accepted only when `allow_anonymous` is set.
  std::optional<std::string> username;
  std::optional<std::string> password;  // with `username` only
  std::shared_ptr<const auth::PasswordFile> password_file;
  bool allow_anonymous = false;
  // The verified client certificate's CN that a PROXY header reported (ClientOrigin) is the
  // username, whatever the CONNECT says, and no password is asked: Mosquitto's
  // use_identity_as_username. It must be `username` or a password-file user when either is set.
  // A client without one is refused.
  bool use_identity_as_username = false;
  std::size_t max_packet_size = 16 * 1024 * 1024;
  // A subscriber with this much queued toward it loses further QoS 0 messages (counted).
  std::size_t max_queued_bytes = 4 * 1024 * 1024;
  Duration connect_timeout = std::chrono::seconds(10);  // from TCP accept to CONNECT
  std::size_t max_retained_messages = 100000;           // topics; beyond, new ones are refused
  // A client that connects with clean session 0 keeps its subscriptions this long after its
  // connection ends, for a reconnect with the same client id; zero keeps none.
  Duration session_expiry = std::chrono::hours(1);
  std::size_t max_stored_sessions = 100000;  // beyond, further sessions are not kept (counted)
  // Outbound QoS 1 and 2 (outbound.hpp): the in-flight window before v5 (--max-inflight), and
  // the queue of a session whose client is away or whose window is full (--max-queued-messages,
  // and --max-queued-bytes of payload; --queue-qos0 queues QoS 0 for offline clients too).
  std::uint16_t max_inflight = 20;
  std::size_t max_queued_messages = 1000;
  bool queue_qos0 = false;
  std::uint16_t topic_alias_maximum = 10;  // v5 aliases a client may set per connection
  // The longest keepalive a client may ask for, in seconds (Mosquitto's max_keepalive): a v5
  // client asking for more, or for none (0) while this is below 65535, is told this value as the
  // Server Keep Alive; a 3.1/3.1.1 client, which cannot be told, is refused (identifier rejected).
  std::uint16_t max_keepalive = 65535;
  // A frame larger than this is moved out of the TCP receive buffer while it arrives, so that it
  // cannot wait for a window it does not fit in; smaller ones are read where they are, and wait
  // there while their publisher is paused (backpressure). At most half the receive buffer.
  std::size_t max_unread_frame = 16 * 1024;
  // Inspection hooks and plugins (hooks.hpp), in order; none when null or empty.
  std::shared_ptr<hooks::HookChain> hooks;
};

class Broker {
 public:
  // `flow` (may be null: no backpressure) outlives the broker.
  Broker(BrokerConfig cfg, BrokerHost& host, peering::Peering& peering, log::Logger& log,
         metrics::Counters& counters, flow::FlowControl* flow = nullptr);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // A transport connection was established with a client (its TCP peer, or what a PROXY header
  // said about it).
  void on_open(ClientHandle c, const ingress::ClientOrigin& origin, TimePoint now);
  // In-order bytes from the client. Returns how many it took: fewer when the client is paused
  // (backpressure) or the last frame is incomplete and small; the caller keeps the rest in the TCP
  // receive buffer (its window closes as it fills) and offers it again, with what came since.
  std::size_t on_data(ClientHandle c, ByteSpan data, TimePoint now);
  // The transport ended under us (FIN, RST, timeout). No-op if the broker already closed it.
  void on_lost(ClientHandle c, std::string_view reason, TimePoint now);
  // A PUBLISH that came from a peer (`source`, for flow control): local subscribers only (and the
  // retained replica).
  void on_peer_publish(const mqtt::Publish& p, flow::Id source, TimePoint now);
  // A peer subscribed to a filter it did not have: it gets our clients' retained messages for it.
  void on_peer_interest(wire::Ipv4Address peer, std::string_view filter, TimePoint now);
  // A message of the broker's own (`$SYS/broker/...`): retained, and delivered to local
  // subscribers only, never to peers or multicast (every proxy publishes its own figures).
  void publish_sys(std::string_view topic, ByteSpan payload, TimePoint now);

  // MQTT2MULTICAST (may be null: off; outlives the broker): it hears of every filter that gains
  // its first local subscriber or loses its last, and of every local PUBLISH, as peering does.
  void set_multicast(m2m::Client* m2m) { m2m_ = m2m; }
  void on_timers(TimePoint now);
  std::optional<TimePoint> next_deadline() const {
    return earliest(earliest(deadlines_.earliest(), stored_expiry_.earliest()),
                    will_timers_.earliest());
  }

  // Closes every session (shutdown): no wills, peers are told the filters are gone.
  void close_all(std::string_view reason, TimePoint now);

  // Sessions with a connection, including any that ended in the current call and await reaping.
  std::size_t session_count() const { return sessions_.size(); }
  std::size_t stored_session_count() const { return stored_.size(); }
  std::size_t connected_count() const { return by_client_id_.size(); }
  std::size_t local_filter_count() const { return subscriptions_.filter_count(); }
  // Subscriptions of every session, connected or stored (one per session and filter), as
  // Mosquitto counts them. Walks the sessions: for metrics, not for the message path.
  std::size_t subscription_count() const;
  // Members of shared groups (one per session and `$share/NAME/FILTER`), connected ones: a
  // stored session rejoins its groups when it comes back.
  std::size_t shared_subscription_count() const;
  // QoS 1 and 2 messages sent and not yet acknowledged, and messages waiting in the sessions'
  // queues (offline or behind a full window), connected sessions and stored ones alike.
  std::size_t inflight_count() const;
  std::size_t queued_message_count() const;
  const RetainedStore& retained() const { return retained_; }
  // The hooks and plugins, for their figures; null without any.
  const hooks::HookChain* hooks() const { return cfg_.hooks.get(); }

 private:
  struct Session;
  struct WillMessage {
    std::string topic;
    Bytes payload;
    bool retain = false;
    std::uint8_t qos = 0;
    Bytes properties;  // v5, less the Will Delay Interval
    Duration delay{};  // v5 Will Delay Interval
  };
  struct PendingWill {
    WillMessage will;
    TimePoint due;
  };
  // v5 subscription options (3.8.3.1) kept per filter; 3.1.1 filters have the defaults.
  struct FilterOptions {
    bool no_local = false;
    bool retain_as_published = false;
    std::uint32_t subscription_id = 0;  // v5 Subscription Identifier (3.8.2.1.2); 0: none
    std::uint8_t qos = 0;               // granted: the maximum QoS delivered through it
    bool is_default() const {
      return !no_local && !retain_as_published && subscription_id == 0 && qos == 0;
    }
  };
  // A session's subscriptions, connected or stored: filter (as subscribed, `$share/...` included)
  // -> options.
  using Filters = std::unordered_map<std::string, FilterOptions>;
  // A shared subscription (`$share/NAME/FILTER`, v5 4.8.2; Mosquitto accepts it from 3.1.1 clients
  // too): its connected members, each message going to one of them in turn.
  struct SharedGroup {
    std::string key;     // `$share/NAME/FILTER`, as the members subscribed
    std::string filter;  // FILTER, what is matched and what peers are told
    std::vector<Session*> members;
    std::size_t next = 0;  // round robin
  };
  // What the subscription index holds for a filter: a session, or a shared group (once, however
  // many members it has).
  struct Subscriber {
    Session* session = nullptr;
    SharedGroup* group = nullptr;
    bool operator==(const Subscriber&) const = default;
  };
  enum class Phase { AwaitConnect, Connected };

  void handle_frame(Session& s, const mqtt::FrameView& f, TimePoint now);
  void handle_connect(Session& s, const mqtt::Connect& connect, TimePoint now);
  // What hooks are told of a session's client (`client_id` and `username` as known so far).
  hooks::Client hook_client(const Session& s, std::string_view client_id,
                            std::string_view username) const;
  // Mosquitto's read access, asked of the hooks for each copy delivered (only when one has it).
  bool may_read(const hooks::Client& who, std::string_view topic) const {
    return !reads_ || cfg_.hooks->auth_read(who, topic) == hooks::kOk;
  }
  // The user the client connects as (empty: anonymous), or nullopt: it may not connect.
  std::optional<std::string> authorized(const Session& s, const mqtt::Connect& c) const;
  void handle_publish(Session& s, const mqtt::Publish& p, TimePoint now);
  // A hook refused the PUBLISH: counted, and acknowledged as the version allows.
  void refuse_publish(Session& s, const mqtt::Publish& p, std::string_view topic, hooks::Reason r,
                      std::string_view by);
  void handle_subscribe(Session& s, const mqtt::Subscribe& sub, TimePoint now);
  // Adds or replaces one subscription (false: the session had the filter already, and only its
  // options change); the peers hear of the filter if it is new here.
  bool add_subscription(Session& s, const std::string& filter, FilterOptions options,
                        TimePoint now);
  // A persistent client's connection ended: its subscriptions wait for a reconnect.
  void store_session(Session& s, TimePoint now);
  // Gives `s` the subscriptions stored under its client id, if any; returns whether there were.
  bool restore_session(Session& s, TimePoint now);
  void handle_unsubscribe(Session& s, const mqtt::Unsubscribe& u, TimePoint now);
  void handle_ack(Session& s, const mqtt::PacketIdAck& a, TimePoint now);
  void handle_pingreq(Session& s);
  void handle_disconnect(Session& s, const mqtt::Disconnect& d, TimePoint now);
  // Ends a session for a malformed packet or a protocol violation; a v5 client is told `v5_reason`
  // in a DISCONNECT first.
  void protocol_error(Session& s, std::string_view reason, TimePoint now, std::uint8_t v5_reason);
  void send_disconnect(Session& s, std::uint8_t reason);
  // A message for local subscribers.
  struct Outgoing {
    std::string_view topic;
    ByteSpan payload;
    bool retain = false;              // RETAIN for every subscriber (messages retained at a peer)
    bool published_retain = false;    // the publisher's RETAIN, for v5 Retain As Published
    const Session* origin = nullptr;  // the publishing session, for v5 No Local
    ByteSpan v5_properties;           // for v5 subscribers
    flow::Id source = flow::kNone;    // who is paused if a subscriber is congested
    std::uint8_t qos = 0;             // the publisher's
    std::optional<TimePoint> expires_at;  // v5 Message Expiry Interval, from when it came
    // Made once, when a first subscriber takes it at QoS 1 or 2 or queues it (deliver_local()).
    mutable std::shared_ptr<const StoredMessage> stored;
  };
  // The message as Outbound keeps it (properties without the Message Expiry Interval, which is
  // written for each send from `expires_at`).
  std::shared_ptr<const StoredMessage> stored_message(const Outgoing& m) const;
  // A delivery at QoS 1 or 2, or one that must wait behind what the session has queued.
  void deliver_outbound(Session& sub, const Outgoing& m, std::uint8_t qos, bool retain,
                        std::vector<std::uint32_t> ids, TimePoint now);
  // A v5 PUBLISH for `s`, with a topic alias when the client takes them: the topic's alias once
  // set, or a new one with the topic. Returns the new alias (0: none), which commit_alias()
  // records only once the packet is really sent, since the client learns it from that packet.
  std::uint16_t publish_v5(Session& s, std::string_view topic, ByteSpan payload, std::uint8_t qos,
                           bool retain, bool dup, std::uint16_t packet_id, ByteSpan properties,
                           Bytes& out);
  void commit_alias(Session& s, std::string_view topic, std::uint16_t alias);
  // Encodes and sends what Outbound said to send now.
  void emit(Session& s, flow::Id source, TimePoint now);
  // One pass over sends_: encodes and sends each, noting the flows it must abandon.
  void emit_round(Session& s, flow::Id source, TimePoint now);
  // What the filters of one session that match `topic` ask of its one copy (3.3.4): whether any
  // wants it (v5 No Local leaves out the publisher's own filters), the highest QoS, whether one
  // has Retain As Published; their subscription identifiers are appended to `ids`, sorted.
  struct Wanted {
    bool any = false;
    std::uint8_t qos = 0;
    bool retain_as_published = false;
  };
  static Wanted wanted_by(const Filters& filters, std::string_view topic, bool from_itself,
                          std::vector<std::uint32_t>& ids);
  void deliver_local(const Outgoing& m, TimePoint now);
  Duration session_keep_for(std::uint32_t expiry_seconds) const;
  // Queues a PUBLISH for a subscriber unless it is stuck or its queue is full (then drops and
  // counts it); a congested subscriber pauses `source`.
  bool offer(Session& sub, const Bytes& packet, std::size_t payload_size, flow::Id source,
             TimePoint now);
  // Mosquitto's per-type packet and byte counters.
  void count_received(const mqtt::FrameView& f);
  void count_sent(ByteSpan packet);
  void retain(std::string_view topic, ByteSpan payload, RetainedStore::Origin origin,
              ByteSpan properties = {}, std::optional<TimePoint> expires_at = {},
              std::uint8_t qos = 0);
  // The subscription index: a session's filter in and out, shared ones by their group; the peers
  // (and MQTT2MULTICAST) hear of a filter when its first subscriber comes and its last goes.
  void index_add(Session& s, const std::string& filter, TimePoint now);
  void index_remove(Session& s, const std::string& filter, TimePoint now);
  // The last local subscription to `filter` is gone.
  void filter_removed(std::string_view filter, TimePoint now);
  // A shared group's member for the next message, with the options it subscribed with.
  void deliver_shared(SharedGroup& g, const Outgoing& m, TimePoint now);
  // The session's will, now or after its v5 Will Delay.
  void publish_will(Session& s, TimePoint now);
  void publish_will_message(const WillMessage& will, const std::string& client_id,
                            const Session* origin, TimePoint now);
  // Ends a session: subscriptions removed (peers told), optional will, transport closed. The
  // session is marked closing and destroyed only by reap(), so callers up the stack keep a valid
  // one; a closing session takes no further input.
  void end_session(Session& s, bool publish_will_msg, TimePoint now);
  // Destroys the sessions that ended; the public entry points call it last.
  void reap();
  void touch(Session& s, TimePoint now);
  void schedule(Session& s);
  void send(Session& s, const Bytes& b);

  BrokerConfig cfg_;
  bool reads_ = false;  // a hook checks every delivery (auth_read)
  BrokerHost& host_;
  peering::Peering& peering_;
  m2m::Client* m2m_ = nullptr;
  log::Logger& log_;
  metrics::Counters& counters_;
  flow::FlowControl* flow_;
  std::unordered_map<ClientHandle, std::unique_ptr<Session>> sessions_;
  std::unordered_map<std::string, Session*> by_client_id_;
  mqtt::TopicTree<Subscriber> subscriptions_;
  std::unordered_map<std::string, std::unique_ptr<SharedGroup>> shared_;  // by key
  std::vector<ClientHandle> closing_;  // ended sessions, for reap()
  // Sessions of clean-session-0 clients that are not connected: client id -> filters.
  struct StoredSession {
    Filters filters;
    TimePoint expires_at;
    std::unique_ptr<Outbound> out;  // open flows and the queue, for the reconnect
    std::uint64_t delivery_mark = 0;
    hooks::Client hook;  // who it was, for the hooks' read checks while it is away
  };
  // Messages for stored sessions are queued by these (shared subscriptions are not: their
  // messages go to the members that are connected).
  mqtt::TopicTree<StoredSession*> offline_;
  void index_offline(StoredSession& st, bool add);
  void drop_stored(std::unordered_map<std::string, StoredSession>::iterator it);
  OutboundConfig outbound_config() const;
  std::unordered_map<std::string, StoredSession> stored_;
  DeadlineQueue<std::string> stored_expiry_;
  // v5 wills waiting out their Will Delay, by client id.
  std::unordered_map<std::string, PendingWill> pending_wills_;
  DeadlineQueue<std::string> will_timers_;
  RetainedStore retained_;
  DeadlineQueue<ClientHandle> deadlines_;
  std::uint64_t delivery_mark_ = 0;
  // deliver_local()'s encodings, kept between calls so delivery allocates nothing per message:
  // [v5][retain], valid ones flagged in `valid`. Delivery never nests (offer() only queues).
  struct PublishEncodings {
    Bytes bytes[2][2];
    std::uint8_t valid = 0;
  };
  PublishEncodings encodings_;
  std::vector<std::uint32_t> ids_;     // deliver_local(): the matching subscription identifiers
  std::vector<std::uint8_t> granted_;  // handle_subscribe(): the QoS granted per filter
  Bytes own_;                          // deliver_local(): a copy that carries them
  std::vector<Send> sends_;            // what Outbound says to send, encoded by emit()
  // QoS 1 and 2 flows emit() did not send (over the client's Maximum Packet Size): packet id, QoS.
  std::vector<std::pair<std::uint16_t, std::uint8_t>> abandoned_;
  Bytes emitted_;  // emit()'s encoding
  std::uint64_t auto_id_ = 0;
  Bytes scratch_;
};

}  // namespace mqtt_proxy::broker
