// Every counter the proxy keeps, in one place. Plain integers: the core is single-threaded.
#pragma once

#include <cstdint>
#include <string_view>

namespace mqtt_proxy::metrics {

// X(name, kind, help). kind is Counter (only ever grows) or Gauge (a level, read when asked).
#define MQTT_PROXY_COUNTERS(X)                                                                     \
  X(frames_received, Counter, "frames handed to the core by capture")                              \
  X(frames_not_for_us, Counter, "frames for another host, port or protocol")                       \
  X(frames_malformed, Counter, "frames whose Ethernet/IPv4/TCP headers do not parse")              \
  X(ip_fragments_dropped, Counter, "IPv4 fragments (TCP in fragments is not reassembled)")         \
  X(tcp_checksum_mismatch, Counter, "segments whose TCP checksum does not verify")                 \
  X(tcp_segments_in, Counter, "TCP segments processed")                                            \
  X(tcp_segments_out, Counter, "TCP segments sent")                                                \
  X(tcp_connections_accepted, Counter, "connections that completed the handshake")                 \
  X(tcp_connections_closed, Counter, "connection states freed")                                    \
  X(tcp_connection_limit_hits, Counter, "SYNs refused because the connection limit was reached")   \
  X(tcp_resets_sent, Counter, "RSTs sent for segments without a connection")                       \
  X(tcp_resets_received, Counter, "connections reset by the client")                               \
  X(tcp_timeouts, Counter, "connections aborted after retransmissions ran out")                    \
  X(tcp_stalls, Counter, "connections aborted after queued data saw no progress (stall timeout)")  \
  X(tcp_zero_window_probes, Counter, "zero-window probes sent")                                    \
  X(tcp_syn_cookies_sent, Counter, "SYN-ACKs sent as SYN cookies (half-open table full)")          \
  X(tcp_syn_cookies_accepted, Counter, "connections established from a valid SYN cookie")          \
  X(tcp_retransmits, Counter, "segments retransmitted (timeouts and fast retransmits)")            \
  X(tcp_fast_retransmits, Counter, "retransmissions on the third duplicate ACK (RFC 5681 3.2)")    \
  X(tcp_out_of_order, Counter, "segments queued out of order")                                     \
  X(tcp_duplicate_segments, Counter,                                                               \
    "segments with only data we already had (acknowledged at once)")                               \
  X(tcp_overlap_mismatch_bytes, Counter,                                                           \
    "bytes of overlapping segments that differed from what arrived first")                         \
  X(tcp_challenge_acks, Counter, "challenge ACKs sent (RFC 5961)")                                 \
  X(tcp_bad_acks, Counter, "segments acknowledging data never sent or too old (RFC 5961 5.2)")     \
  X(mqtt_connects, Counter, "clients accepted by CONNECT")                                         \
  X(mqtt_connects_refused, Counter, "CONNECTs answered with a refusal")                            \
  X(mqtt_publish_refused, Counter,                                                                 \
    "client PUBLISHes and wills a hook or plugin refused (not sent)")                              \
  X(mqtt_subscribe_refused, Counter, "SUBSCRIBE filters a hook or plugin refused")                 \
  X(mqtt_disconnects, Counter, "clients that sent DISCONNECT")                                     \
  X(mqtt_connections_lost, Counter, "clients gone without DISCONNECT")                             \
  X(mqtt_keepalive_expired, Counter, "clients closed for keepalive expiry")                        \
  X(mqtt_protocol_errors, Counter, "clients closed for a malformed packet or protocol violation")  \
  X(mqtt_sessions_taken_over, Counter,                                                             \
    "sessions closed by a new connection with the same client id")                                 \
  X(mqtt_sessions_resumed, Counter,                                                                \
    "clean-session-0 reconnects that found their stored subscriptions")                            \
  X(mqtt_sessions_expired, Counter, "stored sessions dropped after the session expiry")            \
  X(mqtt_sessions_not_stored, Counter,                                                             \
    "sessions not kept because the stored-session limit was reached")                              \
  X(mqtt_publish_received, Counter, "PUBLISH packets from local clients")                          \
  X(mqtt_publish_delivered, Counter, "PUBLISH packets queued to local subscribers")                \
  X(mqtt_publish_dropped_slow, Counter,                                                            \
    "PUBLISH copies dropped because a subscriber's queue was full")                                \
  X(mqtt_publish_dropped_too_large, Counter,                                                       \
    "PUBLISH copies over a v5 client's Maximum Packet Size")                                       \
  X(mqtt_publish_dropped_queue_full, Counter,                                                      \
    "messages a session could not queue: --max-queued-messages or --max-queued-bytes reached")     \
  X(mqtt_publish_dropped_expired, Counter,                                                         \
    "messages whose v5 Message Expiry Interval passed while they waited in a session's queue")     \
  X(mqtt_inflight_messages, Gauge,                                                                 \
    "QoS 1 and 2 messages sent to clients and not yet acknowledged")                               \
  X(mqtt_queued_messages, Gauge,                                                                   \
    "messages waiting in sessions' queues (client away, or its in-flight window full)")            \
  X(mqtt_wills_published, Counter, "will messages published")                                      \
  X(mqtt_retained_topics, Gauge, "topics with a retained message now (a gauge)")                   \
  X(mqtt_retained_sent, Counter,                                                                   \
    "retained messages sent to new subscribers and subscribing peers")                             \
  X(mqtt_retained_refused, Counter,                                                                \
    "retained messages not stored: the retained-topic limit was reached")                          \
  X(mqtt_subscriptions, Counter, "topic filters subscribed")                                       \
  X(mqtt_unsubscriptions, Counter, "topic filters unsubscribed")                                   \
  X(mqtt_clients_online, Gauge, "clients connected now (past CONNECT)")                            \
  X(mqtt_sessions_offline, Gauge, "persistent sessions stored for clients not connected now")      \
  X(mqtt_subscriptions_active, Gauge, "topic filters subscribed by local sessions now")            \
  X(mqtt_shared_subscriptions_active, Gauge,                                                       \
    "shared subscriptions ($share/NAME/FILTER) of local sessions now")                             \
  X(mqtt_retained_bytes, Gauge, "payload bytes of the retained messages now")                      \
  X(mqtt_queued_bytes, Gauge, "bytes queued toward local clients and not yet acknowledged now")    \
  X(mqtt_bytes_received, Counter, "bytes of MQTT packets read from local clients")                 \
  X(mqtt_bytes_sent, Counter, "bytes of MQTT packets queued to local clients")                     \
  X(mqtt_payload_bytes_received, Counter, "PUBLISH payload bytes from local clients")              \
  X(mqtt_payload_bytes_sent, Counter, "PUBLISH payload bytes queued to local clients")             \
  X(mqtt_connect_received, Counter, "CONNECT packets read (accepted or refused)")                  \
  X(mqtt_connack_sent, Counter, "CONNACK packets sent")                                            \
  X(mqtt_publish_sent, Counter, "PUBLISH packets queued to local clients (live and retained)")     \
  X(mqtt_puback_received, Counter, "PUBACK packets read")                                          \
  X(mqtt_puback_sent, Counter, "PUBACK packets sent")                                              \
  X(mqtt_pubrec_received, Counter, "PUBREC packets read")                                          \
  X(mqtt_pubrec_sent, Counter, "PUBREC packets sent")                                              \
  X(mqtt_pubrel_received, Counter, "PUBREL packets read")                                          \
  X(mqtt_pubrel_sent, Counter, "PUBREL packets sent")                                              \
  X(mqtt_pubcomp_received, Counter, "PUBCOMP packets read")                                        \
  X(mqtt_pubcomp_sent, Counter, "PUBCOMP packets sent")                                            \
  X(mqtt_subscribe_received, Counter, "SUBSCRIBE packets read")                                    \
  X(mqtt_suback_sent, Counter, "SUBACK packets sent")                                              \
  X(mqtt_unsubscribe_received, Counter, "UNSUBSCRIBE packets read")                                \
  X(mqtt_unsuback_sent, Counter, "UNSUBACK packets sent")                                          \
  X(mqtt_pingreq_received, Counter, "PINGREQ packets read")                                        \
  X(mqtt_pingresp_sent, Counter, "PINGRESP packets sent")                                          \
  X(mqtt_disconnect_sent, Counter, "DISCONNECT packets sent (v5: the server ends a session)")      \
  X(mqtt_auth_received, Counter, "AUTH packets read (enhanced authentication is refused)")         \
  X(mqtt_auth_success, Counter, "CONNECTs whose username and password were accepted")              \
  X(mqtt_auth_fail, Counter, "CONNECTs refused for their username or password")                    \
  X(proxy_protocol_headers, Counter, "PROXY protocol headers accepted (PROXY command)")            \
  X(proxy_protocol_local, Counter, "PROXY protocol LOCAL headers accepted (health checks)")        \
  X(proxy_protocol_invalid, Counter, "connections closed for a malformed or missing PROXY header") \
  X(proxy_protocol_timeouts, Counter, "connections closed: no complete PROXY header in time")      \
  X(proxy_protocol_untrusted, Counter,                                                             \
    "connections closed: not from a --proxy-protocol-from address")                                \
  X(proxy_protocol_insecure, Counter,                                                              \
    "connections closed: TLS or a verified client certificate required and not reported")          \
  X(ws_upgrades, Counter, "WebSocket handshakes accepted (101 sent)")                              \
  X(ws_upgrades_refused, Counter, "WebSocket handshakes refused with an HTTP error")               \
  X(ws_handshake_timeouts, Counter, "WebSocket connections closed: no Upgrade request in time")    \
  X(ws_protocol_errors, Counter,                                                                   \
    "WebSocket connections failed for a frame they sent (close code)")                             \
  X(upstream_connections, Counter, "connections to the --upstream broker established")             \
  X(upstream_connect_failures, Counter,                                                            \
    "connections to the --upstream broker that failed or timed out before they were up")           \
  X(upstream_lost, Counter, "established connections to the --upstream broker it closed or broke") \
  X(peer_datagrams_in, Counter, "datagrams from configured peers")                                 \
  X(peer_datagrams_out, Counter, "datagrams sent to peers")                                        \
  X(peer_datagrams_unknown_source, Counter,                                                        \
    "datagrams from addresses that are not peers (ignored)")                                       \
  X(peer_datagrams_malformed, Counter,                                                             \
    "peer datagrams with a malformed packet (the rest is dropped)")                                \
  X(peer_publish_in, Counter, "PUBLISH packets from peers")                                        \
  X(peer_publish_out, Counter, "PUBLISH packets sent to peers")                                    \
  X(peer_publish_too_large, Counter, "PUBLISH packets too large for one datagram (not forwarded)") \
  X(peer_subscribe_in, Counter, "topic filters peers subscribed")                                  \
  X(peer_subscribe_out, Counter, "SUBSCRIBE datagrams sent")                                       \
  X(peer_unsubscribe_in, Counter, "topic filters peers unsubscribed")                              \
  X(peer_unsubscribe_out, Counter, "UNSUBSCRIBE datagrams sent")                                   \
  X(peer_hello_in, Counter, "extension HELLOs from peers")                                         \
  X(peer_hello_out, Counter, "extension HELLOs sent")                                              \
  X(peer_credit_in, Counter, "extension CREDITs from peers")                                       \
  X(peer_credit_out, Counter, "extension CREDITs sent")                                            \
  X(peer_blocked_in, Counter, "extension BLOCKED probes from peers out of our credit")             \
  X(peer_blocked_out, Counter, "extension BLOCKED probes sent to peers whose credit ran out")      \
  X(peer_extension_unknown, Counter, "type-15 packets from peers of an unknown kind or version")   \
  X(peer_marks_out, Counter, "DATA headers without PUBLISH sent after a burst, for tail losses")   \
  X(peer_publish_waited, Counter, "PUBLISH packets that waited for a peer's credit or its pacer")  \
  X(peer_publish_dropped, Counter,                                                                 \
    "PUBLISH packets not sent: the peer was stuck or too far behind")                              \
  X(peer_datagrams_lost, Counter, "datagrams from peers that never arrived (sequence gaps)")       \
  X(peer_publish_lost, Counter, "PUBLISH packets in datagrams from peers that never arrived")      \
  X(peer_datagrams_late, Counter, "datagrams that came after later ones, already counted lost")    \
  X(peer_datagrams_repeated, Counter, "datagrams that came twice (the copy is dropped)")           \
  X(peer_refreshes, Counter, "filters resent to every peer by the periodic refresh")               \
  X(peer_datagrams_unauthenticated, Counter,                                                       \
    "datagrams from peers rejected: unsigned, or a signature no key verifies")                     \
  X(peer_datagrams_stale, Counter,                                                                 \
    "signed datagrams from peers for another run of ours (sent before they heard we restarted)")   \
  X(peer_datagrams_replayed, Counter, "signed datagrams from peers rejected as copies or too old") \
  X(peers_up, Gauge, "capable peers heard from within the liveness timeout")                       \
  X(peer_resyncs, Counter,                                                                         \
    "times all our filters were sent again to a peer: restarted, returned, or it asked")           \
  X(peer_interest_mismatches, Counter,                                                             \
    "times a peer's digest disagreed with the filters we held for it (we asked for all)")          \
  X(peer_interest_expired, Counter,                                                                \
    "peer filters forgotten: the peer restarted, went silent past the expiry, or no longer had "   \
    "them")                                                                                        \
  X(m2m_requests_sent, Counter, "MQTT2MULTICAST REQUESTs sent to the controller")                  \
  X(m2m_request_retransmits, Counter, "REQUESTs sent again (no REPLY in time)")                    \
  X(m2m_requests_unanswered, Counter, "REQUESTs given up after every try")                         \
  X(m2m_replies_received, Counter, "REPLYs that answered a REQUEST of ours")                       \
  X(m2m_replies_ignored, Counter,                                                                  \
    "datagrams to the REQUEST port that answered nothing of ours (late, forged, malformed)")       \
  X(m2m_refreshes, Counter, "announcements sent again before the controller's flows expire")       \
  X(m2m_topics_refused, Counter, "topics not multicast: the topic limit was reached")              \
  X(m2m_publish_out, Counter, "PUBLISH datagrams sent to a topic's multicast group")               \
  X(m2m_publish_queued, Counter, "PUBLISH packets held while their topic's address was pending")   \
  X(m2m_publish_dropped, Counter,                                                                  \
    "PUBLISH packets not multicast: no address came, the queue was full, or too large")            \
  X(m2m_publish_in, Counter, "PUBLISH packets received by multicast")                              \
  X(m2m_datagrams_rejected, Counter,                                                               \
    "multicast datagrams dropped: sender off the SDN segment, or not one PUBLISH")                 \
  X(m2m_datagrams_from_peers, Counter,                                                             \
    "multicast datagrams from -F peers, dropped (those peers deliver by unicast)")                 \
  X(flow_sinks_congested, Counter, "times a subscriber or peer passed the high-water mark")        \
  X(flow_sources_paused, Counter, "times a publisher or peer was paused by a congested one")       \
  X(flow_sinks_stuck, Counter,                                                                     \
    "times a congested subscriber or peer made no progress for the grace")                         \
  X(capture_dropped, Counter, "frames the capture ring had no room for (libpcap ps_drop)")         \
  X(capture_if_dropped, Counter, "frames the interface or driver dropped (libpcap ps_ifdrop)")     \
  X(capture_truncated, Counter,                                                                    \
    "frames longer than the snap length, cut (TCP retransmits what they carried)")                 \
  X(inject_frames_sent, Counter, "frames sent on AF_PACKET sockets")                               \
  X(inject_frames_failed, Counter, "frames the AF_PACKET send refused (TCP retransmits them)")     \
  X(inject_send_calls, Counter, "sendmmsg calls for frames")                                       \
  X(peer_datagrams_send_failed, Counter, "datagrams to peers the UDP socket refused")

enum class Kind { kCounter, kGauge };

// Each part of the proxy writes only its own fields (the core, the capture, the injector), so the
// whole is the sum of the parts' instances.
struct Counters {
#define MQTT_PROXY_DECLARE_COUNTER(name, kind, help) std::uint64_t name = 0;
  MQTT_PROXY_COUNTERS(MQTT_PROXY_DECLARE_COUNTER)
#undef MQTT_PROXY_DECLARE_COUNTER

  Counters& operator+=(const Counters& o) {
#define MQTT_PROXY_ADD_COUNTER(name, kind, help) name += o.name;
    MQTT_PROXY_COUNTERS(MQTT_PROXY_ADD_COUNTER)
#undef MQTT_PROXY_ADD_COUNTER
    return *this;
  }

  // Calls fn(name, kind, help, value) for every counter, in declaration order.
  template <typename Fn>
  void for_each(Fn&& fn) const {
#define MQTT_PROXY_VISIT_COUNTER(name, kind, help) \
  fn(std::string_view(#name), Kind::k##kind, std::string_view(help), name);
    MQTT_PROXY_COUNTERS(MQTT_PROXY_VISIT_COUNTER)
#undef MQTT_PROXY_VISIT_COUNTER
  }
};

}  // namespace mqtt_proxy::metrics
