// A publisher built on libmosquitto, the client library of mosquitto_pub and of most C and C++
// applications, driven as hard as the library lets an application drive it: TCP_NODELAY, and a new
// PUBLISH whenever the library has nothing left to write (libmosquitto writes each packet at once
// when it can and queues it in memory when the socket is full). The benchmarks use it so that the
// load on the system under test is at least what a stock client puts on it.
//
//   mosq_pub --host H --topic T [--clients N] [--rate MSGS_PER_S] [--duration S] [--size B]
//            [--port P] [--user U] [--password P] [--id PREFIX] [--publisher NUMBER]
//
// Payloads carry what bench/loadgen's subscriber reads: a sequence number per connection, the send
// time (CLOCK_REALTIME) and the connection's number (--publisher * 1000 + index). --rate 0 is flat
// out; with a rate, messages due are published on time whatever the socket takes, so they queue in
// the library as they would in an application. After --duration it waits (up to 30 s) until the
// library has written everything, disconnects and prints one JSON line:
//   {"sent":N,"written":W,"seconds":S,"cpu_s":C}
// sent: PUBLISHes the application made; written: those libmosquitto handed to the socket.
#include <mosquitto.h>
#include <poll.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string host = "127.0.0.1", topic = "bench", user, password, id = "mp";
  int port = 1883, clients = 1, size = 64, publisher = 0;
  double rate = 0, duration = 5;
};

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "mosq_pub: %s\n", why.c_str());
  std::exit(1);
}

std::uint64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto secs = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

struct Publisher {
  mosquitto* m = nullptr;
  std::uint64_t seq = 0;
  std::uint16_t who = 0;
  bool connected = false;
  std::uint64_t written = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--host") {
      a.host = v;
    } else if (k == "--port") {
      a.port = std::atoi(v.c_str());
    } else if (k == "--topic") {
      a.topic = v;
    } else if (k == "--clients") {
      a.clients = std::atoi(v.c_str());
    } else if (k == "--rate") {
      a.rate = std::atof(v.c_str());
    } else if (k == "--duration") {
      a.duration = std::atof(v.c_str());
    } else if (k == "--size") {
      a.size = std::atoi(v.c_str());
    } else if (k == "--user") {
      a.user = v;
    } else if (k == "--password") {
      a.password = v;
    } else if (k == "--id") {
      a.id = v;
    } else if (k == "--publisher") {
      a.publisher = std::atoi(v.c_str());
    } else {
      die("unknown option " + k);
    }
  }
  if (a.clients < 1) die("--clients must be at least 1");
  if (a.size < 18) a.size = 18;
  return a;
}

void publish_one(Publisher& p, const Args& a, std::vector<unsigned char>& payload) {
  const std::uint64_t ts = realtime_ns();
  std::memcpy(payload.data(), &p.seq, 8);
  std::memcpy(payload.data() + 8, &ts, 8);
  std::memcpy(payload.data() + 16, &p.who, 2);
  ++p.seq;
  const int rc = mosquitto_publish(p.m, nullptr, a.topic.c_str(), static_cast<int>(payload.size()),
                                   payload.data(), 0, false);
  if (rc != MOSQ_ERR_SUCCESS) die(std::string("publish: ") + mosquitto_strerror(rc));
}

// One turn of libmosquitto's own loop for every connection: read, write what is queued, keepalive.
void service(std::vector<Publisher>& pubs, int timeout_ms) {
  std::vector<pollfd> fds(pubs.size());
  for (std::size_t i = 0; i < pubs.size(); ++i) {
    fds[i].fd = mosquitto_socket(pubs[i].m);
    fds[i].events = static_cast<short>(POLLIN | (mosquitto_want_write(pubs[i].m) ? POLLOUT : 0));
  }
  if (poll(fds.data(), fds.size(), timeout_ms) < 0) return;
  for (std::size_t i = 0; i < pubs.size(); ++i) {
    int rc = MOSQ_ERR_SUCCESS;
    if (fds[i].revents & POLLIN) rc = mosquitto_loop_read(pubs[i].m, 16);
    if (rc == MOSQ_ERR_SUCCESS && (fds[i].revents & POLLOUT))
      rc = mosquitto_loop_write(pubs[i].m, 16);
    if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_loop_misc(pubs[i].m);
    if (rc != MOSQ_ERR_SUCCESS) die(std::string("connection lost: ") + mosquitto_strerror(rc));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  mosquitto_lib_init();
  std::vector<Publisher> pubs(static_cast<std::size_t>(a.clients));
  for (std::size_t i = 0; i < pubs.size(); ++i) {
    Publisher& p = pubs[i];
    p.who = static_cast<std::uint16_t>(a.publisher * 1000 + static_cast<int>(i));
    const std::string id = a.id + "-pub-" + std::to_string(i);
    p.m = mosquitto_new(id.c_str(), true, &p);
    if (!p.m) die("mosquitto_new failed");
    mosquitto_int_option(p.m, MOSQ_OPT_TCP_NODELAY, 1);
    if (!a.user.empty()) {
      mosquitto_username_pw_set(p.m, a.user.c_str(),
                                a.password.empty() ? nullptr : a.password.c_str());
    }
    mosquitto_connect_callback_set(p.m, [](mosquitto*, void* self, int rc) {
      if (rc != 0) die("CONNACK refused: " + std::to_string(rc));
      static_cast<Publisher*>(self)->connected = true;
    });
    // For QoS 0 the library calls this once the packet is written to the socket.
    mosquitto_publish_callback_set(
        p.m, [](mosquitto*, void* self, int) { ++static_cast<Publisher*>(self)->written; });
    const int rc = mosquitto_connect(p.m, a.host.c_str(), a.port, 60);
    if (rc != MOSQ_ERR_SUCCESS) die(std::string("connect: ") + mosquitto_strerror(rc));
  }
  const auto setup_deadline = Clock::now() + std::chrono::seconds(30);
  for (bool all = false; !all;) {
    if (Clock::now() > setup_deadline) die("not connected within 30 s");
    service(pubs, 10);
    all = true;
    for (const auto& p : pubs) all = all && p.connected;
  }
  std::printf("ready\n");
  std::fflush(stdout);

  std::vector<unsigned char> payload(static_cast<std::size_t>(a.size), 'x');
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(a.duration));
  std::uint64_t sent = 0;
  std::size_t rr = 0;
  while (Clock::now() < end) {
    if (a.rate > 0) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      const auto target = static_cast<std::uint64_t>(elapsed * a.rate) + 1;
      for (; sent < target; ++sent) publish_one(pubs[rr++ % pubs.size()], a, payload);
    } else {
      // Flat out: a connection gets its next PUBLISH as soon as the library has written the last.
      for (auto& p : pubs) {
        while (!mosquitto_want_write(p.m) && Clock::now() < end) {
          publish_one(p, a, payload);
          ++sent;
        }
      }
    }
    service(pubs, a.rate > 0 ? 1 : 0);
  }
  // Everything published must reach the socket before the run counts as over.
  const auto drain_end = Clock::now() + std::chrono::seconds(30);
  for (bool pending = true; pending && Clock::now() < drain_end;) {
    pending = false;
    for (const auto& p : pubs) pending = pending || mosquitto_want_write(p.m);
    if (pending) service(pubs, 10);
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::uint64_t written = 0;
  for (auto& p : pubs) {
    written += p.written;
    mosquitto_disconnect(p.m);  // without a loop thread, written and closed at once
    mosquitto_destroy(p.m);
  }
  mosquitto_lib_cleanup();
  std::printf("{\"sent\":%llu,\"written\":%llu,\"seconds\":%.3f,\"cpu_s\":%.3f}\n",
              static_cast<unsigned long long>(sent), static_cast<unsigned long long>(written), secs,
              cpu_seconds());
  return 0;
}
