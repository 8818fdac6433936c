#include "mqtt_proxy/core/proxy_core.hpp"

#include <algorithm>

#include "mqtt_proxy/wire/datagram.hpp"

namespace mqtt_proxy::core {

using namespace wire::tcp_flags;

namespace {
constexpr std::string_view kLog = "tcp";

// A cookie answers ACKs for about two 64 s slots; after that no ACK can carry a valid one.
constexpr Duration kCookieLifetime = std::chrono::seconds(130);
}  // namespace

// A WebSocket client's state beside its TCP endpoint: the codec, the MQTT bytes it unmasked that
// the broker has not read yet (at most a receive buffer's worth: beyond, the rest stays in the TCP
// receive buffer and the window closes), and whom the session is for once the handshake is done.
struct WsState {
  ws::ServerConnection conn;
  Bytes app;
  ingress::ClientOrigin origin;
  bool closed = false;  // the codec's Closed was acted on (counted, FIN, the broker told)
  WsState(const ws::Config& cfg, const ingress::ClientOrigin& o) : conn(cfg), origin(o) {
    origin.websocket = true;
  }
};

struct ProxyCore::Connection {
  std::uint64_t id = 0;
  tcp::ConnKey key;
  std::size_t iface = 0;
  wire::MacAddress peer_mac;
  tcp::Endpoint ep;
  bool dirty = false;
  bool broker_open = false;      // the broker has a session for it
  bool half_open = false;        // counted in half_open_ until ESTABLISHED or freed
  bool redeliver = false;        // unread bytes wait for the broker (it paused this client)
  bool peer_fin = false;         // the client's FIN came; handled once the broker read what it sent
  bool awaiting_header = false;  // PROXY protocol: the header is not complete yet
  bool health_check = false;     // PROXY LOCAL while TLS is required: may not speak MQTT
  std::optional<TimePoint> scheduled_at;
  std::unique_ptr<WsState> ws;  // a --ws-port connection, from ESTABLISHED (or its PROXY header)

  explicit Connection(tcp::Endpoint e) : ep(std::move(e)) {}
  // The client, for log lines (not kept as a string: that would cost every connection 64 bytes).
  wire::SocketAddress label() const { return key.remote(); }
};

class ProxyCore::ConnOutbox final : public tcp::Outbox {
 public:
  ConnOutbox(ProxyCore& core, const Connection& c) : core_(core), c_(c) {}
  void emit(const tcp::SegmentOut& s) override {
    const auto& ifc = core_.cfg_.interfaces[c_.iface];
    wire::TcpFrameSpec spec;
    spec.src_mac = ifc.mac;
    spec.dst_mac = c_.peer_mac;
    spec.src_ip = c_.key.local_ip;
    spec.dst_ip = c_.key.remote_ip;
    spec.src_port = c_.key.local_port;
    spec.dst_port = c_.key.remote_port;
    spec.seq = s.seq;
    spec.ack = s.ack;
    spec.flags = s.flags;
    spec.window = s.window;
    spec.mss = s.mss;
    spec.window_scale = s.wscale;
    spec.payload = s.payload;
    core_.emit_frame(c_.iface, spec);
    if (s.flags & kRst) core_.log_.debug(kLog, "RST sent to {}", c_.label());
  }

 private:
  ProxyCore& core_;
  const Connection& c_;
};

ProxyCore::ProxyCore(CoreConfig cfg, log::Logger& log)
    : cfg_(std::move(cfg)),
      log_(log),
      flow_(cfg_.flow, counters_),
      peering_(cfg_.peering, log, counters_, &flow_),
      broker_(cfg_.broker, *this, peering_, log, counters_, &flow_),
      isn_(cfg_.secret),
      cookies_(cfg_.secret),
      by_key_(64, tcp::ConnKeyHash{cfg_.secret}) {
  if (cfg_.m2m) {
    m2m_ = std::make_unique<m2m::Client>(*cfg_.m2m, log, counters_);
    broker_.set_multicast(m2m_.get());
  }
}

ProxyCore::~ProxyCore() = default;

upstream::LinkEvents& ProxyCore::attach_upstream(upstream::Link& link) {
  if (!cfg_.upstream) cfg_.upstream.emplace();  // the defaults, rather than undefined behaviour
  broker::BrokerHost& clients = *this;          // the relays reach clients as the broker does
  sessions_ = std::make_unique<upstream::Sessions>(*cfg_.upstream, clients, link, log_, counters_);
  return *sessions_;
}

void ProxyCore::start(TimePoint now) {
  peering_.start(now);
  if (m2m_) m2m_->start(now);
}

ProxyCore::Connection* ProxyCore::find(std::uint64_t id) const {
  auto it = conns_.find(id);
  return it == conns_.end() ? nullptr : it->second.get();
}

void ProxyCore::mark_dirty(Connection& c) {
  if (c.dirty) return;
  c.dirty = true;
  dirty_.push_back(c.id);
}

bool ProxyCore::is_local_address(std::size_t iface, wire::Ipv4Address a) const {
  const auto& addrs = cfg_.interfaces[iface].addresses;
  return std::find(addrs.begin(), addrs.end(), a) != addrs.end();
}

void ProxyCore::emit_frame(std::size_t iface, const wire::TcpFrameSpec& spec) {
  wire::TcpFrameSpec s = spec;
  s.ip_id = ip_id_++;
  auto buf = frames_.add(iface, wire::tcp_frame_size(s));
  wire::emit_tcp_frame(s, buf);
  ++counters_.tcp_segments_out;
}

wire::TcpFrameSpec ProxyCore::reply_to(std::size_t iface, const wire::EthernetView& eth,
                                       const wire::Ipv4View& ip, const wire::TcpView& tcp) const {
  wire::TcpFrameSpec s;
  s.src_mac = cfg_.interfaces[iface].mac;
  s.dst_mac = eth.src();
  s.src_ip = ip.dst();
  s.dst_ip = ip.src();
  s.src_port = tcp.dst_port();
  s.dst_port = tcp.src_port();
  return s;
}

void ProxyCore::send_stateless_reset(std::size_t iface, const wire::EthernetView& eth,
                                     const wire::Ipv4View& ip, const wire::TcpView& tcp) {
  // RFC 9293 3.10.7.1 (CLOSED): with ACK set, <SEQ=SEG.ACK><CTL=RST>; without ACK,
  // <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
  wire::TcpFrameSpec s = reply_to(iface, eth, ip, tcp);
  if (tcp.flags() & kAck) {
    s.seq = tcp.ack();
    s.flags = kRst;
  } else {
    const auto len = static_cast<std::uint32_t>(tcp.payload().size()) +
                     ((tcp.flags() & kSyn) ? 1u : 0u) + ((tcp.flags() & kFin) ? 1u : 0u);
    s.ack = tcp.seq() + len;
    s.flags = kRst | kAck;
  }
  emit_frame(iface, s);
  ++counters_.tcp_resets_sent;
}

void ProxyCore::send_cookie_synack(std::size_t iface, const wire::EthernetView& eth,
                                   const wire::Ipv4View& ip, const wire::TcpView& tcp,
                                   const tcp::ConnKey& key, TimePoint now) {
  const auto ecfg = endpoint_config(iface);
  wire::TcpFrameSpec s = reply_to(iface, eth, ip, tcp);
  const std::uint16_t peer_mss = tcp.options().mss.value_or(536);
  s.seq = cookies_.make(key, tcp.seq(), peer_mss, now);
  s.ack = tcp.seq() + 1u;
  s.flags = kSyn | kAck;
  s.window = static_cast<std::uint16_t>(std::min<std::uint32_t>(ecfg.rcv_buffer, 0xffff));
  s.mss = ecfg.local_mss;
  emit_frame(iface, s);
  ++counters_.tcp_syn_cookies_sent;
  last_cookie_sent_ = now;
  if (cookie_log_suppressed_++ % 10000 == 0) {
    log_.warn(kLog,
              "half-open connections at the limit {}: answering SYNs with SYN cookies ({} so far)",
              cfg_.max_half_open, counters_.tcp_syn_cookies_sent);
  }
}

tcp::EndpointConfig ProxyCore::endpoint_config(std::size_t iface) const {
  tcp::EndpointConfig ecfg = cfg_.tcp;
  const auto mtu = cfg_.interfaces[iface].mtu;
  ecfg.local_mss = static_cast<std::uint16_t>(std::clamp<std::uint32_t>(mtu, 576, 65535) - 40);
  return ecfg;
}

ProxyCore::Connection& ProxyCore::add_connection(tcp::Endpoint ep, const tcp::ConnKey& key,
                                                 std::size_t iface, const wire::EthernetView& eth) {
  auto conn = std::make_unique<Connection>(std::move(ep));
  conn->id = next_id_++;
  conn->key = key;
  conn->iface = iface;
  conn->peer_mac = eth.src();
  Connection& c = *conn;
  by_key_.emplace(key, c.id);
  conns_.emplace(c.id, std::move(conn));
  mark_dirty(c);
  return c;
}

bool ProxyCore::refuse_over_limit(const tcp::ConnKey& key) {
  if (conns_.size() < cfg_.max_connections) return false;
  ++counters_.tcp_connection_limit_hits;
  if (limit_log_suppressed_++ % 1000 == 0) {
    log_.warn(kLog, "connection limit {} reached: refusing {} ({} refused so far)",
              cfg_.max_connections, key.remote(), counters_.tcp_connection_limit_hits);
  }
  return true;
}

void ProxyCore::on_frame(std::size_t iface, ByteSpan frame, TimePoint now) {
  ++counters_.frames_received;
  if (iface >= cfg_.interfaces.size()) return;
  const auto eth = wire::EthernetView::parse(frame);
  if (!eth) {
    ++counters_.frames_malformed;
    return;
  }
  if (m2m_ && iface == cfg_.m2m_iface && on_m2m_frame(*eth, now)) return;
  // A learning switch floods unknown unicast, so frames for other hosts do reach us.
  if (eth->ether_type() != wire::kEtherTypeIpv4 || eth->dst() != cfg_.interfaces[iface].mac) {
    ++counters_.frames_not_for_us;
    return;
  }
  const auto ip = wire::Ipv4View::parse(eth->payload());
  if (!ip) {
    ++counters_.frames_malformed;
    return;
  }
  if (ip->protocol() != wire::kIpProtoTcp || !is_local_address(iface, ip->dst())) {
    ++counters_.frames_not_for_us;
    return;
  }
  if (ip->is_fragment()) {
    ++counters_.ip_fragments_dropped;
    return;
  }
  const auto tcp = wire::TcpView::parse(ip->payload());
  if (!tcp) {
    ++counters_.frames_malformed;
    return;
  }
  if (tcp->dst_port() != cfg_.tcp_port && (cfg_.ws_port == 0 || tcp->dst_port() != cfg_.ws_port)) {
    ++counters_.frames_not_for_us;
    return;
  }
  if (!tcp->checksum_ok(ip->src(), ip->dst())) {
    ++counters_.tcp_checksum_mismatch;
    if (cfg_.verify_checksums) return;
  }
  ++counters_.tcp_segments_in;

  const tcp::ConnKey key{ip->src(), tcp->src_port(), ip->dst(), tcp->dst_port()};
  const std::uint8_t flags = tcp->flags();
  tcp::SegmentIn seg;
  seg.seq = tcp->seq();
  seg.ack = tcp->ack();
  seg.flags = flags;
  seg.window = tcp->window();
  seg.payload = tcp->payload();
  const bool pure_syn = (flags & (kSyn | kAck | kRst | kFin)) == kSyn;
  if (pure_syn) {
    const auto opts = tcp->options();
    seg.mss = opts.mss;
    seg.wscale = opts.window_scale;
  }

  Connection* c = nullptr;
  if (auto it = by_key_.find(key); it != by_key_.end()) c = find(it->second);

  // A new SYN on a 4-tuple in TIME-WAIT starts a new connection when it is beyond the old one.
  if (c && pure_syn && c->ep.state() == tcp::State::TimeWait && seg.seq > c->ep.rcv_nxt()) {
    log_.debug(kLog, "{}: SYN reuses a connection in TIME-WAIT", c->label());
    erase(*c);
    c = nullptr;
  }

  if (!c) {
    if (flags & kRst) return;
    if (pure_syn) {
      if (refuse_over_limit(key)) {
        send_stateless_reset(iface, *eth, *ip, *tcp);
      } else if (half_open_ >= cfg_.max_half_open) {
        send_cookie_synack(iface, *eth, *ip, *tcp, key, now);
      } else {
        const wire::Seq iss = isn_fn_ ? isn_fn_(key, now) : isn_.generate(key, now);
        Connection& n = add_connection(tcp::Endpoint(endpoint_config(iface), seg, iss, counters_),
                                       key, iface, *eth);
        n.half_open = true;
        ++half_open_;
        log_.debug(kLog, "{}: SYN, new connection (mss {} -> {}, wscale {})", n.label(),
                   seg.mss.value_or(0), n.ep.effective_mss(), n.ep.snd_wscale());
      }
      return;
    }
    if ((flags & (kAck | kSyn)) == kAck && last_cookie_sent_ &&
        now - *last_cookie_sent_ <= kCookieLifetime) {
      if (auto mss = cookies_.check(key, seg.seq, seg.ack, now)) {
        if (refuse_over_limit(key)) {
          send_stateless_reset(iface, *eth, *ip, *tcp);
          return;
        }
        ++counters_.tcp_syn_cookies_accepted;
        c = &add_connection(
            tcp::Endpoint::from_cookie(endpoint_config(iface), seg, seg.ack - 1u, *mss, counters_),
            key, iface, *eth);
        log_.debug(kLog, "{}: connection from a SYN cookie (mss {})", c->label(), *mss);
      }
    }
    if (!c) {
      if (flags & kAck) send_stateless_reset(iface, *eth, *ip, *tcp);
      return;
    }
  }

  ConnOutbox out(*this, *c);
  c->ep.on_segment(seg, now, out);
  mark_dirty(*c);
}

bool ProxyCore::on_m2m_frame(const wire::EthernetView& eth, TimePoint now) {
  const auto& cfg = *cfg_.m2m;
  if (eth.ether_type() == wire::kEtherTypeArp) {
    const auto arp = wire::Arp::parse(eth.payload());
    if (arp && arp->operation == 2 && arp->target_ip == cfg.address) {
      m2m_->on_arp_reply(arp->sender_ip, arp->sender_mac, now);
    }
    return true;  // the capture filter admits only ARP from the controller's address
  }
  if (eth.ether_type() != wire::kEtherTypeIpv4) return false;
  const auto ip = wire::Ipv4View::parse(eth.payload());
  if (!ip || ip->protocol() != wire::kIpProtoUdp || ip->is_fragment()) return false;
  const auto udp = wire::UdpView::parse(ip->payload());
  if (!udp) return false;
  const bool reply = ip->dst() == cfg.address && udp->dst_port() == cfg.client_port;
  const bool data = wire::is_multicast(ip->dst()) && udp->dst_port() == cfg.data_port;
  if (!reply && !data) return false;
  // As for TCP: a sender with transmit offload leaves the checksum to a NIC that a veth lacks,
  // so a mismatch is fatal only where offload is known to be off.
  if (cfg_.verify_checksums && !udp->checksum_ok(ip->src(), ip->dst())) {
    ++(reply ? counters_.m2m_replies_ignored : counters_.m2m_datagrams_rejected);
    log_.debug("m2m", "datagram from {} with a wrong UDP checksum dropped", ip->src());
    return true;
  }
  if (reply) {
    m2m_->on_reply(ip->src(), udp->src_port(), udp->payload(), now);
    return true;
  }
  if (peering_.is_peer(ip->src())) {
    // A -F peer sends to us by unicast as well (our SUBSCRIBE reached it): one copy is enough,
    // and the unicast one has sequence numbers and flow control.
    ++counters_.m2m_datagrams_from_peers;
    return true;
  }
  if (auto p = m2m_->on_datagram(ip->src(), ip->dst(), udp->payload())) {
    broker_.on_peer_publish(*p, flow::kNone, now);
  }
  return true;
}

void ProxyCore::on_peer_datagram(wire::Ipv4Address src, ByteSpan data, TimePoint now) {
  const auto index = peering_.index_of(src);
  const flow::Id source = index ? flow::peer(*index) : flow::kNone;
  for (const auto& p : peering_.on_datagram(src, data, now)) {
    broker_.on_peer_publish(p, source, now);
  }
  auto& interest = peering_.new_interest();
  for (const auto& i : interest) broker_.on_peer_interest(i.peer, i.filter, now);
  interest.clear();
}

void ProxyCore::on_timers(TimePoint now) {
  timers_.pop_due(now, [&](TimePoint t, std::uint64_t id) {
    Connection* c = find(id);
    if (!c || !c->scheduled_at || *c->scheduled_at != t) return;
    c->scheduled_at.reset();
    ConnOutbox out(*this, *c);
    c->ep.on_timer(now, out);
    mark_dirty(*c);  // reschedules, and reports events, in flush()
  });
  header_timers_.pop_due(now, [&](TimePoint, std::uint64_t id) {
    Connection* c = find(id);
    if (!c || !c->awaiting_header || c->ep.is_closed()) return;
    refuse_connection(*c, counters_.proxy_protocol_timeouts,
                      fmt::format("no complete PROXY header within {} ms",
                                  std::chrono::duration_cast<std::chrono::milliseconds>(
                                      cfg_.proxy_protocol->header_timeout)
                                      .count()));
  });
  ws_timers_.pop_due(now, [&](TimePoint, std::uint64_t id) {
    Connection* c = find(id);
    if (!c || !c->ws || c->ws->conn.state() != ws::ServerConnection::State::Handshake ||
        c->ep.is_closed()) {
      return;
    }
    ++counters_.ws_handshake_timeouts;
    log_.info(kLog, "{}: WebSocket connection closed: no complete Upgrade request within {} ms",
              c->label(),
              std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.ws_timeout).count());
    ws_scratch_.clear();
    c->ws->conn.close(ws::close_code::kNormal, "", ws_scratch_);  // nothing to send yet
    c->ws->closed = true;  // counted here, not again as a refused handshake
    c->ep.consume(c->ep.received().size());
    c->ep.close();
    mark_dirty(*c);
  });
  broker_.on_timers(now);
  if (sessions_) sessions_->on_timers(now);
  peering_.on_timers(now);
  if (m2m_) m2m_->on_timers(now);
}

void ProxyCore::handle_events(Connection& c, TimePoint now) {
  const std::uint8_t ev = c.ep.take_events();
  if (ev == 0 && !c.redeliver) return;
  if (ev & tcp::event::kEstablished) {
    if (c.half_open) {
      c.half_open = false;
      --half_open_;
    }
    ++counters_.tcp_connections_accepted;
    log_.debug(kLog, "{}: ESTABLISHED", c.label());
    if (cfg_.proxy_protocol) {
      await_proxy_header(c, now);
    } else {
      start_transport(c, c.key.remote(), now);
    }
  }
  if (ev & tcp::event::kPeerFin) {
    log_.debug(kLog, "{}: FIN received", c.label());
    c.peer_fin = true;
  }
  const bool offer = (ev & tcp::event::kData) || c.redeliver;
  c.redeliver = false;
  if ((offer || c.peer_fin) && c.awaiting_header) read_proxy_header(c, now);
  if (offer && c.health_check && !c.ep.received().empty()) {
    refuse_connection(c, counters_.proxy_protocol_insecure,
                      "a LOCAL (health check) connection sent data, and TLS is required");
  }
  if (c.ws) {
    if (offer) read_websocket(c, now);
  } else if (offer && c.broker_open) {
    // What the broker does not take (backpressure, a small incomplete frame) stays in the
    // receive buffer and narrows the window the client sees.
    c.ep.consume(session_data(c, c.ep.received(), now));
  } else if (offer && !c.awaiting_header) {
    c.ep.consume(c.ep.received().size());  // the session is gone; nobody reads this any more
  }
  std::string_view lost;
  // A client that sent a burst and closed (mosquitto_pub -l) must not lose what waits unread
  // behind backpressure: its FIN counts once the broker has read everything before it.
  if (c.peer_fin && !(c.broker_open && fin_waits(c))) {
    c.peer_fin = false;
    lost = "client closed the connection";
    c.ep.close();  // answer the half-close with our FIN once queued data is out
  }
  if (ev & tcp::event::kReset) {
    ++counters_.tcp_resets_received;
    log_.debug(kLog, "{}: RST received", c.label());
    lost = "connection reset by client";
  }
  if (ev & tcp::event::kTimedOut) {
    ++counters_.tcp_timeouts;
    log_.info(kLog, "{}: retransmissions exhausted, connection aborted", c.label());
    lost = "TCP retransmission timeout";
  }
  if (ev & tcp::event::kStalled) {
    ++counters_.tcp_stalls;
    log_.info(kLog,
              "{}: queued data unacknowledged for {} s (client not reading or gone), connection "
              "aborted",
              c.label(),
              std::chrono::duration_cast<std::chrono::seconds>(cfg_.tcp.user_timeout).count());
    lost = "no progress sending to the client (stall timeout)";
  }
  if ((ev & tcp::event::kClosed) && lost.empty()) lost = "connection closed";
  if (!lost.empty() && c.broker_open) lose_session(c, lost, now);
}

void ProxyCore::open_session(Connection& c, const ingress::ClientOrigin& origin, TimePoint now) {
  c.broker_open = true;
  if (sessions_) {
    sessions_->on_open(c.id, origin, now);
  } else {
    broker_.on_open(c.id, origin, now);
  }
}

std::size_t ProxyCore::session_data(Connection& c, ByteSpan data, TimePoint now) {
  return sessions_ ? sessions_->on_data(c.id, data, now) : broker_.on_data(c.id, data, now);
}

void ProxyCore::lose_session(Connection& c, std::string_view why, TimePoint now) {
  c.broker_open = false;
  if (sessions_) {
    sessions_->on_lost(c.id, why, now);
  } else {
    broker_.on_lost(c.id, why, now);
  }
}

bool ProxyCore::fin_waits(const Connection& c) {
  if (sessions_) return sessions_->hold(c.id, c.ws ? !c.ws->app.empty() : !c.ep.received().empty());
  // A paused client waits whatever its buffers hold: the broker may keep the start of a long
  // frame itself.
  return flow_.is_paused(flow::client(c.id));
}

void ProxyCore::start_transport(Connection& c, const ingress::ClientOrigin& origin, TimePoint now) {
  if (cfg_.ws_port == 0 || c.key.local_port != cfg_.ws_port) {
    open_session(c, origin, now);
    return;
  }
  // The broker hears of the client once the Upgrade is accepted: an HTTP request that is refused
  // (a port scanner, a browser on the wrong path) never was an MQTT session.
  c.ws = std::make_unique<WsState>(cfg_.ws, origin);
  ws_timers_.push(now + cfg_.ws_timeout, c.id);
}

void ProxyCore::send_ws_output(Connection& c, Bytes& out) {
  if (!out.empty() && c.ep.can_send()) c.ep.send(out);
  out.clear();
}

void ProxyCore::read_websocket(Connection& c, TimePoint now) {
  using State = ws::ServerConnection::State;
  WsState& w = *c.ws;
  // What the broker left (it was paused, or a frame is incomplete) goes first.
  const auto to_broker = [&] {
    if (!c.broker_open || w.app.empty()) return;
    const std::size_t n = session_data(c, w.app, now);
    w.app.erase(w.app.begin(), w.app.begin() + static_cast<std::ptrdiff_t>(n));
  };
  to_broker();
  // The unmasked bytes the broker has yet to read are bounded by what TCP would have held for it.
  const std::size_t cap = std::max<std::size_t>(cfg_.tcp.rcv_buffer, 4096);
  while (w.conn.state() != State::Closed && !c.ep.received().empty()) {
    const State before = w.conn.state();
    const std::size_t room = w.app.size() < cap ? cap - w.app.size() : 0;
    // Pongs wait while the queue toward the client is as long as the broker lets it grow for
    // messages: one segment's pongs at most beyond that limit.
    w.conn.answer_pings(c.ep.queued_bytes() < cfg_.broker.max_queued_bytes);
    const std::size_t n = w.conn.feed(c.ep.received(), room, w.app, ws_scratch_);
    c.ep.consume(n);
    send_ws_output(c, ws_scratch_);
    if (before == State::Handshake && w.conn.state() == State::Open) {
      ++counters_.ws_upgrades;
      log_.debug(kLog, "{}: WebSocket open (path {}, subprotocol {})", c.label(),
                 w.conn.request().path,
                 w.conn.request().subprotocol.empty() ? "none" : w.conn.request().subprotocol);
      open_session(c, w.origin, now);
    }
    to_broker();
    if (n == 0) break;  // the broker's room ran out inside a payload: TCP holds the rest
  }
  if (w.conn.state() != State::Closed || w.closed) return;
  c.ep.consume(c.ep.received().size());  // discarded from now on
  // What came before the Close is the client's too (MQTT.js sends DISCONNECT, then the Close at
  // once): a broker that is paused reads it first, as a TCP client's bytes before its FIN.
  if (c.broker_open && (sessions_ ? sessions_->hold(c.id, !w.app.empty())
                                  : !w.app.empty() && flow_.is_paused(flow::client(c.id)))) {
    return;
  }
  w.closed = true;
  std::string why;
  if (w.conn.http_status() != 101) {
    ++counters_.ws_upgrades_refused;
    log_.info(kLog, "{}: WebSocket handshake refused ({}): {}", c.label(), w.conn.http_status(),
              w.conn.error());
  } else if (w.conn.failed()) {
    ++counters_.ws_protocol_errors;
    log_.info(kLog, "{}: WebSocket failed (close {}): {}", c.label(), w.conn.close_code_sent(),
              w.conn.error());
    why = fmt::format("WebSocket: {}", w.conn.error());
  } else {
    why = w.conn.error();  // "client closed: 1000 ..."
  }
  c.ep.close();
  if (c.broker_open) lose_session(c, why, now);
}

void ProxyCore::refuse_connection(Connection& c, std::uint64_t& counter, std::string_view why) {
  ++counter;
  log_.info(kLog, "{}: connection refused: {}", c.label(), why);
  c.awaiting_header = false;
  c.health_check = false;
  c.ep.consume(c.ep.received().size());
  c.ep.close();  // a FIN: the load balancer (or the client) sees an orderly close
  mark_dirty(c);
}

void ProxyCore::await_proxy_header(Connection& c, TimePoint now) {
  const auto& pp = *cfg_.proxy_protocol;
  // Headers are believed only from the load balancer: from anyone else a header is a forged
  // address, and a connection without one bypasses the balancer (and its TLS).
  if (!ingress::is_trusted_source(pp, c.key.remote_ip)) {
    refuse_connection(
        c, counters_.proxy_protocol_untrusted,
        "PROXY protocol is on and this address is not a --proxy-protocol-from source");
    return;
  }
  c.awaiting_header = true;
  header_timers_.push(now + pp.header_timeout, c.id);
}

void ProxyCore::read_proxy_header(Connection& c, TimePoint now) {
  const auto& pp = *cfg_.proxy_protocol;
  const auto r = ingress::parse(c.ep.received(), pp.mode, pp.parser);
  if (std::holds_alternative<ingress::NeedMore>(r)) {
    if (c.peer_fin) {
      refuse_connection(c, counters_.proxy_protocol_invalid,
                        c.ep.received().empty() ? "closed without sending a PROXY header"
                                                : "closed before its PROXY header was complete");
    }
    return;
  }
  if (const auto* e = std::get_if<ingress::Error>(&r)) {
    refuse_connection(c, counters_.proxy_protocol_invalid, "PROXY header: " + e->reason);
    return;
  }
  const auto& done = std::get<ingress::Done>(r);
  const auto verdict = ingress::admit(pp, done.header, c.key.remote());
  if (const auto* no = std::get_if<ingress::Refused>(&verdict)) {
    refuse_connection(c, counters_.proxy_protocol_insecure, no->reason);
    return;
  }
  const auto& ok = std::get<ingress::Admitted>(verdict);
  c.awaiting_header = false;
  c.ep.consume(done.header_len);
  if (ok.local) {
    ++counters_.proxy_protocol_local;
    log_.debug(kLog, "{}: PROXY LOCAL (health check)", c.label());
    if (pp.require_tls || pp.require_certificate) {
      c.health_check = true;  // it may open and close; MQTT would bypass the TLS requirement
      return;
    }
  } else {
    ++counters_.proxy_protocol_headers;
    log_.debug(kLog, "{}: PROXY v{} for {}{}{}", c.label(), done.header.version, ok.origin.address,
               ok.origin.tls ? " over TLS" : "",
               ok.origin.certificate_cn.empty() ? "" : " cn=" + ok.origin.certificate_cn);
  }
  start_transport(c, ok.origin, now);
}

void ProxyCore::update_flow(TimePoint now) {
  if (flow_.congested_count() > 0) {
    watched_.clear();
    flow_.for_each_watched([&](flow::Id id) { watched_.push_back(id); });
    for (const flow::Id id : watched_) {
      if (flow::is_peer(id)) {
        const std::size_t i = flow::peer_index(id);
        flow_.update(id, peering_.pending_bytes(i), peering_.last_progress(i), now);
        if (flow_.is_stuck(id)) {
          if (peering_.pending_bytes(i) > 0) {
            log_.warn(kLog, "peer {} answers nothing: what waits for its credit is dropped",
                      peering_.peers()[i]);
          }
          peering_.drop_pending(i);
        }
        continue;
      }
      const Connection* c = find(id);
      if (!c) {
        flow_.remove(id);
        continue;
      }
      // SND.UNA last moved at stalled_since() (unset: nothing waits, the queue is empty).
      flow_.update(id, c->ep.queued_bytes(), c->ep.stalled_since().value_or(now), now);
    }
  }
  resume_sources(now);
}

void ProxyCore::redeliver(std::uint64_t id, TimePoint now) {
  if (Connection* c = find(id)) {
    c->redeliver = true;
    mark_dirty(*c);
    handle_events(*c, now);
  }
}

void ProxyCore::resume_sources(TimePoint now) {
  // Offering a client's bytes again may pause or release others in turn.
  while (!flow_.resumed().empty()) {
    resumed_.swap(flow_.resumed());
    for (const flow::Id id : resumed_) {
      if (flow::is_peer(id)) {
        peering_.resume(flow::peer_index(id));
      } else {
        redeliver(id, now);
      }
    }
    resumed_.clear();
  }
  // Upstream mode: a relay's queue drained, or the broker's CONNACK came.
  while (sessions_ && !sessions_->resumed().empty()) {
    resumed_.swap(sessions_->resumed());
    for (const std::uint64_t id : resumed_) redeliver(id, now);
    resumed_.clear();
  }
}

void ProxyCore::reschedule(Connection& c) {
  const auto d = c.ep.next_deadline();
  if (d && (!c.scheduled_at || *d < *c.scheduled_at)) {
    timers_.push(*d, c.id);
    c.scheduled_at = d;
  }
}

void ProxyCore::erase(Connection& c) {
  if (c.half_open) --half_open_;
  ++counters_.tcp_connections_closed;
  log_.debug(kLog, "{}: state freed ({})", c.label(), tcp::state_name(c.ep.state()));
  flow_.remove(flow::client(c.id));
  by_key_.erase(c.key);
  conns_.erase(c.id);  // destroys c
}

void ProxyCore::flush(TimePoint now) {
  update_flow(now);
  // Events first: the broker's reactions may queue bytes on other connections, which then also get
  // flushed below.
  for (std::size_t i = 0; i < dirty_.size(); ++i) {
    if (Connection* c = find(dirty_[i])) handle_events(*c, now);
  }
  if (sessions_) {
    // Upstream mode: ACKs made room in a client's queue for what its relay holds, which may let
    // the broker's socket be read again, and the client's unread bytes go on (resumed below).
    for (std::size_t i = 0; i < dirty_.size(); ++i) {
      if (Connection* c = find(dirty_[i]); c && c->broker_open) {
        sessions_->on_client_progress(c->id, now);
      }
    }
  }
  resume_sources(now);  // released while the broker worked (a subscriber went away)
  peering_.end_turn();
  for (std::size_t i = 0; i < dirty_.size(); ++i) {
    Connection* c = find(dirty_[i]);
    if (!c) continue;
    c->dirty = false;
    ConnOutbox out(*this, *c);
    c->ep.flush(now, out);
    if (c->ep.is_closed()) {
      erase(*c);
      continue;
    }
    reschedule(*c);
  }
  dirty_.clear();
  if (m2m_) {
    for (const auto& f : m2m_->frames()) {
      auto buf = frames_.add(cfg_.m2m_iface, f.size());
      std::copy(f.begin(), f.end(), buf.begin());
    }
    m2m_->clear_frames();
  }
}

std::optional<TimePoint> ProxyCore::next_deadline() const {
  const auto d = earliest(earliest(earliest(timers_.earliest(), header_timers_.earliest()),
                                   earliest(ws_timers_.earliest(), broker_.next_deadline())),
                          earliest(peering_.next_deadline(), flow_.next_deadline()));
  const auto u = sessions_ ? earliest(d, sessions_->next_deadline()) : d;
  return m2m_ ? earliest(u, m2m_->next_deadline()) : u;
}

void ProxyCore::shutdown(TimePoint now) {
  broker_.close_all("shutting down", now);
  if (sessions_) sessions_->close_all("shutting down", now);
  // Connections the broker never saw (handshake not finished) are simply dropped.
  for (auto& [id, c] : conns_) {
    if (!c->broker_open && (c->ep.state() == tcp::State::SynReceived || c->awaiting_header ||
                            c->health_check || c->ws)) {
      c->ep.close();
      mark_dirty(*c);
    }
  }
}

std::size_t ProxyCore::open_connection_count() const {
  std::size_t n = 0;
  for (const auto& [id, c] : conns_) {
    if (c->ep.state() != tcp::State::TimeWait && !c->ep.is_closed()) ++n;
  }
  return n;
}

std::size_t ProxyCore::largest_send_queue() const {
  std::size_t n = 0;
  for (const auto& [id, c] : conns_) n = std::max(n, c->ep.queued_bytes());
  return n;
}

std::vector<Duration> ProxyCore::connection_rtts() const {
  std::vector<Duration> out;
  out.reserve(conns_.size());
  for (const auto& [id, c] : conns_) {
    if (auto rtt = c->ep.srtt()) out.push_back(*rtt);
  }
  return out;
}

metrics::Counters ProxyCore::counters() const {
  metrics::Counters c = counters_;
  // The gauges, read when asked.
  c.mqtt_retained_topics = broker_.retained().size();
  c.mqtt_retained_bytes = broker_.retained().payload_bytes();
  c.mqtt_clients_online = sessions_ ? sessions_->connected_count() : broker_.connected_count();
  c.mqtt_sessions_offline = broker_.stored_session_count();
  c.mqtt_subscriptions_active = broker_.subscription_count();
  c.mqtt_shared_subscriptions_active = broker_.shared_subscription_count();
  c.mqtt_inflight_messages = broker_.inflight_count();
  c.mqtt_queued_messages = broker_.queued_message_count();
  for (const auto& [id, conn] : conns_) c.mqtt_queued_bytes += conn->ep.queued_bytes();
  return c;
}

// BrokerHost: queue only.
void ProxyCore::send(broker::ClientHandle h, ByteSpan bytes) {
  Connection* c = find(h);
  if (!c || !c->ep.can_send()) return;
  if (c->ws) {
    if (c->ws->conn.state() != ws::ServerConnection::State::Open) return;
    // One binary frame per call: MQTT 6.0 lets frames and packets fall apart as they like.
    ws_tx_.clear();
    ws::ServerConnection::wrap(bytes, ws_tx_);
    send_ws_output(*c, ws_tx_);
  } else {
    c->ep.send(bytes);
  }
  mark_dirty(*c);
}

std::size_t ProxyCore::queued_bytes(broker::ClientHandle h) const {
  const Connection* c = find(h);
  return c ? c->ep.queued_bytes() : 0;
}

void ProxyCore::close(broker::ClientHandle h) {
  Connection* c = find(h);
  if (!c) return;
  c->broker_open = false;
  if (c->ws && c->ws->conn.state() == ws::ServerConnection::State::Open) {
    // The Close frame, then our FIN once it and what the broker queued before it are out.
    ws_tx_.clear();
    c->ws->conn.close(ws::close_code::kNormal, "", ws_tx_);
    send_ws_output(*c, ws_tx_);
  }
  c->ep.close();
  mark_dirty(*c);
}

}  // namespace mqtt_proxy::core
