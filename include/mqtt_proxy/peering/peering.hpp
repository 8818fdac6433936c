// The peer protocol: MQTT control packets in UDP datagrams (docs/peering.md).
//
// Outbound: SUBSCRIBE to every peer when the first local subscriber of a filter appears,
// UNSUBSCRIBE when the last one goes, PUBLISH only to peers that subscribed to a matching filter.
// Inbound: SUBSCRIBE and UNSUBSCRIBE (type 10, or the prototype's type 11) update what each peer
// wants; a PUBLISH is handed back for local delivery and never sent on to other peers, so a full
// mesh has no loops.
//
// The extension (peering/extension.hpp), used toward a peer only after it announced it: sequence
// numbers on every datagram of PUBLISHes (the receiver counts what the network lost), credit-based
// flow control (a receiver whose subscribers cannot keep up stops granting credit, the sender
// queues and pauses its own publishers through FlowControl), and batching by default. Toward a
// peer that announced the properties feature, a PUBLISH with MQTT 5 properties travels in the 5.0
// form behind a DATA5 header, so its v5 subscribers get them.
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "mqtt_proxy/flow/flow_control.hpp"
#include "mqtt_proxy/metrics/counters.hpp"
#include "mqtt_proxy/mqtt/packet.hpp"
#include "mqtt_proxy/mqtt/topic_tree.hpp"
#include "mqtt_proxy/peering/extension.hpp"
#include "mqtt_proxy/peering/peer_auth.hpp"
#include "mqtt_proxy/util/bytes.hpp"
#include "mqtt_proxy/util/log.hpp"
#include "mqtt_proxy/util/time.hpp"
#include "mqtt_proxy/wire/address.hpp"

namespace mqtt_proxy::peering {

struct Datagram {
  wire::Ipv4Address dst;
  Bytes bytes;
};

enum class BatchPolicy {
  Auto,  // batch toward peers that announced the extension (they read batches); plain to others
  On,    // batch toward every peer (all of them must read batches)
  Off,   // one packet per datagram
};

struct PeeringConfig {
  std::vector<wire::Ipv4Address> peers;
  // Largest datagram we send or accept; a PUBLISH beyond it is not forwarded (and counted).
  std::size_t max_datagram = 65507;
  // Resend SUBSCRIBE for every local filter to every peer this often: a SUBSCRIBE lost on the
  // way, or a plain peer that restarted (it cannot say so), is mended within one interval. Plain
  // SUBSCRIBEs, idempotent at the receiver, so the prototype handles them like any other. A
  // capable peer that restarts is answered at once, whatever this is (docs/peering.md, "Soft
  // state"). Zero: off.
  Duration refresh_interval = std::chrono::seconds(30);
  // Interest held for a capable peer expires once it has been silent this many refresh intervals
  // (it heartbeats every heartbeat_interval, so silence means it is gone). Zero: never. Plain
  // peers' interest never expires: the prototype sends nothing while it has nothing to say.
  unsigned expiry_refreshes = 3;
  // A capable peer silent this long is reported gone (logged, peers_up); back when it speaks.
  Duration liveness_timeout = std::chrono::seconds(15);
  // Batching (docs/peering.md): PUBLISHes for the same peer produced in one event-loop turn share
  // a datagram of up to `batch_bytes` bytes (the app sets the smallest MTU - 28). Receiving
  // batches is always on.
  BatchPolicy batch = BatchPolicy::Auto;
  std::size_t batch_bytes = 1472;
  // The extension: announced to every peer (HELLO) and used toward those that announce it back.
  bool extension = true;
  std::uint32_t epoch = 1;  // this run's, non-zero; the app draws it at random
  // Credit a capable peer may use ahead of our reading: it bounds what is in flight toward us.
  std::uint32_t credit_window = 512 * 1024;
  // HELLO to a peer that has not answered: first after this, then backing off to 30 s; once it
  // answered, every heartbeat interval. Short at first: until both sides have heard each other
  // they speak plain, and a plain datagram lost is lost uncounted.
  Duration hello_interval = std::chrono::milliseconds(100);
  Duration heartbeat_interval = std::chrono::seconds(5);
  // A peer whose DIGEST (with its heartbeat) disagrees with the interest we hold for it is asked
  // for all of it (RESYNC); unanswered, again after this, backing off to the heartbeat interval.
  // So interest lost on the way converges within a heartbeat or two, not a refresh.
  Duration resync_retry = std::chrono::milliseconds(250);
  // A sender out of credit asks again (BLOCKED) after this, backing off to 100 ms.
  Duration blocked_probe = std::chrono::milliseconds(20);
  // PUBLISH bytes waiting for credit toward one peer; beyond, further ones are dropped (counted).
  std::size_t max_pending_bytes = 4 * 1024 * 1024;
  // The first sequence mark after a burst comes this long after its last PUBLISH: longer than the
  // gap between messages of a stream at 4 msgs/s and up, which so costs no marks (each is a
  // datagram and its answer: two wake-ups on each side).
  Duration tail_mark = std::chrono::milliseconds(250);
  // Pacing toward a capable peer: PUBLISH bytes leave at most at this rate, in bursts of at most
  // pace_burst, so a switch's queue on the way sees a paced flow, not the whole credit window at
  // once (1 Gbit/s: far above what the userspace testbed carries). Zero: unpaced.
  std::uint64_t pace_bytes_per_second = 125'000'000;
  std::size_t pace_burst = 64 * 1024;
  // Authentication (peer_auth.hpp, docs/peering.md): with keys, every datagram to and from a peer
  // is signed and checked; the first key signs, any of them verifies (two while a new one is
  // rolled out). Empty: off.
  std::vector<Bytes> keys{};
  // With keys: peers that may send unsigned datagrams and are sent unsigned ones (plain peers
  // such as the prototype), each named on purpose.
  std::vector<wire::Ipv4Address> unsigned_peers{};
  // Our address as each peer sees it, parallel to `peers` (a MAC covers both ends); the app asks
  // the kernel which source address it would use toward each.
  std::vector<wire::Ipv4Address> local_addresses{};
  // Our first signature's sequence number: the app takes the wall clock in nanoseconds, so a
  // restarted proxy's numbers are above its earlier run's and peers' replay windows take them.
  std::uint64_t auth_seq_start = 1;
};

// A filter a peer subscribed to that it did not have before.
struct PeerInterest {
  wire::Ipv4Address peer;
  std::string filter;
};

class Peering {
 public:
  // `flow` (may be null: no flow control, e.g. in tests) outlives the Peering.
  Peering(PeeringConfig cfg, log::Logger& log, metrics::Counters& counters,
          flow::FlowControl* flow = nullptr);

  bool is_peer(wire::Ipv4Address a) const { return index_.contains(a); }
  std::optional<std::size_t> index_of(wire::Ipv4Address a) const;
  const std::vector<wire::Ipv4Address>& peers() const { return cfg_.peers; }

  // Local interest changes, as the broker's topic tree reports them.
  // `now` starts the refresh when this is the first filter (none is due while there is none).
  void local_filter_added(std::string_view filter, TimePoint now = {});
  void local_filter_removed(std::string_view filter);

  // A PUBLISH from a local client (`source`, for flow control): one datagram to each peer with a
  // matching filter, or into its credit queue. `v5_properties`: the publisher's MQTT 5 property
  // bytes (without their length), as a v5 subscriber here gets them; they go, less any Topic
  // Alias and Subscription Identifier, to the peers that announced ext::kFeatureProperties (in
  // the 5.0 form, behind a DATA5 header). Other peers, and a PUBLISH without properties, get the
  // 3.1.1 form.
  void forward_publish(std::string_view topic, ByteSpan payload, bool retain,
                       flow::Id source = flow::kNone, TimePoint now = {},
                       ByteSpan v5_properties = {});
  // A retained message for one peer that has just subscribed to a matching filter (its
  // properties as forward_publish() takes them).
  void send_retained(wire::Ipv4Address peer, std::string_view topic, ByteSpan payload,
                     TimePoint now = {}, ByteSpan v5_properties = {});

  // A datagram from `src`: one packet, or several back to back. Returns the PUBLISHes to deliver
  // locally, in order (views into `data`, valid until the next call). A PUBLISH in the 5.0 form
  // (after a DATA5 header) has its properties in `properties` (`raw` and the values decoded from
  // it); one in the 3.1.1 form has none. A malformed packet drops
  // itself and the rest of its datagram; the packets before it stand.
  std::span<const mqtt::Publish> on_datagram(wire::Ipv4Address src, ByteSpan data,
                                             TimePoint now = {});

  void on_timers(TimePoint now);
  std::optional<TimePoint> next_deadline() const;
  // Sends the HELLOs; the refresh timer starts.
  void start(TimePoint now);
  // End of a loop turn, before the outbox goes out: the credit owed to peers is granted.
  void end_turn();

  // Flow control's view of peer `i` as a sink: PUBLISH bytes waiting for its credit, and when it
  // last showed it is alive (granted or answered).
  std::size_t pending_bytes(std::size_t i) const { return peers_[i].out.pending_bytes; }
  TimePoint last_progress(std::size_t i) const { return peers_[i].out.last_progress; }
  // Peer `i` was declared stuck: what waits for its credit is dropped (counted).
  void drop_pending(std::size_t i);
  // Peer `i` as a source may be granted credit again.
  void resume(std::size_t i) { peers_[i].in.credit_due = true; }
  bool speaks_extension(std::size_t i) const { return capable(peers_[i]); }
  // New keys for a proxy that started with keys (a new one rolled out; the first signs from now
  // on). Which peers sign is fixed at start: keys cannot switch authentication on or off.
  void set_keys(std::vector<Bytes> keys);

  // A peer as an operator sees it.
  enum class PeerState {
    Plain,  // never announced the extension: its liveness cannot be known
    Up,     // capable, heard within liveness_timeout
    Down,   // capable, silent since
  };
  // The global peer_datagrams_* and peer_publish_* counters, split by peer (for the per-peer
  // metrics); counted where those are.
  struct PeerTraffic {
    std::uint64_t datagrams_in = 0;
    std::uint64_t datagrams_out = 0;
    std::uint64_t datagrams_lost = 0;
    std::uint64_t publish_in = 0;
    std::uint64_t publish_out = 0;
  };
  struct PeerStatus {
    wire::Ipv4Address addr;
    PeerState state = PeerState::Plain;
    std::size_t filters = 0;  // the filters it subscribed to, that we hold
    std::optional<TimePoint> last_heard;
    PeerTraffic traffic;
  };
  std::vector<PeerStatus> peer_status() const;

  // Datagrams produced since the last clear_outbox().
  const std::vector<Datagram>& outbox() const { return outbox_; }
  void clear_outbox();
  // New peer filters since the last call, for the broker to answer with retained messages.
  std::vector<PeerInterest>& new_interest() { return new_interest_; }

  bool peer_wants(wire::Ipv4Address peer, std::string_view topic) const;
  std::size_t peer_filter_count(wire::Ipv4Address peer) const;
  const std::set<std::string, std::less<>>& local_filters() const { return local_filters_; }

 private:
  // What we send to a capable peer, for the epoch pair (ours, theirs).
  struct Outbound {
    std::uint32_t dseq = 0;
    std::uint32_t mseq = 0;
    std::uint64_t offset = 0;  // credit offset of the next PUBLISH byte
    std::uint64_t limit = 0;   // the peer's latest grant
    struct Waiting {
      Bytes packet;
      bool v5 = false;  // in the 5.0 form: goes behind a DATA5 header
    };
    std::deque<Waiting> pending;  // PUBLISH packets waiting for credit, in order
    std::size_t pending_bytes = 0;
    TimePoint last_progress{};
    std::optional<TimePoint> next_probe;  // BLOCKED, while pending waits
    Duration probe_backoff{};
    // After the last PUBLISH, DATA headers with none follow, backing off, until a CREDIT says the
    // receiver has accounted for every datagram sent: so it learns of a loss at the end of a burst
    // too, where no later datagram would reveal the gap.
    std::optional<TimePoint> next_mark;
    Duration mark_backoff{};
    // The pacer (GCRA): when the bytes sent so far would have left at the paced rate.
    TimePoint pace_tat{};
    std::optional<TimePoint> next_pump;  // the pacer lets the head of `pending` go then
  };
  // What we receive from a capable peer, for the epoch pair (theirs, ours).
  struct Inbound {
    std::uint32_t epoch = 0;  // theirs, of the stream we account; 0: none yet
    std::uint32_t next_dseq = 0;
    std::uint32_t next_mseq = 0;
    std::uint64_t seen_dseq = 0;  // bit k: datagram next_dseq - 1 - k arrived
    std::uint64_t end = 0;        // credit offset just past the last PUBLISH byte received
    std::uint64_t limit_sent = 0;
    bool credit_due = false;  // grant more at the end of the turn (unless paused)
    bool answer_due = false;  // a BLOCKED wants a CREDIT even without more to grant
  };
  // Asking a peer for its whole interest, after its DIGEST disagreed with what we hold for it.
  struct Mending {
    std::uint32_t nonce = 0;  // of the RESYNC asked; 0: not asking
    std::vector<bool> parts_seen;
    std::size_t parts_left = 0;
    // What it subscribed to since we asked: the answer's filters, and whatever it subscribed to
    // (or unsubscribed from) besides. Complete, it is what the peer holds.
    std::unordered_set<std::string> collected;
    TimePoint next_ask{};
    Duration backoff{};
  };
  struct Peer {
    wire::Ipv4Address addr;
    std::unordered_set<std::string> filters;  // what it subscribed to
    std::uint64_t filters_hash = 0;           // the sum of ext::filter_hash() over `filters`
    std::uint32_t their_epoch = 0;            // from its HELLO; 0: it never announced
    std::uint32_t their_features = 0;
    bool knows_us = false;  // its latest HELLO named our epoch
    TimePoint next_hello{};
    Duration hello_backoff{};
    std::optional<TimePoint> last_hello;  // when we last sent it one
    Outbound out;
    Inbound in;
    std::optional<std::size_t> open_batch;  // outbox index of this turn's open datagram
    bool open_v5 = false;                   // it has a DATA5 header: 5.0-form PUBLISHes only
    std::optional<TimePoint> last_heard;    // its last datagram
    bool up = false;                        // capable and heard within liveness_timeout
    bool signs = false;                     // keys are set and it is not an unsigned peer
    std::optional<TimePoint> resynced_at;   // when we last sent it all our filters
    wire::Ipv4Address local;                // our address as it sees it
    auth::ReplayWindow replay;
    Mending mending;
    std::optional<TimePoint> last_answer;  // our last FILTERS answer to its RESYNC
    PeerTraffic traffic;
  };
  // The DATA header of the datagram being read, and whether its PUBLISHes are delivered.
  struct DataContext {
    bool accounted = false;  // part of the stream we account and credit
    std::uint32_t first_mseq = 0;
    std::uint32_t mseq = 0;
    std::uint64_t offset = 0;
    bool v5 = false;                    // after a DATA5 header: PUBLISHes are in the 5.0 form
    std::optional<std::uint16_t> part;  // a FILTERS part of the answer we wait for
    std::uint16_t parts = 0;
  };

  bool capable(const Peer& p) const {
    return cfg_.extension && p.their_epoch != 0 && (p.their_features & ext::kFeatureCredit);
  }
  bool batches(const Peer& p) const;
  // It reads DATA5 (the 5.0 form of PUBLISH).
  bool takes_properties(const Peer& p) const {
    return capable(p) && (p.their_features & ext::kFeatureProperties);
  }
  bool checks_digest(const Peer& p) const {
    return capable(p) && (p.their_features & ext::kFeatureDigest);
  }
  // A peer that signs, whose run we do not know yet: it would refuse anything but a HELLO (a
  // signature names the receiver's run), so nothing else is sent until the handshake, which then
  // sends our interest (resync).
  bool withheld(const Peer& p) const { return p.signs && p.their_epoch == 0; }
  void announce(mqtt::PacketType type, std::string_view filter);
  // The refresh's next filter, to every peer.
  void refresh_next(TimePoint now);
  bool refreshing() const {
    return started_ && cfg_.refresh_interval.count() > 0 && !cfg_.peers.empty();
  }
  // Every local filter to peer i again, as SUBSCRIBEs: it restarted, or came back.
  void resync(std::size_t i, std::string_view why, TimePoint now);
  // Forgets what peer i subscribed to (it restarted, or its interest expired).
  void forget_interest(std::size_t i, std::string_view why);
  // Peer i spoke: its liveness.
  void heard(std::size_t i, TimePoint now);
  void check_liveness(std::size_t i, TimePoint now);
  Duration expiry() const { return cfg_.refresh_interval * cfg_.expiry_refreshes; }
  std::uint16_t next_packet_id();
  // Encodes a QoS 0 PUBLISH for peers; false (counted, logged) when it cannot fit a datagram.
  bool encode_publish_datagram(std::string_view topic, ByteSpan payload, bool retain,
                               Bytes& packet);
  // The same in the 5.0 form, with `properties` less Topic Alias and Subscription Identifier;
  // false when none are left, they do not decode as a PUBLISH's, or it cannot fit a datagram
  // (the 3.1.1 form is sent then).
  bool encode_publish5_datagram(std::string_view topic, ByteSpan payload, bool retain,
                                ByteSpan properties, Bytes& packet);
  // The packets of one message for the peers, in either form, encoded when first needed.
  struct Encoded {
    bool plain_done = false, plain_ok = false;
    bool v5_done = false, v5_ok = false;
  };
  // The packet for peer i (packet_ or packet5_), its form in `v5`; nullptr: not forwarded.
  const Bytes* packet_for(std::size_t i, Encoded& e, std::string_view topic, ByteSpan payload,
                          bool retain, ByteSpan properties, bool& v5);
  void push_publish(std::size_t i, const Bytes& packet, bool v5, std::string_view topic,
                    std::size_t payload_size, flow::Id source, TimePoint now);
  // Queues a packet for a peer: appended to the peer's newest datagram when batching allows.
  void enqueue(std::size_t i, ByteSpan packet, bool batchable);
  Datagram& new_datagram(std::size_t i);
  // A PUBLISH within the peer's credit, after a DATA header (DATA5 for the 5.0 form, `v5`).
  void send_data(std::size_t i, ByteSpan packet, bool v5, TimePoint now);
  // Sends what waits for credit as far as the credit and the pacer let it.
  void pump(std::size_t i, TimePoint now);
  // Whether the pacer lets `bytes` go toward the peer now; if so they are charged to it.
  bool pace(Outbound& o, std::size_t bytes, TimePoint now);
  Duration pace_tolerance() const;  // the burst, in time at the paced rate
  void send_control(std::size_t i, const ext::Message& m);
  void send_hello(std::size_t i, TimePoint now);
  // Interest checking (docs/peering.md, "Soft state"): our DIGEST to peer i; a RESYNC asking it
  // for its interest; our FILTERS answering its RESYNC; one answer part received.
  void send_digest(std::size_t i);
  void ask_interest(std::size_t i, TimePoint now);
  void answer_resync(std::size_t i, std::uint32_t nonce, TimePoint now);
  void filters_part(std::size_t i, std::uint16_t part, std::uint16_t parts);
  // The answer is complete: what peer i no longer subscribes to is dropped.
  void mended(std::size_t i);
  // One packet of a peer's datagram; false if it is malformed (counted and logged).
  bool on_packet(std::size_t i, ByteSpan& data, DataContext& ctx, bool& deliver, TimePoint now);
  void on_extension(std::size_t i, const ext::Message& m, DataContext& ctx, bool& deliver,
                    TimePoint now);
  // Sequence accounting of a DATA header of the stream; false: a late or repeated datagram.
  bool account(Inbound& in, PeerTraffic& traffic, const ext::Data& d);
  void grant(std::size_t i, bool answer);
  void grant_credit();  // what end_turn() owes the peers
  // Signs the datagrams of this turn toward peers that sign.
  void seal_outbox();
  // With keys: checks and strips a datagram's AUTH packet; false: rejected (counted).
  bool authenticate(std::size_t i, ByteSpan& data);

  void peer_subscribe(std::size_t i, std::string_view filter);
  void peer_unsubscribe(std::size_t i, std::string_view filter);

  PeeringConfig cfg_;
  log::Logger& log_;
  metrics::Counters& counters_;
  flow::FlowControl* flow_;
  std::unordered_map<wire::Ipv4Address, std::size_t> index_;
  std::vector<Peer> peers_;
  mqtt::TopicTree<std::size_t> remote_;  // filters peers subscribed to -> peer index
  std::set<std::string, std::less<>> local_filters_;
  std::uint64_t local_hash_ = 0;  // the sum of ext::filter_hash() over local_filters_
  std::uint32_t nonce_ = 0;       // the last RESYNC's
  std::uint16_t packet_id_ = 0;
  bool started_ = false;
  std::optional<TimePoint> next_refresh_;
  std::string refresh_cursor_;  // the filter refreshed last
  std::vector<Datagram> outbox_;
  std::size_t sealed_ = 0;         // outbox_ datagrams already signed
  std::size_t publish_limit_ = 0;  // the largest PUBLISH packet forwarded
  std::uint64_t auth_seq_ = 0;
  std::unique_ptr<auth::Keyring> keyring_;
  std::vector<mqtt::Publish> inbound_;
  // Scratch space of forward_publish(), and buffers of sent datagrams for reuse.
  static constexpr std::size_t kMaxSpareBuffers = 256;
  Bytes packet_;
  Bytes packet5_;
  Bytes properties_;
  Bytes control_;
  std::vector<Bytes> spare_;
  std::vector<bool> wants_;
  std::vector<PeerInterest> new_interest_;
};

}  // namespace mqtt_proxy::peering
