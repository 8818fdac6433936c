#include "mqtt_proxy/app/proxy_app.hpp"

#include <signal.h>

#include <cstdio>
#include <ctime>

#include "mqtt_proxy/app/config.hpp"
#include "mqtt_proxy/app/event_loop.hpp"
#include "mqtt_proxy/app/io.hpp"
#include "mqtt_proxy/core/proxy_core.hpp"
#include "mqtt_proxy/firewall/firewall_guard.hpp"
#include "mqtt_proxy/hooks/plugin_loader.hpp"

namespace mqtt_proxy::app {

namespace {
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

std::string join_addresses(const std::vector<wire::Ipv4Address>& v) {
  std::string s;
  for (const auto& a : v) s += (s.empty() ? "" : ",") + a.to_string();
  return s.empty() ? "none" : s;
}

// "; metrics http://ADDR:PORT/metrics; influxdb http://HOST:PORT db D every N s; $SYS every N s"
// (no password: the line goes to logs).
std::string exporters_summary(const Options& opt,
                              const std::optional<telemetry::InfluxTarget>& influx) {
  std::string s;
  if (!opt.metrics_listen.empty())
    s += fmt::format("; metrics http://{}/metrics", opt.metrics_listen);
  if (influx) {
    s += fmt::format("; influxdb http://{}:{} db {} every {} s", influx->host, influx->port,
                     influx->database, opt.metrics_interval_seconds);
  }
  if (opt.sys_interval_seconds > 0 && opt.upstream_host.empty()) {
    s += fmt::format("; $SYS every {} s", opt.sys_interval_seconds);
  }
  return s;
}

int fail(const std::string& msg) {
  std::fprintf(stderr, "mqtt_proxy: %s\n", msg.c_str());
  return 1;
}
}  // namespace

int run_cleanup(const Options& opt) {
  log::Logger log(opt.log_level, stderr_sink);
  std::vector<std::uint16_t> ports{opt.tcp_port};
  if (opt.ws_port != 0) ports.push_back(opt.ws_port);
  for (const std::uint16_t port : ports) {
    auto removed = firewall::remove_leftovers(opt.ifaces, port, log);
    if (!removed) return fail(removed.error());
    std::printf("mqtt_proxy: removed %zu leftover rule(s) for tcp/%u\n", removed->removed,
                static_cast<unsigned>(port));
    if (removed->failed > 0) return fail(std::to_string(removed->failed) + " could not be removed");
  }
  auto lo = firewall::restore_loopback_leftovers(log);
  if (!lo) return fail(lo.error());
  if (*lo) std::printf("mqtt_proxy: restored lo's route_localnet and accept_local\n");
  return 0;
}

int run_proxy(const Options& opt) {
  log::Logger log(opt.log_level, stderr_sink);

  // SIGINT/SIGTERM are read from a signalfd by the loop, never delivered asynchronously.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);  // reads --peer-key-file again
  sigprocmask(SIG_BLOCK, &sigs, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  auto cfg = build_config(opt);
  if (!cfg) return fail(cfg.error());
  if (!opt.plugins.empty()) {
    // Loaded before any I/O is set up, so that a plugin that cannot start is one line and exit 1.
    std::vector<std::unique_ptr<hooks::Hooks>> plugins;
    for (const auto& spec : opt.plugins) {
      auto p = hooks::load_plugin(spec, log);
      if (auto* e = std::get_if<hooks::LoadError>(&p)) return fail(e->message);
      plugins.push_back(std::move(std::get<std::unique_ptr<hooks::Hooks>>(p)));
    }
    cfg->core.broker.hooks = std::make_shared<hooks::HookChain>(
        std::move(plugins),
        std::chrono::duration_cast<Duration>(
            std::chrono::duration<double, std::milli>(opt.hook_budget_ms)),
        [] { return std::chrono::steady_clock::now(); }, log);
    if (cfg->core.upstream) cfg->core.upstream->relay.hooks = cfg->core.broker.hooks;
  }
  auto io = open_io(opt, cfg->interfaces, cfg->core, log);
  if (!io) return fail(io.error());

  // The exporters start before the loop, so that a port in use is one line and exit 1.
  std::unique_ptr<telemetry::MetricsServer> metrics;
  if (!opt.metrics_listen.empty()) {
    auto m = telemetry::MetricsServer::start(opt.metrics_listen, log);
    if (!m) return fail(m.error());
    metrics = std::move(*m);
  }
  std::unique_ptr<telemetry::InfluxPusher> influx;
  std::optional<telemetry::InfluxTarget> influx_target = opt.influx;
  if (influx_target) {
    influx_target->hostlabel = telemetry::local_hostname();
    auto p = telemetry::InfluxPusher::start(*influx_target, log);
    if (!p) return fail("--influxdb: " + p.error());
    influx = std::move(*p);
  }

  core::ProxyCore core(cfg->core, log);
  LoopConfig lc;
  lc.version = MQTT_PROXY_VERSION;
  lc.metrics = metrics.get();
  lc.influx = influx.get();
  lc.influx_target = influx_target;
  lc.metrics_interval = std::chrono::seconds(opt.metrics_interval_seconds);
  // $SYS is the upstream broker's to publish in upstream mode.
  lc.sys_interval = std::chrono::seconds(opt.upstream_host.empty() ? opt.sys_interval_seconds : 0);
  if (!opt.upstream_host.empty()) {
    lc.upstream =
        UpstreamTarget{opt.upstream_host, opt.upstream_port, opt.upstream_tls, opt.upstream_cafile};
  }
  lc.udp_port = opt.udp_port;
  lc.stats_interval = std::chrono::seconds(opt.stats_interval_seconds);
  lc.shutdown_grace = std::chrono::milliseconds(opt.shutdown_grace_ms);
  lc.peer_key_file = opt.peer_key_file;
  auto loop = EventLoop::create(**io, core, sigs, lc, log);
  if (!loop) return fail(loop.error());
  core.start(monotonic_now());

  std::string ifs;
  for (const auto& i : cfg->interfaces) {
    ifs += (ifs.empty() ? "" : " ") + i.name + "(" + join_addresses(i.addresses) + ")";
  }
  if (cfg->core.proxy_protocol && cfg->core.proxy_protocol->trusted_sources.empty()) {
    log.warn(kLog,
             "PROXY protocol on without --proxy-protocol-from: any client that reaches tcp/{} can "
             "claim any address (and, with --use-identity-as-username, any identity)",
             opt.tcp_port);
  }
  // Scripts wait for this line, so it is written whatever the log level.
  stderr_sink(
      log::Level::Info, kLog,
      fmt::format(
          "ready: tcp/{}{} on {}{}; peers {} on udp/{}{}; auth {}; firewall {}{}{}{}", opt.tcp_port,
          opt.ws_port ? fmt::format(", websocket tcp/{} {}", opt.ws_port, opt.ws_path)
                      : std::string(),
          ifs,
          cfg->core.proxy_protocol ? proxy_protocol_summary(*cfg->core.proxy_protocol)
                                   : std::string(),
          join_addresses(opt.peers), opt.udp_port,
          cfg->core.peering.keys.empty()
              ? std::string()
              : fmt::format(" signed ({} key(s); unsigned: {})", cfg->core.peering.keys.size(),
                            join_addresses(opt.unsigned_peers)),
          auth_mode(opt, cfg->password_file.get()), opt.firewall ? "rules installed" : "off",
          cfg->core.m2m
              ? fmt::format("; multicast via {}:{} from {}:{} on {}", cfg->core.m2m->server,
                            cfg->core.m2m->server_port, cfg->core.m2m->address,
                            cfg->core.m2m->client_port, cfg->interfaces[cfg->core.m2m_iface].name)
              : std::string(),
          exporters_summary(opt, influx_target),
          opt.upstream_host.empty() ? std::string()
                                    : "; upstream " + (*loop)->upstream_description()));

  int exit_code = (*loop)->run();

  for (const auto& c : (*io)->captures) {
    metrics::Counters own;
    c->add_counters(own);
    log.info(kLog, "capture {}: dropped={} if_dropped={} truncated={}", c->iface(),
             own.capture_dropped, own.capture_if_dropped, own.capture_truncated);
  }
  if ((*io)->counters.inject_frames_failed > 0) {
    log.info(kLog, "inject: last error {}", (*io)->injector.last_error());
  }
  (*loop)->log_counters("final counters");
  if ((*io)->firewall && !(*io)->firewall->remove_all()) exit_code = 1;
  if ((*io)->loopback && !(*io)->loopback->release()) exit_code = 1;
  log.info(kLog, "exit {}", exit_code);
  return exit_code;
}

}  // namespace mqtt_proxy::app
