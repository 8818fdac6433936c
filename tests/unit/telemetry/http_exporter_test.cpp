// MetricsServer and InfluxPusher over loopback sockets: a test thread plays Prometheus (or
// InfluxDB) while the test's main thread plays the event loop.
#include "mqtt_proxy/telemetry/http_exporter.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>

namespace mqtt_proxy::telemetry {
namespace {

using namespace std::chrono_literals;

int connect_loopback(std::uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {  // NOLINT: sockets API
    close(fd);
    return -1;
  }
  return fd;
}

// Sends `request`, returns everything until the server closes.
std::string http(std::uint16_t port, const std::string& request) {
  const int fd = connect_loopback(port);
  if (fd < 0) return "connect failed";
  (void)send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  return out;
}

std::string get(std::uint16_t port, std::string_view path, std::string_view method = "GET") {
  return http(port, std::string(method) + " " + std::string(path) +
                        " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
}

bool readable(int fd, std::chrono::milliseconds within) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, static_cast<int>(within.count())) == 1;
}

TEST(MetricsServer, AnswersAScrapeWithWhatTheLoopRenders) {
  auto server = MetricsServer::start("127.0.0.1:0");
  ASSERT_TRUE(server) << server.error();
  auto& s = **server;
  ASSERT_NE(s.port(), 0);
  auto reply = std::async(std::launch::async, [&] { return get(s.port(), "/metrics"); });
  ASSERT_TRUE(readable(s.wake_fd(), 2s));
  int renders = 0;
  s.serve([&] {
    ++renders;
    return std::string("# TYPE up gauge\nup 1\n");
  });
  const std::string r = reply.get();
  EXPECT_TRUE(r.starts_with("HTTP/1.1 200 OK\r\n")) << r;
  EXPECT_NE(r.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            std::string::npos);
  EXPECT_NE(r.find("Content-Length: 21\r\n"), std::string::npos) << r;
  EXPECT_TRUE(r.ends_with("\r\n\r\n# TYPE up gauge\nup 1\n")) << r;
  EXPECT_EQ(renders, 1);
  EXPECT_FALSE(readable(s.wake_fd(), 0ms));  // serve() cleared it
  s.serve([&] {
    ++renders;
    return std::string();
  });
  EXPECT_EQ(renders, 1);  // nobody waits: no render
  EXPECT_EQ(s.stats().scrapes, 1u);
}

TEST(MetricsServer, AnswersHeadWithHeadersOnly) {
  auto server = MetricsServer::start("127.0.0.1:0");
  ASSERT_TRUE(server) << server.error();
  auto& s = **server;
  auto reply = std::async(std::launch::async, [&] { return get(s.port(), "/metrics", "HEAD"); });
  ASSERT_TRUE(readable(s.wake_fd(), 2s));
  s.serve([] { return std::string("up 1\n"); });
  const std::string r = reply.get();
  EXPECT_TRUE(r.starts_with("HTTP/1.1 200 OK\r\n")) << r;
  EXPECT_NE(r.find("Content-Length: 5\r\n"), std::string::npos) << r;
  EXPECT_TRUE(r.ends_with("\r\n\r\n")) << r;
}

TEST(MetricsServer, Answers503WhenTheLoopDoesNotAnswerInTime) {
  auto server = MetricsServer::start("127.0.0.1:0", {}, {.answer_timeout = 200ms, .threads = 2});
  ASSERT_TRUE(server) << server.error();
  auto& s = **server;
  const std::string r = get(s.port(), "/metrics");
  EXPECT_TRUE(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n")) << r;
  EXPECT_EQ(s.stats().timed_out, 1u);
  // The loop comes back: the next scrape is answered.
  s.serve([] { return std::string("late\n"); });
  auto reply = std::async(std::launch::async, [&] { return get(s.port(), "/metrics"); });
  ASSERT_TRUE(readable(s.wake_fd(), 2s));
  s.serve([] { return std::string("fresh\n"); });
  EXPECT_TRUE(reply.get().ends_with("fresh\n"));
}

TEST(MetricsServer, OtherPathsAre404AndOtherMethods405) {
  auto server = MetricsServer::start("127.0.0.1:0");
  ASSERT_TRUE(server) << server.error();
  auto& s = **server;
  EXPECT_TRUE(get(s.port(), "/").starts_with("HTTP/1.1 404 ")) << get(s.port(), "/");
  EXPECT_TRUE(get(s.port(), "/metricsx").starts_with("HTTP/1.1 404 "));
  EXPECT_TRUE(get(s.port(), "/metrics/x").starts_with("HTTP/1.1 404 "));
  const std::string post = http(s.port(),
                                "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                                "Connection: close\r\n\r\nab");
  EXPECT_TRUE(post.starts_with("HTTP/1.1 405 ")) << post;
  EXPECT_NE(post.find("Allow: GET, HEAD\r\n"), std::string::npos);
  EXPECT_FALSE(readable(s.wake_fd(), 0ms));  // none of them bothered the loop
}

TEST(MetricsServer, BindFailuresAndBadAddressesAreErrors) {
  auto first = MetricsServer::start("127.0.0.1:0");
  ASSERT_TRUE(first) << first.error();
  const auto busy = MetricsServer::start("127.0.0.1:" + std::to_string((*first)->port()));
  ASSERT_FALSE(busy);
  EXPECT_NE(busy.error().find("cannot listen"), std::string::npos) << busy.error();
  for (const char* bad :
       {"9100", "localhost:9100", "1.2.3:9100", "127.0.0.1:", "127.0.0.1:70000", "127.0.0.1:91x"}) {
    const auto r = MetricsServer::start(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().find("--metrics"), std::string::npos) << r.error();
  }
}

// A one-shot InfluxDB: accepts one connection, reads one request, answers `status`.
class FakeInflux {
 public:
  explicit FakeInflux(std::string status) : status_(std::move(status)) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);  // NOLINT: sockets API
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);  // NOLINT: sockets API
    port_ = ntohs(a.sin_port);
    listen(fd, 4);
    fd_ = fd;
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeInflux() {
    // Whoever takes the listening socket first closes it: serve() after its one connection (so
    // later connects are refused at once), or this, to wake an accept() that never returned.
    const int fd = fd_.exchange(-1);
    if (fd >= 0) shutdown(fd, SHUT_RDWR);
    thread_.join();
    if (fd >= 0) close(fd);
  }
  std::uint16_t port() const { return port_; }
  std::string request() { return request_.get_future().get(); }

 private:
  void serve() {
    const int c = accept(fd_.load(), nullptr, nullptr);
    if (const int fd = fd_.exchange(-1); fd >= 0) close(fd);
    if (c < 0) return;
    timeval tv{5, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string in;
    char buf[4096];
    std::size_t want = std::string::npos;
    while (in.size() < want) {
      const ssize_t n = recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      in.append(buf, static_cast<std::size_t>(n));
      const auto end = in.find("\r\n\r\n");
      if (end != std::string::npos && want == std::string::npos) {
        const auto cl = in.find("Content-Length: ");
        want = end + 4 + (cl == std::string::npos ? 0 : std::stoul(in.substr(cl + 16)));
      }
    }
    const std::string reply = "HTTP/1.1 " + status_ + "\r\nContent-Length: 0\r\n\r\n";
    (void)send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
    close(c);
    request_.set_value(in);
  }

  std::string status_;
  std::atomic<int> fd_{-1};
  std::uint16_t port_ = 0;
  std::promise<std::string> request_;
  std::thread thread_;
};

template <typename F>
bool eventually(F f) {
  for (int i = 0; i < 500; ++i) {
    if (f()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

TEST(TelemetryInfluxPusher, PostsTheBodyToTheWriteEndpoint) {
  FakeInflux influx("204 No Content");
  InfluxTarget t;
  t.host = "127.0.0.1";
  t.port = influx.port();
  t.database = "edge data";
  t.username = "me";
  t.password = "p@ss";
  auto pusher = InfluxPusher::start(t);
  ASSERT_TRUE(pusher) << pusher.error();
  (*pusher)->push("mqtt_proxy,host=h x=1i 1\n");
  const std::string r = influx.request();
  EXPECT_TRUE(r.starts_with("POST /write?db=edge%20data&u=me&p=p%40ss&precision=ns HTTP/1.1\r\n"))
      << r;
  EXPECT_TRUE(r.ends_with("\r\n\r\nmqtt_proxy,host=h x=1i 1\n")) << r;
  EXPECT_TRUE(eventually([&] { return (*pusher)->stats().sent == 1; }));
}

TEST(TelemetryInfluxPusher, CountsFailuresAndNeverBlocksTheCaller) {
  FakeInflux influx("400 Bad Request");
  InfluxTarget t;
  t.host = "127.0.0.1";
  t.port = influx.port();
  t.database = "d";
  auto pusher = InfluxPusher::start(t);
  ASSERT_TRUE(pusher) << pusher.error();
  (*pusher)->push("a");
  (void)influx.request();
  EXPECT_TRUE(eventually([&] { return (*pusher)->stats().failed == 1; }));
  // The fake is gone now: every later push fails to connect, and those not yet taken are
  // replaced, counted dropped; push() itself returns at once.
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 50; ++i) (*pusher)->push("b");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 500ms);
  EXPECT_TRUE(eventually([&] {
    const auto st = (*pusher)->stats();
    return st.failed + st.dropped == 51;
  }));
}

TEST(TelemetryInfluxPusher, RefusesATargetWithoutDatabase) {
  InfluxTarget t;
  t.host = "127.0.0.1";
  EXPECT_FALSE(InfluxPusher::start(t));
}

}  // namespace
}  // namespace mqtt_proxy::telemetry
