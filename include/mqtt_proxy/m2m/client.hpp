// The proxy's side of MQTT2MULTICAST (docs/mqtt2multicast.md): it asks the SDN controller for
// each topic's multicast address, sends every local PUBLISH once to that group (the switches copy
// it toward every proxy with a subscriber), and takes the PUBLISHes other proxies multicast.
//
// Pure: frames in (ARP replies, REPLYs, multicast datagrams, as the core captured them), frames
// out (ARP who-has, REQUESTs, multicast PUBLISHes, all written whole so the proxy chooses the
// Ethernet destination, source address and TTL), and group memberships for the I/O to apply.
//
// What the original got wrong and this does not (the specification's defects 9-12 and §1.7):
// REQUESTs are retransmitted with backoff and REPLYs matched by transaction id and source; the
// publish side announces itself (flags 0) whatever the subscribe side learnt; both are refreshed
// before the controller's flows go idle; PUBLISHes for a pending topic wait in a bounded queue of
// their own, so nothing else waits; an UNSUBSCRIBE sends flags 2 too; the topic length counts
// bytes; receiving joins the groups and does not depend on -F.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mqtt_proxy/m2m/protocol.hpp"
#include "mqtt_proxy/metrics/counters.hpp"
#include "mqtt_proxy/mqtt/packet.hpp"
#include "mqtt_proxy/util/bytes.hpp"
#include "mqtt_proxy/util/deadline_queue.hpp"
#include "mqtt_proxy/util/log.hpp"
#include "mqtt_proxy/util/siphash.hpp"
#include "mqtt_proxy/util/time.hpp"
#include "mqtt_proxy/wire/address.hpp"

namespace mqtt_proxy::m2m {

struct ClientConfig {
  // The controller's virtual address and ports (the original's launch script: -s, -S, -C).
  wire::Ipv4Address server{0xC0A80164};  // 192.168.1.100
  std::uint16_t server_port = 11883;
  std::uint16_t client_port = 11882;
  std::uint16_t data_port = 1883;  // -U: source and destination port of multicast PUBLISHes
  // The interface toward the SDN (the one whose network holds the server): our MAC and address,
  // and its prefix, which is where multicast senders are admitted from.
  wire::MacAddress mac;
  wire::Ipv4Address address;
  unsigned prefix_len = 24;
  // A REQUEST without a REPLY is sent again after this, then after twice as long, ... (`tries`
  // sends in all, the transaction id unchanged). 1 s, 2 s, 4 s: a topic is given up after 7 s.
  Duration retransmit = std::chrono::seconds(1);
  unsigned tries = 3;
  // A subscription given up on asks again this often: the controller may come back.
  Duration retry_after_give_up = std::chrono::seconds(30);
  // Both announcements again this often: under the controller's flow idle timeout (3600 s by
  // default, in the original and in ours), so a tree whose flows expired, or a controller that
  // restarted and forgot, is rebuilt. The publish side refreshes while it published within the
  // last interval, and at its next PUBLISH after a longer pause.
  Duration refresh = std::chrono::seconds(1800);
  // PUBLISHes of one topic held while its address is pending; beyond, further ones are dropped
  // (counted).
  std::size_t max_queued_messages = 1000;
  std::size_t max_queued_bytes = 1024 * 1024;
  // ... and of all topics together, so that a controller that is gone cannot make the proxy hold
  // more than this whatever the number of topics published meanwhile.
  std::size_t max_queued_total_bytes = 16 * 1024 * 1024;
  // Topics and filters with state at once; beyond, new ones are refused (counted).
  std::size_t max_topics = 100000;
  // The largest multicast datagram payload: the interface's MTU less IPv4 and UDP headers (the
  // proxy writes whole frames and does not fragment).
  std::size_t max_payload = 1472;
  // Multicast PUBLISHes to ff:ff:ff:ff:ff:ff as the original sends them (any switch, and the
  // original's promiscuous receivers, take them), or to the group's 01:00:5e address.
  bool ethernet_broadcast = true;
  // ARP for the server's address: REQUESTs wait this long for the first answer, then go to the
  // broadcast address (the original controller answers no ARP). Asked again this often.
  Duration arp_timeout = std::chrono::milliseconds(500);
  Duration arp_refresh = std::chrono::seconds(60);
  SipKey secret{};  // transaction ids
};

// A group to join or leave on the SDN interface (the I/O applies it with IP_ADD_MEMBERSHIP).
struct Membership {
  wire::Ipv4Address group;
  bool join = true;
};

class Client {
 public:
  Client(ClientConfig cfg, log::Logger& log, metrics::Counters& counters);

  void start(TimePoint now);

  // The broker's side: the first local subscriber of `filter` came, the last one went, a local
  // client (or a will) published.
  void subscribed(std::string_view filter, TimePoint now);
  void unsubscribed(std::string_view filter, TimePoint now);
  void publish(std::string_view topic, ByteSpan payload, bool retain, TimePoint now);

  // The core's side: frames captured on the SDN interface.
  void on_arp_reply(wire::Ipv4Address sender, const wire::MacAddress& mac, TimePoint now);
  void on_reply(wire::Ipv4Address src, std::uint16_t src_port, ByteSpan payload, TimePoint now);
  // A datagram to a multicast group on the data port. Returns the PUBLISH it carries when the
  // sender is admitted and the payload is one well-formed MQTT 3.1.1 PUBLISH (views into
  // `payload`); nothing otherwise (counted, logged 1 in 1000).
  std::optional<mqtt::Publish> on_datagram(wire::Ipv4Address src, wire::Ipv4Address group,
                                           ByteSpan payload);
  // Whether a multicast sender lies on the SDN segment (our network) and is not us.
  bool admits(wire::Ipv4Address src) const;

  void on_timers(TimePoint now);
  std::optional<TimePoint> next_deadline() const;

  // Ethernet frames to send on the SDN interface, in order.
  const std::vector<Bytes>& frames() const { return frames_; }
  void clear_frames() { frames_.clear(); }
  std::vector<Membership>& memberships() { return memberships_; }

  // What the proxy knows, for logs and tests.
  std::optional<wire::Ipv4Address> group_of(std::string_view topic) const;
  bool joined(wire::Ipv4Address group) const { return joined_.contains(group.value); }
  std::size_t outstanding() const { return by_tid_.size(); }
  std::size_t queued(std::string_view topic) const;
  const ClientConfig& config() const { return cfg_; }

 private:
  struct Topic {
    std::optional<wire::Ipv4Address> group;
    bool receiver = false;                // a local subscriber's filter
    bool publisher = false;               // a local client published here
    bool publisher_announced = false;     // a REPLY to our flags 0 came (the tree has us)
    bool joined = false;                  // we are a member of `group`
    std::optional<std::uint32_t> tid[3];  // the outstanding REQUEST per flags value
    std::optional<TimePoint> last_publish;
    std::optional<TimePoint> refresh_due;
    std::deque<Bytes> queue;  // encoded PUBLISHes waiting for the address
    std::size_t queued_bytes = 0;
  };
  struct Outstanding {
    std::string topic;
    Flags flags = Flags::Publish;
    unsigned sent = 0;  // times sent so far
    TimePoint due;      // next send, or give up
  };

  Topic* find(std::string_view topic);
  Topic* obtain(std::string_view topic);
  void forget_if_idle(std::string_view topic);
  void request(std::string_view topic, Topic& t, Flags flags, TimePoint now);
  void transmit(std::uint32_t tid, Outstanding& o, TimePoint now);
  void send_request(std::uint32_t tid, Flags flags, std::string_view topic);
  void give_up(std::uint32_t tid, Outstanding& o, TimePoint now);
  void learn_group(const std::string& topic, Topic& t, wire::Ipv4Address group);
  // Joins the topic's group while it has a local subscriber and an address; leaves it otherwise.
  void update_membership(Topic& t);
  // A UDP frame from us (the SDN interface's MAC and address) into frames_.
  void emit_udp(const wire::MacAddress& dst_mac, wire::Ipv4Address dst, std::uint16_t src_port,
                std::uint16_t dst_port, std::uint8_t ttl, ByteSpan payload);
  void send_publish(const Topic& t, ByteSpan packet);
  void flush_queue(const std::string& topic, Topic& t);
  void drop_queue(std::string_view topic, Topic& t, std::string_view why);
  void schedule_refresh(const std::string& topic, Topic& t, TimePoint now);
  void refresh(const std::string& topic, Topic& t, TimePoint now);
  void join(wire::Ipv4Address g);
  void leave(wire::Ipv4Address g);
  std::uint32_t next_tid();
  bool arp_pending(TimePoint now) const { return !server_mac_ && now < arp_deadline_; }
  wire::MacAddress request_mac() const;

  ClientConfig cfg_;
  log::Logger& log_;
  metrics::Counters& counters_;
  std::map<std::string, Topic, std::less<>> topics_;
  std::unordered_map<std::uint32_t, Outstanding> by_tid_;
  DeadlineQueue<std::uint32_t> retransmits_;  // lazy: an entry that is no longer due is skipped
  DeadlineQueue<std::string> refreshes_;
  std::unordered_map<std::uint32_t, unsigned> joined_;  // group -> topics that joined it
  std::size_t queued_total_bytes_ = 0;
  std::optional<wire::MacAddress> server_mac_;
  TimePoint arp_deadline_{};
  TimePoint next_arp_{};
  bool started_ = false;
  std::uint64_t tid_counter_ = 0;
  std::uint16_t ip_id_ = 0;
  std::vector<Bytes> frames_;
  std::vector<Membership> memberships_;
  Bytes scratch_;
};

}  // namespace mqtt_proxy::m2m
