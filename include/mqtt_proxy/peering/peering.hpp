// The peer protocol: MQTT control packets in UDP datagrams (docs/peering.md).
//
// Outbound: SUBSCRIBE to every peer when the first local subscriber of a filter appears,
// UNSUBSCRIBE when the last one goes, PUBLISH only to peers that subscribed to a matching filter.
// Inbound: SUBSCRIBE and UNSUBSCRIBE (type 10, or the prototype's type 11) update what each peer
// wants; a PUBLISH is handed back for local delivery and never sent on to other peers, so a full
// mesh has no loops.
#pragma once

#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "mqtt_proxy/metrics/counters.hpp"
#include "mqtt_proxy/mqtt/packet.hpp"
#include "mqtt_proxy/mqtt/topic_tree.hpp"
#include "mqtt_proxy/util/bytes.hpp"
#include "mqtt_proxy/util/log.hpp"
#include "mqtt_proxy/util/time.hpp"
#include "mqtt_proxy/wire/address.hpp"

namespace mqtt_proxy::peering {

struct Datagram {
  wire::Ipv4Address dst;
  Bytes bytes;
};

struct PeeringConfig {
  std::vector<wire::Ipv4Address> peers;
  // Largest datagram we send or accept; a PUBLISH beyond it is not forwarded (and counted).
  std::size_t max_datagram = 65507;
  // Resend SUBSCRIBE for every local filter this often, so a peer that restarted learns our
  // interest again. Plain SUBSCRIBEs, so peers that know nothing of it are unaffected. Zero: off.
  Duration refresh_interval{0};
  // Batching (docs/peering.md): PUBLISHes for the same peer produced in one event-loop turn share
  // a datagram of up to this many bytes, packets back to back. Zero: one packet per datagram, the
  // plain form every peer understands. Only for peers known to accept batches; receiving them is
  // always on.
  std::size_t batch_bytes = 0;
};

// A filter a peer subscribed to that it did not have before.
struct PeerInterest {
  wire::Ipv4Address peer;
  std::string filter;
};

class Peering {
 public:
  Peering(PeeringConfig cfg, log::Logger& log, metrics::Counters& counters);

  bool is_peer(wire::Ipv4Address a) const { return index_.contains(a); }
  const std::vector<wire::Ipv4Address>& peers() const { return cfg_.peers; }

  // Local interest changes, as the broker's topic tree reports them.
  void local_filter_added(std::string_view filter);
  void local_filter_removed(std::string_view filter);

  // A PUBLISH from a local client: one datagram to each peer with a matching filter.
  void forward_publish(std::string_view topic, ByteSpan payload, bool retain);
  // A retained message for one peer that has just subscribed to a matching filter.
  void send_retained(wire::Ipv4Address peer, std::string_view topic, ByteSpan payload);

  // A datagram from `src`: one packet, or several back to back. Returns the PUBLISHes to deliver
  // locally, in order (views into `data`, valid until the next call). A malformed packet drops
  // itself and the rest of its datagram; the packets before it stand.
  std::span<const mqtt::Publish> on_datagram(wire::Ipv4Address src, ByteSpan data);

  void on_timers(TimePoint now);
  std::optional<TimePoint> next_deadline() const { return next_refresh_; }
  void start(TimePoint now);

  // Datagrams produced since the last clear_outbox().
  const std::vector<Datagram>& outbox() const { return outbox_; }
  void clear_outbox();
  // New peer filters since the last call, for the broker to answer with retained messages.
  std::vector<PeerInterest>& new_interest() { return new_interest_; }

  bool peer_wants(wire::Ipv4Address peer, std::string_view topic) const;
  std::size_t peer_filter_count(wire::Ipv4Address peer) const;
  const std::set<std::string, std::less<>>& local_filters() const { return local_filters_; }

 private:
  // SUBSCRIBE or UNSUBSCRIBE for one filter, to every peer.
  void announce(mqtt::PacketType type, std::string_view filter);
  std::uint16_t next_packet_id();
  // Encodes a QoS 0 PUBLISH for peers; false (counted, logged) when it cannot fit a datagram.
  bool encode_publish_datagram(std::string_view topic, ByteSpan payload, bool retain,
                               Bytes& packet);
  void push_publish(std::size_t peer, const Bytes& packet, std::string_view topic,
                    std::size_t payload_size);
  // Queues a packet for a peer: appended to the peer's newest datagram when batching allows.
  void enqueue(std::size_t peer, ByteSpan packet, bool batchable);
  // One packet of a peer's datagram; false if it is malformed (counted and logged).
  bool on_packet(std::size_t peer, wire::Ipv4Address src, ByteSpan& data);
  void peer_subscribe(std::size_t peer, std::string_view filter);
  void peer_unsubscribe(std::size_t peer, std::string_view filter);

  PeeringConfig cfg_;
  log::Logger& log_;
  metrics::Counters& counters_;
  std::unordered_map<wire::Ipv4Address, std::size_t> index_;
  mqtt::TopicTree<std::size_t> remote_;  // filters peers subscribed to -> peer index
  std::vector<std::unordered_set<std::string>> remote_filters_;
  std::set<std::string, std::less<>> local_filters_;
  std::uint16_t packet_id_ = 0;
  std::optional<TimePoint> next_refresh_;
  std::vector<Datagram> outbox_;
  // Per peer: the outbox index of the datagram still open for more PUBLISHes, if any.
  std::vector<std::optional<std::size_t>> open_batch_;
  std::vector<mqtt::Publish> inbound_;
  // Scratch space of forward_publish(), and buffers of sent datagrams for reuse.
  static constexpr std::size_t kMaxSpareBuffers = 256;
  Bytes packet_;
  std::vector<Bytes> spare_;
  std::vector<bool> wants_;
  std::vector<PeerInterest> new_interest_;
};

}  // namespace mqtt_proxy::peering
