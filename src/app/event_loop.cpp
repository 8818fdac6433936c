#include "mqtt_proxy/app/event_loop.hpp"

#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "mqtt_proxy/auth/peer_key_file.hpp"
#include "mqtt_proxy/telemetry/influx.hpp"
#include "mqtt_proxy/telemetry/process_stats.hpp"

namespace mqtt_proxy::app {

namespace {
constexpr std::string_view kLog = "app";

enum Tag : std::uint32_t {
  kCapture = 1,
  kUdp = 2,
  kTimer = 3,
  kSignal = 4,
  kMetrics = 5,
  kUpstream = 6,
};
// Rounds of upstream work per turn before the loop looks at its other descriptors again.
constexpr int kUpstreamRounds = 16;
std::uint64_t tag(Tag t, std::uint32_t index = 0) {
  return (std::uint64_t{t} << 32) | index;
}
}  // namespace

TimePoint monotonic_now() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return TimePoint{Duration{std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec}};
}

Result<std::unique_ptr<EventLoop>> EventLoop::create(Io& io, core::ProxyCore& core,
                                                     const sigset_t& signals, LoopConfig cfg,
                                                     log::Logger& log) {
  std::unique_ptr<EventLoop> l(new EventLoop(io, core, cfg, log));
  l->epoll_ = os::Fd(::epoll_create1(EPOLL_CLOEXEC));
  l->timer_ = os::Fd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  l->signals_ = os::Fd(::signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!l->epoll_.valid() || !l->timer_.valid() || !l->signals_.valid()) {
    return Error{std::string("epoll/timerfd/signalfd: ") + std::strerror(errno)};
  }
  auto watch = [&](int fd, std::uint64_t t) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = t;
    return ::epoll_ctl(l->epoll_.get(), EPOLL_CTL_ADD, fd, &ev) == 0;
  };
  bool watched = watch(io.udp.fd(), tag(kUdp)) && watch(l->timer_.get(), tag(kTimer)) &&
                 watch(l->signals_.get(), tag(kSignal));
  for (std::uint32_t k = 0; k < io.captures.size(); ++k) {
    watched = watched && watch(io.captures[k]->fd(), tag(kCapture, k));
  }
  if (cfg.metrics) watched = watched && watch(cfg.metrics->wake_fd(), tag(kMetrics));
  if (!watched) return Error{std::string("epoll_ctl: ") + std::strerror(errno)};
  if (l->cfg_.upstream) {
    auto u = UpstreamConnector::create(*l->cfg_.upstream, l->epoll_.get(), kUpstream, log);
    if (!u) return Error{"--upstream: " + u.error()};
    l->upstream_ = std::move(*u);
    l->upstream_->attach(core.attach_upstream(*l->upstream_));
  }
  return l;
}

metrics::Counters EventLoop::counters() const {
  metrics::Counters c = core_.counters();
  c += io_.snapshot();
  return c;
}

telemetry::Snapshot EventLoop::snapshot() const {
  telemetry::Snapshot s;
  s.counters = counters();
  s.peers = telemetry::peer_figures(core_.peering().peer_status());
  for (const auto& cap : io_.captures) {
    metrics::Counters own;
    cap->add_counters(own);
    s.interfaces.push_back(
        {cap->iface(), own.capture_dropped, own.capture_if_dropped, own.capture_truncated});
  }
  if (const hooks::HookChain* chain = core_.broker().hooks()) {
    for (const hooks::HookStats& h : chain->stats()) {
      s.hooks.push_back({h.name, h.calls, h.refusals, h.slow,
                         std::chrono::duration<double>(h.time).count(),
                         std::chrono::duration<double>(h.longest).count()});
    }
  }
  for (const Duration rtt : core_.connection_rtts()) {
    s.rtt_seconds.push_back(std::chrono::duration<double>(rtt).count());
  }
  if (auto p = telemetry::read_process_stats()) s.process = *p;
  s.version = cfg_.version;
  return s;
}

std::string EventLoop::upstream_description() const {
  return upstream_ ? upstream_->describe() : std::string();
}

void EventLoop::service_upstream() {
  // What a round's calls into the core made (client bytes for the broker, a read resumed) is
  // acted on in the next: bounded, and busy() keeps the loop awake for the rest.
  for (int round = 0; round < kUpstreamRounds && upstream_->service(now_); ++round) {
    core_.flush(now_);
  }
}

void EventLoop::publish_sys() {
  for (const auto& m : sys_->update(counters(), now_)) {
    core_.publish_sys(m.topic, as_bytes(m.payload), now_);
  }
}

void EventLoop::push_influx() {
  const auto wall = std::chrono::system_clock::now().time_since_epoch();
  cfg_.influx->push(
      telemetry::render_influx(snapshot(), *cfg_.influx_target,
                               std::chrono::duration_cast<std::chrono::nanoseconds>(wall).count()));
}

void EventLoop::log_counters(std::string_view what) const {
  std::string line;
  counters().for_each([&](std::string_view name, metrics::Kind, std::string_view, std::uint64_t v) {
    if (v != 0) line += fmt::format(" {}={}", name, v);
  });
  log_.info(kLog, "{}:{}", what, line.empty() ? " (all zero)" : line);
  // The per-peer gauges: one line per peer.
  for (const auto& p : core_.peering().peer_status()) {
    using State = peering::Peering::PeerState;
    const char* state = p.state == State::Plain ? "plain (liveness unknown)"
                        : p.state == State::Up  ? "up"
                                                : "down";
    const std::string heard =
        p.last_heard ? fmt::format("{:.1f} s ago",
                                   std::chrono::duration<double>(now_ - *p.last_heard).count())
                     : std::string("never");
    log_.info(kLog, "{} of peer {}: {}, {} filter(s) held for it, last heard {}", what, p.addr,
              state, p.filters, heard);
  }
}

void EventLoop::arm_timer() {
  // The timer is set only when the deadline moved: most turns leave it where it was.
  const auto deadline =
      earliest(earliest(earliest(core_.next_deadline(), shutdown_by_), next_stats_),
               earliest(next_sys_, next_influx_));
  if (timer_armed_ && deadline == armed_deadline_) return;
  itimerspec its{};
  if (deadline) {
    const auto ns = std::max<std::int64_t>(deadline->time_since_epoch().count(), 1);
    its.it_value.tv_sec = ns / 1'000'000'000;
    its.it_value.tv_nsec = ns % 1'000'000'000;
  }
  ::timerfd_settime(timer_.get(), TFD_TIMER_ABSTIME, &its, nullptr);
  armed_deadline_ = deadline;
  timer_armed_ = true;
}

void EventLoop::drain_capture(std::uint32_t index) {
  auto& cap = *io_.captures[index];
  const auto truncated_before = cap.truncated();
  if (cap.drain([&](ByteSpan frame) { core_.on_frame(index, frame, now_); }) < 0) {
    log_.error(kLog, "capture on {} failed: {}", cap.iface(), cap.last_error());
    capture_failed_ = true;
  }
  if (truncated_before == 0 && cap.truncated() > 0) {
    log_.warn(kLog,
              "{}: frames longer than the MTU arrive (a client's TSO/GSO): they are cut, counted "
              "and left to TCP retransmission; turn offloads off on the clients' links",
              cap.iface());
  }
}

void EventLoop::reload_peer_keys() {
  if (cfg_.peer_key_file.empty()) {
    log_.info(kLog, "SIGHUP: no --peer-key-file, nothing to reload");
    return;
  }
  auto keys = auth::read_peer_key_file(cfg_.peer_key_file);
  if (!keys) {
    log_.error(kLog, "SIGHUP: the keys stay as they were: {}", keys.error());
    return;
  }
  const std::size_t n = keys->size();
  core_.set_peer_keys(std::move(*keys));
  log_.info(kLog, "SIGHUP: {} peer key(s) read from {}; the first signs from now on", n,
            cfg_.peer_key_file);
}

void EventLoop::read_signals() {
  signalfd_siginfo si{};
  while (::read(signals_.get(), &si, sizeof(si)) == static_cast<ssize_t>(sizeof(si))) {
    if (si.ssi_signo == SIGHUP) {
      reload_peer_keys();
      continue;
    }
    if (shutdown_by_) {
      log_.warn(kLog, "second signal: exiting now");
      shutdown_by_ = now_;
      continue;
    }
    log_.info(kLog, "{}: closing {} connection(s)", si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM",
              core_.connection_count());
    core_.shutdown(now_);
    shutdown_by_ = now_ + cfg_.shutdown_grace;
  }
}

void EventLoop::send_output() {
  io_.injector.send(core_.frames());
  core_.frames().clear();
  const std::size_t udp_failed = io_.udp.send(core_.datagrams(), cfg_.udp_port);
  if (udp_failed > 0) {
    io_.counters.peer_datagrams_send_failed += udp_failed;
    log_.warn(kLog, "{} datagram(s) to peers not sent: {}", udp_failed, io_.udp.last_error());
  }
  core_.clear_datagrams();
  if (auto* changes = core_.memberships()) {
    for (const auto& m : *changes) {
      // A failure costs only the IGMP report: capture receives the group's datagrams anyway.
      if (auto s = m.join ? io_.groups->join(m.group) : io_.groups->leave(m.group); !s) {
        log_.warn(kLog, "{}", s.error());
      } else {
        log_.debug(kLog, "{} multicast group {}", m.join ? "joined" : "left", m.group);
      }
    }
    changes->clear();
  }
}

int EventLoop::run() {
  now_ = monotonic_now();
  if (cfg_.stats_interval.count() > 0) next_stats_ = now_ + cfg_.stats_interval;
  if (cfg_.sys_interval.count() > 0) {
    sys_.emplace(cfg_.version, now_);
    next_sys_ = now_;  // the first figures at once, as Mosquitto does
  }
  if (cfg_.influx) next_influx_ = now_ + cfg_.metrics_interval;
  for (;;) {
    // Sleep until I/O or the next deadline. A capture that libpcap wants polled shortens the wait
    // so its error surfaces.
    const bool poll_captures = std::any_of(io_.captures.begin(), io_.captures.end(),
                                           [](const auto& c) { return c->needs_polling(); });
    arm_timer();
    epoll_event events[64];
    const bool upstream_busy = upstream_ && upstream_->busy();
    const int n = ::epoll_wait(epoll_.get(), events, 64,
                               upstream_busy   ? 0
                               : poll_captures ? 10
                                               : -1);
    if (n < 0 && errno != EINTR) {
      log_.error(kLog, "epoll_wait: {}", std::strerror(errno));
      return 1;
    }
    now_ = monotonic_now();
    for (int k = 0; k < n; ++k) {
      const auto t = static_cast<Tag>(events[k].data.u64 >> 32);
      const auto index = static_cast<std::uint32_t>(events[k].data.u64 & 0xffffffffu);
      switch (t) {
        case kCapture:
          drain_capture(index);
          break;
        case kUdp:
          io_.udp.drain(
              [&](wire::Ipv4Address src, ByteSpan d) { core_.on_peer_datagram(src, d, now_); });
          break;
        case kTimer: {
          std::uint64_t expirations;
          while (::read(timer_.get(), &expirations, sizeof(expirations)) > 0) {
          }
          timer_armed_ = false;  // it fired: set it again even if the deadline did not move
          break;
        }
        case kSignal:
          read_signals();
          break;
        case kUpstream:
          upstream_->on_ready(index, events[k].events, now_);
          break;
        case kMetrics:
          // Scrapes wait on civetweb's threads: answered from one snapshot of this turn.
          cfg_.metrics->serve([&] { return telemetry::render_prometheus(snapshot()); });
          break;
      }
    }
    if (poll_captures) {
      for (std::uint32_t k = 0; k < io_.captures.size(); ++k) {
        if (io_.captures[k]->needs_polling()) drain_capture(k);
      }
    }
    if (next_sys_ && now_ >= *next_sys_) {
      publish_sys();  // sent by the flush below
      next_sys_ = now_ + cfg_.sys_interval;
    }
    if (next_influx_ && now_ >= *next_influx_) {
      push_influx();
      next_influx_ = now_ + cfg_.metrics_interval;
    }
    core_.on_timers(now_);
    core_.flush(now_);
    if (upstream_) service_upstream();
    send_output();

    if (next_stats_ && now_ >= *next_stats_) {
      log_counters("stats");
      next_stats_ = now_ + cfg_.stats_interval;
    }
    if (capture_failed_) return 1;
    if (shutdown_by_ && (now_ >= *shutdown_by_ || core_.open_connection_count() == 0)) return 0;
  }
}

}  // namespace mqtt_proxy::app
