// Every counter the proxy keeps, in one place. Plain integers: the core is single-threaded.
#pragma once

#include <cstdint>
#include <string_view>

namespace mqtt_proxy::metrics {

// X(name, help)
#define MQTT_PROXY_COUNTERS(X)                                                                   \
  X(frames_received, "frames handed to the core by capture")                                     \
  X(frames_not_for_us, "frames for another host, port or protocol")                              \
  X(frames_malformed, "frames whose Ethernet/IPv4/TCP headers do not parse")                     \
  X(ip_fragments_dropped, "IPv4 fragments (TCP in fragments is not reassembled)")                \
  X(tcp_checksum_mismatch, "segments whose TCP checksum does not verify")                        \
  X(tcp_segments_in, "TCP segments processed")                                                   \
  X(tcp_segments_out, "TCP segments sent")                                                       \
  X(tcp_connections_accepted, "connections that completed the handshake")                        \
  X(tcp_connections_closed, "connection states freed")                                           \
  X(tcp_connection_limit_hits, "SYNs refused because the connection limit was reached")          \
  X(tcp_resets_sent, "RSTs sent for segments without a connection")                              \
  X(tcp_resets_received, "connections reset by the client")                                      \
  X(tcp_timeouts, "connections aborted after retransmissions ran out")                           \
  X(tcp_stalls, "connections aborted after queued data saw no progress (stall timeout)")         \
  X(tcp_zero_window_probes, "zero-window probes sent")                                           \
  X(tcp_syn_cookies_sent, "SYN-ACKs sent as SYN cookies (half-open table full)")                 \
  X(tcp_syn_cookies_accepted, "connections established from a valid SYN cookie")                 \
  X(tcp_retransmits, "segments retransmitted (timeouts and fast retransmits)")                   \
  X(tcp_out_of_order, "segments queued out of order")                                            \
  X(tcp_challenge_acks, "challenge ACKs sent (RFC 5961)")                                        \
  X(mqtt_connects, "clients accepted by CONNECT")                                                \
  X(mqtt_connects_refused, "CONNECTs answered with a refusal")                                   \
  X(mqtt_disconnects, "clients that sent DISCONNECT")                                            \
  X(mqtt_connections_lost, "clients gone without DISCONNECT")                                    \
  X(mqtt_keepalive_expired, "clients closed for keepalive expiry")                               \
  X(mqtt_protocol_errors, "clients closed for a malformed packet or protocol violation")         \
  X(mqtt_sessions_taken_over, "sessions closed by a new connection with the same client id")     \
  X(mqtt_sessions_resumed, "clean-session-0 reconnects that found their stored subscriptions")   \
  X(mqtt_sessions_expired, "stored sessions dropped after the session expiry")                   \
  X(mqtt_sessions_not_stored, "sessions not kept because the stored-session limit was reached")  \
  X(mqtt_publish_received, "PUBLISH packets from local clients")                                 \
  X(mqtt_publish_delivered, "PUBLISH packets queued to local subscribers")                       \
  X(mqtt_publish_dropped_slow, "PUBLISH copies dropped because a subscriber's queue was full")   \
  X(mqtt_publish_dropped_too_large, "PUBLISH copies over a v5 client's Maximum Packet Size")     \
  X(mqtt_wills_published, "will messages published")                                             \
  X(mqtt_retained_topics, "topics with a retained message now (a gauge)")                        \
  X(mqtt_retained_sent, "retained messages sent to new subscribers and subscribing peers")       \
  X(mqtt_retained_refused, "retained messages not stored: the retained-topic limit was reached") \
  X(mqtt_subscriptions, "topic filters subscribed")                                              \
  X(mqtt_unsubscriptions, "topic filters unsubscribed")                                          \
  X(peer_datagrams_in, "datagrams from configured peers")                                        \
  X(peer_datagrams_out, "datagrams sent to peers")                                               \
  X(peer_datagrams_unknown_source, "datagrams from addresses that are not peers (ignored)")      \
  X(peer_datagrams_malformed, "peer datagrams with a malformed packet (the rest is dropped)")    \
  X(peer_publish_in, "PUBLISH packets from peers")                                               \
  X(peer_publish_out, "PUBLISH packets sent to peers")                                           \
  X(peer_publish_too_large, "PUBLISH packets too large for one datagram (not forwarded)")        \
  X(peer_subscribe_in, "topic filters peers subscribed")                                         \
  X(peer_subscribe_out, "SUBSCRIBE datagrams sent")                                              \
  X(peer_unsubscribe_in, "topic filters peers unsubscribed")                                     \
  X(peer_unsubscribe_out, "UNSUBSCRIBE datagrams sent")

struct Counters {
#define MQTT_PROXY_DECLARE_COUNTER(name, help) std::uint64_t name = 0;
  MQTT_PROXY_COUNTERS(MQTT_PROXY_DECLARE_COUNTER)
#undef MQTT_PROXY_DECLARE_COUNTER

  // Calls fn(name, help, value) for every counter, in declaration order.
  template <typename Fn>
  void for_each(Fn&& fn) const {
#define MQTT_PROXY_VISIT_COUNTER(name, help) \
  fn(std::string_view(#name), std::string_view(help), name);
    MQTT_PROXY_COUNTERS(MQTT_PROXY_VISIT_COUNTER)
#undef MQTT_PROXY_VISIT_COUNTER
  }
};

}  // namespace mqtt_proxy::metrics
