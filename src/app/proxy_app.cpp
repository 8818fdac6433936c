#include "mqtt_proxy/app/proxy_app.hpp"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "mqtt_proxy/app/interfaces.hpp"
#include "mqtt_proxy/capture/pcap_capture.hpp"
#include "mqtt_proxy/core/proxy_core.hpp"
#include "mqtt_proxy/firewall/firewall_guard.hpp"
#include "mqtt_proxy/inject/packet_injector.hpp"
#include "mqtt_proxy/udp/udp_socket.hpp"

namespace mqtt_proxy::app {

namespace {

std::string auth_mode(const Options& opt, const auth::PasswordFile* file) {
  if (!opt.username && !file) return "anonymous";
  std::string m = "required (";
  if (opt.username) m += "-u";
  if (file)
    m += std::string(opt.username ? ", " : "") + std::to_string(file->size()) + " users in " +
         opt.password_file;
  m += opt.allow_anonymous ? "; anonymous allowed)" : ")";
  return m;
}
constexpr std::string_view kLog = "app";

// ISO 8601 UTC with microseconds: one line per event, greppable.
void stderr_sink(log::Level level, std::string_view component, std::string_view message) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  gmtime_r(&ts.tv_sec, &t);
  char stamp[80];
  std::snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", t.tm_year + 1900,
                t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, ts.tv_nsec / 1000);
  const std::string line =
      fmt::format("{} {:<5} {}: {}\n", stamp, log::level_name(level), component, message);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

TimePoint monotonic_now() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return TimePoint{Duration{std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec}};
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

enum Tag : std::uint32_t { kCapture = 1, kUdp = 2, kTimer = 3, kSignal = 4 };
std::uint64_t tag(Tag t, std::uint32_t index = 0) {
  return (std::uint64_t{t} << 32) | index;
}

std::string join_addresses(const std::vector<wire::Ipv4Address>& v) {
  std::string s;
  for (const auto& a : v) s += (s.empty() ? "" : ",") + a.to_string();
  return s.empty() ? "none" : s;
}

void log_counters(log::Logger& log, const metrics::Counters& c, std::string_view what) {
  std::string line;
  c.for_each([&](std::string_view name, std::string_view, std::uint64_t v) {
    if (v == 0) return;
    line += fmt::format(" {}={}", name, v);
  });
  log.info(kLog, "{}:{}", what, line.empty() ? " (all zero)" : line);
}
}  // namespace

int run_proxy(const Options& opt) {
  log::Logger log(opt.log_level, stderr_sink);
  auto fail = [](const std::string& msg) {
    std::fprintf(stderr, "mqtt_proxy: %s\n", msg.c_str());
    return 1;
  };

  // SIGINT/SIGTERM are read from a signalfd by the loop, never delivered asynchronously.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigprocmask(SIG_BLOCK, &sigs, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  // Interfaces.
  std::string err;
  std::shared_ptr<const auth::PasswordFile> password_file;
  if (!opt.password_file.empty()) {
    std::ifstream in(opt.password_file);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) {
      return fail("cannot read --password-file " + opt.password_file + ": " + std::strerror(errno));
    }
    std::string why;
    auto parsed = auth::PasswordFile::parse(text.str(), why);
    if (!parsed) return fail("--password-file " + opt.password_file + ": " + why);
    password_file = std::make_shared<const auth::PasswordFile>(std::move(*parsed));
  }

  const auto all = list_interfaces(err);
  if (!err.empty()) return fail(err);
  std::vector<SystemInterface> chosen;
  if (opt.ifaces.empty()) {
    for (const auto& i : all) {
      if (i.up && !i.loopback && i.ethernet && !i.addresses.empty()) chosen.push_back(i);
    }
    if (chosen.empty()) return fail("no up, non-loopback interface with an IPv4 address; use -i");
  } else {
    for (const auto& name : opt.ifaces) {
      auto it = std::find_if(all.begin(), all.end(), [&](const auto& i) { return i.name == name; });
      if (it == all.end()) return fail("no such interface: " + name);
      if (it->addresses.empty()) return fail("interface " + name + " has no IPv4 address");
      if (!it->ethernet) return fail("interface " + name + " is not an Ethernet interface");
      chosen.push_back(*it);
    }
  }

  // The core.
  core::CoreConfig cfg;
  cfg.tcp_port = opt.tcp_port;
  cfg.max_connections = opt.max_connections;
  cfg.max_half_open = opt.max_half_open;
  cfg.tcp.rcv_buffer = opt.tcp_rcv_buffer;
  cfg.tcp.user_timeout = std::chrono::seconds(opt.stall_timeout_seconds);
  cfg.verify_checksums = opt.verify_checksums;
  if (::getrandom(cfg.secret.data(), cfg.secret.size(), 0) !=
      static_cast<ssize_t>(cfg.secret.size())) {
    return fail(std::string("getrandom: ") + std::strerror(errno));
  }
  cfg.broker.username = opt.username;
  cfg.broker.password = opt.password;
  cfg.broker.password_file = password_file;
  cfg.broker.allow_anonymous = opt.allow_anonymous;
  cfg.broker.max_packet_size = opt.max_packet_size;
  cfg.broker.max_queued_bytes = opt.max_queued_bytes;
  cfg.broker.max_retained_messages = opt.max_retained;
  cfg.broker.session_expiry = std::chrono::seconds(opt.session_expiry_seconds);
  cfg.peering.peers = opt.forwarders;
  cfg.peering.refresh_interval = std::chrono::seconds(opt.peer_refresh_seconds);
  for (const auto& i : chosen) {
    cfg.interfaces.push_back(core::InterfaceInfo{i.name, i.mac, i.addresses, i.mtu});
  }
  if (opt.peer_batch) {
    // One IPv4 packet: a batch that needs fragmenting is lost whole when any fragment is.
    const auto mtu =
        std::min_element(chosen.begin(), chosen.end(), [](const auto& a, const auto& b) {
          return a.mtu < b.mtu;
        })->mtu;
    cfg.peering.batch_bytes = mtu > 28 ? mtu - 28 : 0;
  }

  // I/O: capture first, since it is what needs privileges.
  std::vector<std::unique_ptr<capture::PcapCapture>> captures;
  inject::PacketInjector injector;
  for (const auto& i : chosen) {
    auto offloads = enabled_offloads(i.name);
    const bool merges = std::find_if(offloads.begin(), offloads.end(), [](const std::string& o) {
                          return o == "generic-receive-offload" || o == "large-receive-offload";
                        }) != offloads.end();
    capture::CaptureConfig cc;
    cc.iface = i.name;
    cc.buffer_bytes = static_cast<int>(opt.capture_buffer_bytes);
    // Frames are at most MTU-sized unless this interface merges what it receives (GRO/LRO); a
    // sender's TSO super-frame would arrive truncated, be counted, and be retransmitted by TCP.
    cc.snaplen = merges ? 262144 : static_cast<int>(i.mtu) + 14 + 4;
    cc.filter = fmt::format("tcp dst port {} and (", opt.tcp_port);
    for (std::size_t k = 0; k < i.addresses.size(); ++k) {
      cc.filter += fmt::format("{}dst host {}", k ? " or " : "", i.addresses[k]);
    }
    cc.filter += ")";
    capture::OpenError kind;
    auto c = capture::PcapCapture::open(cc, kind, err);
    if (!c) {
      if (kind == capture::OpenError::PermissionDenied) {
        return fail("capturing on " + i.name +
                    " needs root (or CAP_NET_RAW and CAP_NET_ADMIN): " + err);
      }
      return fail("cannot capture on " + i.name + ": " + err);
    }
    if (!injector.add_interface(i.ifindex, err)) {
      return fail("cannot send on " + i.name + ": " + err);
    }
    // GSO alone is harmless here: without transmit checksum offload, segments are checksummed in
    // software before they leave the sender.
    std::erase(offloads, "generic-segmentation-offload");
    if (!offloads.empty()) {
      std::string names;
      for (const auto& o : offloads) names += (names.empty() ? "" : ", ") + o;
      log.warn(kLog,
               "{}: offloads on ({}): captured checksums may be partial and frames larger than the "
               "MTU; for testbeds turn them off (ethtool -K {} tx off tso off gso off gro off)",
               i.name, names, i.name);
    }
    log.debug(kLog, "{}: capture snap length {}, ring {} MiB, filter \"{}\"", i.name, cc.snaplen,
              opt.capture_buffer_bytes >> 20, cc.filter);
    captures.push_back(std::move(c));
  }

  udp::UdpSocket udp;
  if (!udp.open(opt.udp_port, err)) return fail(err);

  std::unique_ptr<firewall::FirewallGuard> guard;
  if (opt.firewall) {
    std::vector<std::string> names;
    for (const auto& i : chosen) names.push_back(i.name);
    guard = firewall::FirewallGuard::install(names, opt.tcp_port, log, err);
    if (!guard) return fail(err);
  }

  Fd ep(::epoll_create1(EPOLL_CLOEXEC));
  Fd tfd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  Fd sfd(::signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC));
  if (ep.get() < 0 || tfd.get() < 0 || sfd.get() < 0) {
    return fail(std::string("epoll/timerfd/signalfd: ") + std::strerror(errno));
  }
  auto watch = [&](int fd, std::uint64_t t) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = t;
    return ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev) == 0;
  };
  bool watched =
      watch(udp.fd(), tag(kUdp)) && watch(tfd.get(), tag(kTimer)) && watch(sfd.get(), tag(kSignal));
  for (std::uint32_t k = 0; k < captures.size(); ++k) {
    watched = watched && watch(captures[k]->fd(), tag(kCapture, k));
  }
  if (!watched) return fail(std::string("epoll_ctl: ") + std::strerror(errno));

  core::ProxyCore core(cfg, log);
  TimePoint now = monotonic_now();
  core.start(now);

  {
    std::string ifs;
    for (const auto& i : chosen) {
      ifs += (ifs.empty() ? "" : " ") + i.name + "(" + join_addresses(i.addresses) + ")";
    }
    // Scripts wait for this line, so it is written whatever the log level.
    stderr_sink(
        log::Level::Info, kLog,
        fmt::format("ready: tcp/{} on {}; peers {} on udp/{}; auth {}; firewall {}", opt.tcp_port,
                    ifs, join_addresses(opt.forwarders), opt.udp_port,
                    auth_mode(opt, password_file.get()), opt.firewall ? "rules installed" : "off"));
  }

  const Duration stats_every = std::chrono::seconds(opt.stats_interval_seconds);
  std::optional<TimePoint> next_stats;
  if (stats_every.count() > 0) next_stats = now + stats_every;
  std::optional<TimePoint> shutdown_by;
  std::optional<TimePoint> armed_deadline;
  bool timer_armed = false;
  int exit_code = 0;

  for (;;) {
    // Sleep until I/O or the next deadline (timerfd). A capture that libpcap wants polled shortens
    // the wait so its error surfaces.
    const bool poll_captures = std::any_of(captures.begin(), captures.end(),
                                           [](const auto& c) { return c->needs_polling(); });
    // The timer is set only when the deadline moved: most turns leave it where it was.
    auto deadline = earliest(earliest(core.next_deadline(), shutdown_by), next_stats);
    if (!timer_armed || deadline != armed_deadline) {
      itimerspec its{};
      if (deadline) {
        const auto ns = std::max<std::int64_t>(deadline->time_since_epoch().count(), 1);
        its.it_value.tv_sec = ns / 1'000'000'000;
        its.it_value.tv_nsec = ns % 1'000'000'000;
      }
      ::timerfd_settime(tfd.get(), TFD_TIMER_ABSTIME, &its, nullptr);
      armed_deadline = deadline;
      timer_armed = true;
    }

    epoll_event events[64];
    const int n = ::epoll_wait(ep.get(), events, 64, poll_captures ? 10 : -1);
    if (n < 0 && errno != EINTR) {
      log.error(kLog, "epoll_wait: {}", std::strerror(errno));
      exit_code = 1;
      break;
    }
    now = monotonic_now();
    bool capture_failed = false;
    auto drain_capture = [&](std::uint32_t index) {
      auto& cap = *captures[index];
      const auto truncated_before = cap.truncated();
      if (cap.drain([&](ByteSpan frame) { core.on_frame(index, frame, now); }) < 0) {
        log.error(kLog, "capture on {} failed: {}", cap.iface(), cap.last_error());
        capture_failed = true;
      }
      if (truncated_before == 0 && cap.truncated() > 0) {
        log.warn(kLog,
                 "{}: frames longer than the MTU arrive (a client's TSO/GSO): they are cut, "
                 "counted and left to TCP retransmission; turn offloads off on the clients' links",
                 cap.iface());
      }
    };
    for (int k = 0; k < n; ++k) {
      const auto t = static_cast<Tag>(events[k].data.u64 >> 32);
      const auto index = static_cast<std::uint32_t>(events[k].data.u64 & 0xffffffffu);
      switch (t) {
        case kCapture:
          drain_capture(index);
          break;
        case kUdp:
          udp.drain([&](wire::Ipv4Address src, ByteSpan d) { core.on_peer_datagram(src, d, now); });
          break;
        case kTimer: {
          std::uint64_t expirations;
          while (::read(tfd.get(), &expirations, sizeof(expirations)) > 0) {
          }
          timer_armed = false;  // it fired: set it again even if the deadline did not move
          break;
        }
        case kSignal: {
          signalfd_siginfo si{};
          while (::read(sfd.get(), &si, sizeof(si)) == static_cast<ssize_t>(sizeof(si))) {
            if (shutdown_by) {
              log.warn(kLog, "second signal: exiting now");
              shutdown_by = now;
              continue;
            }
            log.info(kLog, "{}: closing {} connection(s)",
                     si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM", core.connection_count());
            core.shutdown(now);
            shutdown_by = now + std::chrono::milliseconds(opt.shutdown_grace_ms);
          }
          break;
        }
      }
    }
    if (poll_captures) {
      for (std::uint32_t k = 0; k < captures.size(); ++k) {
        if (captures[k]->needs_polling()) drain_capture(k);
      }
    }
    core.on_timers(now);
    core.flush(now);
    injector.send(core.frames());
    core.frames().clear();
    const std::size_t udp_failed = udp.send(core.datagrams(), opt.udp_port);
    if (udp_failed > 0) {
      log.warn(kLog, "{} datagram(s) to peers not sent: {}", udp_failed, udp.last_error());
    }
    core.clear_datagrams();

    if (next_stats && now >= *next_stats) {
      log_counters(log, core.counters(), "stats");
      next_stats = now + stats_every;
    }
    if (capture_failed) {
      exit_code = 1;
      break;
    }
    if (shutdown_by && (now >= *shutdown_by || core.open_connection_count() == 0)) break;
  }

  for (const auto& c : captures) {
    const auto s = c->stats();
    log.info(kLog, "capture {}: received={} dropped={} if_dropped={} truncated={}", c->iface(),
             s.received, s.dropped, s.if_dropped, s.truncated);
  }
  const auto& is = injector.stats();
  log.info(kLog, "inject: frames_sent={} frames_failed={} send_calls={}{}", is.frames_sent,
           is.frames_failed, is.send_calls,
           is.frames_failed ? " last_error=" + injector.last_error() : std::string());
  log_counters(log, core.counters(), "final counters");
  if (guard && !guard->remove_all()) exit_code = 1;
  log.info(kLog, "exit {}", exit_code);
  return exit_code;
}

}  // namespace mqtt_proxy::app
