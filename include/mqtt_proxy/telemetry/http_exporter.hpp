// The HTTP side of the exporters, on civetweb (Debian's libcivetweb): MetricsServer answers
// `GET /metrics` for Prometheus, InfluxPusher POSTs line protocol to InfluxDB. Neither ever blocks
// the event loop: civetweb's threads and the pusher's thread wait, the loop does not.
//
// Threads: the loop owns the figures and is the only thread that reads them. A scrape arrives on a
// civetweb worker, which raises a request and writes wake_fd(); the loop, seeing the fd readable,
// calls serve(render) with a function that renders the exposition on the loop's thread; the text
// goes back to the waiting worker under a mutex. A worker that hears nothing within the answer
// timeout (2 s) answers 503, so a stuck loop shows up as a failed scrape, not as a hang.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "mqtt_proxy/telemetry/influx.hpp"
#include "mqtt_proxy/util/log.hpp"
#include "mqtt_proxy/util/result.hpp"
#include "mqtt_proxy/wire/address.hpp"

struct mg_context;
struct mg_connection;

namespace mqtt_proxy::telemetry {

inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

struct MetricsServerOptions {
  std::chrono::milliseconds answer_timeout{2000};  // the loop's deadline, then 503
  int threads = 2;  // civetweb workers: concurrent scrapes (each waits for the loop)
};

class MetricsServer {
 public:
  using Options = MetricsServerOptions;
  struct Stats {
    std::uint64_t scrapes = 0;    // GET/HEAD /metrics
    std::uint64_t timed_out = 0;  // answered 503
  };

  // Listens on `addr_port` (IPv4 `ADDR:PORT`; port 0 picks a free one, see port()). The logger's
  // sink is called from civetweb's threads: it must be thread-safe (the app's stderr sink is: one
  // fwrite per line).
  static Result<std::unique_ptr<MetricsServer>> start(std::string_view addr_port,
                                                      log::Logger log = {}, Options opt = {});
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Readable while a scrape waits; the loop polls it (EPOLLIN) and then calls serve().
  int wake_fd() const { return wake_fd_; }
  std::uint16_t port() const { return port_; }

  // On the loop's thread: clears wake_fd() and, if scrapes wait, answers all of them with one
  // render(). Cheap when none waits.
  void serve(const std::function<std::string()>& render);

  Stats stats() const;

 private:
  MetricsServer(log::Logger log, Options opt);
  static int handle(mg_connection* conn, void* self);
  static int log_message(const mg_connection* conn, const char* message);
  void poke_listener() const;
  // The body for a scrape, or null when the loop did not answer in time (or we stop).
  std::shared_ptr<const std::string> wait_for_body();

  log::Logger log_;
  Options opt_;
  mg_context* ctx_ = nullptr;
  int wake_fd_ = -1;
  std::uint16_t port_ = 0;
  wire::Ipv4Address address_{};

  mutable std::mutex mu_;
  std::condition_variable answered_cv_;
  std::uint64_t requested_ = 0;  // tickets handed to scrapes
  std::uint64_t answered_ = 0;   // every ticket up to this one has body_
  std::shared_ptr<const std::string> body_;
  bool stopping_ = false;
  Stats stats_;
};

// POSTs line protocol to InfluxDB 1.x from a thread of its own. push() hands over a body and
// returns at once: at most one body waits; a newer one replaces it (the older one is counted
// dropped), so a slow or dead server costs memory for one body, never the loop's time.
struct InfluxPusherOptions {
  std::chrono::milliseconds response_timeout{5000};
  std::chrono::seconds log_interval{60};  // at most one failure line per interval
};

class InfluxPusher {
 public:
  using Options = InfluxPusherOptions;
  struct Stats {
    std::uint64_t sent = 0;     // answered 2xx
    std::uint64_t failed = 0;   // connect, send or response failed, or not 2xx
    std::uint64_t dropped = 0;  // replaced by a newer body before it was sent
  };

  // The logger's sink is called from the pusher's thread: it must be thread-safe.
  static Result<std::unique_ptr<InfluxPusher>> start(InfluxTarget target, log::Logger log = {},
                                                     Options opt = {});
  // Waits for a POST in progress to end (its timeouts bound that), drops the pending body.
  ~InfluxPusher();
  InfluxPusher(const InfluxPusher&) = delete;
  InfluxPusher& operator=(const InfluxPusher&) = delete;

  void push(std::string body);
  Stats stats() const;

 private:
  InfluxPusher(InfluxTarget target, log::Logger log, Options opt);
  void run();
  // One POST; empty on success, else what went wrong.
  std::string post(const std::string& body) const;

  InfluxTarget target_;
  std::string path_;
  log::Logger log_;
  Options opt_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::optional<std::string> pending_;
  bool stopping_ = false;
  Stats stats_;
  std::thread thread_;
};

// The host name, for InfluxTarget::hostlabel (Mosquitto's default hostlabel).
std::string local_hostname();

}  // namespace mqtt_proxy::telemetry
