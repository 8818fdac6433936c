#include "mqtt_proxy/upstream/sessions.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "mqtt_proxy/mqtt/frame.hpp"

namespace mqtt_proxy::upstream {

namespace {
constexpr std::string_view kLog = "upstream";

long long to_ms(Duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

hooks::Client hook_client(std::uint64_t id, const ingress::ClientOrigin& origin) {
  hooks::Client who;
  who.connection = id;
  who.address = origin.address;
  who.address_text = origin.address.is_ipv6 ? wire::format_ipv6(origin.address.ipv6)
                                            : origin.address.ipv4.to_string();
  who.transport = origin.websocket ? hooks::Transport::WebSocket : hooks::Transport::Tcp;
  who.tls = origin.tls;
  who.tls_cn = origin.certificate_cn;
  return who;
}
}  // namespace

struct Sessions::Session {
  std::uint64_t id;
  Relay relay;
  wire::ClientAddress peer;  // for log lines
  // The broker's bytes the relay has not taken: the rest of a packet, or packets that wait for
  // the client's queue. At most one read's worth beyond a packet, since reading stops then.
  Bytes from_upstream;
  // The start of a client packet too long to wait in the caller's receive buffer (the relay
  // takes whole packets only; left there, it could close the window for good), as the broker
  // keeps one: at most one packet, of held_total bytes once complete.
  Bytes from_client;
  std::size_t held_total = 0;
  bool dialled = false;     // the link was asked to connect
  bool connected = false;   // the link's on_connected came
  bool link_open = false;   // the link holds a connection and will call on_closed
  bool client_open = true;  // the client's connection is still ours to close
  bool ended = false;       // end() ran: the client is closed, the link told to close
  // Bytes of the client's wait for a queue or the CONNACK (on_data left some, hold() said so):
  // resumed() once they may go on.
  bool client_waiting = false;
  // wants_read() said no: touch the link once it would say yes. Set by that const query, which
  // changes nothing the caller can see.
  mutable bool read_paused = false;
  std::optional<TimePoint> deadline;  // for a CONNECT, or for the broker's connection

  Session(std::uint64_t i, const Config& cfg, hooks::Client who, metrics::Counters& counters)
      : id(i), relay(cfg, std::move(who), counters) {}
};

Sessions::Sessions(SessionsConfig cfg, broker::BrokerHost& clients, Link& link, log::Logger& log,
                   metrics::Counters& counters)
    : cfg_(std::move(cfg)), clients_(clients), link_(link), log_(log), counters_(counters) {}

Sessions::~Sessions() = default;

Sessions::Session* Sessions::find(std::uint64_t id) const {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second.get();
}

void Sessions::forget(std::uint64_t id) {
  Session* s = find(id);
  if (s && s->ended && !s->link_open) sessions_.erase(id);
}

void Sessions::on_open(std::uint64_t id, const ingress::ClientOrigin& origin, TimePoint now) {
  auto s = std::make_unique<Session>(id, cfg_.relay, hook_client(id, origin), counters_);
  s->peer = origin.address;
  s->deadline = now + cfg_.connect_timeout;
  timers_.push(*s->deadline, id);
  sessions_[id] = std::move(s);
}

std::size_t Sessions::on_data(std::uint64_t id, ByteSpan data, TimePoint now) {
  Session* s = find(id);
  if (!s || s->ended) return data.size();  // nobody reads this any more
  std::size_t used = 0;
  if (s->held_total > 0) {
    // A long packet's start is here: its rest first, up to where it ends.
    const std::size_t take = std::min(s->held_total - s->from_client.size(), data.size());
    append(s->from_client, data.first(take));
    used = take;
    offer_held(*s);
  }
  if (s->held_total == 0 && used < data.size()) {
    const ByteSpan rest = data.subspan(used);
    const std::size_t n = s->relay.from_client(rest);
    used += n;
    if (n < rest.size() && !s->relay.closed()) {
      if (held_back(*s, true)) {
        // The rest stays in the caller's receive buffer, whose window closes, until resumed().
        s->client_waiting = true;
      } else if (const auto total = mqtt::announced_frame_size(rest.subspan(n));
                 total && *total > cfg_.max_unread_frame) {
        // Incomplete: a short packet waits in the caller's buffer for its rest; a long one might
        // not fit its window, so it moves here (the relay checked its size against the limit).
        s->held_total = *total;
        s->from_client.assign(rest.begin() + static_cast<std::ptrdiff_t>(n), rest.end());
        used = data.size();
      }
    }
  }
  settle(*s, now);
  forget(id);
  return used;
}

void Sessions::offer_held(Session& s) {
  if (s.held_total == 0 || s.from_client.size() < s.held_total) return;
  // One whole packet: the relay takes it, or nothing while a queue is full or the CONNACK due.
  if (s.relay.from_client(s.from_client) == 0) {
    s.client_waiting = true;
    return;
  }
  s.from_client.clear();
  s.held_total = 0;
}

void Sessions::on_lost(std::uint64_t id, std::string_view why, TimePoint now) {
  Session* s = find(id);
  if (!s) return;
  s->client_open = false;
  if (!s->ended) {
    // No DISCONNECT goes to the broker: the connection just ends, and the broker publishes the
    // will of a client that did not send one itself.
    s->relay.client_lost(why);
    settle(*s, now);
  }
  forget(id);
}

bool Sessions::held_back(const Session& s, bool unread) const {
  if (s.ended) return false;
  const bool held = s.held_total > 0 && s.from_client.size() == s.held_total;
  if (!unread && !held) return false;
  // Before the broker's CONNACK the client's pipelined packets wait for it, as they wait for a
  // queue to drain.
  return s.relay.client_blocked() ||
         (s.relay.state() != Relay::State::AwaitConnect && !s.relay.connacked());
}

bool Sessions::hold(std::uint64_t id, bool unread) {
  Session* s = find(id);
  if (!s || !held_back(*s, unread)) return false;
  s->client_waiting = true;  // the caller waits: it is told when to offer the bytes again
  return true;
}

void Sessions::on_client_progress(std::uint64_t id, TimePoint now) {
  Session* s = find(id);
  if (!s || s->ended) return;
  if (s->relay.to_client().empty() && s->from_upstream.empty() && !s->read_paused) return;
  if (!s->from_upstream.empty()) {
    feed_upstream(*s, now);  // settles too
  } else {
    settle(*s, now);  // the relay's answers moved: the client's own bytes may go on
  }
  if (s->read_paused && wants_read(id)) {
    s->read_paused = false;
    link_.touch(id);
  }
  forget(id);
}

void Sessions::move_to_client(Session& s) {
  Bytes& out = s.relay.to_client();
  // The client's TCP queue holds up to the limit; beyond, the relay's queue holds the rest, so
  // the relay sees the backpressure and stops taking the broker's packets.
  if (out.empty() || !s.client_open || clients_.queued_bytes(s.id) >= cfg_.relay.max_buffered) {
    return;
  }
  clients_.send(s.id, out);
  out.clear();
}

void Sessions::feed_upstream(Session& s, TimePoint now) {
  move_to_client(s);  // room in the relay's queue first, if the client's has some
  const std::size_t n = s.relay.from_upstream(s.from_upstream);
  s.from_upstream.erase(s.from_upstream.begin(),
                        s.from_upstream.begin() + static_cast<std::ptrdiff_t>(n));
  settle(s, now);
}

void Sessions::settle(Session& s, TimePoint now) {
  move_to_client(s);
  if (!held_back(s, false)) offer_held(s);  // the queue drained, or the CONNACK came
  if (s.relay.wants_dial() && !s.dialled) {
    s.dialled = true;
    s.link_open = true;
    s.deadline = now + cfg_.dial_timeout;
    timers_.push(*s.deadline, s.id);
    log_.debug(kLog, "{}: CONNECT accepted (client id \"{}\"): connecting to the broker", s.peer,
               log::escaped(s.relay.client().client_id));
    link_.dial(s.id);
  }
  if (s.connected && !s.relay.to_upstream().empty()) link_.touch(s.id);
  // The broker's CONNACK, or room in the broker's queue, lets the client's unread bytes go on.
  if (s.client_waiting && !held_back(s, true)) {
    s.client_waiting = false;
    resumed_.push_back(s.id);
  }
  if (s.relay.closed() && !s.ended) end(s, s.relay.error());
}

void Sessions::end(Session& s, std::string_view why) {
  s.ended = true;
  s.deadline.reset();
  log_.info(kLog, "{} (client id \"{}\"): closed: {}", s.peer,
            log::escaped(s.relay.client().client_id), why);
  if (s.client_open) {
    // Its last packets (a CONNACK refusal, a DISCONNECT) go before the FIN, whatever the queue.
    Bytes& out = s.relay.to_client();
    if (!out.empty()) clients_.send(s.id, out);
    out.clear();
    s.client_open = false;
    clients_.close(s.id);
  }
  s.from_upstream.clear();
  s.from_client.clear();
  s.held_total = 0;
  if (s.link_open) link_.touch(s.id);  // finished(): what is queued for the broker, then close
}

void Sessions::close_all(std::string_view why, TimePoint now) {
  std::vector<std::uint64_t> ids;
  ids.reserve(sessions_.size());
  for (const auto& [id, s] : sessions_) ids.push_back(id);
  for (const std::uint64_t id : ids) {
    Session* s = find(id);
    if (!s || s->ended) continue;
    s->relay.client_lost(why);
    settle(*s, now);
    forget(id);
  }
}

void Sessions::on_timers(TimePoint now) {
  timers_.pop_due(now, [&](TimePoint t, std::uint64_t id) {
    Session* s = find(id);
    if (!s || s->ended || !s->deadline || *s->deadline != t) return;
    s->deadline.reset();
    if (!s->dialled) {
      log_.info(kLog, "{}: closing: no CONNECT within {} ms", s->peer, to_ms(cfg_.connect_timeout));
      s->relay.client_lost("no CONNECT in time");
      settle(*s, now);
    } else if (!s->connected) {
      ++counters_.upstream_connect_failures;
      s->relay.upstream_failed(
          fmt::format("the broker not reached within {} ms", to_ms(cfg_.dial_timeout)));
      settle(*s, now);
    }
    forget(id);
  });
}

std::optional<TimePoint> Sessions::next_deadline() const {
  return timers_.earliest();
}

std::size_t Sessions::connected_count() const {
  std::size_t n = 0;
  for (const auto& [id, s] : sessions_)
    if (!s->ended && s->relay.connacked()) ++n;
  return n;
}

void Sessions::on_connected(std::uint64_t id, TimePoint now) {
  Session* s = find(id);
  if (!s || s->ended || s->connected) return;
  ++counters_.upstream_connections;
  s->connected = true;
  s->deadline.reset();  // the broker's own timeouts apply from here, end to end
  s->relay.upstream_connected();
  settle(*s, now);
  forget(id);
}

void Sessions::on_failed(std::uint64_t id, std::string_view why, TimePoint now) {
  Session* s = find(id);
  if (!s || s->ended) return;
  ++(s->connected ? counters_.upstream_lost : counters_.upstream_connect_failures);
  s->relay.upstream_failed(why);
  settle(*s, now);
  forget(id);
}

void Sessions::on_upstream_data(std::uint64_t id, ByteSpan data, TimePoint now) {
  Session* s = find(id);
  if (!s || s->ended) return;
  s->from_upstream.insert(s->from_upstream.end(), data.begin(), data.end());
  feed_upstream(*s, now);
  forget(id);
}

Bytes* Sessions::outgoing(std::uint64_t id) {
  Session* s = find(id);
  return s && s->connected ? &s->relay.to_upstream() : nullptr;
}

void Sessions::on_sent(std::uint64_t id, TimePoint now) {
  Session* s = find(id);
  if (!s || s->ended) return;
  settle(*s, now);
  forget(id);
}

bool Sessions::wants_read(std::uint64_t id) const {
  const Session* s = find(id);
  if (!s || s->ended || !s->connected) return false;
  const bool room =
      !s->relay.upstream_blocked() && clients_.queued_bytes(id) < cfg_.relay.max_buffered;
  s->read_paused = !room;
  return room;
}

bool Sessions::finished(std::uint64_t id) const {
  const Session* s = find(id);
  return !s || s->ended;
}

void Sessions::on_closed(std::uint64_t id) {
  Session* s = find(id);
  if (!s) return;
  s->link_open = false;
  if (!s->ended) {
    ++(s->connected ? counters_.upstream_lost : counters_.upstream_connect_failures);
    s->relay.upstream_failed("the connection to the broker closed");
    // No clock here: the client's close goes out with the next flush.
    settle(*s, TimePoint{});
  }
  forget(id);
}

}  // namespace mqtt_proxy::upstream
