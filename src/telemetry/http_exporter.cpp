#include "mqtt_proxy/telemetry/http_exporter.hpp"

#include <civetweb.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>

#include "mqtt_proxy/wire/address.hpp"

namespace mqtt_proxy::telemetry {

namespace {

constexpr std::string_view kLog = "metrics";

// civetweb keeps process-wide state (OpenSSL, if asked, and its own tables): initialised once,
// never torn down, as its documentation allows.
void init_civetweb() {
  static const unsigned features = mg_init_library(0);
  (void)features;
}

void respond(mg_connection* c, int status, std::string_view reason, std::string_view body,
             bool head, std::string_view extra_headers = {}) {
  const std::string header = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
      status, reason, status == 200 ? kContentType : std::string_view("text/plain; charset=utf-8"),
      body.size(), extra_headers);
  mg_write(c, header.data(), header.size());
  if (!head) mg_write(c, body.data(), body.size());
}

}  // namespace

MetricsServer::MetricsServer(log::Logger log, Options opt) : log_(std::move(log)), opt_(opt) {}

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(std::string_view addr_port,
                                                            log::Logger log, Options opt) {
  // IPv4 ADDR:PORT, checked here so a typo is our message, not civetweb's.
  const std::size_t colon = addr_port.rfind(':');
  if (colon == std::string_view::npos) {
    return Error{fmt::format("--metrics: '{}' is not ADDR:PORT", addr_port)};
  }
  const auto addr = wire::Ipv4Address::parse(addr_port.substr(0, colon));
  const std::string_view port_text = addr_port.substr(colon + 1);
  unsigned port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (!addr || port_text.empty() || ec != std::errc{} ||
      end != port_text.data() + port_text.size() || port > 65535) {
    return Error{fmt::format("--metrics: '{}' is not an IPv4 ADDR:PORT", addr_port)};
  }

  init_civetweb();
  std::unique_ptr<MetricsServer> s(new MetricsServer(std::move(log), opt));
  s->wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->wake_fd_ < 0) return Error{fmt::format("eventfd: {}", std::strerror(errno))};

  const std::string ports = fmt::format("{}:{}", *addr, port);
  const std::string threads = fmt::format("{}", std::max(opt.threads, 1));
  // No document_root: civetweb serves no files, only our handler.
  const std::array<const char*, 9> options{
      "listening_ports", ports.c_str(),       "num_threads", threads.c_str(), "request_timeout_ms",
      "10000",           "enable_keep_alive", "no",          nullptr};
  mg_callbacks callbacks{};
  callbacks.log_message = &MetricsServer::log_message;
  mg_init_data init{};
  init.callbacks = &callbacks;
  init.user_data = s.get();
  init.configuration_options = const_cast<const char**>(options.data());  // NOLINT: C API
  std::array<char, 256> text{};
  unsigned code = 0;
  mg_error_data error{&code, text.data(), text.size()};
  s->ctx_ = mg_start2(&init, &error);
  if (s->ctx_ == nullptr) {
    return Error{fmt::format("--metrics {}: cannot listen: {}", addr_port,
                             text[0] != 0 ? text.data() : "civetweb failed to start")};
  }
  std::array<mg_server_port, 4> bound{};
  const int n = mg_get_server_ports(s->ctx_, static_cast<int>(bound.size()), bound.data());
  if (n < 1) return Error{fmt::format("--metrics {}: civetweb reports no port", addr_port)};
  s->port_ = static_cast<std::uint16_t>(bound[0].port);
  s->address_ = *addr;
  mg_set_request_handler(s->ctx_, "/", &MetricsServer::handle, s.get());
  return s;
}

MetricsServer::~MetricsServer() {
  {
    const std::lock_guard lk(mu_);
    stopping_ = true;
  }
  answered_cv_.notify_all();
  if (ctx_ != nullptr) {
    // mg_stop joins the workers and civetweb's listening thread, which polls its socket with a 2 s
    // timeout before it looks at the stop flag again; a connection of our own wakes it, so that a
    // proxy with --metrics exits as quickly as one without. Bounded: 50 pokes, 1 s.
    std::atomic<bool> stopped{false};
    std::thread stopper([&] {
      mg_stop(ctx_);
      stopped = true;
    });
    for (int k = 0; k < 50 && !stopped; ++k) {
      poke_listener();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    stopper.join();
  }
  if (wake_fd_ >= 0) close(wake_fd_);
}

void MetricsServer::poke_listener() const {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port_);
  // A wildcard listener is reached through loopback.
  to.sin_addr.s_addr = htonl(address_.value != 0 ? address_.value : INADDR_LOOPBACK);
  (void)connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to);
  close(fd);
}

int MetricsServer::log_message(const mg_connection* conn, const char* message) {
  const mg_context* ctx = mg_get_context(conn);
  auto* self = ctx != nullptr ? static_cast<MetricsServer*>(mg_get_user_data(ctx)) : nullptr;
  if (self != nullptr) self->log_.warn(kLog, "civetweb: {}", message);
  return 1;  // handled: civetweb writes nothing to stderr itself
}

std::shared_ptr<const std::string> MetricsServer::wait_for_body() {
  std::unique_lock lk(mu_);
  if (stopping_) return nullptr;
  ++stats_.scrapes;
  const std::uint64_t ticket = ++requested_;
  const std::uint64_t one = 1;
  // Non-blocking: an eventfd counter does not fill up in practice (2^64 - 2).
  if (write(wake_fd_, &one, sizeof one) < 0) {
    log_.warn(kLog, "eventfd write: {}", std::strerror(errno));
  }
  const bool answered = answered_cv_.wait_for(lk, opt_.answer_timeout,
                                              [&] { return answered_ >= ticket || stopping_; });
  if (!answered || answered_ < ticket) {
    ++stats_.timed_out;
    return nullptr;
  }
  return body_;
}

int MetricsServer::handle(mg_connection* conn, void* self_ptr) {
  auto* self = static_cast<MetricsServer*>(self_ptr);
  const mg_request_info* ri = mg_get_request_info(conn);
  const std::string_view uri = ri->local_uri != nullptr ? ri->local_uri : "";
  const std::string_view method = ri->request_method != nullptr ? ri->request_method : "";
  const bool head = method == "HEAD";
  if (uri != "/metrics") {
    respond(conn, 404, "Not Found", "only /metrics is served\n", head);
    return 404;
  }
  if (method != "GET" && !head) {
    respond(conn, 405, "Method Not Allowed", "GET or HEAD\n", false, "Allow: GET, HEAD\r\n");
    return 405;
  }
  const auto body = self->wait_for_body();
  if (!body) {
    respond(conn, 503, "Service Unavailable", "the event loop did not answer in time\n", head);
    return 503;
  }
  respond(conn, 200, "OK", *body, head);
  return 200;
}

void MetricsServer::serve(const std::function<std::string()>& render) {
  std::uint64_t count = 0;
  // One read resets the counter; EAGAIN: nothing was written.
  if (read(wake_fd_, &count, sizeof count) < 0 && errno != EAGAIN) {
    log_.warn(kLog, "eventfd read: {}", std::strerror(errno));
  }
  std::uint64_t target = 0;
  {
    const std::lock_guard lk(mu_);
    target = requested_;
    if (target == answered_) return;
  }
  // Rendered outside the lock: the workers only wait, and the figures are the loop's own.
  auto body = std::make_shared<const std::string>(render());
  {
    const std::lock_guard lk(mu_);
    body_ = std::move(body);
    answered_ = target;
  }
  answered_cv_.notify_all();
}

MetricsServer::Stats MetricsServer::stats() const {
  const std::lock_guard lk(mu_);
  return stats_;
}

InfluxPusher::InfluxPusher(InfluxTarget target, log::Logger log, Options opt)
    : target_(std::move(target)),
      path_(influx_write_path(target_)),
      log_(std::move(log)),
      opt_(opt) {}

Result<std::unique_ptr<InfluxPusher>> InfluxPusher::start(InfluxTarget target, log::Logger log,
                                                          Options opt) {
  if (auto ok = check_target(target); !ok) return Error{ok.error()};
  init_civetweb();
  std::unique_ptr<InfluxPusher> p(new InfluxPusher(std::move(target), std::move(log), opt));
  p->thread_ = std::thread([raw = p.get()] { raw->run(); });
  return p;
}

InfluxPusher::~InfluxPusher() {
  {
    const std::lock_guard lk(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void InfluxPusher::push(std::string body) {
  {
    const std::lock_guard lk(mu_);
    if (pending_) ++stats_.dropped;
    pending_ = std::move(body);
  }
  wake_.notify_one();
}

InfluxPusher::Stats InfluxPusher::stats() const {
  const std::lock_guard lk(mu_);
  return stats_;
}

std::string InfluxPusher::post(const std::string& body) const {
  std::array<char, 256> err{};
  mg_connection* c =
      mg_connect_client(target_.host.c_str(), target_.port, 0, err.data(), err.size());
  if (c == nullptr) return fmt::format("connect: {}", err[0] != 0 ? err.data() : "failed");
  const std::string request = fmt::format(
      "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: text/plain; charset=utf-8\r\n"
      "Content-Length: {}\r\nConnection: close\r\n\r\n",
      path_, target_.host, target_.port, body.size());
  std::string failure;
  if (mg_write(c, request.data(), request.size()) <= 0 ||
      (!body.empty() && mg_write(c, body.data(), body.size()) <= 0)) {
    failure = "send failed";
  } else if (mg_get_response(c, err.data(), err.size(),
                             static_cast<int>(opt_.response_timeout.count())) < 0) {
    failure = fmt::format("no response: {}", err[0] != 0 ? err.data() : "timeout");
  } else {
    const mg_response_info* ri = mg_get_response_info(c);
    if (ri == nullptr || ri->status_code < 200 || ri->status_code > 299) {
      // InfluxDB says why in a short JSON body: {"error":"..."}.
      std::array<char, 300> reply{};
      const int n = mg_read(c, reply.data(), reply.size() - 1);
      failure =
          fmt::format("HTTP {}: {}", ri != nullptr ? ri->status_code : 0,
                      std::string_view(reply.data(), n > 0 ? static_cast<std::size_t>(n) : 0));
      while (!failure.empty() && (failure.back() == '\n' || failure.back() == '\r')) {
        failure.pop_back();
      }
    }
  }
  mg_close_connection(c);
  return failure;
}

void InfluxPusher::run() {
  using Clock = std::chrono::steady_clock;
  std::optional<Clock::time_point> last_log;
  std::uint64_t unlogged = 0;
  bool failing = false;
  for (;;) {
    std::string body;
    {
      std::unique_lock lk(mu_);
      wake_.wait(lk, [&] { return stopping_ || pending_.has_value(); });
      if (stopping_) return;
      body = std::move(*pending_);
      pending_.reset();
    }
    const std::string failure = post(body);
    {
      const std::lock_guard lk(mu_);
      ++(failure.empty() ? stats_.sent : stats_.failed);
    }
    // Rate-limited: a dead server at a 10 s interval writes a line a minute, not six.
    const auto now = Clock::now();
    if (!failure.empty()) {
      if (!last_log || now - *last_log >= opt_.log_interval) {
        log_.warn(kLog, "InfluxDB write to {}:{} failed: {}{}", target_.host, target_.port, failure,
                  unlogged > 0 ? fmt::format(" ({} more failures not logged)", unlogged) : "");
        last_log = now;
        unlogged = 0;
      } else {
        ++unlogged;
      }
      failing = true;
    } else if (failing) {
      log_.info(kLog, "InfluxDB writes to {}:{} succeed again", target_.host, target_.port);
      failing = false;
      unlogged = 0;
    }
  }
}

std::string local_hostname() {
  std::array<char, HOST_NAME_MAX + 1> name{};
  if (gethostname(name.data(), name.size() - 1) != 0) return "localhost";
  return name.data();
}

}  // namespace mqtt_proxy::telemetry
