// MQTT 3.1.1 QoS 0 load generator for the benchmarks: many connections on one epoll loop, no
// library, PUBLISH packets batched per write, so the generator is never the bottleneck.
//
//   loadgen pub --host H --topic T [--clients N] [--rate MSGS_PER_S] [--duration S] [--size B]
//   loadgen sub --host H --topic T [--clients N] [--duration S]
//   common: [--port P] [--user U] [--password P] [--id PREFIX] [--publisher NUMBER]
//
// A publisher sends, in every payload, its number, a sequence number and the send time
// (CLOCK_REALTIME: all Mininet hosts share the clock). --rate 0 is flat out. Subscribers print
// "ready" once subscribed; both print one JSON line at the end:
//   pub: {"sent":N,"seconds":S,"cpu_s":C}
//   sub: {"received":N,"duplicates":D,"gaps":G,"p50_us":..,"p90_us":..,"p99_us":..,"max_us":..,
//         "cpu_s":C}
// (cpu_s: user and system CPU seconds the generator itself used)
// (gaps: messages skipped within a publisher's sequence, counted from its first one received)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string mode, host = "127.0.0.1", topic = "bench", user, password, id = "lg";
  int port = 1883, clients = 1, size = 64, publisher = 0;
  double rate = 0, duration = 5;
};

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "loadgen: %s\n", why.c_str());
  std::exit(1);
}

std::uint64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return std::uint64_t(ts.tv_sec) * 1000000000ull + std::uint64_t(ts.tv_nsec);
}

void put16(std::string& s, std::size_t v) {
  s.push_back(char((v >> 8) & 0xff));
  s.push_back(char(v & 0xff));
}
void put_str(std::string& s, const std::string& v) {
  put16(s, v.size());
  s += v;
}
void put_len(std::string& s, std::size_t n) {
  do {
    char b = char(n & 0x7f);
    n >>= 7;
    if (n) b = char(b | 0x80);
    s.push_back(b);
  } while (n);
}
std::string packet(std::uint8_t first, const std::string& body) {
  std::string p(1, char(first));
  put_len(p, body.size());
  return p + body;
}

std::string connect_packet(const Args& a, const std::string& id) {
  std::string b;
  put_str(b, "MQTT");
  std::uint8_t flags = 0x02;
  if (!a.user.empty()) flags |= 0x80;
  if (!a.password.empty()) flags |= 0x40;
  b.push_back(4);
  b.push_back(char(flags));
  put16(b, 0);  // keepalive 0: no pings needed while measuring
  put_str(b, id);
  if (!a.user.empty()) put_str(b, a.user);
  if (!a.password.empty()) put_str(b, a.password);
  return packet(0x10, b);
}

struct Conn {
  int fd = -1;
  std::string out;  // bytes waiting to be written
  std::string in;   // bytes read, not yet parsed
  bool connacked = false, subacked = false;
  std::uint64_t seq = 0;  // publishers: next sequence number
};

int open_conn(const Args& a) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) die("socket: " + std::string(std::strerror(errno)));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(std::uint16_t(a.port));
  if (inet_pton(AF_INET, a.host.c_str(), &sa.sin_addr) != 1) die("bad --host");
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0 && errno != EINPROGRESS) {
    die("connect: " + std::string(std::strerror(errno)));
  }
  return fd;
}

bool flush_out(Conn& c) {
  while (!c.out.empty()) {
    const ssize_t n = send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN) return true;
      die("send: " + std::string(std::strerror(errno)));
    }
    c.out.erase(0, std::size_t(n));
  }
  return true;
}

// Reads what is there; calls on_packet(type, body) for every complete packet.
template <typename Fn>
void read_in(Conn& c, Fn&& on_packet) {
  char buf[65536];
  for (;;) {
    const ssize_t n = recv(c.fd, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      die("recv: " + std::string(std::strerror(errno)));
    }
    if (n == 0) die("the server closed a connection");
    c.in.append(buf, std::size_t(n));
    if (std::size_t(n) < sizeof(buf)) break;
  }
  std::size_t pos = 0;
  for (;;) {
    if (c.in.size() - pos < 2) break;
    std::size_t len = 0, i = pos + 1;
    int shift = 0;
    bool complete = false;
    while (i < c.in.size() && i < pos + 5) {
      const auto b = std::uint8_t(c.in[i++]);
      len |= std::size_t(b & 0x7f) << shift;
      shift += 7;
      if (!(b & 0x80)) {
        complete = true;
        break;
      }
    }
    if (!complete || c.in.size() - i < len) break;
    on_packet(std::uint8_t(std::uint8_t(c.in[pos]) >> 4), std::string_view(c.in).substr(i, len));
    pos = i + len;
  }
  c.in.erase(0, pos);
}

// User plus system time of this process, so the benchmark can show what the clients cost.
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto secs = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

double percentile(std::vector<std::uint32_t>& v, double p) {
  if (v.empty()) return 0;
  const std::size_t k = std::min(v.size() - 1, std::size_t(p * double(v.size())));
  std::nth_element(v.begin(), v.begin() + std::ptrdiff_t(k), v.end());
  return v[k];
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (argc < 2) die("usage: loadgen pub|sub --host H --topic T [options]");
  a.mode = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--host")
      a.host = v;
    else if (k == "--port")
      a.port = std::atoi(v.c_str());
    else if (k == "--topic")
      a.topic = v;
    else if (k == "--clients")
      a.clients = std::atoi(v.c_str());
    else if (k == "--rate")
      a.rate = std::atof(v.c_str());
    else if (k == "--duration")
      a.duration = std::atof(v.c_str());
    else if (k == "--size")
      a.size = std::atoi(v.c_str());
    else if (k == "--user")
      a.user = v;
    else if (k == "--password")
      a.password = v;
    else if (k == "--id")
      a.id = v;
    else if (k == "--publisher")
      a.publisher = std::atoi(v.c_str());
    else
      die("unknown option " + k);
  }
  const bool pub = a.mode == "pub";
  if (!pub && a.mode != "sub") die("mode must be pub or sub");
  a.size = std::max(a.size, 18);

  int ep = epoll_create1(0);
  std::vector<Conn> conns(std::size_t(a.clients));
  auto open_next = [&](int i) {
    Conn& c = conns[std::size_t(i)];
    c.fd = open_conn(a);
    c.out = connect_packet(a, a.id + "-" + a.mode + "-" + std::to_string(i));
    if (!pub) {
      std::string b;
      put16(b, 1);
      put_str(b, a.topic);
      b.push_back(0);
      c.out += packet(0x82, b);
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
    ev.data.u32 = std::uint32_t(i);
    epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
  };

  // Subscriber state.
  std::map<std::uint16_t, std::uint64_t> next_seq;  // publisher connection -> next sequence
  std::uint64_t received = 0, duplicates = 0, gaps = 0;
  std::vector<std::uint32_t> latencies;
  latencies.reserve(1 << 20);

  auto on_packet = [&](Conn& c, std::uint8_t type, std::string_view body) {
    if (type == 2) c.connacked = true;
    if (type == 9) c.subacked = true;
    if (type != 3 || body.size() < 2) return;
    const std::size_t tl = std::size_t{std::uint8_t(body[0])} << 8 | std::uint8_t(body[1]);
    if (body.size() < 2 + tl + 18) return;
    const auto* p = reinterpret_cast<const std::uint8_t*>(body.data() + 2 + tl);
    std::uint64_t seq = 0, ts = 0;
    std::memcpy(&seq, p, 8);
    std::memcpy(&ts, p + 8, 8);
    std::uint16_t who = 0;
    std::memcpy(&who, p + 16, 2);
    ++received;
    // Per publisher connection the sequence must rise by one: a step back is a duplicate (or a
    // reordering), a jump counts the messages skipped.
    auto [it, first] = next_seq.try_emplace(who, seq);
    if (seq < it->second) {
      ++duplicates;
    } else {
      gaps += seq - it->second;
      it->second = seq + 1;
    }
    (void)first;
    const std::uint64_t now = realtime_ns();
    latencies.push_back(
        std::uint32_t(std::min<std::uint64_t>(now > ts ? (now - ts) / 1000 : 0, UINT32_MAX)));
  };

  // Open the connections a few hundred at a time, serving the ones already open in between, and
  // wait until every one is ready. Opening all first can take seconds when the client's ports are
  // full of TIME-WAIT sockets from a previous run (connect() searches for a free one), and servers
  // close connections that send no CONNECT for that long.
  const auto setup_deadline = Clock::now() + std::chrono::seconds(60);
  epoll_event evs[1024];
  int opened = 0;
  for (;;) {
    for (const int stop = std::min(opened + 256, a.clients); opened < stop; ++opened) {
      open_next(opened);
    }
    bool all = opened == a.clients;
    for (auto& c : conns) all = all && c.connacked && (pub || c.subacked);
    if (all) break;
    if (Clock::now() > setup_deadline) die("connections not ready within 60 s");
    const int n = epoll_wait(ep, evs, 1024, opened < a.clients ? 0 : 100);
    for (int i = 0; i < n; ++i) {
      Conn& c = conns[evs[i].data.u32];
      if (evs[i].events & EPOLLOUT) flush_out(c);
      if (evs[i].events & EPOLLIN) read_in(c, [&](auto t, auto b) { on_packet(c, t, b); });
    }
  }
  std::printf("ready\n");
  std::fflush(stdout);

  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(a.duration));
  std::uint64_t sent = 0;
  std::string prefix;
  {
    std::string b;
    put_str(b, a.topic);
    prefix = b;
  }
  std::size_t rr = 0;
  while (Clock::now() < end) {
    if (pub) {
      // Messages due by now at --rate, or a batch per connection flat out.
      const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      std::uint64_t due = 64 * conns.size();
      if (a.rate > 0) {
        const auto target = std::uint64_t(elapsed * a.rate) + 1;
        due = target > sent ? target - sent : 0;
      }
      while (due > 0) {
        Conn& c = conns[rr++ % conns.size()];
        if (a.rate <= 0 && c.out.size() > 256 * 1024) {  // flat out: keep queues bounded
          if (rr % conns.size() == 0) break;
          continue;
        }
        std::string body = prefix;
        std::uint8_t payload[64] = {};
        const std::uint64_t ts = realtime_ns();
        const auto who = std::uint16_t(a.publisher * 1000 + int(&c - conns.data()));
        std::memcpy(payload, &c.seq, 8);
        std::memcpy(payload + 8, &ts, 8);
        std::memcpy(payload + 16, &who, 2);
        ++c.seq;
        body.append(reinterpret_cast<char*>(payload), 18);
        body.append(std::size_t(a.size - 18), 'x');
        c.out += char(0x30);
        put_len(c.out, body.size());
        c.out += body;
        ++sent;
        --due;
      }
      for (auto& c : conns) flush_out(c);
    }
    const int n = epoll_wait(ep, evs, 1024, pub ? (a.rate > 0 ? 1 : 0) : 50);
    for (int i = 0; i < n; ++i) {
      Conn& c = conns[evs[i].data.u32];
      if (evs[i].events & EPOLLOUT) flush_out(c);
      if (evs[i].events & EPOLLIN) read_in(c, [&](auto t, auto b) { on_packet(c, t, b); });
    }
  }
  if (pub) {
    // Let queued bytes drain, then disconnect.
    const auto drain_end = Clock::now() + std::chrono::seconds(5);
    for (bool pending = true; pending && Clock::now() < drain_end;) {
      pending = false;
      for (auto& c : conns) {
        flush_out(c);
        pending = pending || !c.out.empty();
      }
      if (pending) epoll_wait(ep, evs, 1024, 1);
    }
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    for (auto& c : conns) {
      c.out = std::string("\xe0\x00", 2);
      flush_out(c);
      close(c.fd);
    }
    std::printf("{\"sent\":%llu,\"seconds\":%.3f,\"cpu_s\":%.3f}\n",
                static_cast<unsigned long long>(sent), secs, cpu_seconds());
  } else {
    std::printf(
        "{\"received\":%llu,\"duplicates\":%llu,\"gaps\":%llu,\"p50_us\":%.0f,\"p90_us\":%.0f,"
        "\"p99_us\":%.0f,\"max_us\":%.0f,\"cpu_s\":%.3f}\n",
        static_cast<unsigned long long>(received), static_cast<unsigned long long>(duplicates),
        static_cast<unsigned long long>(gaps), percentile(latencies, 0.50),
        percentile(latencies, 0.90), percentile(latencies, 0.99),
        latencies.empty() ? 0.0 : double(*std::max_element(latencies.begin(), latencies.end())),
        cpu_seconds());
    for (auto& c : conns) close(c.fd);
  }
  return 0;
}
